#include "bench/tools/knock_factory.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sesame::bench {

absl::StatusOr<std::span<const uint8_t>> KnockFactory::Make(const IpAddress& source, const Knock& knock) {
  KnockFrameSpec spec;
  spec.source_mac = template_.source_mac;
  spec.destination_mac = template_.destination_mac;
  spec.source = source;
  spec.destination = template_.destination;
  spec.protocol = knock.protocol;
  spec.destination_port = knock.port;
  const uint64_t bits = random_();
  spec.source_port = static_cast<uint16_t>(1024 + (bits & 0xffff) % (65536 - 1024));  // ephemeral-ish
  spec.tcp_sequence = static_cast<uint32_t>(bits >> 32);
  spec.tcp_flags = template_.tcp_flags;
  auto size = BuildKnockFrame(spec, buffer_);
  if (!size.ok()) return size.status();
  return std::span<const uint8_t>(buffer_.data(), *size);
}

absl::StatusOr<uint8_t> ParseTcpFlags(std::string_view text) {
  uint8_t flags = 0;
  for (absl::string_view name : absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    name = absl::StripAsciiWhitespace(name);
    const std::string lower = absl::AsciiStrToLower(name);
    if (lower == "fin") flags |= tcp_flags::kFin;
    else if (lower == "syn") flags |= tcp_flags::kSyn;
    else if (lower == "rst") flags |= tcp_flags::kRst;
    else if (lower == "psh") flags |= tcp_flags::kPsh;
    else if (lower == "ack") flags |= tcp_flags::kAck;
    else if (lower == "urg") flags |= tcp_flags::kUrg;
    else {
      return absl::InvalidArgumentError(
          absl::StrCat("TCP flag '", name, "': expected fin, syn, rst, psh, ack or urg"));
    }
  }
  return flags;
}

}  // namespace sesame::bench
