// Knocks (protocol, port) as dense indexes, and a set of them as bits: what
// the matchers' packet paths look a knock up in when a hash map would miss
// the cache (KnockMatcher's "some sequence knocks here", the managed
// matcher's compat doors, a big trie root's children).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "common/knock.h"

namespace sesame {

// Every knock's index is below this: TCP ports first, then UDP.
inline constexpr size_t kKnockIndexes = 2 * 65536;

constexpr uint32_t KnockIndex(Protocol protocol, uint16_t port) {
  return (protocol == Protocol::kUdp ? 0x10000u : 0u) | port;
}
// The same from a knock key (matcher_bits.h's KnockKey: protocol << 16 | port).
constexpr uint32_t KnockIndex(uint32_t knock_key) {
  return KnockIndex(static_cast<Protocol>(knock_key >> 16), static_cast<uint16_t>(knock_key));
}

// 16 KiB, whatever it holds.
class KnockSet {
 public:
  bool contains(uint32_t index) const { return (bits_[index / 64] >> (index % 64)) & 1; }
  void insert(uint32_t index) { bits_[index / 64] |= uint64_t{1} << (index % 64); }
  void erase(uint32_t index) { bits_[index / 64] &= ~(uint64_t{1} << (index % 64)); }
  void clear() { bits_.fill(0); }

 private:
  std::array<uint64_t, kKnockIndexes / 64> bits_{};
};

}  // namespace sesame
