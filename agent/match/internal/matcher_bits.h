// Private to the matchers (KnockMatcher's agent/match/matcher*.cc, and
// agent/managed/managed_matcher*.cc): the encodings the tables and the
// packet path must agree on (knock keys, the hash), door bits, the flags a
// source entry carries, the eviction ranks and the scanner sketch. All
// inline (constexpr implies it): the packet path uses them on every knock.
#pragma once

#include <cstddef>
#include <cstdint>

#include "agent/match/matcher.h"
#include "agent/match/source_table.h"
#include "common/knock.h"

namespace sesame::matcher_internal {

enum EntryFlags : uint8_t {
  kBanned = 1,      // scan_mark is the end of the ban
  kScanWindow = 2,  // scan_mark is the start of the scan window
};

constexpr uint32_t KnockKey(Protocol protocol, uint16_t port) { return (static_cast<uint32_t>(protocol) << 16) | port; }
inline uint64_t Bit(size_t door) { return uint64_t{1} << door; }

inline uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

inline Tick Elapsed(Tick now, Tick since) { return now > since ? now - since : 0; }

// Eviction ranks (RankOf), lowest evicted first, the least recently active
// among equals: 0 nothing in progress; 1 a first knock older than
// kYoungProgressMs, or a source marked as a scanner; 2 two or more knocks in,
// older; 3 any progress within kYoungProgressMs of its first knock. A real
// knocker finishes within a second, so a forged half-knock must not outrank
// it: young progress ranks the same whatever its stage, and a half-knock
// that never finishes loses its rank after that second. Only a flood of more
// new sources a second than the table holds leaves a bucket with nothing but
// young progress; then the least recently active goes.
inline constexpr Tick kYoungProgressMs = 1000;
inline constexpr uint8_t kNewSourceRank = 3;
inline constexpr uint8_t kMaxRank = 3;
// Knocks to ports of no sequence a compat door forgives while in progress.
inline constexpr uint8_t kForgivenStrays = 1;

// The rank of a source entry (group_start, group_stage, flags) whose group
// g holds progress when in_progress(g).
template <typename Entry, typename InProgress>
uint8_t RankOf(const Entry& e, Tick now, InProgress in_progress) {
  uint8_t rank = (e.flags & kBanned) ? 1 : 0;
  for (int g = 0; g < kGroupsPerSource; ++g) {
    if (!in_progress(g)) continue;
    const bool young = Elapsed(now, e.group_start[g]) < kYoungProgressMs;
    const uint8_t r = young ? 3 : e.group_stage[g] >= 2 ? 2 : 1;
    if (r > rank) rank = r;
  }
  return rank;
}

// A new source's insert displaced `victim` (SourceTable::Victim).
template <typename Victim>
void CountEviction(const Victim& victim, MatcherCounters& counters) {
  if (!victim.occupied) return;
  ++counters.evictions;
  if (victim.rank > 0) ++counters.evicted_progress;
  if (victim.rank == kMaxRank) ++counters.young_evictions;
}

// A source entry marked as a scanner (flags, scan_mark, ignored_packets):
// while the mark lasts, counts the packet and says so; once it is over,
// ends it through release() (which reports it) and says not.
template <typename Entry, typename Release>
bool StillMarked(Entry& e, Tick now, uint64_t& scanner_packets, Release release) {
  if (!(e.flags & kBanned)) return false;
  if (now >= e.scan_mark) {
    release();
    return false;
  }
  if (e.ignored_packets != UINT32_MAX) ++e.ignored_packets;
  ++scanner_packets;
  return true;
}

// Adds a wrong knock to a source entry's sketch of distinct wrong knocks in
// the scan window (scan_ports, scan_mark, flags); true when they reach
// scan.threshold_bits. The sketch is keyed (scan.key) so that a sweep
// cannot pick ports that share bits.
template <typename Entry>
bool CountWrongKnock(Entry& e, uint32_t knock, Tick now, const ScanSettings& scan) {
  if (scan.threshold_bits == 0) return false;
  if (!(e.flags & kScanWindow) || Elapsed(now, e.scan_mark) >= scan.window) {
    e.scan_ports = 0;
    e.scan_mark = now;
    e.flags |= kScanWindow;
  }
  e.scan_ports |= uint64_t{1} << (Mix(knock ^ scan.key) >> 58);
  return __builtin_popcountll(e.scan_ports) >= scan.threshold_bits;
}

}  // namespace sesame::matcher_internal
