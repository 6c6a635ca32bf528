#include "agent/managed/managed_matcher.h"

#include <algorithm>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace sesame {

ManagedMatcher::ManagedMatcher(const MatcherOptions& options, ManagedKnockSink& sink, size_t max_shards,
                               ReplayWatch watch)
    : options_(options), sink_(sink), max_shards_(max_shards), watch_(watch) {}

void ManagedMatcher::Publish(std::vector<LiveSequence> live) {
  absl::MutexLock lock(&mu_);
  pending_ = std::move(live);
  has_pending_.store(true, std::memory_order_release);
}

void ManagedMatcher::Adopt() {
  std::optional<std::vector<LiveSequence>> live;
  {
    absl::MutexLock lock(&mu_);
    live.swap(pending_);
    has_pending_.store(false, std::memory_order_relaxed);
  }
  if (live.has_value()) Apply(*live);
}

std::vector<MatcherDoor> ManagedMatcher::FreeDoors(const MatchParams& params) const {
  std::vector<MatcherDoor> doors(kSlotsPerShard);
  for (size_t i = 0; i < doors.size(); ++i) {
    MatcherDoor& d = doors[i];
    d.name = absl::StrCat("managed-slot-", i);
    d.seq_timeout = params.seq_timeout;
    d.tcp_flags_set = params.tcp_flags_set;
    d.tcp_flags_clear = params.tcp_flags_clear;
    d.reset_mode = params.reset_mode;
    d.target = params.target;
    d.enabled = false;
  }
  return doors;
}

ManagedMatcher::Shard* ManagedMatcher::ShardFor(const MatchParams& params, size_t* index, size_t* slot) {
  auto found = [&](size_t i, size_t j) {
    *index = i;
    *slot = j;
    return shards_[i].get();
  };
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard& s = *shards_[i];
    if (s.params != params || s.used == kSlotsPerShard) continue;
    for (size_t j = 0; j < s.slots.size(); ++j) {
      if (s.slots[j].id == 0) return found(i, j);
    }
  }
  // No free slot: the oldest spent sequence of these parameters gives way.
  std::optional<std::pair<size_t, size_t>> oldest;
  for (size_t i = 0; i < shards_.size(); ++i) {
    const Shard& s = *shards_[i];
    if (s.params != params || s.live == s.used) continue;
    for (size_t j = 0; j < s.slots.size(); ++j) {
      const Slot& sl = s.slots[j];
      if (sl.id == 0 || !sl.spent) continue;
      if (!oldest || sl.spent_at < shards_[oldest->first]->slots[oldest->second].spent_at) oldest = {i, j};
    }
  }
  if (oldest) {
    Free(oldest->first, oldest->second);
    return found(oldest->first, oldest->second);
  }
  // A shard without live sequences (empty, or only watching spent ones) is
  // taken over before a new one is made: the replay watch never costs a
  // shard of its own.
  std::optional<size_t> idle;
  for (size_t i = 0; i < shards_.size(); ++i) {
    if (shards_[i]->live == 0 && (!idle || shards_[i]->used < shards_[*idle]->used)) idle = i;
  }
  if (idle) return TakeOver(*idle, params) ? found(*idle, 0) : nullptr;
  if (shards_.size() >= max_shards_) return nullptr;
  // Scanners are judged across shards (OnPacket): a knock wrong for this
  // shard's sequences may be right for another's.
  MatcherOptions options = options_;
  options.defer_wrong_knocks = true;
  absl::StatusOr<std::unique_ptr<KnockMatcher>> matcher = KnockMatcher::Create(options, FreeDoors(params));
  if (!matcher.ok()) {
    LogError(absl::StrCat("managed matcher: cannot make a shard: ", matcher.status().ToString()));
    return nullptr;
  }
  auto shard = std::make_unique<Shard>();
  shard->params = params;
  shard->fresh = true;
  shard->matcher = *std::move(matcher);
  shard->slots.resize(kSlotsPerShard);
  if (local_addresses_.has_value()) shard->matcher->SetLocalAddresses(*local_addresses_);
  shard->matcher->SetObserver([this](const MatcherEvent& e) {
    if (e.kind != MatcherEventKind::kScannerFlagged && e.kind != MatcherEventKind::kScannerReleased) return;
    ScannerReport r;
    r.source = e.source;
    r.at = e.time;
    r.ignored_until = e.time + options_.scan_ban;
    r.distinct_ports = options_.scan_threshold;
    r.window = options_.scan_window;
    r.released = e.kind == MatcherEventKind::kScannerReleased;
    r.packets = e.ignored_packets;
    sink_.OnScanner(std::move(r));
  });
  shards_.push_back(std::move(shard));
  return found(shards_.size() - 1, 0);
}

bool ManagedMatcher::TakeOver(size_t index, const MatchParams& params) {
  Shard& s = *shards_[index];
  // Its spent sequences (if any) stop being watched; it has no progress
  // worth keeping.
  for (Slot& sl : s.slots) {
    if (sl.id != 0) where_.erase(sl.id);
    sl = Slot{};
  }
  s.used = 0;
  if (absl::Status st = s.matcher->SetDoors(FreeDoors(params)); !st.ok()) {
    LogError(absl::StrCat("managed matcher: ", st.ToString()));
    return false;
  }
  s.params = params;
  s.fresh = true;
  return true;
}

bool ManagedMatcher::Add(const LiveSequence& sequence) {
  size_t index = 0;
  size_t slot = 0;
  Shard* shard = ShardFor(sequence.params, &index, &slot);
  if (shard == nullptr) return false;
  if (!shard->fresh) {
    absl::Status s = shard->matcher->SetSequence(slot, sequence.knocks);
    if (s.ok()) s = shard->matcher->SetDoorEnabled(slot, true);
    if (!s.ok()) {
      LogError(absl::StrCat("managed sequence ", sequence.id, " (door ", sequence.door,
                            ") cannot be recognised: ", s.message()));
      (void)shard->matcher->SetDoorEnabled(slot, false);
      return true;  // not a capacity problem
    }
  }
  shard->slots[slot] = Slot{sequence.id, sequence};
  ++shard->used;
  ++shard->live;
  ++live_;
  where_[sequence.id] = {index, slot};
  return true;
}

void ManagedMatcher::Fill(size_t index) {
  Shard& shard = *shards_[index];
  shard.fresh = false;
  std::vector<MatcherDoor> doors = FreeDoors(shard.params);
  for (size_t i = 0; i < shard.slots.size(); ++i) {
    if (shard.slots[i].id == 0) continue;
    doors[i].sequence = shard.slots[i].sequence.knocks;
    doors[i].enabled = true;
  }
  if (shard.matcher->SetDoors(std::move(doors)).ok()) return;
  // Some sequence is not acceptable: find it the slow way. (A fresh shard
  // holds live sequences only: they were all added by this Apply.)
  std::vector<Slot> slots;
  slots.swap(shard.slots);
  shard.slots.resize(kSlotsPerShard);
  live_ -= shard.live;
  shard.used = 0;
  shard.live = 0;
  (void)shard.matcher->SetDoors(FreeDoors(shard.params));
  for (const Slot& slot : slots) {
    if (slot.id == 0) continue;
    where_.erase(slot.id);
    if (!slot.spent) (void)Add(slot.sequence);
  }
}

void ManagedMatcher::Free(size_t shard_index, size_t slot) {
  Shard& shard = *shards_[shard_index];
  Slot& s = shard.slots[slot];
  (void)shard.matcher->SetDoorEnabled(slot, false);  // drops that sequence's progress only
  where_.erase(s.id);
  if (!s.spent) {
    --shard.live;
    --live_;
  }
  s = Slot{};
  --shard.used;
}

void ManagedMatcher::Spend(size_t shard_index, size_t slot, absl::Time at) {
  // The slot stays enabled, progress included: only the flag changes.
  Shard& shard = *shards_[shard_index];
  Slot& s = shard.slots[slot];
  s.spent = true;
  s.spent_at = at;
  s.reports = 0;
  --shard.live;
  --live_;
}

void ManagedMatcher::Revive(size_t shard_index, size_t slot) {
  Shard& shard = *shards_[shard_index];
  shard.slots[slot].spent = false;
  ++shard.live;
  ++live_;
}

void ManagedMatcher::Apply(const std::vector<LiveSequence>& live) {
  absl::flat_hash_map<uint64_t, const LiveSequence*> wanted;
  for (const LiveSequence& s : live) wanted[s.id] = &s;
  // Completed ones the publisher no longer lists: it has caught up.
  for (auto it = consumed_.begin(); it != consumed_.end();) {
    auto next = std::next(it);
    if (!wanted.contains(*it)) consumed_.erase(it);
    it = next;
  }
  std::vector<std::pair<size_t, size_t>> to_free, to_spend, to_revive;
  for (const auto& [id, at] : where_) {
    const Slot& slot = shards_[at.first]->slots[at.second];
    auto w = wanted.find(id);
    if (w == wanted.end()) {
      if (!slot.spent) to_spend.push_back(at);  // burnt, or otherwise no longer live
      continue;
    }
    const bool same = *w->second == slot.sequence;
    if (slot.spent) {
      if (consumed_.contains(id)) continue;  // listed by a publisher that has not caught up
      (same ? to_revive : to_free).push_back(at);
    } else if (!same) {
      to_free.push_back(at);  // changed: added again below
    }
  }
  for (const auto& [shard, slot] : to_free) Free(shard, slot);
  for (const auto& [shard, slot] : to_spend) Spend(shard, slot, latest_);
  for (const auto& [shard, slot] : to_revive) Revive(shard, slot);
  over_capacity_ = 0;
  for (const LiveSequence& s : live) {
    if (where_.contains(s.id) || consumed_.contains(s.id)) continue;
    if (!Add(s)) ++over_capacity_;
  }
  for (size_t i = 0; i < shards_.size(); ++i) {
    if (shards_[i]->fresh) Fill(i);
  }
  if (over_capacity_ > 0) {
    LogError(absl::StrCat(over_capacity_, " managed sequence(s) cannot be recognised: more than ",
                          max_shards_ * kSlotsPerShard, " live sequences"));
  }
}

void ManagedMatcher::Report(size_t shard_index, size_t slot, const Packet& packet) {
  Slot& s = shards_[shard_index]->slots[slot];
  ++replays_;
  if (s.reports >= watch_.max_reports) {
    ++replays_unreported_;
    return;
  }
  ++s.reports;
  CompletedKnock done;
  done.sequence_id = s.id;
  done.door = s.sequence.door;
  done.knocks = s.sequence.knocks;
  done.reserve = s.sequence.reserve;
  done.spent = true;
  done.source = packet.source;
  done.time = packet.time;
  sink_.OnCompleted(std::move(done));
}

void ManagedMatcher::OnPacket(const Packet& packet) {
  if (has_pending_.load(std::memory_order_acquire)) Adopt();
  // A knock is wrong (scanner-like) only if no shard took it: one knocker
  // working through sequences of several shards is not scanning any of them.
  bool right = false;
  absl::InlinedVector<uint32_t, 16> wrong;  // shards that tracked the source and found the knock wrong
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard& shard = *shards_[i];
    if (shard.used == 0) continue;
    const MatchResult result = shard.matcher->Process(packet);
    right = right || result.right_knock;
    if (result.wrong_knock) wrong.push_back(static_cast<uint32_t>(i));
    if (result.completed.empty()) continue;
    result.completed.ForEach([&](size_t slot) {
      const Slot& s = shard.slots[slot];
      if (s.id == 0) return;
      if (s.spent) return Report(i, slot, packet);
      CompletedKnock done;
      done.sequence_id = s.id;
      done.door = s.sequence.door;
      done.knocks = s.sequence.knocks;
      done.reserve = s.sequence.reserve;
      done.source = packet.source;
      done.time = packet.time;
      consumed_.insert(done.sequence_id);
      latest_ = std::max(latest_, packet.time);
      Spend(i, slot, packet.time);
      sink_.OnCompleted(std::move(done));
    });
  }
  if (right) return;
  for (uint32_t i : wrong) shards_[i]->matcher->CountWrongKnock(packet);
}

void ManagedMatcher::Tick(absl::Time now) {
  latest_ = std::max(latest_, now);
  if (has_pending_.load(std::memory_order_acquire)) Adopt();
  for (auto& shard : shards_) shard->matcher->Expire(now);
  ExpireSpent(now);
}

void ManagedMatcher::ExpireSpent(absl::Time now) {
  if (where_.size() == live_) return;
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard& shard = *shards_[i];
    if (shard.live == shard.used) continue;
    for (size_t j = 0; j < shard.slots.size(); ++j) {
      Slot& s = shard.slots[j];
      if (s.id == 0 || !s.spent) continue;
      // Spent before any time was known, or the clock was set back: the
      // retention counts from now.
      if (s.spent_at == absl::InfinitePast() || s.spent_at > now) s.spent_at = now;
      if (now - s.spent_at < watch_.retention) continue;
      Free(i, j);
    }
  }
}

void ManagedMatcher::SetLocalAddresses(const std::vector<IpAddress>& addresses) {
  local_addresses_ = addresses;
  for (auto& shard : shards_) shard->matcher->SetLocalAddresses(addresses);
}

bool ManagedMatcher::IsLive(uint64_t id) const {
  auto it = where_.find(id);
  return it != where_.end() && !shards_[it->second.first]->slots[it->second.second].spent;
}

bool ManagedMatcher::IsSpent(uint64_t id) const {
  auto it = where_.find(id);
  return it != where_.end() && shards_[it->second.first]->slots[it->second.second].spent;
}

MatcherCounters ManagedMatcher::counters() const {
  MatcherCounters sum;
  for (const auto& shard : shards_) {
    const MatcherCounters& c = shard->matcher->counters();
    sum.packets += c.packets;
    sum.knocks += c.knocks;
    sum.completions += c.completions;
    sum.resets += c.resets;
    sum.timeouts += c.timeouts;
    sum.evictions += c.evictions;
    sum.evicted_progress += c.evicted_progress;
    sum.young_evictions += c.young_evictions;
    sum.progress_dropped += c.progress_dropped;
    sum.scanners += c.scanners;
    sum.scanner_packets += c.scanner_packets;
  }
  return sum;
}

}  // namespace sesame
