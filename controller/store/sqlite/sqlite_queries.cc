// Queries the SQLite store's files share (internal/sqlite_queries.h).
#include "controller/store/sqlite/internal/sqlite_queries.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/store/sqlite/internal/sqlite_rows.h"

namespace sesame::controller::internal {

absl::StatusOr<std::optional<Door>> FindDoor(SqliteDb& db, const std::string& name) {
  ASSIGN_OR_RETURN(SqliteStatement s, db.Prepare(absl::StrCat("SELECT ", kDoorColumns, " FROM doors WHERE name = ?")));
  s.BindAll(name);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<Door>();
  ASSIGN_OR_RETURN(Door door, DoorFromRow(s));
  return std::optional<Door>(std::move(door));
}

absl::StatusOr<std::optional<Sequence>> FindSequence(SqliteDb& db, uint64_t id) {
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db.Prepare(absl::StrCat("SELECT ", SequenceColumns(), " FROM sequences WHERE id = ?")));
  s.BindAll(static_cast<int64_t>(id));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<Sequence>();
  ASSIGN_OR_RETURN(Sequence q, SequenceFromRow(s));
  return std::optional<Sequence>(std::move(q));
}

absl::StatusOr<std::optional<Sequence>> FindSequenceByKnocks(SqliteDb& db, const std::string& knocks) {
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db.Prepare(absl::StrCat("SELECT ", SequenceColumns(),
                                           " FROM sequences WHERE knocks = ? ORDER BY state = 'burnt', id DESC LIMIT 1")));
  s.BindAll(knocks);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<Sequence>();
  ASSIGN_OR_RETURN(Sequence q, SequenceFromRow(s));
  return std::optional<Sequence>(std::move(q));
}

absl::Status LoadGrantAgents(SqliteDb& db, GrantRecord& g) {
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db.Prepare("SELECT agent, state, detail, at_us FROM grant_agents WHERE grant_id = ? ORDER BY agent"));
  s.BindAll(static_cast<int64_t>(g.id));
  g.agents.clear();
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return absl::OkStatus();
    GrantAgentStatus a;
    a.agent = s.Text(0);
    std::optional<GrantAgentState> state = ParseGrantAgentState(s.Text(1));
    if (!state) return Corrupt("grant", absl::StrCat(g.id), "bad agent state");
    a.state = *state;
    a.detail = s.Text(2);
    a.at = FromMicros(s.Int(3));
    g.agents.push_back(std::move(a));
  }
}

absl::StatusOr<std::optional<GrantRecord>> FindGrant(SqliteDb& db, uint64_t id) {
  std::optional<GrantRecord> grant;
  {
    ASSIGN_OR_RETURN(SqliteStatement s,
                     db.Prepare(absl::StrCat("SELECT ", kGrantColumns, " FROM grants WHERE id = ?")));
    s.BindAll(static_cast<int64_t>(id));
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return grant;
    ASSIGN_OR_RETURN(grant, GrantFromRow(s));
  }
  RETURN_IF_ERROR(LoadGrantAgents(db, *grant));
  return grant;
}

absl::StatusOr<std::optional<AuditRecord>> FindAuditByOrigin(SqliteDb& db, const std::string& origin) {
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db.Prepare(absl::StrCat("SELECT ", kAuditColumns, " FROM audit WHERE origin = ? AND origin != ''")));
  s.BindAll(origin);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<AuditRecord>();
  ASSIGN_OR_RETURN(AuditRecord r, AuditFromRow(s));
  return std::optional<AuditRecord>(std::move(r));
}

absl::StatusOr<AuditHead> LoadAuditHead(SqliteDb& db) {
  ASSIGN_OR_RETURN(SqliteStatement s, db.Prepare("SELECT idx, hash FROM audit ORDER BY idx DESC LIMIT 1"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  AuditHead head;
  if (!row) return head;
  head.record_count = static_cast<uint64_t>(s.Int(0)) + 1;
  const std::string hash = s.Blob(1);
  if (hash.size() != 32) return Corrupt("audit record", absl::StrCat(s.Int(0)), "hash is not 32 bytes");
  std::copy(hash.begin(), hash.end(), head.hash.begin());
  return head;
}

absl::StatusOr<uint64_t> LoadRevision(SqliteDb& db) {
  ASSIGN_OR_RETURN(std::optional<int64_t> value, db.QueryInt("SELECT value FROM meta WHERE key = 'revision'"));
  if (!value) return absl::DataLossError("store: the revision counter is missing");
  return static_cast<uint64_t>(*value);
}

absl::StatusOr<GrantRecord> InsertGrant(SqliteDb& db, uint64_t revision, const NewGrant& g, absl::Time now) {
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db.Prepare("INSERT INTO grants (door, address, ports, agent, fleet_wide, opened_at_us, "
                              "expires_at_us, state, closed_at_us, sequence_id, opened_by, revision) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, 'open', NULL, ?, ?, ?)"));
  s.BindAll(g.door, g.address.ToString(), KnocksToText(g.ports), g.fleet_wide ? std::string() : g.agent,
            int64_t{g.fleet_wide ? 1 : 0}, Micros(now), Micros(TruncateToMicros(g.expires_at)),
            static_cast<int64_t>(g.sequence_id), g.opened_by, static_cast<int64_t>(revision));
  RETURN_IF_ERROR(s.Run());
  return OpenedGrant(g, static_cast<uint64_t>(db.LastInsertRowId()), revision, now);
}

}  // namespace sesame::controller::internal
