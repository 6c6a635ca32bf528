#include "agent/managed/managed_matcher.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace sesame {

ManagedMatcher::ManagedMatcher(const MatcherOptions& options, ManagedKnockSink& sink, size_t max_shards)
    : options_(options), sink_(sink), max_shards_(max_shards) {}

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

ManagedMatcher::Shard* ManagedMatcher::ShardFor(const MatchParams& params, size_t* index) {
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard& s = *shards_[i];
    if (s.params == params && s.used < kSlotsPerShard) {
      *index = i;
      return &s;
    }
  }
  // An empty shard of other parameters is taken over (it has no progress to
  // lose), else a new one is made.
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard& s = *shards_[i];
    if (s.used != 0) continue;
    if (absl::Status st = s.matcher->SetDoors(FreeDoors(params)); !st.ok()) {
      LogError(absl::StrCat("managed matcher: ", st.ToString()));
      return nullptr;
    }
    s.params = params;
    s.fresh = true;
    *index = i;
    return &s;
  }
  if (shards_.size() >= max_shards_) return nullptr;
  absl::StatusOr<std::unique_ptr<KnockMatcher>> matcher = KnockMatcher::Create(options_, FreeDoors(params));
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
    if (e.kind != MatcherEventKind::kScannerFlagged) return;
    ScannerReport r;
    r.source = e.source;
    r.at = e.time;
    r.ignored_until = e.time + options_.scan_ban;
    r.distinct_ports = options_.scan_threshold;
    r.window = options_.scan_window;
    sink_.OnScanner(std::move(r));
  });
  shards_.push_back(std::move(shard));
  *index = shards_.size() - 1;
  return shards_.back().get();
}

bool ManagedMatcher::Add(const LiveSequence& sequence) {
  size_t index = 0;
  Shard* shard = ShardFor(sequence.params, &index);
  if (shard == nullptr) return false;
  size_t slot = 0;
  while (shard->slots[slot].id != 0) ++slot;
  if (shard->fresh) {
    shard->slots[slot] = Slot{sequence.id, sequence};
    ++shard->used;
    where_[sequence.id] = {index, slot};
    return true;
  }
  absl::Status s = shard->matcher->SetSequence(slot, sequence.knocks);
  if (s.ok()) s = shard->matcher->SetDoorEnabled(slot, true);
  if (!s.ok()) {
    LogError(absl::StrCat("managed sequence ", sequence.id, " (door ", sequence.door,
                          ") cannot be recognised: ", s.message()));
    (void)shard->matcher->SetDoorEnabled(slot, false);
    return true;  // not a capacity problem
  }
  shard->slots[slot] = Slot{sequence.id, sequence};
  ++shard->used;
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
  // Some sequence is not acceptable: find it the slow way.
  std::vector<Slot> slots;
  slots.swap(shard.slots);
  shard.slots.resize(kSlotsPerShard);
  shard.used = 0;
  (void)shard.matcher->SetDoors(FreeDoors(shard.params));
  for (const Slot& slot : slots) {
    if (slot.id == 0) continue;
    where_.erase(slot.id);
    (void)Add(slot.sequence);
  }
}

void ManagedMatcher::Free(size_t shard_index, size_t slot) {
  Shard& shard = *shards_[shard_index];
  (void)shard.matcher->SetDoorEnabled(slot, false);  // drops that sequence's progress only
  where_.erase(shard.slots[slot].id);
  shard.slots[slot] = Slot{};
  --shard.used;
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
  bool changed = false;
  std::vector<std::pair<size_t, size_t>> to_free;
  for (const auto& [id, at] : where_) {
    auto w = wanted.find(id);
    if (w == wanted.end() || !(*w->second == shards_[at.first]->slots[at.second].sequence)) to_free.push_back(at);
  }
  for (const auto& [shard, slot] : to_free) Free(shard, slot);
  changed = !to_free.empty();
  over_capacity_ = 0;
  for (const LiveSequence& s : live) {
    if (where_.contains(s.id) || consumed_.contains(s.id)) continue;
    if (!Add(s)) {
      ++over_capacity_;
      continue;
    }
    changed = true;
  }
  for (size_t i = 0; i < shards_.size(); ++i) {
    if (shards_[i]->fresh) Fill(i);
  }
  if (over_capacity_ > 0) {
    LogError(absl::StrCat(over_capacity_, " managed sequence(s) cannot be recognised: more than ",
                          max_shards_ * kSlotsPerShard, " live sequences"));
  }
  if (changed) ++generation_;
}

void ManagedMatcher::OnPacket(const Packet& packet) {
  if (has_pending_.load(std::memory_order_acquire)) Adopt();
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard& shard = *shards_[i];
    if (shard.used == 0) continue;
    const MatchResult result = shard.matcher->Process(packet);
    if (result.completed.empty()) continue;
    result.completed.ForEach([&](size_t slot) {
      if (shard.slots[slot].id == 0) return;
      CompletedKnock done;
      done.sequence_id = shard.slots[slot].id;
      done.door = shard.slots[slot].sequence.door;
      done.knocks = shard.slots[slot].sequence.knocks;
      done.reserve = shard.slots[slot].sequence.reserve;
      done.source = packet.source;
      done.time = packet.time;
      consumed_.insert(done.sequence_id);
      Free(i, slot);
      ++generation_;
      sink_.OnCompleted(std::move(done));
    });
  }
}

void ManagedMatcher::Tick(absl::Time now) {
  if (has_pending_.load(std::memory_order_acquire)) Adopt();
  for (auto& shard : shards_) shard->matcher->Expire(now);
}

void ManagedMatcher::SetLocalAddresses(const std::vector<IpAddress>& addresses) {
  local_addresses_ = addresses;
  for (auto& shard : shards_) shard->matcher->SetLocalAddresses(addresses);
}

std::vector<Knock> ManagedMatcher::CurrentKnocks() const {
  std::vector<Knock> out;
  for (const auto& shard : shards_) {
    for (const Slot& slot : shard->slots) {
      if (slot.id != 0) out.insert(out.end(), slot.sequence.knocks.begin(), slot.sequence.knocks.end());
    }
  }
  return out;
}

bool ManagedMatcher::AnyStrict() const {
  for (const auto& shard : shards_) {
    if (shard->used > 0 && shard->params.reset_mode == ResetMode::kStrict) return true;
  }
  return false;
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
    sum.insert_failures += c.insert_failures;
    sum.progress_dropped += c.progress_dropped;
    sum.scanners += c.scanners;
    sum.scanner_packets_ignored += c.scanner_packets_ignored;
  }
  return sum;
}

}  // namespace sesame
