// What the capture path hands to the matcher: one decoded TCP or UDP packet.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "common/ip_address.h"

namespace sesame {

enum class Protocol : uint8_t { kTcp = 6, kUdp = 17 };

namespace tcp_flags {
inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;
inline constexpr uint8_t kUrg = 0x20;
}  // namespace tcp_flags

// One element of a knock sequence ("7000:tcp"), or one port a grant opens.
struct Knock {
  uint16_t port = 0;
  Protocol protocol = Protocol::kTcp;
  friend bool operator==(const Knock&, const Knock&) = default;
};

inline const char* ProtocolName(Protocol p) { return p == Protocol::kTcp ? "tcp" : "udp"; }
inline std::string KnockToString(const Knock& k) {
  return std::to_string(k.port) + ":" + ProtocolName(k.protocol);
}

struct Packet {
  absl::Time time;          // capture timestamp
  IpAddress source;
  IpAddress destination;
  Protocol protocol = Protocol::kTcp;
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
  uint8_t tcp_flags = 0;    // zero for UDP
};

}  // namespace sesame
