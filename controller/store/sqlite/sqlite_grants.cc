// SqliteStore's grants: AddGrant, GetGrant, ListGrants, CloseGrant,
// SetGrantAgentState. Grants a won knock opens are inserted by
// sqlite_consume.cc, through the same InsertGrant.
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/store/sqlite/internal/sqlite_queries.h"
#include "controller/store/sqlite/internal/sqlite_rows.h"
#include "controller/store/sqlite/internal/sqlite_writer.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "controller/store/store_checks.h"

namespace sesame::controller {
using internal::FindDoor;
using internal::FindGrant;
using internal::GrantFromRow;
using internal::InsertGrant;
using internal::kGrantColumns;
using internal::LoadGrantAgents;
using internal::Micros;
using internal::ReadTransaction;

absl::StatusOr<GrantRecord> SqliteStore::AddGrant(const NewGrant& grant, std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateNewGrant(grant));
  GrantRecord out;
  const absl::Time now = TruncateToMicros(clock_.Now());
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<Door> door, FindDoor(w.db(), grant.door));
    if (!door) return absl::NotFoundError(absl::StrCat("no door \"", grant.door, "\""));
    ASSIGN_OR_RETURN(out, InsertGrant(w.db(), w.NextRevision(), grant, now));
    w.Changed(StoreChange{StoreChange::Kind::kGrantOpened, out.revision, {}, out, {}});
    for (AuditEntry& e : audit) e.details.emplace("grant", absl::StrCat(out.id));
    return w.AppendAll(std::move(audit));
  }));
  return out;
}

absl::StatusOr<GrantRecord> SqliteStore::GetGrant(uint64_t id) {
  absl::MutexLock lock(&read_mu_);
  ReadTransaction txn(*reader_);
  ASSIGN_OR_RETURN(std::optional<GrantRecord> g, FindGrant(*reader_, id));
  if (!g) return absl::NotFoundError(absl::StrCat("no grant ", id));
  return *std::move(g);
}

absl::StatusOr<std::vector<GrantRecord>> SqliteStore::ListGrants(const GrantFilter& filter) {
  std::string sql = absl::StrCat("SELECT ", kGrantColumns, " FROM grants WHERE 1");
  if (filter.open_only) sql += " AND state = 'open'";
  if (filter.address) sql += " AND address = ?1";
  if (!filter.agent.empty()) sql += " AND (agent = ?2 OR fleet_wide = 1)";
  sql += filter.limit > 0 ? " ORDER BY id DESC LIMIT ?3" : " ORDER BY id";
  absl::MutexLock lock(&read_mu_);
  ReadTransaction txn(*reader_);
  std::vector<GrantRecord> out;
  {
    ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare(sql));
    if (filter.address) s.Bind(1, filter.address->ToString());
    if (!filter.agent.empty()) s.Bind(2, filter.agent);
    if (filter.limit > 0) s.Bind(3, static_cast<int64_t>(filter.limit));
    ASSIGN_OR_RETURN(out, s.ReadAll(GrantFromRow));
  }
  for (GrantRecord& g : out) RETURN_IF_ERROR(LoadGrantAgents(*reader_, g));
  return out;
}

absl::StatusOr<GrantRecord> SqliteStore::CloseGrant(uint64_t id, GrantState state, bool kill_sessions,
                                                    std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateGrantClosing(state, kill_sessions));
  GrantRecord out;
  const absl::Time now = TruncateToMicros(clock_.Now());
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<GrantRecord> g, FindGrant(w.db(), id));
    if (!g) return absl::NotFoundError(absl::StrCat("no grant ", id));
    out = *std::move(g);
    if (out.state != GrantState::kOpen) return absl::OkStatus();
    out.state = state;
    out.closed_at = now;
    out.kill_sessions = kill_sessions;
    out.revision = w.NextRevision();
    ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare("UPDATE grants SET state = ?, closed_at_us = ?, "
                                                       "kill_sessions = ?, revision = ? WHERE id = ?"));
    s.BindAll(GrantStateName(state), Micros(now), int64_t{kill_sessions ? 1 : 0}, static_cast<int64_t>(out.revision),
              static_cast<int64_t>(id));
    RETURN_IF_ERROR(s.Run());
    w.Changed(StoreChange{StoreChange::Kind::kGrantClosed, out.revision, {}, out, {}});
    for (AuditEntry& e : audit) e.details.emplace("grant", absl::StrCat(id));
    return w.AppendAll(std::move(audit));
  }));
  return out;
}

absl::Status SqliteStore::SetGrantAgentState(uint64_t id, const GrantAgentStatus& status,
                                             std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateGrantAgentStatus(status));
  return Write([&](Writer& w) -> absl::Status {
    {
      ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare("SELECT 1 FROM grants WHERE id = ?"));
      s.BindAll(static_cast<int64_t>(id));
      ASSIGN_OR_RETURN(bool exists, s.Step());
      if (!exists) return absl::NotFoundError(absl::StrCat("no grant ", id));
    }
    ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare("INSERT OR REPLACE INTO grant_agents (grant_id, agent, state, "
                                                       "detail, at_us) VALUES (?, ?, ?, ?, ?)"));
    s.BindAll(static_cast<int64_t>(id), status.agent, GrantAgentStateName(status.state), status.detail,
              Micros(status.at));
    RETURN_IF_ERROR(s.Run());
    return w.AppendAll(std::move(audit));
  });
}

}  // namespace sesame::controller
