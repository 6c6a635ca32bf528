#include "controller/audit/audit_verifier.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "controller/audit/audit_export.h"

namespace sesame::controller {
namespace {

constexpr size_t kPage = 1000;

}  // namespace

AuditChainVerifier::AuditChainVerifier(const AuditPublicKey& key, std::vector<AuditCheckpoint> checkpoints)
    : key_(key), checkpoints_(std::move(checkpoints)) {
  std::stable_sort(checkpoints_.begin(), checkpoints_.end(),
                   [](const AuditCheckpoint& a, const AuditCheckpoint& b) { return a.record_count < b.record_count; });
  CheckCheckpointsAt(0);
}

void AuditChainVerifier::Fail(uint64_t index, std::string problem) {
  if (!result_.ok) return;
  result_.ok = false;
  result_.first_bad_index = index;
  result_.problem = std::move(problem);
}

void AuditChainVerifier::CheckCheckpointsAt(uint64_t count) {
  while (result_.ok && next_checkpoint_ < checkpoints_.size() &&
         checkpoints_[next_checkpoint_].record_count == count) {
    const AuditCheckpoint& c = checkpoints_[next_checkpoint_++];
    if (!key_.Verify(CanonicalCheckpointBytes(c.record_count, c.chain_hash, c.time), c.signature)) {
      Fail(count, absl::StrCat("checkpoint over ", count, " records: bad signature (not made by this key, ",
                               "or the checkpoint was altered)"));
      return;
    }
    if (c.chain_hash != prev_) {
      Fail(count, absl::StrCat("checkpoint over ", count, " records: the chain does not match what was ",
                               "signed (records before ", count, " were altered and rehashed)"));
      return;
    }
    ++result_.checkpoints;
    result_.signed_records = count;
  }
}

bool AuditChainVerifier::Add(const AuditRecord& r) {
  if (!result_.ok) return false;
  const uint64_t p = result_.records;
  if (r.index != p) {
    Fail(p, absl::StrCat("record ", p, ": found record ", r.index, " in its place (a record was ",
                         r.index > p ? "removed" : "inserted, duplicated", " or reordered)"));
    return false;
  }
  if (r.prev_hash != prev_) {
    Fail(p, absl::StrCat("record ", p, ": does not follow record ", p == 0 ? std::string("-") : absl::StrCat(p - 1),
                         " (its prev_hash differs: a record before it was altered and rehashed, or this one)"));
    return false;
  }
  const ChainHash computed = NextChainHash(prev_, p, r.entry);
  if (computed != r.hash) {
    Fail(p, absl::StrCat("record ", p, ": contents do not match its hash (altered)"));
    return false;
  }
  prev_ = computed;
  ++result_.records;
  CheckCheckpointsAt(result_.records);
  return result_.ok;
}

AuditVerification AuditChainVerifier::Finish() {
  if (result_.ok && next_checkpoint_ < checkpoints_.size()) {
    const AuditCheckpoint& c = checkpoints_[next_checkpoint_];
    Fail(result_.records, absl::StrCat("checkpoint over ", c.record_count, " records, but only ", result_.records,
                                       " present (records removed from the end)"));
  }
  return result_;
}

absl::StatusOr<AuditVerification> VerifyStoredAudit(Store& store, const AuditPublicKey& key) {
  ASSIGN_OR_RETURN(std::vector<AuditCheckpoint> checkpoints, store.ListCheckpoints());
  AuditChainVerifier verifier(key, std::move(checkpoints));
  uint64_t next = 0;
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<AuditRecord> page, store.ReadAudit(next, kPage));
    for (const AuditRecord& r : page) {
      if (!verifier.Add(r)) return verifier.Finish();
    }
    if (page.size() < kPage) break;
    // Continue after the last index read, so a gap is seen as a gap.
    next = page.back().index + 1;
  }
  return verifier.Finish();
}

AuditVerification VerifyAuditExport(const std::vector<AuditRecord>& records,
                                    std::vector<AuditCheckpoint> checkpoints, const AuditPublicKey& key) {
  AuditChainVerifier verifier(key, std::move(checkpoints));
  for (const AuditRecord& r : records) {
    if (!verifier.Add(r)) break;
  }
  return verifier.Finish();
}

absl::StatusOr<AuditVerification> VerifyAuditExportFile(const std::string& path, const AuditPublicKey& key) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  ASSIGN_OR_RETURN(AuditExport parsed, ParseAuditExport(text, path));
  return VerifyAuditExport(parsed.records, std::move(parsed.checkpoints), key);
}

}  // namespace sesame::controller
