// SqliteStore's audit chain: AppendAudit, ReadAudit, GetAuditHead, and the
// signed checkpoints (AddCheckpoint, ListCheckpoints). Sealing and inserting
// a record is the writer's (sqlite_writer.cc).
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/store/sqlite/internal/sqlite_queries.h"
#include "controller/store/sqlite/internal/sqlite_rows.h"
#include "controller/store/sqlite/internal/sqlite_writer.h"
#include "controller/store/sqlite/sqlite_store.h"

namespace sesame::controller {

using internal::AuditFromRow;
using internal::Corrupt;
using internal::FromMicros;
using internal::HashBytes;
using internal::kAuditColumns;
using internal::LoadAuditHead;
using internal::Micros;

absl::StatusOr<std::vector<AuditRecord>> SqliteStore::AppendAudit(std::vector<AuditEntry> entries) {
  std::vector<AuditRecord> out;
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.clear();
    for (AuditEntry& e : entries) {
      ASSIGN_OR_RETURN(AuditRecord r, w.Append(e));
      out.push_back(std::move(r));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<AuditRecord>> SqliteStore::ReadAudit(uint64_t from_index, size_t limit) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare(absl::StrCat("SELECT ", kAuditColumns,
                                                                    " FROM audit WHERE idx >= ? ORDER BY idx LIMIT ?")));
  s.BindAll(static_cast<int64_t>(from_index), static_cast<int64_t>(limit));
  return s.ReadAll(AuditFromRow);
}

absl::StatusOr<AuditHead> SqliteStore::GetAuditHead() {
  absl::MutexLock lock(&read_mu_);
  return LoadAuditHead(*reader_);
}

absl::Status SqliteStore::AddCheckpoint(const AuditCheckpoint& c) {
  return Write([&](Writer& w) -> absl::Status {
    ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare("INSERT OR REPLACE INTO audit_checkpoints (record_count, "
                                                       "chain_hash, at_us, signature) VALUES (?, ?, ?, ?)"));
    s.Bind(1, static_cast<int64_t>(c.record_count))
        .BindBlob(2, HashBytes(c.chain_hash))
        .Bind(3, Micros(c.time))
        .BindBlob(4, c.signature);
    return s.Run();
  });
}

absl::StatusOr<std::vector<AuditCheckpoint>> SqliteStore::ListCheckpoints() {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare("SELECT record_count, chain_hash, at_us, signature FROM "
                                                       "audit_checkpoints ORDER BY record_count"));
  std::vector<AuditCheckpoint> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return out;
    AuditCheckpoint c;
    c.record_count = static_cast<uint64_t>(s.Int(0));
    const std::string hash = s.Blob(1);
    if (hash.size() != 32) return Corrupt("audit checkpoint", absl::StrCat(c.record_count), "hash is not 32 bytes");
    std::copy(hash.begin(), hash.end(), c.chain_hash.begin());
    c.time = FromMicros(s.Int(2));
    c.signature = s.Blob(3);
    out.push_back(std::move(c));
  }
}

}  // namespace sesame::controller
