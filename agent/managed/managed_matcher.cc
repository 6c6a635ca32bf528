// ManagedMatcher's packet path: OnPacket and everything it calls per packet
// (the classes a packet is a knock for, progress through the trie, the
// reset rules, completions, the scanner sketch and bans) and Tick's walk of
// the same per-source state. Publishing and holding sequences:
// managed_matcher_changes.cc.
#include "agent/managed/managed_matcher.h"

#include <algorithm>

#include "absl/container/inlined_vector.h"
#include "agent/match/internal/matcher_bits.h"

namespace sesame {

using matcher_internal::Elapsed;
using matcher_internal::kBanned;
using matcher_internal::kForgivenStrays;
using matcher_internal::kMaxRank;
using matcher_internal::kNewSourceRank;
using matcher_internal::kScanWindow;
using matcher_internal::KnockKey;

namespace {

using TickT = ::sesame::Tick;

uint64_t ClassBit(size_t klass) { return uint64_t{1} << klass; }

// Beside matcher_bits.h's flags: the source completed a sequence while
// tracked (a knocker, see Track's wrong knocks).
constexpr uint8_t kCompletedHere = 4;
// Its last first knock started more classes than the entry holds groups
// for: the stage-1 groups held stand for the others (StoreGroups).
constexpr uint8_t kStartsDropped = 8;

}  // namespace

TickT ManagedMatcher::ToTick(absl::Time t) {
  TickT shift = 0;
  const TickT now = clock_.ToTick(t, &shift);
  if (shift != 0) {
    const auto sub = [shift](TickT& x) { x = x > shift ? x - shift : 0; };
    table_->ForEachOccupied([&](int32_t index) {
      ManagedSourceEntry& e = table_->entry(index);
      for (TickT& s : e.group_start) sub(s);
      sub(e.scan_mark);
    });
  }
  return now;
}

uint64_t ManagedMatcher::KnockClasses(const Packet& packet) {
  const uint64_t shape = packet.protocol == Protocol::kUdp ? udp_shape_ : tcp_shape_[packet.tcp_flags];
  if (shape == 0) return 0;
  if (!dst_cache_valid_ || packet.destination != dst_cache_key_) {
    uint64_t classes = 0;
    if (!local_addresses_.has_value() || local_.contains(packet.destination)) classes |= untargeted_;
    for (size_t c = 0; c < classes_.size(); ++c) {
      const std::optional<IpAddress>& target = classes_[c].params.target;
      if (target.has_value() && *target == packet.destination) classes |= ClassBit(c);
    }
    dst_cache_valid_ = true;
    dst_cache_key_ = packet.destination;
    dst_cache_classes_ = classes;
  }
  return shape & dst_cache_classes_;
}

void ManagedMatcher::OnPacket(const Packet& packet) {
  if (has_pending_.load(std::memory_order_acquire)) Adopt();
  ++counters_.packets;
  const uint64_t classes = KnockClasses(packet);
  if (classes == 0) return;
  const uint32_t knock = KnockKey(packet.protocol, packet.destination_port);
  const SourceKey key = SourceKey::From(packet.source);
  const Table::Hashed h = table_->Hash(key);
  const int32_t index = table_->Find(key, h);
  if (index == Table::kNone) return StartSource(key, h, packet, knock, classes, ToTick(packet.time));
  Track(index, packet, knock, classes, ToTick(packet.time));
}

void ManagedMatcher::StartSource(const SourceKey& key, const Table::Hashed& h, const Packet& packet, uint32_t knock,
                                 uint64_t classes, TickT now) {
  // Untracked sources matter only from a first knock on.
  Groups starts;
  bool completed = false;
  Start(classes, knock, packet, now, starts, &completed);
  if (starts.empty() && !completed) return;
  ++counters_.knocks;
  if (starts.empty()) return;
  Table::Victim victim;
  // Always tracked: the victim is the least valuable entry of the bucket.
  const int32_t index = table_->Insert(key, h, kNewSourceRank, kMaxRank, &victim);
  matcher_internal::CountEviction(victim, counters_);
  if (index != Table::kNone) StoreGroups(table_->entry(index), starts.data(), starts.size());
}

void ManagedMatcher::Track(int32_t index, const Packet& packet, uint32_t knock, uint64_t classes, TickT now) {
  ManagedSourceEntry& e = table_->entry(index);
  table_->Touch(index);
  // A marked scanner is tracked and judged like any other source (its
  // address may be forged); each wrong knock prolongs the mark.
  const bool marked = matcher_internal::StillMarked(e, now, counters_.scanner_packets,
                                                     [&] { ReleaseBan(e, packet.source, packet.time); });
  // Only after a first knock whose starts did not all fit: that knock
  // (a stage-1 group held) and the nodes held before this knock (those go
  // the usual way below).
  std::optional<Group> dropped_from;
  uint32_t held[kGroupsPerSource];
  if (e.flags & kStartsDropped) {
    e.flags &= ~kStartsDropped;
    for (int g = 0; g < kGroupsPerSource; ++g) {
      held[g] = e.group_stage[g] != 0 ? e.group_node[g] : SequenceTrie::kNone;
      if (e.group_stage[g] == 1 && !dropped_from.has_value() && trie_.Current(e.group_node[g], e.group_generation[g])) {
        dropped_from = Group{e.group_node[g], e.group_generation[g], e.group_start[g], 1, 0, e.group_class[g]};
      }
    }
  }
  ExpireGroups(e, now, /*check_nodes=*/true);

  Groups out;
  bool advanced = false;
  bool completed = false;
  bool repeated = false;
  bool reset = false;
  // Compat classes whose progress this knock reset past a first knock: it
  // starts none of them (knockd spends the knock on the reset). Progress of
  // one knock is not counted: with many sequences nearly every port is some
  // sequence's first knock, so a knocker's last sequence leaves such
  // chance starts behind, and its next first knock would be spent on them.
  uint64_t compat_reset = 0;
  for (int g = 0; g < kGroupsPerSource; ++g) {
    if (e.group_stage[g] == 0) continue;
    const Group group{e.group_node[g], e.group_generation[g], e.group_start[g],
                      e.group_stage[g], e.group_strays[g], e.group_class[g]};
    const SequenceTrie::Node& node = trie_.node(group.node);
    const uint8_t klass = group.klass;
    if (!(classes & ClassBit(klass))) {
      out.push_back(group);  // not a knock for these sequences: invisible to them
      continue;
    }
    const bool repeat = node.knock == knock;  // a retransmitted previous knock
    if (const uint32_t next = trie_.Child(group.node, knock); next != SequenceTrie::kNone) {
      advanced = true;
      const SequenceTrie::Node& n = trie_.node(next);
      if (n.ends > 0) completed = CompleteAt(next, packet) || completed;
      if (n.children > 0) {
        out.push_back(
            Group{next, n.generation, group.start, static_cast<uint8_t>(group.stage + 1), group.strays, klass});
      }
      if (repeat) out.push_back(group);  // advancing wins, and the retransmission rule keeps the rest
      continue;
    }
    if (repeat) {
      repeated = true;
      out.push_back(group);
      continue;
    }
    if (!classes_[klass].strict && !InSequence(klass, knock) && group.strays < kForgivenStrays) {
      Group kept = group;
      ++kept.strays;  // a stray SYN to a port of no sequence, forgiven once
      out.push_back(kept);
      continue;
    }
    reset = true;
    ++counters_.resets;
    if (!classes_[klass].strict && group.stage > 1) compat_reset |= ClassBit(klass);
  }

  if (dropped_from.has_value() && ContinueDropped(*dropped_from, held, classes, knock, packet, now, out, &completed)) {
    advanced = true;
  }

  // Sequences this knock starts: not already going at that node (a
  // retransmitted first knock keeps its start), and not in a compat class
  // it has just reset (knockd spends the knock on the reset).
  const bool started = Start(classes & ~compat_reset, knock, packet, now, out, &completed);
  StoreGroups(e, out.data(), out.size());

  // A wrong knock advances, completes and repeats nothing. With many
  // sequences nearly every port starts one, so a knock that reset progress
  // is wrong even if it started another: a sweep is flagged all the same.
  // Not for a source that completed a sequence here: a knocker's first knock
  // of its next sequence resets what its last one started by chance.
  if (completed) e.flags |= kCompletedHere;
  const bool right =
      advanced || completed || repeated || (started && (!reset || (e.flags & kCompletedHere) != 0));
  if (right) {
    ++counters_.knocks;
  } else if (marked) {
    e.scan_mark = now + scan_.ban;  // the episode goes on
  } else if (CountWrongKnock(e, knock, now)) {
    Ban(e, now, packet.source, packet.time);
  }
  table_->set_rank(index, RankOf(e, now));
}

bool ManagedMatcher::Start(uint64_t classes, uint32_t knock, const Packet& packet, TickT now, Groups& groups,
                           bool* completed) {
  bool started = false;
  for (uint64_t c = classes; c != 0; c &= c - 1) {
    const uint8_t klass = static_cast<uint8_t>(__builtin_ctzll(c));
    const SequenceTrie::First first = trie_.FirstChild(classes_[klass].root, knock);
    if (first.node == SequenceTrie::kNone) continue;
    if (first.ends) *completed = CompleteAt(first.node, packet) || *completed;
    if (!first.continues) continue;
    if (std::any_of(groups.begin(), groups.end(), [&](const Group& g) { return g.node == first.node; })) continue;
    started = true;
    groups.push_back(Group{first.node, first.generation, now, 1, 0, klass});
  }
  return started;
}

bool ManagedMatcher::ContinueDropped(const Group& kept, const uint32_t (&held)[kGroupsPerSource], uint64_t classes,
                                     uint32_t knock, const Packet& packet, TickT now, Groups& groups,
                                     bool* completed) {
  const uint32_t first_knock = trie_.node(kept.node).knock;
  bool advanced = false;
  for (uint64_t c = classes; c != 0; c &= c - 1) {
    const uint8_t index = static_cast<uint8_t>(__builtin_ctzll(c));
    const Class& klass = classes_[index];
    if (Elapsed(now, kept.start) >= klass.timeout) continue;
    const uint32_t first = trie_.Child(klass.root, first_knock);
    if (first == SequenceTrie::kNone || std::find(std::begin(held), std::end(held), first) != std::end(held)) {
      continue;
    }
    const uint32_t next = trie_.Child(first, knock);
    if (next == SequenceTrie::kNone) continue;
    advanced = true;
    const SequenceTrie::Node& n = trie_.node(next);
    if (n.ends > 0) *completed = CompleteAt(next, packet) || *completed;
    if (n.children > 0) groups.push_back(Group{next, n.generation, kept.start, 2, 0, index});
  }
  return advanced;
}

bool ManagedMatcher::CompleteAt(uint32_t node, const Packet& packet) {
  auto it = ending_.find(node);
  if (it == ending_.end()) return false;
  bool any = false;
  for (uint32_t slot : it->second) {  // spending changes no record's trie node
    Record& r = records_[slot];
    if (r.id == 0) continue;
    any = true;
    ++counters_.completions;
    CompletedKnock done;
    done.sequence_id = r.id;
    done.door = r.sequence.door;
    done.knocks = r.sequence.knocks;
    done.reserve = r.sequence.reserve;
    done.source = packet.source;
    done.time = packet.time;
    if (r.spent) {
      ++replays_;
      if (r.reports >= watch_.max_reports) {
        ++replays_unreported_;
        continue;
      }
      ++r.reports;
      done.spent = true;
    } else {
      consumed_.insert(r.id);
      latest_ = std::max(latest_, packet.time);
      Spend(slot, packet.time);
    }
    sink_.OnCompleted(std::move(done));
  }
  return any;
}

void ManagedMatcher::StoreGroups(ManagedSourceEntry& e, Group* groups, size_t n) {
  // Furthest first; among equals the most recent start (the most time left).
  std::sort(groups, groups + n,
            [](const Group& a, const Group& b) { return a.stage != b.stage ? a.stage > b.stage : a.start > b.start; });
  for (size_t g = 0; g < kGroupsPerSource; ++g) {
    const bool used = g < n;
    e.group_node[g] = used ? groups[g].node : 0;
    e.group_generation[g] = used ? groups[g].generation : 0;
    e.group_start[g] = used ? groups[g].start : 0;
    e.group_stage[g] = used ? groups[g].stage : 0;
    e.group_strays[g] = used ? groups[g].strays : 0;
    e.group_class[g] = used ? groups[g].klass : 0;
  }
  // One knock starts a sequence in every class with one that begins there
  // (with 100,000 sequences in three doors, nearly every knock starts three).
  // The starts that do not fit are not lost: they are the same knock at the
  // same time as a stage-1 group held, so the next knock continues them
  // from it (ContinueDropped). Only deeper progress is really dropped.
  e.flags &= ~kStartsDropped;
  const Group* last = n > kGroupsPerSource ? &groups[kGroupsPerSource - 1] : nullptr;
  for (size_t g = kGroupsPerSource; g < n; ++g) {
    if (groups[g].stage == 1 && last->stage == 1 && groups[g].start == last->start &&
        trie_.node(groups[g].node).knock == trie_.node(last->node).knock) {
      e.flags |= kStartsDropped;
    } else {
      ++counters_.progress_dropped;
    }
  }
}

void ManagedMatcher::ExpireGroups(ManagedSourceEntry& e, TickT now, bool check_nodes) {
  for (int g = 0; g < kGroupsPerSource; ++g) {
    if (e.group_stage[g] == 0) continue;
    // A node no sequence passes through any more: its sequences were
    // removed (its index may already name another prefix).
    bool drop = check_nodes && !trie_.Current(e.group_node[g], e.group_generation[g]);
    if (!drop && Elapsed(now, e.group_start[g]) >= classes_[e.group_class[g]].timeout) {
      drop = true;  // knockd: >= too
      ++counters_.timeouts;
    }
    if (drop) e.group_stage[g] = 0;
  }
}

bool ManagedMatcher::CountWrongKnock(ManagedSourceEntry& e, uint32_t knock, TickT now) {
  return matcher_internal::CountWrongKnock(e, knock, now, scan_);
}

void ManagedMatcher::Ban(ManagedSourceEntry& e, TickT now, const IpAddress& source, absl::Time time) {
  for (uint8_t& stage : e.group_stage) stage = 0;
  e.flags = kBanned;
  e.scan_mark = now + scan_.ban;
  e.scan_ports = 0;
  e.ignored_packets = 0;
  ++counters_.scanners;
  ScannerReport r;
  r.source = source;
  r.at = time;
  r.ignored_until = time + options_.scan_ban;
  r.distinct_ports = options_.scan_threshold;
  r.window = options_.scan_window;
  sink_.OnScanner(std::move(r));
}

void ManagedMatcher::ReleaseBan(ManagedSourceEntry& e, const IpAddress& source, absl::Time time) {
  ScannerReport r;
  r.source = source;
  r.at = time;
  r.ignored_until = time;
  r.distinct_ports = options_.scan_threshold;
  r.window = options_.scan_window;
  r.released = true;
  r.packets = e.ignored_packets;
  sink_.OnScanner(std::move(r));
  e.flags = 0;
  e.scan_ports = 0;
  e.ignored_packets = 0;
}

uint8_t ManagedMatcher::RankOf(const ManagedSourceEntry& e, TickT now) const {
  return matcher_internal::RankOf(e, now, [&e](int g) { return e.group_stage[g] != 0; });
}

bool ManagedMatcher::InSequence(uint8_t klass, uint32_t knock) const {
  const KnockSet* knocks = classes_[klass].knocks.get();
  if (knocks == nullptr) return compat_knocks_.contains((static_cast<uint64_t>(klass) << 32) | knock);
  return knocks->contains(KnockIndex(knock));
}

void ManagedMatcher::Tick(absl::Time now) {
  latest_ = std::max(latest_, now);
  if (has_pending_.load(std::memory_order_acquire)) Adopt();
  const TickT t = ToTick(now);
  ExpireSpent(now);
  if (now >= walked_at_ && now - walked_at_ < kWalkEvery) return;
  walked_at_ = now;
  // Without progress or a ban, an entry only remembers wrong knocks, and
  // only for the scan window.
  const auto idle = [&](const ManagedSourceEntry& e) {
    return !(e.flags & kScanWindow) || Elapsed(t, e.scan_mark) >= scan_.window;
  };
  // The walk reads the trie only when nodes were freed since the last one:
  // their nodes are megabytes.
  const bool check_nodes = trie_.freed() != freed_at_walk_;
  freed_at_walk_ = trie_.freed();
  table_->ForEachOccupied([&](int32_t index) {
    ManagedSourceEntry& e = table_->entry(index);
    if ((e.flags & kBanned) && t >= e.scan_mark) {
      ReleaseBan(e, SourceKey{e.key_lo, e.key_hi, e.family}.ToAddress(), now);
    }
    ExpireGroups(e, t, check_nodes);
    const uint8_t rank = RankOf(e, t);  // progress past its first second loses its edge
    table_->set_rank(index, rank);
    if (rank == 0 && idle(e)) table_->Erase(index);
  });
}

bool ManagedMatcher::IsBanned(const IpAddress& source) const {
  const SourceKey key = SourceKey::From(source);
  const int32_t index = table_->Find(key, table_->Hash(key));
  return index != Table::kNone && (table_->entry(index).flags & kBanned) != 0;
}

}  // namespace sesame
