// SqliteStore::Writer (internal/sqlite_writer.h): the group committer's
// transaction primitives on the write connection, the audit chain's appends,
// and the bookkeeping that puts the revision counter and the audit head back
// when an operation or a batch is rolled back.
#include "controller/store/sqlite/internal/sqlite_writer.h"

#include <optional>

#include "common/status_macros.h"
#include "controller/store/sqlite/internal/sqlite_queries.h"
#include "controller/store/sqlite/internal/sqlite_rows.h"

namespace sesame::controller {

using internal::FindAuditByOrigin;
using internal::HashBytes;
using internal::Micros;

absl::StatusOr<AuditRecord> SqliteStore::Writer::Append(AuditEntry entry) {
  if (!entry.origin.empty()) {
    ASSIGN_OR_RETURN(std::optional<AuditRecord> existing, FindAuditByOrigin(*db_, entry.origin));
    if (existing) return *std::move(existing);
  }
  AuditRecord r = SealRecord(head_, std::move(entry));
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db_->Prepare("INSERT INTO audit (idx, at_us, who, what, location, origin, details, prev_hash, "
                                "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  s.BindAll(static_cast<int64_t>(r.index), Micros(r.entry.time), r.entry.who, r.entry.what, r.entry.where,
            r.entry.origin, DetailsToText(r.entry.details));
  s.BindBlob(8, HashBytes(r.prev_hash)).BindBlob(9, HashBytes(r.hash));
  RETURN_IF_ERROR(s.Run());
  head_ = AuditHead{r.index + 1, r.hash};
  return r;
}

absl::Status SqliteStore::Writer::AppendAll(std::vector<AuditEntry> entries) {
  for (AuditEntry& e : entries) {
    ASSIGN_OR_RETURN(AuditRecord r, Append(std::move(e)));
    (void)r;
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Writer::Begin() {
  revision_ = committed_revision_;
  head_ = committed_head_;
  changes_.clear();
  return Statement("BEGIN IMMEDIATE");
}

absl::Status SqliteStore::Writer::BeginOperation() {
  op_revision_ = revision_;
  op_head_ = head_;
  op_changes_ = changes_.size();
  return Statement("SAVEPOINT op");
}

absl::Status SqliteStore::Writer::EndOperation(bool ok) {
  if (!ok) {
    revision_ = op_revision_;
    head_ = op_head_;
    changes_.resize(op_changes_);
    RETURN_IF_ERROR(Statement("ROLLBACK TO op"));
  }
  return Statement("RELEASE op");
}

absl::Status SqliteStore::Writer::Commit() {
  if (revision_ != committed_revision_) {
    ASSIGN_OR_RETURN(SqliteStatement s, db_->Prepare("UPDATE meta SET value = ? WHERE key = 'revision'"));
    s.BindAll(static_cast<int64_t>(revision_));
    RETURN_IF_ERROR(s.Run());
  }
  RETURN_IF_ERROR(Statement("COMMIT"));
  committed_revision_ = revision_;
  committed_head_ = head_;
  // Durable now; the callers are answered after this returns.
  if (listener_ != nullptr && !changes_.empty()) listener_->OnCommitted(changes_);
  changes_.clear();
  return absl::OkStatus();
}

void SqliteStore::Writer::Rollback() {
  // After some I/O errors SQLite has rolled back already; then this fails
  // harmlessly.
  (void)db_->Exec("ROLLBACK");
  revision_ = committed_revision_;
  head_ = committed_head_;
  changes_.clear();
}

absl::Status SqliteStore::Writer::Statement(std::string_view sql) {
  ASSIGN_OR_RETURN(SqliteStatement s, db_->Prepare(sql));
  return s.Run();
}

}  // namespace sesame::controller
