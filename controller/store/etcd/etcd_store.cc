// EtcdStore (etcd_store.h): opening, the reads, and every write but
// consumption (etcd_consume.cc).
#include "controller/store/etcd/etcd_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "controller/store/etcd/etcd_rows.h"
#include "controller/store/etcd/etcd_writer.h"
#include "controller/store/store_checks.h"

namespace sesame::controller {
namespace {

// One AddSequences is one value; etcd takes requests up to 1.5 MiB.
constexpr size_t kMaxSequencesPerAdd = 10000;

thread_local int64_t t_fence = 0;  // FencedScope's revision on this thread

}  // namespace

EtcdStore::EtcdStore(const EtcdStoreOptions& options, std::unique_ptr<EtcdClient> client)
    : clock_(*options.clock),
      sync_timeout_(options.sync_timeout),
      keys_(options.prefix),
      client_(std::move(client)) {}

absl::StatusOr<std::unique_ptr<EtcdStore>> EtcdStore::Open(const EtcdStoreOptions& options) {
  if (options.prefix.empty() || options.prefix.back() != '/') {
    return absl::InvalidArgumentError(absl::StrCat("etcd prefix \"", options.prefix, "\": expected one ending in /"));
  }
  if (!IsValidName(options.controller)) {
    return absl::InvalidArgumentError(absl::StrCat("controller name \"", options.controller, "\": expected [A-Za-z0-9_.-]{1,64}"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> client, EtcdClient::Connect(options.client));
  std::unique_ptr<EtcdStore> store(new EtcdStore(options, std::move(client)));
  store->mirror_ = std::make_unique<EtcdMirror>(*store->client_, store->keys_);
  RETURN_IF_ERROR(store->mirror_->Start());
  store->writer_ = std::make_unique<Writer>(*store->client_, *store->mirror_, store->keys_, options.controller,
                                            options.sync_timeout);
  store->committer_ = std::make_unique<GroupCommitter>(*store->writer_, options.max_batch);
  absl::MutexLock lock(&store->fenced_mu_);
  // A mark of its own: its transactions run beside the group's.
  store->fenced_writer_ = std::make_unique<Writer>(*store->client_, *store->mirror_, store->keys_,
                                                   options.controller + ".leader", options.sync_timeout);
  return store;
}

EtcdStore::FencedScope::FencedScope(int64_t revision) : previous_(t_fence) { t_fence = revision; }
EtcdStore::FencedScope::~FencedScope() { t_fence = previous_; }

EtcdStore::~EtcdStore() {
  committer_.reset();  // finishes what is queued
  writer_.reset();
  mirror_.reset();
}

absl::Status EtcdStore::Write(absl::AnyInvocable<absl::Status(Writer&)> op) {
  if (t_fence != 0) return WriteFenced(op, t_fence);
  return committer_->Run([this, op = std::move(op)]() mutable { return op(*writer_); });
}

absl::Status EtcdStore::WriteFenced(absl::AnyInvocable<absl::Status(Writer&)>& op, int64_t fence) {
  absl::MutexLock lock(&fenced_mu_);
  Writer& w = *fenced_writer_;
  w.set_fence(fence);
  constexpr int kMaxAttempts = 50;
  absl::Status status;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    RETURN_IF_ERROR(w.Begin());
    RETURN_IF_ERROR(w.BeginOperation());
    status = op(w);
    RETURN_IF_ERROR(w.EndOperation(status.ok()));
    if (!status.ok()) break;
    status = w.Commit();
    if (!absl::IsAborted(status)) break;
  }
  if (!status.ok()) w.Rollback();
  return status;
}

absl::Status EtcdStore::CheckReachable() { return client_->Range(keys_.head(), "").status(); }

void EtcdStore::SetChangeListener(ChangeListener* listener) { mirror_->SetListener(listener); }

absl::StatusOr<FleetState> EtcdStore::LoadFleetState() {
  RETURN_IF_ERROR(Sync());
  // A change applied here but not yet handed to the listener reaches it
  // with a revision at or below state.revision: listeners skip those.
  return mirror_->Read([](const MirrorState& s) {
    FleetState state;
    state.revision = s.head.revision;
    for (const auto& [name, door] : s.doors) state.doors.push_back(door);
    for (const auto& [id, q] : s.sequences) {
      if (q.unused()) state.unused_sequences.push_back(s.Effective(q));
    }
    for (const auto& [id, g] : s.grants) {
      if (g.state == GrantState::kOpen) {
        state.open_grants.push_back(g);
        state.open_grants.back().agents.clear();
      }
    }
    return state;
  });
}

absl::StatusOr<uint64_t> EtcdStore::CurrentRevision() {
  RETURN_IF_ERROR(Sync());
  return mirror_->Read([](const MirrorState& s) { return s.head.revision; });
}

// --- Doors ---

absl::StatusOr<Door> EtcdStore::PutDoor(const Door& door, std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateDoorToPut(door));
  Door out = door;
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.revision = w.NextRevision();
    w.PutDoor(out);
    return w.AppendAll(audit);
  }));
  return out;
}

absl::StatusOr<Door> EtcdStore::GetDoor(const std::string& name) {
  RETURN_IF_ERROR(Sync());
  std::optional<Door> door = mirror_->Read([&](const MirrorState& s) -> std::optional<Door> {
    auto it = s.doors.find(name);
    if (it == s.doors.end()) return std::nullopt;
    return it->second;
  });
  if (!door) return absl::NotFoundError(absl::StrCat("no door \"", name, "\""));
  return *std::move(door);
}

absl::StatusOr<std::vector<Door>> EtcdStore::ListDoors() {
  RETURN_IF_ERROR(Sync());
  return mirror_->Read([](const MirrorState& s) {
    std::vector<Door> doors;
    for (const auto& [name, door] : s.doors) doors.push_back(door);
    return doors;
  });
}

// --- Sequences ---

absl::StatusOr<std::vector<Sequence>> EtcdStore::AddSequences(const std::vector<NewSequence>& sequences,
                                                              std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateNewSequences(sequences));
  if (sequences.size() > kMaxSequencesPerAdd) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxSequencesPerAdd, " sequences in one addition on the etcd store"));
  }
  std::vector<Sequence> out;
  const absl::Time now = TruncateToMicros(clock_.Now());
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.clear();
    for (size_t i = 0; i < sequences.size(); ++i) {
      const NewSequence& n = sequences[i];
      if (!w.FindDoor(n.door)) return absl::NotFoundError(absl::StrCat("no door \"", n.door, "\""));
      const std::string text = KnocksToText(n.knocks);
      if (std::optional<uint64_t> id = w.UnusedAtOrUnder(text)) {
        return absl::AlreadyExistsError(
            absl::StrCat("new sequence ", i, " equals or is a prefix of unused sequence ", *id));
      }
      for (size_t len = 1; len < n.knocks.size(); ++len) {
        const std::string prefix =
            KnocksToText(std::vector<Knock>(n.knocks.begin(), n.knocks.begin() + static_cast<std::ptrdiff_t>(len)));
        if (std::optional<uint64_t> id = w.UnusedExactly(prefix)) {
          return absl::AlreadyExistsError(absl::StrCat("unused sequence ", *id, " is a prefix of new sequence ", i));
        }
      }
      const uint64_t id = w.NextSequenceId();
      Sequence q = IssuedSequence(n, id, w.NextRevision(), now);
      out.push_back(q);
      w.AddSequence(q);  // the checks of the next ones see it
    }
    w.PutNewSequences();
    std::vector<uint64_t> ids;
    for (const Sequence& q : out) ids.push_back(q.id);
    std::vector<AuditEntry> entries = audit;
    for (AuditEntry& e : entries) e.details.emplace("sequences", absl::StrJoin(ids, ","));
    return w.AppendAll(std::move(entries));
  }));
  return out;
}

absl::StatusOr<std::vector<Sequence>> EtcdStore::ExpireSequences(size_t limit) {
  limit = std::min(limit, kMaxExpiredPerCall);
  std::vector<Sequence> out;
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.clear();
    const absl::Time now = TruncateToMicros(clock_.Now());
    // The unused ones whose time has come, soonest first; the writer's view
    // (this batch's burns included) has the last word on each.
    std::vector<std::pair<absl::Time, uint64_t>> due = mirror_->Read([&](const MirrorState& s) {
      std::vector<std::pair<absl::Time, uint64_t>> v;
      for (const auto& [text, id] : s.unused_by_knocks) {
        auto it = s.sequences.find(id);
        if (it != s.sequences.end() && it->second.expires_at <= now) v.emplace_back(it->second.expires_at, id);
      }
      return v;
    });
    std::sort(due.begin(), due.end());
    for (const auto& [when, id] : due) {
      if (out.size() >= limit) break;
      std::optional<Sequence> q = w.FindSequence(id);
      if (!q || !q->unused()) continue;
      Sequence burnt = ExpiredSequence(*std::move(q), w.NextRevision(), now);
      w.PutSequence(burnt);
      RETURN_IF_ERROR(w.Append(ExpiredAudit(burnt, now)).status());
      out.push_back(std::move(burnt));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<Sequence>> EtcdStore::ClaimSequences(const SequenceClaim& claim,
                                                                std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateSequenceClaim(claim));
  // Each claimed sequence is one put: a transaction takes a share of them,
  // and the next transactions the rest, until none is left unclaimed.
  std::vector<Sequence> all;
  for (;;) {
    const size_t count = std::min(claim.count - all.size(), kMaxExpiredPerCall);
    ASSIGN_OR_RETURN(std::vector<Sequence> some, ClaimSome(claim, count, audit));
    all.insert(all.end(), some.begin(), some.end());
    if (some.size() < count || all.size() == claim.count) return all;
  }
}

absl::StatusOr<std::vector<Sequence>> EtcdStore::ClaimSome(const SequenceClaim& claim, size_t count,
                                                           const std::vector<AuditEntry>& audit) {
  std::vector<Sequence> out;
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.clear();
    std::vector<uint64_t> candidates = mirror_->Read([&](const MirrorState& s) {
      std::vector<uint64_t> v;
      for (const auto& [text, id] : s.unused_by_knocks) {
        auto it = s.sequences.find(id);
        if (it == s.sequences.end()) continue;
        const Sequence& q = it->second;
        if (q.reserve_agent == claim.reserve_agent && q.issued_to == kUnclaimedReserve &&
            (claim.door.empty() || q.door == claim.door)) {
          v.push_back(id);
        }
      }
      return v;
    });
    std::sort(candidates.begin(), candidates.end());
    std::vector<uint64_t> ids;
    for (uint64_t id : candidates) {
      if (out.size() >= count) break;
      std::optional<Sequence> q = w.FindSequence(id);
      if (!q || !q->unused() || q->issued_to != kUnclaimedReserve) continue;
      // The same revision: agents hold it already, and the hub skips a
      // change it has seen.
      q->issued_to = claim.claimant;
      w.PutSequence(*q);
      ids.push_back(id);
      out.push_back(*std::move(q));
    }
    if (out.empty()) return absl::OkStatus();
    std::vector<AuditEntry> entries = audit;
    for (AuditEntry& e : entries) e.details.emplace("sequences", absl::StrJoin(ids, ","));
    return w.AppendAll(std::move(entries));
  }));
  return out;
}

absl::StatusOr<Sequence> EtcdStore::GetSequence(uint64_t id) {
  RETURN_IF_ERROR(Sync());
  std::optional<Sequence> q = mirror_->Read([&](const MirrorState& s) -> std::optional<Sequence> {
    auto it = s.sequences.find(id);
    if (it == s.sequences.end()) return std::nullopt;
    return s.Effective(it->second);
  });
  if (!q) return absl::NotFoundError(absl::StrCat("no sequence ", id));
  return *std::move(q);
}

absl::StatusOr<std::vector<Sequence>> EtcdStore::ListSequences(const SequenceFilter& filter) {
  RETURN_IF_ERROR(Sync());
  return mirror_->Read([&](const MirrorState& s) {
    std::vector<Sequence> out;
    auto consider = [&](const Sequence& stored) {
      if (!filter.door.empty() && stored.door != filter.door) return;
      if (filter.unused_only && !stored.unused()) return;
      if (!filter.reserve_agent.empty() && stored.reserve_agent != filter.reserve_agent) return;
      Sequence q = s.Effective(stored);
      if (filter.state && q.state != *filter.state) return;
      out.push_back(std::move(q));
    };
    if (filter.limit > 0) {
      for (auto it = s.sequences.rbegin(); it != s.sequences.rend() && out.size() < filter.limit; ++it) {
        consider(it->second);
      }
    } else {
      for (const auto& [id, q] : s.sequences) consider(q);
    }
    return out;
  });
}

// --- Agents ---

absl::Status EtcdStore::PutAgent(const AgentRecord& agent, std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateAgentRecord(agent));
  return Write([&](Writer& w) -> absl::Status {
    w.PutAgent(agent);
    return w.AppendAll(audit);
  });
}

absl::StatusOr<AgentRecord> EtcdStore::GetAgent(const std::string& name) {
  RETURN_IF_ERROR(Sync());
  std::optional<AgentRecord> a = mirror_->Read([&](const MirrorState& s) -> std::optional<AgentRecord> {
    auto it = s.agents.find(name);
    if (it == s.agents.end()) return std::nullopt;
    return it->second;
  });
  if (!a) return absl::NotFoundError(absl::StrCat("no agent \"", name, "\""));
  return *std::move(a);
}

absl::StatusOr<std::vector<AgentRecord>> EtcdStore::ListAgents() {
  RETURN_IF_ERROR(Sync());
  return mirror_->Read([](const MirrorState& s) {
    std::vector<AgentRecord> out;
    for (const auto& [name, a] : s.agents) out.push_back(a);
    return out;
  });
}

absl::Status EtcdStore::AckRevision(const std::string& agent, uint64_t revision) {
  return Write([&](Writer& w) -> absl::Status {
    std::optional<AgentRecord> a = w.FindAgent(agent);
    if (!a) return absl::NotFoundError(absl::StrCat("no agent \"", agent, "\""));
    if (revision <= a->acked_revision) return absl::OkStatus();
    a->acked_revision = revision;
    w.PutAgent(*a);
    return absl::OkStatus();
  });
}

// --- Grants ---

absl::StatusOr<GrantRecord> EtcdStore::AddGrant(const NewGrant& grant, std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateNewGrant(grant));
  GrantRecord out;
  const absl::Time now = TruncateToMicros(clock_.Now());
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    if (!w.FindDoor(grant.door)) return absl::NotFoundError(absl::StrCat("no door \"", grant.door, "\""));
    const uint64_t id = w.NextGrantId();
    out = OpenedGrant(grant, id, w.NextRevision(), now);
    w.PutGrant(out);
    std::vector<AuditEntry> entries = audit;
    for (AuditEntry& e : entries) e.details.emplace("grant", absl::StrCat(out.id));
    return w.AppendAll(std::move(entries));
  }));
  return out;
}

absl::StatusOr<GrantRecord> EtcdStore::GetGrant(uint64_t id) {
  RETURN_IF_ERROR(Sync());
  std::optional<GrantRecord> g = mirror_->Read([&](const MirrorState& s) -> std::optional<GrantRecord> {
    auto it = s.grants.find(id);
    if (it == s.grants.end()) return std::nullopt;
    return it->second;
  });
  if (!g) return absl::NotFoundError(absl::StrCat("no grant ", id));
  return *std::move(g);
}

absl::StatusOr<std::vector<GrantRecord>> EtcdStore::ListGrants(const GrantFilter& filter) {
  RETURN_IF_ERROR(Sync());
  return mirror_->Read([&](const MirrorState& s) {
    std::vector<GrantRecord> out;
    auto consider = [&](const GrantRecord& g) {
      if (filter.open_only && g.state != GrantState::kOpen) return;
      if (filter.address && !(g.address == *filter.address)) return;
      if (!filter.agent.empty() && g.agent != filter.agent && !g.fleet_wide) return;
      out.push_back(g);
    };
    if (filter.limit > 0) {
      for (auto it = s.grants.rbegin(); it != s.grants.rend() && out.size() < filter.limit; ++it) consider(it->second);
    } else {
      for (const auto& [id, g] : s.grants) consider(g);
    }
    return out;
  });
}

absl::StatusOr<GrantRecord> EtcdStore::CloseGrant(uint64_t id, GrantState state, bool kill_sessions,
                                                  std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateGrantClosing(state, kill_sessions));
  GrantRecord out;
  const absl::Time now = TruncateToMicros(clock_.Now());
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    std::optional<GrantRecord> g = w.FindGrant(id);
    if (!g) return absl::NotFoundError(absl::StrCat("no grant ", id));
    out = *std::move(g);
    if (out.state != GrantState::kOpen) return absl::OkStatus();
    out.state = state;
    out.closed_at = now;
    out.kill_sessions = kill_sessions;
    out.revision = w.NextRevision();
    w.PutGrant(out);
    std::vector<AuditEntry> entries = audit;
    for (AuditEntry& e : entries) e.details.emplace("grant", absl::StrCat(id));
    return w.AppendAll(std::move(entries));
  }));
  return out;
}

absl::Status EtcdStore::SetGrantAgentState(uint64_t id, const GrantAgentStatus& status,
                                           std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateGrantAgentStatus(status));
  return Write([&](Writer& w) -> absl::Status {
    std::optional<GrantRecord> g = w.FindGrant(id);
    if (!g) return absl::NotFoundError(absl::StrCat("no grant ", id));
    auto it = std::find_if(g->agents.begin(), g->agents.end(),
                           [&](const GrantAgentStatus& a) { return a.agent == status.agent; });
    GrantAgentStatus kept = status;
    kept.at = TruncateToMicros(status.at);
    if (it == g->agents.end()) {
      g->agents.push_back(kept);
      std::sort(g->agents.begin(), g->agents.end(),
                [](const GrantAgentStatus& a, const GrantAgentStatus& b) { return a.agent < b.agent; });
    } else {
      *it = kept;
    }
    w.PutGrant(*g);  // same revision: agents need not learn of it
    return w.AppendAll(audit);
  });
}

// --- Audit ---

absl::StatusOr<std::vector<AuditRecord>> EtcdStore::AppendAudit(std::vector<AuditEntry> entries) {
  std::vector<AuditRecord> out;
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.clear();
    for (const AuditEntry& e : entries) {
      ASSIGN_OR_RETURN(AuditRecord r, w.Append(e));
      out.push_back(std::move(r));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<AuditRecord>> EtcdStore::ReadAudit(uint64_t from_index, size_t limit) {
  return ReadAuditFrom(*client_, keys_, from_index, limit);
}

absl::StatusOr<std::vector<AuditRecord>> EtcdStore::ReadAuditFrom(EtcdClient& client, const EtcdKeys& keys,
                                                                   uint64_t from_index, size_t limit) {
  // A key holds one transaction's records under the index of its last, so
  // the first key from audit/FROM holds record FROM, and limit keys hold at
  // least limit records from there.
  std::vector<AuditRecord> out;
  const std::string end = EtcdPrefixEnd(keys.audit_prefix());
  std::string from = keys.audit(from_index);
  while (out.size() < limit) {
    ASSIGN_OR_RETURN(etcdserverpb::RangeResponse r,
                     client.Range(from, end, static_cast<int64_t>(std::min<size_t>(limit - out.size(), 500))));
    for (const auto& kv : r.kvs()) {
      ASSIGN_OR_RETURN(store::etcd::AuditBatchRow row, ParseRow<store::etcd::AuditBatchRow>(kv.key(), kv.value()));
      ASSIGN_OR_RETURN(std::vector<AuditRecord> records, FromRow(row));
      for (AuditRecord& record : records) {
        // What is stored, gaps included: the chain's verifier judges it.
        if (record.index < from_index || out.size() >= limit) continue;
        out.push_back(std::move(record));
      }
    }
    if (!r.more() || r.kvs().empty()) break;
    from = r.kvs(r.kvs_size() - 1).key() + std::string(1, '\0');
  }
  return out;
}

absl::StatusOr<AuditHead> EtcdStore::GetAuditHead() {
  RETURN_IF_ERROR(Sync());
  return mirror_->Read([](const MirrorState& s) { return s.head.audit; });
}

absl::Status EtcdStore::AddCheckpoint(const AuditCheckpoint& checkpoint) {
  return Write([&](Writer& w) -> absl::Status {
    w.PutRaw(keys_.checkpoint(checkpoint.record_count), ToRow(checkpoint).SerializeAsString());
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<AuditCheckpoint>> EtcdStore::ListCheckpoints() {
  ASSIGN_OR_RETURN(etcdserverpb::RangeResponse r,
                   client_->Range(keys_.checkpoint_prefix(), EtcdPrefixEnd(keys_.checkpoint_prefix())));
  std::vector<AuditCheckpoint> out;
  for (const auto& kv : r.kvs()) {
    ASSIGN_OR_RETURN(store::etcd::CheckpointRow row, ParseRow<store::etcd::CheckpointRow>(kv.key(), kv.value()));
    ASSIGN_OR_RETURN(AuditCheckpoint c, FromRow(row));
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace sesame::controller
