// Knock-shaped Ethernet frames built from scratch: Ethernet II, IPv4 (no
// options) or IPv6 (no extension headers), then a bare TCP header (no options,
// no payload) or an empty UDP datagram, every checksum filled in. The sender
// chooses every field, so a frame can carry any source address.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ip_address.h"
#include "common/knock.h"

namespace sesame::bench {

struct MacAddress {
  std::array<uint8_t, 6> bytes{};
  // "02:00:00:00:00:01" (hex pairs separated by ':').
  static std::optional<MacAddress> Parse(std::string_view text);
  std::string ToString() const;
};

struct KnockFrameSpec {
  MacAddress source_mac;
  MacAddress destination_mac;
  IpAddress source;       // same family as destination
  IpAddress destination;
  Protocol protocol = Protocol::kTcp;
  uint16_t source_port = 40000;
  uint16_t destination_port = 0;
  uint8_t tcp_flags = tcp_flags::kSyn;  // ignored for UDP
  uint32_t tcp_sequence = 0;
  uint8_t ttl = 64;                     // IPv6: hop limit
};

// Ethernet + IPv6 + TCP, the largest frame BuildKnockFrame writes.
inline constexpr size_t kMaxKnockFrameSize = 14 + 40 + 20;

// Writes the frame into `out` and returns its length; an error (and nothing
// useful in `out`) when the two addresses are of different families.
absl::StatusOr<size_t> BuildKnockFrame(const KnockFrameSpec& spec,
                                       std::array<uint8_t, kMaxKnockFrameSize>& out);

// A sequence as knock(1) and knockd write it: "7000:tcp,8000:udp,9000"
// (protocol defaults to tcp).
absl::StatusOr<std::vector<Knock>> ParseKnockList(std::string_view text);

}  // namespace sesame::bench
