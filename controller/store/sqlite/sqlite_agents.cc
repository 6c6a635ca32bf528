// SqliteStore's agents: PutAgent, GetAgent, ListAgents, AckRevision.
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "controller/store/sqlite/internal/sqlite_rows.h"
#include "controller/store/sqlite/internal/sqlite_writer.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "controller/store/store_checks.h"

namespace sesame::controller {

using internal::AgentFromRow;
using internal::BindTimeOrNull;
using internal::kAgentColumns;

absl::Status SqliteStore::PutAgent(const AgentRecord& a, std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateAgentRecord(a));
  return Write([&](Writer& w) -> absl::Status {
    ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare(absl::StrCat("INSERT OR REPLACE INTO agents (", kAgentColumns,
                                                                    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")));
    s.BindAll(a.name, a.version, int64_t{a.connected ? 1 : 0});
    BindTimeOrNull(s, 4, a.connected_at);
    BindTimeOrNull(s, 5, a.disconnected_at);
    BindTimeOrNull(s, 6, a.last_heartbeat);
    s.Bind(7, static_cast<int64_t>(a.acked_revision))
        .Bind(8, int64_t{a.reserve_left})
        .Bind(9, int64_t{a.spool_depth})
        .Bind(10, a.last_error)
        .Bind(11, absl::StrJoin(a.advertise_hosts, "\n"));
    RETURN_IF_ERROR(s.Run());
    return w.AppendAll(std::move(audit));
  });
}

absl::StatusOr<AgentRecord> SqliteStore::GetAgent(const std::string& name) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s,
                   reader_->Prepare(absl::StrCat("SELECT ", kAgentColumns, " FROM agents WHERE name = ?")));
  s.BindAll(name);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no agent \"", name, "\""));
  return AgentFromRow(s);
}

absl::StatusOr<std::vector<AgentRecord>> SqliteStore::ListAgents() {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s,
                   reader_->Prepare(absl::StrCat("SELECT ", kAgentColumns, " FROM agents ORDER BY name")));
  std::vector<AgentRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return out;
    out.push_back(AgentFromRow(s));
  }
}

absl::Status SqliteStore::AckRevision(const std::string& agent, uint64_t revision) {
  return Write([&](Writer& w) -> absl::Status {
    ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare("UPDATE agents SET acked_revision = "
                                                       "MAX(acked_revision, ?) WHERE name = ?"));
    s.BindAll(static_cast<int64_t>(revision), agent);
    RETURN_IF_ERROR(s.Run());
    if (w.db().Changes() == 0) return absl::NotFoundError(absl::StrCat("no agent \"", agent, "\""));
    return absl::OkStatus();
  });
}

}  // namespace sesame::controller
