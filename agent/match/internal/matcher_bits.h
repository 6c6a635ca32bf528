// Private to KnockMatcher's files (agent/match/matcher*.cc): the encodings
// that the tables built in matcher_setup.cc and the packet path in
// matcher.cc must agree on (knock keys, the port bitmap's protocol index, the
// hash), door bits, and the flags a SourceEntry carries. All inline (constexpr
// implies it): the packet path uses them on every knock.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/knock.h"

namespace sesame::matcher_internal {

enum EntryFlags : uint8_t {
  kBanned = 1,      // scan_mark is the end of the ban
  kScanWindow = 2,  // scan_mark is the start of the scan window
};

constexpr uint32_t KnockKey(Protocol protocol, uint16_t port) { return (static_cast<uint32_t>(protocol) << 16) | port; }
constexpr int ProtocolIndex(Protocol protocol) { return protocol == Protocol::kUdp ? 1 : 0; }
inline uint64_t Bit(size_t door) { return uint64_t{1} << door; }

inline uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

}  // namespace sesame::matcher_internal
