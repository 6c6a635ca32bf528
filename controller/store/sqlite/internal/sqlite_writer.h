// SqliteStore::Writer, private to controller/store/sqlite: the write
// connection under the group committer, and the revision counter and audit
// chain head it keeps in memory between commits. Every file that defines a
// writing SqliteStore member includes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/audit/audit_record.h"
#include "controller/store/group_commit.h"
#include "controller/store/sqlite/sqlite_db.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "controller/store/store.h"

namespace sesame::controller {

// The revision counter and the audit head are saved at the start of every
// operation and of every batch, and put back when that operation or batch
// is rolled back.
class SqliteStore::Writer final : public BatchTransaction {
 public:
  Writer(std::unique_ptr<SqliteDb> db, uint64_t revision, AuditHead head)
      : db_(std::move(db)), revision_(revision), committed_revision_(revision), head_(head), committed_head_(head) {}

  SqliteDb& db() { return *db_; }

  uint64_t NextRevision() { return ++revision_; }

  void set_listener(ChangeListener* listener) { listener_ = listener; }
  // Records a change for the listener; dropped if its operation or batch is
  // rolled back.
  void Changed(StoreChange change) { changes_.push_back(std::move(change)); }

  // Seals and inserts one record (or returns the one with the same origin).
  absl::StatusOr<AuditRecord> Append(AuditEntry entry);
  absl::Status AppendAll(std::vector<AuditEntry> entries);

  absl::Status Begin() override;
  absl::Status BeginOperation() override;
  absl::Status EndOperation(bool ok) override;
  absl::Status Commit() override;
  void Rollback() override;

 private:
  absl::Status Statement(std::string_view sql);

  std::unique_ptr<SqliteDb> db_;
  uint64_t revision_, committed_revision_, op_revision_ = 0;
  AuditHead head_, committed_head_, op_head_;
  ChangeListener* listener_ = nullptr;
  std::vector<StoreChange> changes_;  // of the open batch, in revision order
  size_t op_changes_ = 0;
};

}  // namespace sesame::controller
