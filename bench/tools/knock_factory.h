// Turns (source address, knock) into a ready frame, filling in what every
// knock of a run shares (MACs, destination, TCP flags) and varying the rest
// (source port, sequence number) from a seeded generator, so a run can be
// reproduced exactly.
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <span>

#include "absl/status/statusor.h"
#include "bench/tools/knock_frame.h"
#include "common/ip_address.h"
#include "common/knock.h"

namespace sesame::bench {

struct KnockTemplate {
  MacAddress source_mac;
  MacAddress destination_mac;
  IpAddress destination;
  uint8_t tcp_flags = tcp_flags::kSyn;
  uint64_t seed = 1;
};

class KnockFactory {
 public:
  explicit KnockFactory(const KnockTemplate& knock_template)
      : template_(knock_template), random_(knock_template.seed) {}

  // The frame stays valid until the next call. Fails only when `source` is
  // not of the destination's family.
  absl::StatusOr<std::span<const uint8_t>> Make(const IpAddress& source, const Knock& knock);

  const KnockTemplate& knock_template() const { return template_; }
  std::mt19937_64& random() { return random_; }

 private:
  KnockTemplate template_;
  std::mt19937_64 random_;
  std::array<uint8_t, kMaxKnockFrameSize> buffer_{};
};

// "syn", "syn,ack", "fin,psh,urg" (case-insensitive) to a flags byte.
absl::StatusOr<uint8_t> ParseTcpFlags(std::string_view text);

}  // namespace sesame::bench
