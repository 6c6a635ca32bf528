// The controller's durable state behind one small interface: doors,
// one-time sequences, agents, grants, the audit chain and the revision
// counter that orders every change agents must learn about. SQLite is the
// implementation today (sqlite_store.h); etcd comes later.
//
// Contract for every implementation:
// - A call that changes something returns only once the change is durable
//   (it survives a crash or a power loss); a failed call changed nothing.
// - Every change an agent must learn about (sequence added or burnt, grant
//   opened or revoked, door added or changed) takes the next revision, and
//   the row changed carries it, so "what changed after revision R" is a
//   query, and Snapshot-then-Deltas needs no separate change log.
// - Audit entries passed to a call are appended to the hash chain in the
//   same transaction as the change they describe: never one without the
//   other.
// - Calls are safe from any number of threads at once.
// - Every committed change agents must learn about is handed, in revision
//   order, to the ChangeListener right after its transaction is durable and
//   before the caller that made it gets its answer: a burn reaches the
//   agents' sessions before the winner is told it won.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/audit/audit_record.h"
#include "controller/model/model.h"

namespace sesame::controller {

// An address no knocker can have: the controller's own or a bastion's
// own (a report naming it as the knocker is refused).
struct OwnAddress {
  IpAddress address;
  std::string owner;  // "the controller" or "agent NAME"
};

// One completed knock sequence reported by an agent.
struct ConsumeRequest {
  // The sequence, by id (the agent learnt it from the controller) or, when
  // sequence_id is 0, by its knocks.
  uint64_t sequence_id = 0;
  std::vector<Knock> knocks;
  std::string agent;  // the bastion that was knocked
  IpAddress source;   // the knocker
  // The agent's message id. A request with an id already consumed by this
  // agent gets the first answer again (with repeated = true) and changes
  // nothing: a resend after a reconnect is harmless. Empty: no such check.
  std::string request_id;
  // A reserve sequence admitted by the agent on its own while the controller
  // was unreachable.
  bool offline = false;
  // The agent had seen the sequence used before (KnockMatched.spent_here): a
  // replay whatever the sequence's state here; it never wins.
  bool spent_here = false;
  // Order a grant when the knock wins (the door's grant ports and TTL, on
  // this agent or fleet-wide as the door says). False when the caller orders
  // grants itself.
  bool order_grant = true;
  // What the report is checked against (consume_decision.h, "What a report
  // must be"). agent_time: the agent's clock when the last knock arrived
  // (KnockMatched.matched_at), unset when it sent none; a detail of the
  // record, never its time.
  std::optional<absl::Time> agent_time;
  // The controller's and the known bastions' own addresses; null: none known.
  std::shared_ptr<const std::vector<OwnAddress>> own_addresses;
};

enum class ConsumeOutcome {
  kWon,      // first use: the sequence is burnt now
  kReplay,   // already burnt (here or elsewhere)
  kUnknown,  // no such sequence
  kRefused   // not what this agent could have seen (consume_decision.h): nothing consumed
};
const char* ConsumeOutcomeName(ConsumeOutcome outcome);  // "won", "replay", "unknown", "refused"

struct ConsumeResult {
  ConsumeOutcome outcome = ConsumeOutcome::kUnknown;
  uint64_t sequence_id = 0;  // 0 when unknown
  std::string door;
  // Who consumed it first (the winner itself when kWon).
  std::string first_agent;
  std::optional<IpAddress> first_source;
  absl::Time consumed_at = absl::InfinitePast();
  uint64_t revision = 0;  // kWon: the revision of the burn
  std::optional<GrantRecord> grant;  // kWon with order_grant
  uint64_t audit_index = 0;          // the record of this knock's outcome
  bool repeated = false;             // the answer to an earlier request_id
  // kRefused and not repeated: why, as a short name (RefusalReasonName in
  // consume_decision.h), for the metrics.
  std::string refused_reason;
};

// Every consumption is audited in its own transaction (consume_decision.h
// decides the outcome, the grant and this record for every store):
//   time = the store's clock (never the agent's),
//   who = knocker's address, where = "agent:NAME",
//   what = "knock.opened" | "knock.replay" | "knock.unknown" | "knock.refused",
//   details: door, sequence, knocks (when sent), first_agent (replay),
//            grant (opened with a grant), offline ("true" when set),
//            agent_time (the agent's clock, RFC 3339, when sent),
//            reason and why (refused), reserve_of (another bastion's
//            reserve sequence).

// The grant g opens as every store records it: with id and revision, open
// from now, times truncated to microseconds.
GrantRecord OpenedGrant(const NewGrant& g, uint64_t id, uint64_t revision, absl::Time now);
// The sequence n as every store adds it: issued now, with id and revision.
Sequence IssuedSequence(const NewSequence& n, uint64_t id, uint64_t revision, absl::Time now);
// The sequence q as its expiry burns it, now, at `revision`.
Sequence ExpiredSequence(Sequence q, uint64_t revision, absl::Time now);
// Its audit record: who "controller", where "controller", what
// "sequence.expired", details sequence, door, issued_to, expires_at (RFC
// 3339) and reserve_of (a reserve sequence's bastion).
AuditEntry ExpiredAudit(const Sequence& q, absl::Time now);
// How many ExpireSequences burns at most in one call (one transaction):
// etcd takes 128 operations per transaction, and a burn costs a few.
inline constexpr size_t kMaxExpiredPerCall = 40;

// One change agents must learn about, as committed.
struct StoreChange {
  enum class Kind { kSequenceAdded, kSequenceBurnt, kGrantOpened, kGrantClosed, kDoorChanged };
  Kind kind = Kind::kSequenceAdded;
  uint64_t revision = 0;
  Sequence sequence;  // kSequenceAdded, kSequenceBurnt
  GrantRecord grant;  // kGrantOpened, kGrantClosed
  Door door;          // kDoorChanged
};

class ChangeListener {
 public:
  virtual ~ChangeListener() = default;
  // Called on the store's writer thread, in revision order, once per
  // committed transaction (changes in revision order). Must not block and
  // must not call back into the store.
  virtual void OnCommitted(const std::vector<StoreChange>& changes) = 0;
};

// Everything agents may hold, at one revision.
struct FleetState {
  uint64_t revision = 0;
  std::vector<Door> doors;
  std::vector<Sequence> unused_sequences;  // fleet and reserve ones
  std::vector<GrantRecord> open_grants;
};

class Store {
 public:
  virtual ~Store() = default;

  // Set once, before the first write; nullptr: nobody listens.
  virtual void SetChangeListener(ChangeListener* listener) = 0;
  // A consistent view for a listener to start from: every change not in it
  // reaches the listener afterwards with a revision above state.revision.
  // A change already in it may reach the listener too (etcd: applied, not
  // yet handed over), at or below state.revision: the listener skips those.
  virtual absl::StatusOr<FleetState> LoadFleetState() = 0;

  // --- Revision ---
  virtual absl::StatusOr<uint64_t> CurrentRevision() = 0;

  // --- Doors ---
  // Adds or replaces a door (its policy must be valid); returns it with its
  // new revision.
  virtual absl::StatusOr<Door> PutDoor(const Door& door, std::vector<AuditEntry> audit) = 0;
  virtual absl::StatusOr<Door> GetDoor(const std::string& name) = 0;  // NotFound
  virtual absl::StatusOr<std::vector<Door>> ListDoors() = 0;           // by name

  // --- Sequences ---
  // Adds sequences atomically, all or none, each with its own id and
  // revision, in state issued. Fails with AlreadyExists, adding nothing,
  // when one of them equals an unused sequence, is a prefix of one, or has
  // one as a prefix (also among themselves). NotFound for an unknown door.
  virtual absl::StatusOr<std::vector<Sequence>> AddSequences(const std::vector<NewSequence>& sequences,
                                                             std::vector<AuditEntry> audit) = 0;
  // Hands unclaimed reserve sequences to claim.claimant (SequenceClaim):
  // their issued_to changes and nothing else (agents hold them already; no
  // change reaches the listener); audit is appended with their ids in a
  // "sequences" detail. Returns them, knocks included; fewer than asked
  // when fewer are unclaimed, none: empty.
  virtual absl::StatusOr<std::vector<Sequence>> ClaimSequences(const SequenceClaim& claim,
                                                               std::vector<AuditEntry> audit) = 0;
  virtual absl::StatusOr<Sequence> GetSequence(uint64_t id) = 0;  // NotFound
  // Ordered by id (newest first when filter.limit is set).
  virtual absl::StatusOr<std::vector<Sequence>> ListSequences(const SequenceFilter& filter) = 0;
  // Burns the unused sequences whose expires_at has come (at the store's
  // clock), the soonest first, at most `limit` of them (a store may do fewer
  // in one call: kMaxExpiredPerCall), in one transaction, each at its own
  // revision with one "sequence.expired" audit record (ExpiredAudit). Agents
  // learn of each burn like any other. Returns those burnt; none: empty.
  // A sequence consumed meanwhile is not touched.
  virtual absl::StatusOr<std::vector<Sequence>> ExpireSequences(size_t limit) = 0;
  // The heart of one-time sequences: at most one kWon per sequence, ever,
  // whatever the number of concurrent callers. The answer is given only once
  // the burn (and its audit record, and its grant) is durable.
  virtual absl::StatusOr<ConsumeResult> Consume(const ConsumeRequest& request) = 0;

  // --- Agents ---
  // Creates or replaces what is known about an agent.
  virtual absl::Status PutAgent(const AgentRecord& agent, std::vector<AuditEntry> audit) = 0;
  virtual absl::StatusOr<AgentRecord> GetAgent(const std::string& name) = 0;  // NotFound
  virtual absl::StatusOr<std::vector<AgentRecord>> ListAgents() = 0;          // by name
  // The agent applied everything up to revision: records it (never lowering
  // what it acknowledged before). From then on, unused sequences it may hold
  // (fleet ones, and its own reserve) added at or below that revision read
  // as live.
  virtual absl::Status AckRevision(const std::string& agent, uint64_t revision) = 0;

  // --- Grants ---
  virtual absl::StatusOr<GrantRecord> AddGrant(const NewGrant& grant, std::vector<AuditEntry> audit) = 0;
  virtual absl::StatusOr<GrantRecord> GetGrant(uint64_t id) = 0;  // NotFound
  virtual absl::StatusOr<std::vector<GrantRecord>> ListGrants(const GrantFilter& filter) = 0;
  // Closes an open grant (revoked or expired) with the next revision; with
  // kill_sessions (a revocation only), the bastions also end the address's
  // live sessions. A grant already closed is returned unchanged, with no
  // revision and no audit record.
  virtual absl::StatusOr<GrantRecord> CloseGrant(uint64_t id, GrantState state, bool kill_sessions,
                                                 std::vector<AuditEntry> audit) = 0;
  // Records one bastion's report about a grant (no revision: agents need
  // not learn about it).
  virtual absl::Status SetGrantAgentState(uint64_t id, const GrantAgentStatus& status,
                                          std::vector<AuditEntry> audit) = 0;

  // --- Audit ---
  // Appends entries to the chain, in order; returns the sealed records. An
  // entry whose origin was recorded before returns that first record.
  virtual absl::StatusOr<std::vector<AuditRecord>> AppendAudit(std::vector<AuditEntry> entries) = 0;
  // Up to limit records from index on, in index order.
  virtual absl::StatusOr<std::vector<AuditRecord>> ReadAudit(uint64_t from_index, size_t limit) = 0;
  virtual absl::StatusOr<AuditHead> GetAuditHead() = 0;
  // Stores a signed checkpoint (replacing one with the same record_count).
  virtual absl::Status AddCheckpoint(const AuditCheckpoint& checkpoint) = 0;
  // By record_count.
  virtual absl::StatusOr<std::vector<AuditCheckpoint>> ListCheckpoints() = 0;
};

}  // namespace sesame::controller
