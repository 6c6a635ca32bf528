#include "controller/audit/audit_log.h"

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "controller/audit/audit_export.h"

namespace sesame::controller {
namespace {

constexpr size_t kReadPage = 1000;

}  // namespace

AuditLog::AuditLog(Store& store, AuditSigningKey key, const Clock& clock, absl::Duration checkpoint_interval)
    : store_(store),
      key_(std::move(key)),
      public_key_(key_.PublicKey()),
      key_id_(public_key_.KeyId()),
      clock_(clock),
      checkpoint_interval_(checkpoint_interval) {}

absl::StatusOr<AuditRecord> AuditLog::Append(AuditEntry entry) {
  if (entry.time == absl::InfinitePast()) entry.time = clock_.Now();
  std::vector<AuditEntry> entries;
  entries.push_back(std::move(entry));
  ASSIGN_OR_RETURN(std::vector<AuditRecord> records, store_.AppendAudit(std::move(entries)));
  return records.front();
}

absl::StatusOr<AuditCheckpoint> AuditLog::Checkpoint() {
  ASSIGN_OR_RETURN(AuditHead head, store_.GetAuditHead());
  ASSIGN_OR_RETURN(std::vector<AuditCheckpoint> existing, store_.ListCheckpoints());
  if (!existing.empty() && existing.back().record_count == head.record_count &&
      existing.back().chain_hash == head.hash) {
    return existing.back();
  }
  AuditCheckpoint c;
  c.record_count = head.record_count;
  c.chain_hash = head.hash;
  c.time = TruncateToMicros(clock_.Now());
  ASSIGN_OR_RETURN(c.signature, key_.Sign(CanonicalCheckpointBytes(c.record_count, c.chain_hash, c.time)));
  RETURN_IF_ERROR(store_.AddCheckpoint(c));
  // The head leaves the machine with the log (journald, syslog), where a
  // root on this disk cannot take it back.
  LogInfo(FormatAuditCheckpointLogLine(c, key_id_));
  return c;
}

absl::StatusOr<AuditCheckpoint> AuditLog::LatestCheckpoint() {
  ASSIGN_OR_RETURN(std::vector<AuditCheckpoint> existing, store_.ListCheckpoints());
  if (existing.empty()) return absl::NotFoundError("no audit checkpoint has been signed yet");
  return existing.back();
}

absl::StatusOr<AuditVerification> AuditLog::Verify(std::vector<AuditSignedHead> heads) {
  AuditVerifyOptions options;
  options.heads = std::move(heads);
  options.unsigned_tail_allowance = checkpoint_interval_ + kCheckpointMargin;
  options.now = clock_.Now();
  return VerifyStoredAudit(store_, public_key_, std::move(options));
}

absl::StatusOr<std::string> AuditLog::ExportText() {
  ASSIGN_OR_RETURN(AuditCheckpoint last, Checkpoint());
  ASSIGN_OR_RETURN(std::vector<AuditCheckpoint> checkpoints, store_.ListCheckpoints());
  std::string out = absl::StrCat(std::string(kAuditExportHeader), "\n");
  size_t next_checkpoint = 0;
  auto emit_checkpoints_at = [&](uint64_t count) {
    while (next_checkpoint < checkpoints.size() && checkpoints[next_checkpoint].record_count <= count) {
      out += FormatCheckpointLine(checkpoints[next_checkpoint++]);
    }
  };
  emit_checkpoints_at(0);
  // Records up to the checkpoint just made; later ones wait for the next
  // export, so the file always ends signed.
  uint64_t next = 0;
  while (next < last.record_count) {
    ASSIGN_OR_RETURN(std::vector<AuditRecord> page,
                     store_.ReadAudit(next, std::min<uint64_t>(kReadPage, last.record_count - next)));
    if (page.empty()) break;
    for (const AuditRecord& r : page) {
      out += FormatRecordLine(r);
      emit_checkpoints_at(r.index + 1);
    }
    next = page.back().index + 1;
  }
  return out;
}

absl::Status AuditLog::Export(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ExportText());
  return WriteFileAtomically(path, text, 0644);
}

}  // namespace sesame::controller
