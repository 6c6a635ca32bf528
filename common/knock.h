// The wire-level vocabulary that agent, controller and CLI share: a knock
// (port and protocol) and the TCP flags a door may ask for.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
// "7000:tcp,8000:udp" (empty for none).
inline std::string KnocksToString(const std::vector<Knock>& knocks) {
  std::string out;
  for (const Knock& k : knocks) {
    if (!out.empty()) out += ',';
    out += KnockToString(k);
  }
  return out;
}

}  // namespace sesame
