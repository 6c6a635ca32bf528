// Recognition of managed sequences on the capture thread.
//
// A managed door holds many live sequences at once (one per sequence issued
// to an operator, plus this agent's offline reserve), and any of them may be
// burnt at any moment; a fleet holds tens of thousands. So the matcher does
// not walk its sequences per packet: they sit in a SequenceTrie (one root per
// set of MatchParams, a "class"), a tracked source remembers the trie nodes
// it has reached (kGroupsPerSource of them), and a packet costs a lookup of
// its source and one (node, knock) lookup per node and per class it may
// start, whether the agent holds 10 sequences or 100,000. A first knock
// that starts sequences in more classes than a source holds groups for
// keeps one start per group; the others are the same knock at the same
// time, so the next knock continues them from a start held (one lookup
// per class more, for that knock only). Memory: the source
// table, allocated once (MatcherOptions::max_sources entries of 72 bytes),
// and per sequence what the trie and the sequence's own record take
// (MemoryBytes; bench/README.md states the figure).
//
// The rules are KnockMatcher's (agent/match/matcher.h), applied per class:
// a packet is a knock for a class when its TCP flags and destination fit
// the class's parameters; a wrong knock resets progress (strict: always,
// restarting it when it is a first knock; compat: when the knock is a port
// of some sequence of the class, or the second stray); a retransmitted
// previous knock changes nothing; progress older than seq_timeout is
// dropped; the eviction ranks keep the knockers who got furthest; a source
// is flagged as a scanner after scan_threshold distinct wrong knocks. With
// many sequences almost every port is some sequence's first knock, so a
// knock that resets progress and advances nothing counts as wrong even when
// it starts another sequence (a sweep would otherwise never be flagged).
// Adding or burning a sequence drops no one's progress; removing one drops
// only the progress that pointed at nodes no sequence passes through any
// more.
//
// Capacity: at most `capacity` sequences (live and spent) are held. A live
// sequence that finds no room takes the place of the oldest spent one;
// when every one held is live, it waits (over_capacity) until room frees.
//
// Threads. Publish() (any thread; the managed agent's worker) hands over the
// complete set of sequences that should be live from now on, Update() only
// what changed. Publish compares with what was published before, on the
// caller's thread; the capture thread applies only the changes, before the
// next packet it processes (one atomic load per packet when nothing
// changed), so no packet processed after Publish or Update returns can
// complete a sequence as live that was left out. Everything else runs on
// the capture thread.
//
// Replay watch. A sequence stops being live when it completes here (at
// once, before the controller has answered: whatever the verdict, it is
// spent, and a Publish computed before the worker heard of the completion
// does not bring it back) or when a Publish leaves it out after it was live
// (burnt by the controller, used on another bastion). It is then kept as
// *spent*: still recognised, with a flag. A spent sequence never admits
// anything on any path: its completion is handed to the sink with `spent`
// set (a replay, for the controller to judge and audit; the agent must not
// open a door for it, not even from the offline reserve), and counted. This
// is what lets the loser of a race between two bastions, or a sniffed knock
// played again, be seen and audited instead of matching nothing. The
// progress of a sequence that becomes spent is kept, so a knocker half-way
// through when the burn arrives still completes (as a replay). Spent
// sequences are watched for ReplayWatch::retention, and only in room live
// sequences do not need. Each spent sequence reports at most
// ReplayWatch::max_reports completions (a replay loop cannot flood the
// controller); further ones are only counted. A Publish that lists a spent
// sequence again makes it live again, unless it completed here (then the
// publisher has not caught up yet). The watch is in memory: a restarted
// agent watches only what is spent from then on.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/managed/sequence_trie.h"
#include "agent/match/matcher.h"
#include "agent/match/source_table.h"
#include "agent/match/tick_clock.h"
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

// The per-source state of the managed matcher: one cache line in a
// BasicSourceTable. A group is a trie node this source reached (its
// generation proves it is still the same node), its class (so that Tick's
// walk of the table reads no trie node), when its first knock came, and how
// many stray knocks a compat class forgave.
struct alignas(64) ManagedSourceEntry {
  uint64_t key_lo;
  uint64_t key_hi;
  uint64_t scan_ports;  // sketch of the distinct wrong knocks in the window
  uint32_t group_node[kGroupsPerSource];
  Tick group_start[kGroupsPerSource];
  Tick scan_mark;            // start of the scan window, or end of the ban
  uint32_t ignored_packets;  // while marked as a scanner
  uint16_t group_generation[kGroupsPerSource];
  uint8_t group_stage[kGroupsPerSource];  // 0: no group
  uint8_t group_strays[kGroupsPerSource];
  uint8_t group_class[kGroupsPerSource];
  uint8_t family;
  uint8_t flags;
};

class ManagedMatcher {
 public:
  // Sequences held (live and spent) by default: about 40 MB at most.
  static constexpr size_t kDefaultCapacity = 262144;
  // Distinct sets of MatchParams (in practice, managed doors) at once.
  static constexpr size_t kMaxClasses = 64;
  // Ranks, ban ends and timeouts are in seconds, and a source's own packets
  // expire its groups: walking a full table (65,536 entries, about 1 ms)
  // at every Tick (the agent ticks every 100 ms) bought nothing.
  static constexpr absl::Duration kWalkEvery = absl::Seconds(1);

  // `options` for the source table and scanner detection. `sink` must
  // outlive the matcher. Null table memory is fatal: it is allocated here.
  ManagedMatcher(const MatcherOptions& options, ManagedKnockSink& sink, size_t capacity = kDefaultCapacity,
                 ReplayWatch watch = {});
  ManagedMatcher(const ManagedMatcher&) = delete;
  ManagedMatcher& operator=(const ManagedMatcher&) = delete;
  ~ManagedMatcher();

  // Any thread: the sequences that should be live from now on.
  void Publish(std::vector<LiveSequence> live);
  // Any thread: changes to what was published, at the cost of the changes
  // alone: `upserts` are live from now on (added, or replaced when their
  // id is held), the ids in `removed` no longer.
  void Update(std::vector<LiveSequence> upserts, const std::vector<uint64_t>& removed);

  // Capture thread.
  void OnPacket(const Packet& packet);
  // Timeouts, bans, spent sequences' retention; adopts a pending Publish.
  // The source table is walked once a second at most (kWalkEvery).
  void Tick(absl::Time now);
  void SetLocalAddresses(const std::vector<IpAddress>& addresses);
  size_t live() const { return live_.load(std::memory_order_relaxed); }  // any thread
  size_t spent() const { return where_.size() - live(); }  // watched for replays (capture thread)
  size_t capacity() const { return capacity_; }
  // Live sequences waiting for room (capacity, or kMaxClasses). Any thread.
  size_t over_capacity() const { return waiting_count_.load(std::memory_order_relaxed); }
  // Heap and table bytes held: the source table, the trie, the records.
  size_t MemoryBytes() const;
  MatcherCounters counters() const { return counters_; }
  bool IsLive(uint64_t id) const;
  bool IsSpent(uint64_t id) const;
  // Completions of spent sequences (replays), and those of them not handed
  // to the sink (over ReplayWatch::max_reports).
  uint64_t replays() const { return replays_; }
  uint64_t replays_unreported() const { return replays_unreported_; }
  // For tests: whether `source` is marked as a scanner.
  bool IsBanned(const IpAddress& source) const;

 private:
  using Table = BasicSourceTable<ManagedSourceEntry>;

  // What a Publish changed, in order: ids no longer listed, and sequences
  // listed anew or changed.
  struct Change {
    uint64_t removed = 0;  // 0: `sequence` is added or replaced
    LiveSequence sequence;
  };
  struct Record {
    uint64_t id = 0;  // 0: free
    LiveSequence sequence;
    uint8_t klass = 0;
    uint32_t end = 0;  // the trie node it ends at
    bool spent = false;
    absl::Time spent_at = absl::InfinitePast();  // InfinitePast: at the next Tick
    int reports = 0;                             // completions reported while spent
  };
  struct Class {
    MatchParams params;
    uint32_t root = 0;
    size_t sequences = 0;  // records of this class
    ::sesame::Tick timeout = 0;
    bool strict = true;
    // Compat: distinct knocks of its sequences, and from kKnockBitsFrom of
    // them on, the same as a KnockSet, which InSequence reads instead of
    // compat_knocks_ (a cache miss in a big map).
    size_t distinct_knocks = 0;
    std::unique_ptr<KnockSet> knocks;
  };
  static constexpr size_t kKnockBitsFrom = 512;
  struct Group {
    uint32_t node;
    uint16_t generation;
    ::sesame::Tick start;
    uint8_t stage;
    uint8_t strays;
    uint8_t klass;
  };

  // Adopting and applying changes (managed_matcher_changes.cc).
  void HandOver(std::vector<Change> changes);  // to the capture thread
  void Adopt();
  void Apply(Change& change);
  bool Add(const LiveSequence& sequence);  // false: no room
  void Free(uint32_t slot);
  void Spend(uint32_t slot, absl::Time at);
  int ClassFor(const MatchParams& params);  // -1: none left
  void Rebuild();                           // per-class packet tables
  void ExpireSpent(absl::Time now);
  void AddWaiting();

  // The packet path (managed_matcher.cc).
  uint64_t KnockClasses(const Packet& packet);
  ::sesame::Tick ToTick(absl::Time t);
  void StartSource(const SourceKey& key, const Table::Hashed& h, const Packet& packet, uint32_t knock,
                   uint64_t classes, ::sesame::Tick now);
  void Track(int32_t index, const Packet& packet, uint32_t knock, uint64_t classes, ::sesame::Tick now);
  using Groups = absl::InlinedVector<Group, 2 * kGroupsPerSource + 2>;
  // The sequences `knock` starts in `classes`: completes those it is the
  // whole of (*completed), and adds a group for the others unless `groups`
  // has one at that node (a retransmitted first knock keeps its start).
  // Returns whether it added any.
  bool Start(uint64_t classes, uint32_t knock, const Packet& packet, ::sesame::Tick now, Groups& groups,
             bool* completed);
  // The first knock of `kept` (a stage-1 group held for several classes'
  // starts, kStartsDropped) continued by `knock` in the other `classes`,
  // those whose start was not among the `held` nodes: adds their progress
  // to `groups`, completes what ends there. Returns whether any advanced.
  bool ContinueDropped(const Group& kept, const uint32_t (&held)[kGroupsPerSource], uint64_t classes, uint32_t knock,
                       const Packet& packet, ::sesame::Tick now, Groups& groups, bool* completed);
  // Completes the sequences ending at `node`; returns whether any did.
  bool CompleteAt(uint32_t node, const Packet& packet);
  void StoreGroups(ManagedSourceEntry& e, Group* groups, size_t n);
  // Drops the groups timed out, and with `check_nodes` those whose node is
  // no longer current (reads their nodes).
  void ExpireGroups(ManagedSourceEntry& e, ::sesame::Tick now, bool check_nodes);
  bool CountWrongKnock(ManagedSourceEntry& e, uint32_t knock, ::sesame::Tick now);
  void Ban(ManagedSourceEntry& e, ::sesame::Tick now, const IpAddress& source, absl::Time time);
  void ReleaseBan(ManagedSourceEntry& e, const IpAddress& source, absl::Time time);
  uint8_t RankOf(const ManagedSourceEntry& e, ::sesame::Tick now) const;
  bool InSequence(uint8_t klass, uint32_t knock) const;
  void SetInSequence(uint8_t klass, uint32_t knock, bool in);

  const MatcherOptions options_;
  ManagedKnockSink& sink_;
  const size_t capacity_;
  const ReplayWatch watch_;

  // The publisher's side: what it last listed (publish_mu_), and the changes
  // waiting for the capture thread (mu_, held only to hand them over).
  absl::Mutex publish_mu_;
  absl::flat_hash_map<uint64_t, LiveSequence> published_ ABSL_GUARDED_BY(publish_mu_);
  absl::Mutex mu_;
  std::vector<Change> pending_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> has_pending_{false};

  // The capture thread's.
  std::unique_ptr<Table> table_;
  SequenceTrie trie_;
  std::vector<Class> classes_;
  std::vector<Record> records_;  // by slot
  std::vector<uint32_t> free_slots_;
  absl::flat_hash_map<uint64_t, uint32_t> where_;                // id -> slot, live or spent
  absl::flat_hash_map<uint32_t, std::vector<uint32_t>> ending_;  // trie node -> slots ending there
  absl::flat_hash_map<uint64_t, uint32_t> compat_knocks_;        // (class, knock) -> count, compat classes
  std::set<std::pair<absl::Time, uint32_t>> spent_order_;        // (spent_at, slot)
  std::map<uint64_t, LiveSequence> waiting_;                      // live, no room yet
  std::atomic<size_t> waiting_count_{0};                          // its size, for other threads
  absl::flat_hash_set<uint64_t> consumed_;                        // completed here, until Publish forgets them
  std::atomic<size_t> live_{0};  // written by the capture thread only
  absl::Time latest_ = absl::InfinitePast();  // latest Tick or completion time: when a drop is spent
  absl::Time walked_at_ = absl::InfinitePast();  // Tick's last walk of the source table
  uint64_t freed_at_walk_ = 0;                   // trie_.freed() then
  uint64_t replays_ = 0;
  uint64_t replays_unreported_ = 0;
  MatcherCounters counters_;

  // Per-packet tables, from classes_ (Rebuild).
  uint64_t tcp_shape_[256] = {};  // TCP flags -> classes they are a knock for
  uint64_t udp_shape_ = 0;
  uint64_t untargeted_ = 0;  // classes without a target
  std::optional<std::vector<IpAddress>> local_addresses_;
  absl::flat_hash_set<IpAddress> local_;
  bool dst_cache_valid_ = false;  // one entry: floods hit one address
  IpAddress dst_cache_key_;
  uint64_t dst_cache_classes_ = 0;

  // Scanner detection and time.
  const ScanSettings scan_;
  TickClock clock_;
};

}  // namespace sesame
