// KnockMatcher's packet path: Process and ProcessBatch and everything they
// call per packet (destinations, the knock index, matcher time, progress
// groups and the reset rules, completions, the scanner sketch and bans,
// events), and Expire, which walks the same per-source state. They stay in
// one translation unit on purpose: the build has no LTO, and the compiler
// must be able to inline these small functions into Process and Track.
// Creating the matcher and changing its doors: matcher_setup.cc; the
// read-only queries: matcher_queries.cc.
#include "agent/match/matcher.h"

#include <algorithm>

#include "agent/match/internal/matcher_bits.h"

namespace sesame {

using matcher_internal::Bit;
using matcher_internal::Elapsed;
using matcher_internal::kForgivenStrays;
using matcher_internal::kMaxRank;
using matcher_internal::kNewSourceRank;
using matcher_internal::KnockKey;
using matcher_internal::kBanned;
using matcher_internal::kScanWindow;
using matcher_internal::Mix;

namespace {

Knock KnockFromKey(uint32_t key) {
  return Knock{static_cast<uint16_t>(key & 0xffff), static_cast<Protocol>(key >> 16)};
}
int Popcount(uint64_t x) { return __builtin_popcountll(x); }
int LowestDoor(uint64_t x) { return __builtin_ctzll(x); }

}  // namespace

uint64_t KnockMatcher::DestinationDoors(const IpAddress& destination) {
  if (dst_cache_valid_ && destination == dst_cache_key_) return dst_cache_doors_;
  uint64_t doors = 0;
  if (any_destination_ || local_.contains(destination)) doors |= untargeted_;
  for (const auto& [target, target_doors] : targets_) {
    if (target == destination) doors |= target_doors;
  }
  dst_cache_valid_ = true;
  dst_cache_key_ = destination;
  dst_cache_doors_ = doors;
  return doors;
}

Tick KnockMatcher::ToTick(absl::Time t) {
  Tick shift = 0;
  const Tick now = clock_.ToTick(t, &shift);
  if (shift != 0) Rebase(shift);
  return now;
}

void KnockMatcher::Rebase(Tick shift) {
  const auto sub = [shift](Tick& t) { t = t > shift ? t - shift : 0; };
  table_->ForEachOccupied([&](int32_t index) {
    SourceEntry& e = table_->entry(index);
    for (Tick& t : e.group_start) sub(t);
    sub(e.scan_mark);
  });
}

const KnockMatcher::IndexSlot& KnockMatcher::Lookup(uint32_t knock) const {
  const size_t mask = index_.size() - 1;
  size_t i = Mix(knock) & mask;
  while (index_[i].key != knock) {
    if (index_[i].key == 0) return index_[i];  // not there: an empty slot has no doors
    i = (i + 1) & mask;
  }
  return index_[i];
}

MatchResult KnockMatcher::Process(const Packet& packet) {
  ++counters_.packets;
  const uint64_t shape = packet.protocol == Protocol::kUdp ? udp_shape_ : tcp_shape_[packet.tcp_flags];
  if (shape == 0) return {};
  const uint64_t knock_doors = shape & DestinationDoors(packet.destination);
  if (knock_doors == 0) return {};

  const uint32_t knock = KnockKey(packet.protocol, packet.destination_port);
  uint64_t in_sequence = 0;
  uint64_t first = 0;
  if (in_sequences_.contains(KnockIndex(packet.protocol, packet.destination_port))) {
    const IndexSlot& slot = Lookup(knock);
    in_sequence = slot.in_sequence & knock_doors;
    first = slot.first & knock_doors;
  }

  const SourceKey key = SourceKey::From(packet.source);
  const SourceTable::Hashed h = table_->Hash(key);
  const int32_t index = table_->Find(key, h);
  if (index == SourceTable::kNone) {
    if (first == 0) return {};  // untracked sources matter only from a first knock on
    return StartSource(key, h, packet, knock, first, ToTick(packet.time));
  }
  return Track(index, packet, knock, knock_doors, in_sequence, first, ToTick(packet.time));
}

bool KnockMatcher::PrefetchBucket(const Packet& packet, SourceTable::Hashed* h) {
  const uint64_t shape = packet.protocol == Protocol::kUdp ? udp_shape_ : tcp_shape_[packet.tcp_flags];
  if (shape == 0 || (shape & DestinationDoors(packet.destination)) == 0) return false;
  *h = table_->Hash(SourceKey::From(packet.source));
  table_->Prefetch(*h);
  return true;
}

void KnockMatcher::ProcessBatch(absl::Span<const Packet> packets, absl::Span<MatchResult> results) {
  // Two stages of prefetching: a packet's bucket kFar packets ahead, its
  // entry kNear packets ahead (by then the bucket is in cache).
  constexpr size_t kFar = 16;
  constexpr size_t kNear = 8;
  SourceTable::Hashed hashes[kFar];
  bool wanted[kFar];
  const size_t n = std::min(packets.size(), results.size());
  for (size_t j = 0; j < std::min(n, kFar); ++j) wanted[j] = PrefetchBucket(packets[j], &hashes[j]);
  for (size_t i = 0; i < n; ++i) {
    if (const size_t j = i + kNear; j < n && wanted[j % kFar]) {
      table_->PrefetchEntry(hashes[j % kFar], kMaxRank);
    }
    if (const size_t j = i + kFar; j < n) wanted[j % kFar] = PrefetchBucket(packets[j], &hashes[j % kFar]);
    results[i] = Process(packets[i]);
  }
}

MatchResult KnockMatcher::StartSource(const SourceKey& key, const SourceTable::Hashed& h, const Packet& packet,
                                      uint32_t knock, uint64_t first, Tick now) {
  ++counters_.knocks;
  const uint64_t starts = first & ~single_;
  if (starts != 0) {
    SourceTable::Victim victim;
    // Always tracked: the victim is the least valuable entry of the bucket
    // (RankOf), the least recently active among equals.
    const int32_t index = table_->Insert(key, h, kNewSourceRank, kMaxRank, &victim);
    matcher_internal::CountEviction(victim, counters_);
    if (index != SourceTable::kNone) {
      SourceEntry& e = table_->entry(index);
      e.group_doors[0] = starts;
      e.group_start[0] = now;
      e.group_stage[0] = 1;
      if (options_.report_stages && Reporting()) {
        EmitPerDoor(MatcherEventKind::kStage, starts, packet.time, packet.source, 1, KnockFromKey(knock));
      }
    }
  }
  const uint64_t completed = first & single_;
  MatchResult result;
  if (completed != 0) result = Complete(completed, packet, knock);
  result.right_knock = true;  // first != 0: it starts or completes a door
  return result;
}

MatchResult KnockMatcher::Track(int32_t index, const Packet& packet, uint32_t knock, uint64_t knock_doors,
                                uint64_t in_sequence, uint64_t first, Tick now) {
  SourceEntry& e = table_->entry(index);
  table_->Touch(index);
  // A source marked as a scanner is tracked and judged like any other (its
  // address may be forged: the real owner must get in once the forgery
  // stops); the mark makes one report of the episode, which each wrong knock
  // prolongs.
  const bool marked = matcher_internal::StillMarked(e, now, counters_.scanner_packets,
                                                     [&] { ReleaseBan(e, packet.source, packet.time); });
  ExpireGroups(e, now, packet.source, packet.time);

  // Each group splits into the doors this knock advances and the doors it
  // leaves alone; reset doors drop out. Starts add one more group.
  Group out[2 * kGroupsPerSource + 1];
  int n = 0;
  uint64_t advanced = 0;  // incl. completed
  uint64_t completed = 0;
  uint64_t reset = 0;
  uint64_t in_progress = 0;
  bool repeated = false;
  // Wrong knocks reset strict doors always, compat doors when the knock is a
  // port of some sequence (knockd's rule) or the second knock to a port of
  // no sequence since the door started (a sweep; knockd never sees those
  // packets, its filter drops them, so it forgives any number).
  const bool stray = in_sequence == 0;
  const uint64_t resettable = stray ? strict_ : ~uint64_t{0};
  for (int g = 0; g < kGroupsPerSource; ++g) {
    const uint64_t doors = e.group_doors[g];
    if (doors == 0) continue;
    const uint8_t stage = e.group_stage[g];
    const Tick start = e.group_start[g];
    uint8_t strays = e.group_strays[g];

    uint64_t next = 0;
    for (uint64_t c = doors & in_sequence; c != 0; c &= c - 1) {
      const int d = LowestDoor(c);
      if (door_state_[d].knocks[stage] == knock) next |= Bit(d);
    }
    const uint64_t others = doors & ~next & knock_doors;  // a knock for them, not their next
    uint64_t dropped = 0;
    if (others != 0) {
      // Doors of a group share their knocks so far: any door's previous knock will do.
      if (door_state_[LowestDoor(doors)].knocks[stage - 1] == knock) {
        repeated = true;  // a retransmission: leave them be
      } else {
        dropped = others & resettable;
        if (stray && (others & ~strict_) != 0) {
          if (strays >= kForgivenStrays) {
            dropped = others;
          } else {
            ++strays;
          }
        }
      }
    }
    if (next != 0) {
      advanced |= next;
      if (options_.report_stages && Reporting()) {
        EmitPerDoor(MatcherEventKind::kStage, next, packet.time, packet.source, stage + 1, KnockFromKey(knock));
      }
      const uint64_t done = next & length_doors_[stage + 1];
      completed |= done;
      if (next & ~done) out[n++] = Group{next & ~done, start, static_cast<uint8_t>(stage + 1), strays};
    }
    if (const uint64_t kept = doors & ~next & ~dropped; kept != 0) out[n++] = Group{kept, start, stage, strays};
    if (dropped != 0) {
      reset |= dropped;
      counters_.resets += Popcount(dropped);
      if (stage >= options_.min_event_stage && Reporting()) {
        EmitPerDoor(MatcherEventKind::kReset, dropped, packet.time, packet.source, stage, KnockFromKey(knock));
      }
    }
  }
  for (int i = 0; i < n; ++i) in_progress |= out[i].doors;

  // Doors this knock starts: not already going, not just completed, and not
  // compat doors it has just reset (knockd spends the knock on the reset).
  uint64_t starts = first & ~in_progress & ~completed & ~(reset & ~strict_);
  completed |= starts & single_;
  starts &= ~single_;
  if (starts != 0) {
    out[n++] = Group{starts, now, 1, 0};
    if (options_.report_stages && Reporting()) {
      EmitPerDoor(MatcherEventKind::kStage, starts, packet.time, packet.source, 1, KnockFromKey(knock));
    }
  }
  StoreGroups(e, out, n);

  bool wrong = false;
  if (advanced != 0 || starts != 0 || completed != 0) {
    ++counters_.knocks;
  } else if (!repeated) {
    wrong = true;
    if (marked) {
      e.scan_mark = now + scan_.ban;  // the episode goes on
    } else if (CountWrongKnock(e, knock, now)) {
      Ban(e, now, packet.source, packet.time);
    }
  }
  table_->set_rank(index, RankOf(e, now));
  MatchResult result;
  if (completed != 0) result = Complete(completed, packet, knock);
  result.right_knock = !wrong;
  result.wrong_knock = wrong;
  return result;
}

void KnockMatcher::StoreGroups(SourceEntry& e, Group* groups, int n) {
  // Furthest first; among equals the most recent start (the most time left).
  std::sort(groups, groups + n,
            [](const Group& a, const Group& b) { return a.stage != b.stage ? a.stage > b.stage : a.start > b.start; });
  for (int g = 0; g < kGroupsPerSource; ++g) {
    e.group_doors[g] = g < n ? groups[g].doors : 0;
    e.group_start[g] = g < n ? groups[g].start : 0;
    e.group_stage[g] = g < n ? groups[g].stage : 0;
    e.group_strays[g] = g < n ? groups[g].strays : 0;
  }
  for (int g = kGroupsPerSource; g < n; ++g) counters_.progress_dropped += Popcount(groups[g].doors);
}

uint64_t KnockMatcher::ExpireGroups(SourceEntry& e, Tick now, const IpAddress& source, absl::Time time) {
  uint64_t count = 0;
  for (int g = 0; g < kGroupsPerSource; ++g) {
    const uint64_t doors = e.group_doors[g];
    if (doors == 0) continue;
    const Tick elapsed = Elapsed(now, e.group_start[g]);
    if (elapsed < min_timeout_) continue;
    uint64_t expired = 0;
    for (uint64_t c = doors; c != 0; c &= c - 1) {
      const int d = LowestDoor(c);
      if (elapsed >= door_state_[d].timeout) expired |= Bit(d);  // knockd: >= too
    }
    if (expired == 0) continue;
    e.group_doors[g] &= ~expired;
    count += Popcount(expired);
    if (e.group_stage[g] >= options_.min_event_stage && Reporting()) {
      EmitPerDoor(MatcherEventKind::kTimeout, expired, time, source, e.group_stage[g], Knock{});
    }
  }
  counters_.timeouts += count;
  return count;
}

bool KnockMatcher::CountWrongKnock(SourceEntry& e, uint32_t knock, Tick now) {
  return matcher_internal::CountWrongKnock(e, knock, now, scan_);
}

void KnockMatcher::Ban(SourceEntry& e, Tick now, const IpAddress& source, absl::Time time) {
  for (int g = 0; g < kGroupsPerSource; ++g) {
    e.group_doors[g] = 0;
    e.group_stage[g] = 0;
  }
  e.flags = kBanned;
  e.scan_mark = now + scan_.ban;  // both below 2^31
  e.scan_ports = 0;
  e.ignored_packets = 0;
  ++counters_.scanners;
  if (Reporting()) Emit(MatcherEventKind::kScannerFlagged, time, source, -1, 0, Knock{});
}

void KnockMatcher::ReleaseBan(SourceEntry& e, const IpAddress& source, absl::Time time) {
  if (Reporting()) Emit(MatcherEventKind::kScannerReleased, time, source, -1, 0, Knock{}, e.ignored_packets);
  e.flags = 0;
  e.scan_ports = 0;
  e.ignored_packets = 0;
}

uint8_t KnockMatcher::RankOf(const SourceEntry& e, Tick now) const {
  return matcher_internal::RankOf(e, now, [&e](int g) { return e.group_doors[g] != 0; });
}

MatchResult KnockMatcher::Complete(uint64_t doors, const Packet& packet, uint32_t knock) {
  counters_.completions += Popcount(doors);
  if (Reporting()) {
    for (uint64_t c = doors; c != 0; c &= c - 1) {
      const int d = LowestDoor(c);
      Emit(MatcherEventKind::kCompleted, packet.time, packet.source, d, static_cast<int>(door_state_[d].length),
           KnockFromKey(knock));
    }
  }
  return MatchResult{DoorSet(doors)};
}

size_t KnockMatcher::Expire(absl::Time now) {
  const Tick t = ToTick(now);
  size_t dropped = 0;
  // Without progress or a ban, an entry only remembers wrong knocks, and
  // only for the scan window.
  const auto idle = [&](const SourceEntry& e) {
    return !(e.flags & kScanWindow) || Elapsed(t, e.scan_mark) >= scan_.window;
  };
  table_->ForEachOccupied([&](int32_t index) {
    SourceEntry& e = table_->entry(index);
    if (table_->rank(index) == 0) {
      if (idle(e)) table_->Erase(index);
      return;
    }
    const IpAddress source = SourceKey{e.key_lo, e.key_hi, e.family}.ToAddress();
    if ((e.flags & kBanned) && t >= e.scan_mark) ReleaseBan(e, source, now);
    dropped += ExpireGroups(e, t, source, now);
    const uint8_t rank = RankOf(e, t);  // progress past its first second loses its edge
    table_->set_rank(index, rank);
    if (rank == 0 && idle(e)) table_->Erase(index);
  });
  return dropped;
}

void KnockMatcher::Emit(MatcherEventKind kind, absl::Time time, const IpAddress& source, int door, int stage,
                        const Knock& knock, uint64_t ignored) {
  MatcherEvent event;
  event.kind = kind;
  event.time = time;
  event.source = source;
  event.door = door;
  event.stage = stage;
  event.knock = knock;
  event.ignored_packets = ignored;
  observer_(event);
}

void KnockMatcher::EmitPerDoor(MatcherEventKind kind, uint64_t doors, absl::Time time, const IpAddress& source,
                               int stage, const Knock& knock) {
  for (uint64_t c = doors; c != 0; c &= c - 1) Emit(kind, time, source, LowestDoor(c), stage, knock);
}

}  // namespace sesame
