// Queries the SQLite store's files share, private to controller/store/sqlite:
// lookups run on the reader and on the writer alike, the grant insert that
// AddGrant and Consume both make, the read transaction, and the knock-list
// check of AddSequences and Consume.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/audit/audit_record.h"
#include "controller/model/model.h"
#include "controller/store/sqlite/sqlite_db.h"

namespace sesame::controller::internal {

absl::StatusOr<std::optional<Door>> FindDoor(SqliteDb& db, const std::string& name);
absl::StatusOr<std::optional<Sequence>> FindSequence(SqliteDb& db, uint64_t id);
// The unused sequence with these knocks (KnocksToText), or else the newest
// burnt one.
absl::StatusOr<std::optional<Sequence>> FindSequenceByKnocks(SqliteDb& db, const std::string& knocks);
// Replaces g.agents with the grant's per-bastion reports, by agent.
absl::Status LoadGrantAgents(SqliteDb& db, GrantRecord& g);
// With its per-bastion reports.
absl::StatusOr<std::optional<GrantRecord>> FindGrant(SqliteDb& db, uint64_t id);
absl::StatusOr<std::optional<AuditRecord>> FindAuditByOrigin(SqliteDb& db, const std::string& origin);
absl::StatusOr<AuditHead> LoadAuditHead(SqliteDb& db);
absl::StatusOr<uint64_t> LoadRevision(SqliteDb& db);

// Inserts an open grant at revision, opened now; bastions add their rows to
// grant_agents as they report.
absl::StatusOr<GrantRecord> InsertGrant(SqliteDb& db, uint64_t revision, const NewGrant& g, absl::Time now);

// A consistent view across several statements on the reader.
class ReadTransaction {
 public:
  explicit ReadTransaction(SqliteDb& db) : db_(db), open_(db.Exec("BEGIN").ok()) {}
  ~ReadTransaction() {
    if (open_) (void)db_.Exec("COMMIT");
  }
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;

 private:
  SqliteDb& db_;
  bool open_;
};

}  // namespace sesame::controller::internal
