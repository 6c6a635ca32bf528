// ManagedMatcher's sequences: what a Publish changed (on the publisher's
// thread), applied on the capture thread (Adopt); the records, their trie
// nodes and classes; spent sequences and their retention; room for waiting
// ones. The packet path: managed_matcher.cc.
#include "agent/managed/managed_matcher.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "agent/match/internal/matcher_bits.h"
#include "common/log.h"

namespace sesame {

using matcher_internal::KnockKey;

namespace {

// Why a sequence cannot be recognised at all (not a matter of room), or "".
std::string Unusable(const LiveSequence& s) {
  if (s.knocks.empty() || s.knocks.size() > kMaxSequenceLength) {
    return absl::StrCat("it has ", s.knocks.size(), " knocks (1 to ", kMaxSequenceLength, " allowed)");
  }
  if (s.params.seq_timeout <= absl::ZeroDuration() || s.params.seq_timeout > kMaxMatcherDuration) {
    return "its seq_timeout is not between 1 ms and 10 days";
  }
  if ((s.params.tcp_flags_set & s.params.tcp_flags_clear) != 0) return "its TCP flags contradict each other";
  return "";
}

}  // namespace

ManagedMatcher::ManagedMatcher(const MatcherOptions& options, ManagedKnockSink& sink, size_t capacity,
                               ReplayWatch watch)
    : options_(options),
      sink_(sink),
      capacity_(std::max<size_t>(capacity, 1)),
      watch_(watch),
      scan_(ScanSettings::From(options)) {
  table_ = Table::Create(std::clamp<size_t>(options.max_sources, 1, kMaxSources), options.hash_seed);
  if (table_ == nullptr) {
    LogError(absl::StrCat("managed matcher: no memory for a table of ", options.max_sources, " sources"));
    std::abort();  // as any failed allocation at start-up
  }
}

ManagedMatcher::~ManagedMatcher() = default;

void ManagedMatcher::Publish(std::vector<LiveSequence> live) {
  // The comparison runs here, on the publisher's thread, under its own lock:
  // the capture thread waits only for the hand-over of what changed.
  absl::MutexLock publishing(&publish_mu_);
  std::vector<Change> changes;
  absl::flat_hash_map<uint64_t, LiveSequence> next;
  next.reserve(live.size());
  for (LiveSequence& s : live) {
    auto it = published_.find(s.id);
    if (it == published_.end() || !(it->second == s)) changes.push_back(Change{0, s});
    next.insert_or_assign(s.id, std::move(s));
  }
  for (const auto& [id, s] : published_) {
    if (!next.contains(id)) changes.push_back(Change{id, {}});
  }
  published_ = std::move(next);
  HandOver(std::move(changes));
}

void ManagedMatcher::Update(std::vector<LiveSequence> upserts, const std::vector<uint64_t>& removed) {
  absl::MutexLock publishing(&publish_mu_);
  std::vector<Change> changes;
  for (LiveSequence& s : upserts) {
    auto [it, added] = published_.try_emplace(s.id, s);
    if (!added) {
      if (it->second == s) continue;
      it->second = s;
    }
    changes.push_back(Change{0, std::move(s)});
  }
  for (uint64_t id : removed) {
    if (published_.erase(id) > 0) changes.push_back(Change{id, {}});
  }
  HandOver(std::move(changes));
}

void ManagedMatcher::HandOver(std::vector<Change> changes) {
  if (changes.empty()) return;
  absl::MutexLock lock(&mu_);
  if (pending_.empty()) {
    pending_ = std::move(changes);
  } else {
    std::move(changes.begin(), changes.end(), std::back_inserter(pending_));
  }
  has_pending_.store(true, std::memory_order_release);
}

void ManagedMatcher::Adopt() {
  std::vector<Change> changes;
  {
    absl::MutexLock lock(&mu_);
    changes.swap(pending_);
    has_pending_.store(false, std::memory_order_relaxed);
  }
  for (Change& change : changes) Apply(change);
  AddWaiting();
}

void ManagedMatcher::Apply(Change& change) {
  if (change.removed != 0) {
    const uint64_t id = change.removed;
    waiting_.erase(id);
    consumed_.erase(id);  // the publisher has caught up
    auto it = where_.find(id);
    if (it != where_.end() && !records_[it->second].spent) Spend(it->second, latest_);  // burnt, or no longer live
    return;
  }
  const LiveSequence& s = change.sequence;
  waiting_.erase(s.id);
  if (auto it = where_.find(s.id); it != where_.end()) {
    Record& r = records_[it->second];
    const bool same = r.sequence == s;
    if (r.spent) {
      if (consumed_.contains(s.id)) return;  // listed by a publisher that has not caught up
      if (same) {
        spent_order_.erase({r.spent_at, it->second});
        r.spent = false;
        r.reports = 0;
        ++live_;
        return;
      }
    } else if (same) {
      return;
    }
    Free(it->second);  // changed: added again below
  } else if (consumed_.contains(s.id)) {
    return;
  }
  if (!Add(s)) waiting_.insert_or_assign(s.id, s);
}

int ManagedMatcher::ClassFor(const MatchParams& params) {
  int unused = -1;
  for (size_t c = 0; c < classes_.size(); ++c) {
    if (classes_[c].params == params) return static_cast<int>(c);
    if (classes_[c].sequences == 0 && unused < 0) unused = static_cast<int>(c);
  }
  if (unused < 0 && classes_.size() >= kMaxClasses) return -1;
  if (unused < 0) {
    unused = static_cast<int>(classes_.size());
    classes_.emplace_back();
    classes_.back().root = trie_.AddRoot(static_cast<uint8_t>(unused));
  }
  Class& c = classes_[unused];  // its root has no children: no sequence of it is held
  c.params = params;
  c.knocks.reset();
  c.timeout = ToMatcherMillis(params.seq_timeout);
  c.strict = params.reset_mode == ResetMode::kStrict;
  Rebuild();
  return unused;
}

void ManagedMatcher::Rebuild() {
  udp_shape_ = 0;
  untargeted_ = 0;
  for (size_t f = 0; f < 256; ++f) tcp_shape_[f] = 0;
  for (size_t c = 0; c < classes_.size(); ++c) {
    const MatchParams& p = classes_[c].params;
    const uint64_t bit = uint64_t{1} << c;
    udp_shape_ |= bit;
    if (!p.target.has_value()) untargeted_ |= bit;
    for (size_t f = 0; f < 256; ++f) {
      if ((f & p.tcp_flags_set) == p.tcp_flags_set && (f & p.tcp_flags_clear) == 0) tcp_shape_[f] |= bit;
    }
  }
  dst_cache_valid_ = false;
}

bool ManagedMatcher::Add(const LiveSequence& sequence) {
  if (const std::string why = Unusable(sequence); !why.empty()) {
    LogError(absl::StrCat("managed sequence ", sequence.id, " (door ", sequence.door, ") cannot be recognised: ", why));
    return true;  // not a matter of room: it would never fit
  }
  const int klass = ClassFor(sequence.params);
  if (klass < 0) return false;
  if (where_.size() >= capacity_) {
    if (spent_order_.empty()) return false;  // every one held is live
    Free(spent_order_.begin()->second);      // the oldest spent one gives way
  }
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(records_.size());
    records_.emplace_back();
  }
  std::vector<uint32_t> keys;
  keys.reserve(sequence.knocks.size());
  for (const Knock& k : sequence.knocks) keys.push_back(KnockKey(k.protocol, k.port));
  Record& r = records_[slot];
  r.id = sequence.id;
  r.sequence = sequence;
  r.klass = static_cast<uint8_t>(klass);
  r.end = trie_.Insert(classes_[klass].root, keys);
  ending_[r.end].push_back(slot);
  if (!classes_[klass].strict) {
    for (uint32_t k : keys) {
      if (++compat_knocks_[(static_cast<uint64_t>(klass) << 32) | k] == 1) SetInSequence(r.klass, k, true);
    }
  }
  ++classes_[klass].sequences;
  where_[sequence.id] = slot;
  ++live_;
  return true;
}

void ManagedMatcher::SetInSequence(uint8_t klass, uint32_t knock, bool in) {
  Class& c = classes_[klass];
  in ? ++c.distinct_knocks : --c.distinct_knocks;
  if (c.knocks != nullptr) {
    in ? c.knocks->insert(KnockIndex(knock)) : c.knocks->erase(KnockIndex(knock));
    return;
  }
  if (c.distinct_knocks < kKnockBitsFrom) return;
  c.knocks = std::make_unique<KnockSet>();
  for (const auto& [key, count] : compat_knocks_) {  // once per class: this knock is counted already
    if ((key >> 32) == klass) c.knocks->insert(KnockIndex(static_cast<uint32_t>(key)));
  }
}

void ManagedMatcher::Free(uint32_t slot) {
  Record& r = records_[slot];
  trie_.Remove(r.end);
  if (auto it = ending_.find(r.end); it != ending_.end()) {
    std::erase(it->second, slot);
    if (it->second.empty()) ending_.erase(it);
  }
  if (!classes_[r.klass].strict) {
    for (const Knock& k : r.sequence.knocks) {
      const uint32_t key = KnockKey(k.protocol, k.port);
      auto it = compat_knocks_.find((static_cast<uint64_t>(r.klass) << 32) | key);
      if (it != compat_knocks_.end() && --it->second == 0) {
        compat_knocks_.erase(it);
        SetInSequence(r.klass, key, false);
      }
    }
  }
  --classes_[r.klass].sequences;
  where_.erase(r.id);
  if (r.spent) {
    spent_order_.erase({r.spent_at, slot});
  } else {
    --live_;
  }
  r = Record{};
  free_slots_.push_back(slot);
}

void ManagedMatcher::Spend(uint32_t slot, absl::Time at) {
  // The trie keeps it, progress included: only the flag changes.
  Record& r = records_[slot];
  r.spent = true;
  r.spent_at = at;
  r.reports = 0;
  spent_order_.insert({at, slot});
  --live_;
}

void ManagedMatcher::ExpireSpent(absl::Time now) {
  while (!spent_order_.empty()) {
    const auto [at, slot] = *spent_order_.begin();
    if (at == absl::InfinitePast()) {
      // Spent before any time was known: the retention counts from now.
      spent_order_.erase(spent_order_.begin());
      records_[slot].spent_at = now;
      spent_order_.insert({now, slot});
      continue;
    }
    if (now - at < watch_.retention) break;
    Free(slot);
  }
  AddWaiting();
}

void ManagedMatcher::AddWaiting() {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (where_.size() >= capacity_ && spent_order_.empty()) break;
    if (!Add(it->second)) break;
    it = waiting_.erase(it);
  }
  if (waiting_.size() > waiting_count_.load(std::memory_order_relaxed)) {
    LogError(absl::StrCat(waiting_.size(), " managed sequence(s) cannot be recognised: more than ", capacity_,
                          " held, or more than ", kMaxClasses, " sets of match parameters"));
  }
  waiting_count_.store(waiting_.size(), std::memory_order_relaxed);
}

void ManagedMatcher::SetLocalAddresses(const std::vector<IpAddress>& addresses) {
  local_addresses_ = addresses;
  local_.clear();
  local_.insert(addresses.begin(), addresses.end());
  dst_cache_valid_ = false;
}

bool ManagedMatcher::IsLive(uint64_t id) const {
  auto it = where_.find(id);
  return it != where_.end() && !records_[it->second].spent;
}

bool ManagedMatcher::IsSpent(uint64_t id) const {
  auto it = where_.find(id);
  return it != where_.end() && records_[it->second].spent;
}

size_t ManagedMatcher::MemoryBytes() const {
  size_t bytes = table_->MemoryBytes() + trie_.MemoryBytes() + records_.capacity() * sizeof(Record);
  for (const Record& r : records_) {
    bytes += r.sequence.knocks.capacity() * sizeof(Knock);
    if (r.sequence.door.capacity() > 15) bytes += r.sequence.door.capacity() + 1;  // past the short-string buffer
  }
  bytes += where_.capacity() * (sizeof(std::pair<uint64_t, uint32_t>) + 1);
  bytes += ending_.capacity() * (sizeof(std::pair<uint32_t, std::vector<uint32_t>>) + 1) +
           ending_.size() * sizeof(uint32_t);
  bytes += compat_knocks_.capacity() * (sizeof(std::pair<uint64_t, uint32_t>) + 1);
  for (const Class& c : classes_) bytes += c.knocks != nullptr ? sizeof(KnockSet) : 0;
  bytes += spent_order_.size() * 48;  // a red-black tree node
  return bytes;
}

}  // namespace sesame
