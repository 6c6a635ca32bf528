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
// Scanners. A shard knows only its own sequences, so a knock that advances
// a sequence of one shard is a wrong knock for every other shard that
// tracks the source (e.g. one where it knocked a first port by chance, or
// whose sequences it knocked earlier). Shards therefore only report wrong
// knocks (MatcherOptions::defer_wrong_knocks), and a knock counts towards
// the scanner threshold, in each shard that reported it, only when no shard
// took it as a right knock: an operator working through sequences spread
// over several shards is never banned for it.
//
// Threads. Publish() (any thread; the managed agent's worker) hands over the
// complete set of sequences that should be live; the capture thread adopts
// it before the next packet it processes (one atomic load per packet when
// nothing changed), so no packet processed after Publish returns can
// complete a sequence as live that was left out. Everything else runs on
// the capture thread.
//
// Replay watch. A sequence stops being live when it completes here (at
// once, before the controller has answered: whatever the verdict, it is
// spent, and a Publish computed before the worker heard of the completion
// does not bring it back) or when a Publish leaves it out after it was live
// (burnt by the controller, used on another bastion). It is then kept as
// *spent*: the same slot, still recognised, with a flag. A spent sequence
// never admits anything on any path: its completion is handed to the sink
// with `spent` set (a replay, for the controller to judge and audit; the
// agent must not open a door for it, not even from the offline reserve),
// and counted. This is what lets the loser of a race between two bastions,
// or a sniffed knock played again, be seen and audited instead of matching
// nothing. The progress of a sequence that becomes spent is kept, so a
// knocker half-way through when the burn arrives still completes (as a
// replay). Spent sequences are watched for ReplayWatch::retention, and only
// in room live sequences do not need: a live sequence that finds no free
// slot takes the oldest spent slot of its shard, or a shard with no live
// sequence, before a new shard is made; spent ones never displace live ones
// and never cost a shard of their own. Each spent slot reports at most
// ReplayWatch::max_reports completions (a replay loop cannot flood the
// controller); further ones are only counted. A Publish that lists a spent
// sequence again makes it live again, unless it completed here (then the
// publisher has not caught up yet). The watch is in memory: a restarted
// agent watches only what is spent from then on.
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
#include "agent/match/matcher.h"
#include "agent/packet/packet.h"

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
  // The sequence was already spent here (completed, or no longer live): a
  // replay. Report it; never admit for it.
  bool spent = false;
  IpAddress source;
  absl::Time time;  // capture time of the last knock
};

// A source flagged as a scanner by a shard (each shard that tracks it may
// report it), or, with `released`, a shard's mark on it that ended.
struct ScannerReport {
  IpAddress source;
  absl::Time at;
  absl::Time ignored_until;
  int distinct_ports = 0;
  absl::Duration window;
  bool released = false;
  uint64_t packets = 0;  // released: packets seen while it was marked
};

// Receives completions and scanners on the capture thread: must only
// enqueue.
class ManagedKnockSink {
 public:
  virtual ~ManagedKnockSink() = default;
  virtual void OnCompleted(CompletedKnock knock) = 0;
  virtual void OnScanner(ScannerReport report) = 0;
};

// How long and how much the matcher watches spent sequences for replays.
struct ReplayWatch {
  // Ten minutes: well past any door's seq_timeout (the race loser's knock
  // completes within seconds of the burn) and past typical grant TTLs, the
  // time in which a sniffed knock is most likely to be played again, while
  // the slots come back soon enough under a steady issue-and-burn churn.
  absl::Duration retention = absl::Minutes(10);
  // Completions of one spent sequence handed to the sink; more are counted.
  int max_reports = 16;
};

class ManagedMatcher {
 public:
  static constexpr size_t kSlotsPerShard = kMaxDoors;

  // `options` for every shard (table size, scanner settings). `sink` must
  // outlive the matcher.
  ManagedMatcher(const MatcherOptions& options, ManagedKnockSink& sink, size_t max_shards = 16,
                 ReplayWatch watch = {});
  ManagedMatcher(const ManagedMatcher&) = delete;
  ManagedMatcher& operator=(const ManagedMatcher&) = delete;

  // Any thread: the sequences that should be live from now on.
  void Publish(std::vector<LiveSequence> live);

  // Capture thread.
  void OnPacket(const Packet& packet);
  void Tick(absl::Time now);  // timeouts, bans, spent sequences' retention; adopts a pending Publish
  void SetLocalAddresses(const std::vector<IpAddress>& addresses);
  size_t live() const { return live_; }
  size_t spent() const { return where_.size() - live_; }  // watched for replays
  size_t shards() const { return shards_.size(); }
  // Live sequences left out for lack of shards (since the last Publish).
  size_t over_capacity() const { return over_capacity_; }
  MatcherCounters counters() const;  // summed over shards
  bool IsLive(uint64_t id) const;
  bool IsSpent(uint64_t id) const;
  // Completions of spent sequences (replays), and those of them not handed
  // to the sink (over ReplayWatch::max_reports).
  uint64_t replays() const { return replays_; }
  uint64_t replays_unreported() const { return replays_unreported_; }

 private:
  struct Slot {
    uint64_t id = 0;  // 0: free
    LiveSequence sequence;
    bool spent = false;
    absl::Time spent_at = absl::InfinitePast();  // InfinitePast: at the next Tick
    int reports = 0;                             // completions reported while spent
  };
  struct Shard {
    MatchParams params;
    std::unique_ptr<KnockMatcher> matcher;
    std::vector<Slot> slots;
    size_t used = 0;  // occupied slots, live or spent
    size_t live = 0;
    // Made (or taken over) by the Apply in progress: filled in one SetDoors
    // at its end instead of one rebuild per slot.
    bool fresh = false;
  };

  void Adopt();
  void Apply(const std::vector<LiveSequence>& live);
  void Free(size_t shard, size_t slot);
  void Spend(size_t shard, size_t slot, absl::Time at);
  void Revive(size_t shard, size_t slot);
  bool Add(const LiveSequence& sequence);
  void Fill(size_t shard);  // a fresh shard's slots, in one SetDoors
  // A shard and a free slot in it for a sequence of `params`, making room
  // at the expense of spent sequences only.
  Shard* ShardFor(const MatchParams& params, size_t* index, size_t* slot);
  bool TakeOver(size_t index, const MatchParams& params);  // a shard without live slots
  void Report(size_t shard, size_t slot, const Packet& packet);
  void ExpireSpent(absl::Time now);
  std::vector<MatcherDoor> FreeDoors(const MatchParams& params) const;

  const MatcherOptions options_;
  ManagedKnockSink& sink_;
  const size_t max_shards_;
  const ReplayWatch watch_;

  absl::Mutex mu_;
  std::optional<std::vector<LiveSequence>> pending_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> has_pending_{false};

  std::vector<std::unique_ptr<Shard>> shards_;
  absl::flat_hash_map<uint64_t, std::pair<size_t, size_t>> where_;  // id -> (shard, slot), live or spent
  absl::flat_hash_set<uint64_t> consumed_;  // completed here, until Publish forgets them
  std::optional<std::vector<IpAddress>> local_addresses_;
  size_t over_capacity_ = 0;
  size_t live_ = 0;
  absl::Time latest_ = absl::InfinitePast();  // latest Tick or completion time: when a drop is spent
  uint64_t replays_ = 0;
  uint64_t replays_unreported_ = 0;
};

}  // namespace sesame
