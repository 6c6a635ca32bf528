#include "bench/tools/knock_frame.h"

#include <charconv>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sesame::bench {
namespace {

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr size_t kEthernetSize = 14;
constexpr size_t kIpv4Size = 20;
constexpr size_t kIpv6Size = 40;
constexpr size_t kTcpSize = 20;
constexpr size_t kUdpSize = 8;

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void Put32(uint8_t* p, uint32_t v) {
  Put16(p, static_cast<uint16_t>(v >> 16));
  Put16(p + 2, static_cast<uint16_t>(v));
}

// One's-complement sum of big-endian 16-bit words, not yet folded.
uint32_t SumWords(const uint8_t* data, size_t size, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < size; i += 2) sum += (uint32_t{data[i]} << 8) | data[i + 1];
  if (size % 2 == 1) sum += uint32_t{data[size - 1]} << 8;
  return sum;
}
uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace

std::optional<MacAddress> MacAddress::Parse(std::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(absl::string_view(text.data(), text.size()), ':');
  if (parts.size() != 6) return std::nullopt;
  MacAddress mac;
  for (size_t i = 0; i < 6; ++i) {
    if (parts[i].size() != 2) return std::nullopt;
    unsigned value = 0;
    auto [end, ec] = std::from_chars(parts[i].data(), parts[i].data() + 2, value, 16);
    if (ec != std::errc() || end != parts[i].data() + 2) return std::nullopt;
    mac.bytes[i] = static_cast<uint8_t>(value);
  }
  return mac;
}

std::string MacAddress::ToString() const {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2], bytes[3],
                         bytes[4], bytes[5]);
}

absl::StatusOr<size_t> BuildKnockFrame(const KnockFrameSpec& spec,
                                       std::array<uint8_t, kMaxKnockFrameSize>& out) {
  if (spec.source.family() != spec.destination.family()) {
    return absl::InvalidArgumentError(absl::StrCat("source ", spec.source.ToString(), " and destination ",
                                                   spec.destination.ToString(), " differ in family"));
  }
  const bool v6 = spec.destination.is_v6();
  const bool tcp = spec.protocol == Protocol::kTcp;
  const size_t ip_size = v6 ? kIpv6Size : kIpv4Size;
  const size_t l4_size = tcp ? kTcpSize : kUdpSize;
  const size_t frame_size = kEthernetSize + ip_size + l4_size;
  std::memset(out.data(), 0, frame_size);

  uint8_t* eth = out.data();
  std::memcpy(eth, spec.destination_mac.bytes.data(), 6);
  std::memcpy(eth + 6, spec.source_mac.bytes.data(), 6);
  Put16(eth + 12, v6 ? kEtherTypeIpv6 : kEtherTypeIpv4);

  uint8_t* ip = eth + kEthernetSize;
  uint8_t* l4 = ip + ip_size;
  const uint8_t protocol = static_cast<uint8_t>(spec.protocol);
  if (v6) {
    ip[0] = 0x60;
    Put16(ip + 4, static_cast<uint16_t>(l4_size));
    ip[6] = protocol;
    ip[7] = spec.ttl;
    std::memcpy(ip + 8, spec.source.bytes(), 16);
    std::memcpy(ip + 24, spec.destination.bytes(), 16);
  } else {
    ip[0] = 0x45;
    Put16(ip + 2, static_cast<uint16_t>(kIpv4Size + l4_size));
    Put16(ip + 4, static_cast<uint16_t>(spec.tcp_sequence));  // identification: anything
    Put16(ip + 6, 0x4000);                                    // don't fragment
    ip[8] = spec.ttl;
    ip[9] = protocol;
    std::memcpy(ip + 12, spec.source.bytes(), 4);
    std::memcpy(ip + 16, spec.destination.bytes(), 4);
    Put16(ip + 10, Fold(SumWords(ip, kIpv4Size)));
  }

  Put16(l4, spec.source_port);
  Put16(l4 + 2, spec.destination_port);
  if (tcp) {
    Put32(l4 + 4, spec.tcp_sequence);
    l4[12] = 5 << 4;  // data offset: 5 words, no options
    l4[13] = spec.tcp_flags;
    Put16(l4 + 14, 64240);  // window
  } else {
    Put16(l4 + 4, static_cast<uint16_t>(l4_size));
  }

  // Pseudo-header: both addresses, the protocol and the layer-4 length.
  uint32_t sum = SumWords(spec.source.bytes(), spec.source.size());
  sum = SumWords(spec.destination.bytes(), spec.destination.size(), sum);
  sum += protocol;
  sum += static_cast<uint32_t>(l4_size);
  uint16_t checksum = Fold(SumWords(l4, l4_size, sum));
  if (!tcp && checksum == 0) checksum = 0xffff;  // 0 would mean "no checksum" for UDP
  Put16(l4 + (tcp ? 16 : 6), checksum);
  return frame_size;
}

absl::StatusOr<std::vector<Knock>> ParseKnockList(std::string_view text) {
  std::vector<Knock> knocks;
  for (absl::string_view item : absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    item = absl::StripAsciiWhitespace(item);
    absl::string_view port_text = item;
    Protocol protocol = Protocol::kTcp;
    if (size_t colon = item.find(':'); colon != absl::string_view::npos) {
      port_text = item.substr(0, colon);
      absl::string_view name = item.substr(colon + 1);
      if (absl::EqualsIgnoreCase(name, "udp")) {
        protocol = Protocol::kUdp;
      } else if (!absl::EqualsIgnoreCase(name, "tcp")) {
        return absl::InvalidArgumentError(
            absl::StrCat("knock '", item, "': protocol must be tcp or udp"));
      }
    }
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
        port == 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("knock '", item, "': expected PORT[:tcp|:udp] with PORT in 1..65535"));
    }
    knocks.push_back(Knock{static_cast<uint16_t>(port), protocol});
  }
  return knocks;
}

}  // namespace sesame::bench
