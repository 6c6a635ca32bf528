// The knock matcher: per source address and per door, progress through the
// door's knock sequence; says which doors a packet completes.
//
// Semantics (tests/agent/match/matcher_test.cc is the table of cases):
//
// - Knock. A packet is a knock for door D when it is UDP, or TCP with every
//   bit of D's tcp_flags_set and none of tcp_flags_clear, and its destination
//   is D's target if D has one, else one of the local addresses
//   (SetLocalAddresses; until then any destination counts, which is what a
//   capture-file replay wants). A packet that is not a knock for D is
//   invisible to D: it neither advances nor resets D.
// - Progress. Per source and door: the stage (knocks matched so far) and the
//   time of the first knock. D completes when all its knocks arrived in order
//   and the last one came less than seq_timeout after the first (knockd
//   measures from the first knock too; it compares whole seconds of capture
//   time, sesame milliseconds). A completed door's progress is dropped; a
//   knock can complete several doors at once, and may also be the first
//   knock of other doors.
// - Sources are independent: IPv4 and IPv6 addresses, each its own progress.
// - Wrong knocks, for a door D in progress (stage s) and a knock K for D that
//   is not D's next knock:
//     * K repeats D's previous knock (a retransmitted SYN): nothing happens,
//       in either mode. A sequence that repeats a port (1000,1000,2000) takes
//       the repeat as its next knock first: advancing wins over the
//       retransmission rule, so there a single retransmitted SYN counts as
//       the second knock.
//     * compat (knockd's rule): D is reset when K is a port of some enabled
//       door's sequence (for which K is a knock). As in knockd the resetting
//       knock is spent on the reset: it does not restart D even when it is
//       D's first knock. A knock to a port of no sequence is forgiven once
//       per attempt (a stray SYN); the second resets D. knockd never sees
//       those packets (its filter drops them) and so lets a sequential
//       sweep walk through every ascending door; sesame sees them.
//     * strict: D is reset by any such K; when K is D's first knock, D
//       restarts at stage 1.
//   Doors are otherwise independent: a knock may start door E while resetting
//   or advancing door D (knockd, while any attempt of the source is pending,
//   starts no other door, so a stray first knock of one door eats the first
//   knock of the next).
// - Timeouts. Progress older than seq_timeout is dropped when Expire() runs
//   and, at the latest, when the source's next packet arrives: a late knock
//   never counts (it is then judged as if nothing were in progress).
// - Time comes from the packets' timestamps and Expire's argument, which
//   should be the same clock (capture time). Matcher time never runs
//   backwards: a time up to 5 s older than the latest seen (reordering
//   between interfaces, a capture delivered late) counts as the latest; a
//   larger step back is taken as the clock being set back, and matcher time
//   carries on from where it was. Resolution: 1 ms.
// - Scanners. A wrong knock is a knock (for some door) from a tracked source
//   that advances, starts and repeats nothing, to any port. When a source's
//   distinct wrong knocks within scan_window reach scan_threshold, its
//   progress is dropped and it is reported once (kScannerFlagged); it stays
//   marked until scan_ban has passed since its last wrong knock, and then
//   kScannerReleased carries the number of packets it sent while marked
//   (ignored_packets). While marked it is tracked and judged like any other
//   source (the reset rules already keep a sweep from walking through a
//   sequence): it is not ignored, because source addresses are forgeable,
//   and a sweep forged with an engineer's address must not keep the
//   engineer out once it stops (docs/design.md, "Forged packets").
//   Distinct knocks are counted in a fixed 64-bit sketch per source (one bit
//   per knock, keyed hash): a source is never flagged below the threshold,
//   and a collision in the sketch lets it make about threshold^2/128 more
//   wrong knocks than asked. Thresholds above 32 are clamped to 32.
//   Only sources already tracked (they knocked a door's first port) are
//   counted: a sweep from an unknown source costs no table space.
// - Bounded. All per-source state is in a SourceTable of max_sources entries
//   (72 bytes each) allocated at creation. A new source (a first knock) is
//   always tracked: it displaces, in its 8-entry bucket, the entry of lowest
//   rank, the least recently active among equals. Ranks: nothing in
//   progress; a first knock older than a second, or a marked scanner; two or
//   more knocks in, older than a second; any progress younger than a second,
//   whatever its stage. A real knocker finishes within a second, so forged
//   first knocks and half-knocks (the first two knocks from sources that
//   never finish) never outrank it and lose their place after a second.
//   Only a flood of more new sources a second than the table holds leaves a
//   bucket with nothing but young progress; then the least recently active
//   goes (young_evictions), and a knocker survives while fewer than 8 new
//   sources land in its bucket between two of its knocks. A
//   source's progress is kept in kGroupsPerSource
//   groups (doors that started on the same knock and saw the same knocks
//   share one), which covers doors sharing ports; an unusual overlap needing
//   more groups keeps the furthest (progress_dropped).
//
// One-time sequences: SetSequence replaces a door's sequence and drops that
// door's progress for every source; SetDoorEnabled switches a door off (an
// exhausted one-time file) and on.
//
// Cost: Process() allocates nothing, throws nothing, takes no lock and makes
// no virtual call; the observer runs only for events (see MatcherOptions for
// the ones that could be frequent). Not thread-safe: one owner calls
// everything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "agent/config/config.h"
#include "agent/match/knock_set.h"
#include "agent/match/source_table.h"
#include "agent/match/tick_clock.h"
#include "agent/packet/packet.h"
#include "common/ip_address.h"

namespace sesame {

// What the matcher needs to know about a door (not the whole DoorConfig).
struct MatcherDoor {
  std::string name;
  std::vector<Knock> sequence;  // 1..kMaxSequenceLength knocks; may be empty while disabled
  absl::Duration seq_timeout = absl::Seconds(25);
  uint8_t tcp_flags_set = tcp_flags::kSyn;
  uint8_t tcp_flags_clear = tcp_flags::kAck;
  ResetMode reset_mode = ResetMode::kCompat;
  std::optional<IpAddress> target;
  bool enabled = true;
};

struct MatcherOptions {
  size_t max_sources = 65536;  // table capacity (rounded up to a multiple of 8)
  // Scanner detection: scan_threshold distinct wrong knocks within
  // scan_window ban the source for scan_ban. 0 turns detection off.
  int scan_threshold = 12;
  absl::Duration scan_window = absl::Seconds(5);
  absl::Duration scan_ban = absl::Seconds(300);
  // kStage events, one per door and knock: off by default, since under a
  // spoofed flood every packet would make one.
  bool report_stages = false;
  // kTimeout and kReset events only for progress that had reached at least
  // this stage. The default, 2, leaves out lone first knocks (what a spoofed
  // flood is made of); they are still counted. knockd logs from stage 1.
  int min_event_stage = 2;
  // Hash key seed; 0 (the default) draws random keys. Tests fix it.
  uint64_t hash_seed = 0;
};

// Scanner detection as the packet path reads it (both matchers): the
// sketch bits for scan_threshold distinct wrong knocks (0: off), the window
// and the ban in matcher time, and the sketch's key.
struct ScanSettings {
  int threshold_bits = 0;
  Tick window = 0;
  Tick ban = 0;
  uint64_t key = 0;
  static ScanSettings From(const MatcherOptions& options);
};

// Bounds both matchers accept.
inline constexpr size_t kMaxSources = size_t{1} << 24;  // MatcherOptions::max_sources
inline constexpr absl::Duration kMaxMatcherDuration = absl::Hours(24 * 10);
inline Tick ToMatcherMillis(absl::Duration d) { return static_cast<Tick>(absl::ToInt64Milliseconds(d)); }

// A set of doors, by index (the order given to Create/SetDoors).
class DoorSet {
 public:
  constexpr DoorSet() = default;
  constexpr explicit DoorSet(uint64_t bits) : bits_(bits) {}
  bool empty() const { return bits_ == 0; }
  bool contains(size_t door) const { return door < 64 && ((bits_ >> door) & 1) != 0; }
  int size() const { return __builtin_popcountll(bits_); }
  uint64_t bits() const { return bits_; }
  std::vector<size_t> ToVector() const;
  template <typename F>
  void ForEach(F&& f) const {
    for (uint64_t b = bits_; b != 0; b &= b - 1) f(static_cast<size_t>(__builtin_ctzll(b)));
  }
  friend bool operator==(DoorSet a, DoorSet b) { return a.bits_ == b.bits_; }

 private:
  uint64_t bits_ = 0;
};

struct MatchResult {
  DoorSet completed;  // doors this packet completed for packet.source
  // The packet started, advanced or completed a door, or repeated a door's
  // previous knock (a retransmission): a right knock here.
  bool right_knock = false;
  // The packet was a wrong knock from a source tracked here (see Scanners),
  // counted towards the scanner threshold.
  bool wrong_knock = false;
};

enum class MatcherEventKind : uint8_t {
  kStage,            // door reached `stage` (only with report_stages)
  kCompleted,        // door completed (also returned by Process)
  kTimeout,          // progress at `stage` dropped: seq_timeout passed
  kReset,            // progress at `stage` dropped by the wrong knock `knock`
  kScannerFlagged,   // source banned as a scanner
  kScannerReleased,  // ban over; `ignored_packets` were dropped meanwhile
};
const char* MatcherEventKindName(MatcherEventKind kind);

struct MatcherEvent {
  MatcherEventKind kind = MatcherEventKind::kStage;
  absl::Time time;
  IpAddress source;
  int door = -1;  // -1 for scanner events
  int stage = 0;
  Knock knock;  // the packet's knock, for kStage / kCompleted / kReset
  uint64_t ignored_packets = 0;
};

struct MatcherCounters {
  uint64_t packets = 0;           // given to Process
  uint64_t knocks = 0;            // packets that started or advanced a door
  uint64_t completions = 0;       // door completions
  uint64_t resets = 0;            // door progressions reset by a wrong knock
  uint64_t timeouts = 0;          // door progressions dropped by seq_timeout
  uint64_t evictions = 0;         // sources displaced from the table
  uint64_t evicted_progress = 0;  // ... of which had a door in progress
  // ... of which were two or more knocks in, within a second of the first:
  // the table turns over faster than a real knocker knocks (a flood of more
  // new sources a second than max_sources).
  uint64_t young_evictions = 0;
  uint64_t progress_dropped = 0;  // door progressions dropped for lack of groups
  uint64_t scanners = 0;          // sources flagged as scanners
  uint64_t scanner_packets = 0;   // packets from sources while marked as scanners
};

class KnockMatcher {
 public:
  using Observer = std::function<void(const MatcherEvent&)>;

  // Errors: more than kMaxDoors doors, an enabled door without a sequence, a
  // sequence longer than kMaxSequenceLength, a seq_timeout not in (0, 10
  // days], contradictory tcp flags, max_sources 0 or above 2^24, scan times
  // out of range, or no memory for the table.
  static absl::StatusOr<std::unique_ptr<KnockMatcher>> Create(const MatcherOptions& options,
                                                              std::vector<MatcherDoor> doors);

  // The packet path.
  MatchResult Process(const Packet& packet);
  // The same for packets in order, results[i] for packets[i] (results must
  // be at least as long). It fetches table memory ahead: about as fast as
  // Process while the table fits the CPU's cache (the default does), 4x
  // faster when it does not (max_sources of a million and more).
  void ProcessBatch(absl::Span<const Packet> packets, absl::Span<MatchResult> results);

  // Drops progress older than its door's seq_timeout and ends bans that are
  // over, reporting both; frees entries with nothing left to remember.
  // Returns the number of door progressions dropped. Call it periodically
  // (every 100 ms to 1 s): it walks the whole table, about 0.4 ms for a full
  // 65,536-source table.
  size_t Expire(absl::Time now);

  // Replaces every door; all progress is dropped (scanner state is kept).
  absl::Status SetDoors(std::vector<MatcherDoor> doors);
  // Replaces one door's sequence; its progress is dropped for every source.
  absl::Status SetSequence(size_t door, std::vector<Knock> sequence);
  // Disabling drops the door's progress; enabling needs a sequence.
  absl::Status SetDoorEnabled(size_t door, bool enabled);

  // Knocks to doors without a target must be sent to one of these.
  void SetLocalAddresses(const std::vector<IpAddress>& addresses);
  // Back to the initial state: any destination counts.
  void AcceptAnyDestination();

  // Receives events as they happen, inside Process and Expire: it must not
  // call back into the matcher.
  void SetObserver(Observer observer) { observer_ = std::move(observer); }

  size_t door_count() const { return doors_.size(); }
  const MatcherDoor& door(size_t index) const { return doors_[index]; }

  const MatcherCounters& counters() const { return counters_; }
  size_t occupancy() const { return table_->occupancy(); }
  size_t capacity() const { return table_->capacity(); }
  size_t TableBytes() const { return table_->MemoryBytes(); }
  static constexpr size_t BytesPerSource() { return SourceTable::BytesPerEntry(); }

  // For tests and diagnostics: the stage `source` has reached at `door` (0:
  // none), as stored (without applying timeouts), and whether it is banned.
  int StageOf(const IpAddress& source, size_t door) const;
  bool IsBanned(const IpAddress& source) const;

 private:
  // Per door, what the packet path reads.
  struct DoorState {
    uint32_t knocks[kMaxSequenceLength];  // KnockKey of each knock
    uint32_t length = 0;
    Tick timeout = 0;
    bool strict = false;
  };
  // A (protocol, port) that is in some enabled door's sequence.
  struct IndexSlot {
    uint32_t key = 0;          // KnockKey; 0 = empty
    uint64_t in_sequence = 0;  // doors with this knock anywhere in their sequence
    uint64_t first = 0;        // doors starting with it
  };
  struct Group {
    uint64_t doors;
    Tick start;
    uint8_t stage;
    uint8_t strays;  // SourceEntry::group_strays
  };

  KnockMatcher(const MatcherOptions& options, std::unique_ptr<SourceTable> table);

  static absl::Status Validate(const MatcherDoor& door, size_t index);
  void Rebuild();                     // the derived tables, from doors_
  void DropProgress(uint64_t doors);  // for every source
  uint64_t DestinationDoors(const IpAddress& destination);
  const IndexSlot& Lookup(uint32_t knock) const;
  bool PrefetchBucket(const Packet& packet, SourceTable::Hashed* h);
  Tick ToTick(absl::Time t);
  void Rebase(Tick shift);

  MatchResult StartSource(const SourceKey& key, const SourceTable::Hashed& h, const Packet& packet, uint32_t knock,
                          uint64_t first, Tick now);
  MatchResult Track(int32_t index, const Packet& packet, uint32_t knock, uint64_t knock_doors, uint64_t in_sequence,
                    uint64_t first, Tick now);
  void StoreGroups(SourceEntry& e, Group* groups, int n);
  uint64_t ExpireGroups(SourceEntry& e, Tick now, const IpAddress& source, absl::Time time);
  bool CountWrongKnock(SourceEntry& e, uint32_t knock, Tick now);
  void Ban(SourceEntry& e, Tick now, const IpAddress& source, absl::Time time);
  void ReleaseBan(SourceEntry& e, const IpAddress& source, absl::Time time);
  uint8_t RankOf(const SourceEntry& e, Tick now) const;
  MatchResult Complete(uint64_t doors, const Packet& packet, uint32_t knock);

  bool Reporting() const { return static_cast<bool>(observer_); }
  void Emit(MatcherEventKind kind, absl::Time time, const IpAddress& source, int door, int stage, const Knock& knock,
            uint64_t ignored = 0);
  void EmitPerDoor(MatcherEventKind kind, uint64_t doors, absl::Time time, const IpAddress& source, int stage,
                   const Knock& knock);

  const MatcherOptions options_;
  std::unique_ptr<SourceTable> table_;
  std::vector<MatcherDoor> doors_;
  std::vector<DoorState> door_state_;
  Observer observer_;
  MatcherCounters counters_;

  // Derived from doors_ (Rebuild).
  uint64_t enabled_ = 0;
  uint64_t strict_ = 0;
  uint64_t untargeted_ = 0;                              // enabled doors without a target
  uint64_t single_ = 0;                                  // enabled doors of one knock
  uint64_t length_doors_[kMaxSequenceLength + 1] = {};   // enabled doors by sequence length
  std::vector<std::pair<IpAddress, uint64_t>> targets_;  // target -> its enabled doors
  uint64_t tcp_shape_[256] = {};                         // TCP flags -> enabled doors they are a knock for
  uint64_t udp_shape_ = 0;
  KnockSet in_sequences_;                   // knocks (KnockIndex) of some enabled sequence
  std::vector<IndexSlot> index_;            // open addressing, power-of-two size
  Tick min_timeout_ = 0;                    // shortest seq_timeout among enabled doors

  // Destinations.
  bool any_destination_ = true;
  absl::flat_hash_set<IpAddress> local_;
  bool dst_cache_valid_ = false;  // one-entry cache: floods hit one address
  IpAddress dst_cache_key_;
  uint64_t dst_cache_doors_ = 0;

  // Scanner detection.
  ScanSettings scan_;

  TickClock clock_;
};

}  // namespace sesame
