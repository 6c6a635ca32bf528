// Recognition of managed sequences on the capture thread.
//
// A managed door holds many live sequences at once (one per sequence issued
// to an operator, plus this agent's offline reserve), and any of them may be
// burnt at any moment. The KnockMatcher tracks up to kMaxDoors (64)
// "doors" in 64-bit masks on its packet path, which must stay as fast as it
// is for standalone doors. So each live sequence is one matcher door (a
// slot), in shards of 64 slots: one KnockMatcher per shard, created as
// needed, up to max_shards. A shard holds sequences whose matching
// parameters (seq_timeout, TCP flags, reset mode, target) are equal, so a
// slot is reused with SetSequence/SetDoorEnabled alone: adding or burning a
// sequence drops the progress of that sequence only, never of the knockers
// of the others. Every packet goes through every shard (a lookup that
// finds nothing costs a few nanoseconds per shard); memory is one source
// table per shard (MatcherOptions::max_sources entries of 72 bytes).
//
// Threads. Publish() (any thread; the managed agent's worker) hands over the
// complete set of sequences that should be live; the capture thread adopts
// it before the next packet it processes (one atomic load per packet when
// nothing changed), so no packet processed after Publish returns can
// complete a sequence that was left out. Everything else runs on the
// capture thread. A completed sequence is disabled at once, before the
// controller has answered: whatever the verdict, the sequence is spent, and
// it is not brought back by a Publish that was computed before the worker
// heard of the completion.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/matcher.h"
#include "agent/packet.h"

namespace sesame {

// How a sequence's knocks are recognised; sequences that share these share
// a shard.
struct MatchParams {
  absl::Duration seq_timeout = absl::Seconds(25);
  uint8_t tcp_flags_set = tcp_flags::kSyn;
  uint8_t tcp_flags_clear = tcp_flags::kAck;
  ResetMode reset_mode = ResetMode::kStrict;
  std::optional<IpAddress> target;
  friend bool operator==(const MatchParams&, const MatchParams&) = default;
};

struct LiveSequence {
  uint64_t id = 0;  // the controller's sequence id, never 0
  std::string door;
  std::vector<Knock> knocks;
  bool reserve = false;
  MatchParams params;
  friend bool operator==(const LiveSequence&, const LiveSequence&) = default;
};

struct CompletedKnock {
  uint64_t sequence_id = 0;
  std::string door;
  std::vector<Knock> knocks;
  bool reserve = false;
  IpAddress source;
  absl::Time time;  // capture time of the last knock
};

struct ScannerReport {
  IpAddress source;
  absl::Time at;
  absl::Time ignored_until;
  int distinct_ports = 0;
  absl::Duration window;
};

// Receives completions and scanners on the capture thread: must only
// enqueue.
class ManagedKnockSink {
 public:
  virtual ~ManagedKnockSink() = default;
  virtual void OnCompleted(CompletedKnock knock) = 0;
  virtual void OnScanner(ScannerReport report) = 0;
};

class ManagedMatcher {
 public:
  static constexpr size_t kSlotsPerShard = kMaxDoors;

  // `options` for every shard (table size, scanner settings). `sink` must
  // outlive the matcher.
  ManagedMatcher(const MatcherOptions& options, ManagedKnockSink& sink, size_t max_shards = 16);
  ManagedMatcher(const ManagedMatcher&) = delete;
  ManagedMatcher& operator=(const ManagedMatcher&) = delete;

  // Any thread: the sequences that should be live from now on.
  void Publish(std::vector<LiveSequence> live);

  // Capture thread.
  void OnPacket(const Packet& packet);
  void Tick(absl::Time now);  // timeouts, bans; adopts a pending Publish
  void SetLocalAddresses(const std::vector<IpAddress>& addresses);
  // For the capture filter: the knocks of every live sequence, whether any
  // live one is in strict mode, and a counter of changes to either.
  std::vector<Knock> CurrentKnocks() const;
  bool AnyStrict() const;
  uint64_t generation() const { return generation_; }
  size_t live() const { return where_.size(); }
  size_t shards() const { return shards_.size(); }
  // Live sequences left out for lack of shards (since the last Publish).
  size_t over_capacity() const { return over_capacity_; }
  MatcherCounters counters() const;  // summed over shards
  bool IsLive(uint64_t id) const { return where_.contains(id); }

 private:
  struct Slot {
    uint64_t id = 0;  // 0: free
    LiveSequence sequence;
  };
  struct Shard {
    MatchParams params;
    std::unique_ptr<KnockMatcher> matcher;
    std::vector<Slot> slots;
    size_t used = 0;
    // Made (or taken over) by the Apply in progress: filled in one SetDoors
    // at its end instead of one rebuild per slot.
    bool fresh = false;
  };

  void Adopt();
  void Apply(const std::vector<LiveSequence>& live);
  void Free(size_t shard, size_t slot);
  bool Add(const LiveSequence& sequence);
  void Fill(size_t shard);  // a fresh shard's slots, in one SetDoors
  Shard* ShardFor(const MatchParams& params, size_t* index);
  std::vector<MatcherDoor> FreeDoors(const MatchParams& params) const;

  const MatcherOptions options_;
  ManagedKnockSink& sink_;
  const size_t max_shards_;

  absl::Mutex mu_;
  std::optional<std::vector<LiveSequence>> pending_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> has_pending_{false};

  std::vector<std::unique_ptr<Shard>> shards_;
  absl::flat_hash_map<uint64_t, std::pair<size_t, size_t>> where_;  // id -> (shard, slot)
  absl::flat_hash_set<uint64_t> consumed_;  // completed here, until Publish forgets them
  std::optional<std::vector<IpAddress>> local_addresses_;
  uint64_t generation_ = 0;
  size_t over_capacity_ = 0;
};

}  // namespace sesame
