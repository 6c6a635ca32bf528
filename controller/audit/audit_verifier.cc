#include "controller/audit/audit_verifier.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "controller/audit/audit_export.h"

namespace sesame::controller {
namespace {

constexpr size_t kPage = 1000;

// "the saved head over 20 records signed at 2024-05-01T12:00:00.000000Z (heads.json:3)"
std::string HeadName(const AuditSignedHead& h) {
  return absl::StrCat("the saved head over ", h.checkpoint.record_count, " records signed at ",
                      FormatAuditTime(h.checkpoint.time), h.source.empty() ? "" : absl::StrCat(" (", h.source, ")"));
}

}  // namespace

AuditChainVerifier::AuditChainVerifier(const AuditPublicKey& key, std::vector<AuditCheckpoint> checkpoints,
                                       AuditVerifyOptions options)
    : key_(key), key_id_(key.KeyId()), checkpoints_(std::move(checkpoints)), options_(std::move(options)) {
  std::stable_sort(checkpoints_.begin(), checkpoints_.end(),
                   [](const AuditCheckpoint& a, const AuditCheckpoint& b) { return a.record_count < b.record_count; });
  std::stable_sort(options_.heads.begin(), options_.heads.end(),
                   [](const AuditSignedHead& a, const AuditSignedHead& b) {
                     return a.checkpoint.record_count < b.checkpoint.record_count;
                   });
  CheckHeadSignatures();
  CheckCheckpointsAt(0);
}

void AuditChainVerifier::Fail(uint64_t index, std::string problem) {
  if (!result_.ok) return;
  result_.ok = false;
  result_.first_bad_index = index;
  result_.problem = std::move(problem);
}

// A head is evidence only if the key signed it; checked before any record.
void AuditChainVerifier::CheckHeadSignatures() {
  for (const AuditSignedHead& h : options_.heads) {
    const AuditCheckpoint& c = h.checkpoint;
    if (key_.Verify(CanonicalCheckpointBytes(c.record_count, c.chain_hash, c.time), c.signature)) continue;
    if (!h.key_id.empty() && h.key_id != key_id_) {
      Fail(c.record_count, absl::StrCat(HeadName(h), " was signed by key ", h.key_id.substr(0, 16),
                                        "..., not by the key given (", key_id_.substr(0, 16),
                                        "...): the audit key was replaced since the head was saved (a log ",
                                        "re-signed with another key), or the head is another controller's"));
    } else {
      Fail(c.record_count, absl::StrCat(HeadName(h), ": bad signature for the key given (",
                                        key_id_.substr(0, 16), "...): the head was altered, or it was signed by ",
                                        "another key (the audit key replaced, or another controller's)"));
    }
    return;
  }
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
    last_checkpoint_time_ = std::max(last_checkpoint_time_, c.time);
  }
  CheckHeadsAt(count);
}

void AuditChainVerifier::CheckHeadsAt(uint64_t count) {
  while (result_.ok && next_head_ < options_.heads.size() &&
         options_.heads[next_head_].checkpoint.record_count == count) {
    const AuditSignedHead& h = options_.heads[next_head_++];
    if (h.checkpoint.chain_hash != prev_) {
      Fail(count, absl::StrCat("the chain after ", count, " records differs from ", HeadName(h),
                               ": the log was forked (records before ", count, " rewritten, rehashed and ",
                               "re-signed)"));
      return;
    }
    ++result_.heads;
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
  if (p == result_.signed_records) first_unsigned_time_ = r.entry.time;
  prev_ = computed;
  ++result_.records;
  CheckCheckpointsAt(result_.records);
  return result_.ok;
}

void AuditChainVerifier::CheckUnsignedTail() {
  const uint64_t unsigned_records = result_.records - result_.signed_records;
  const bool live = options_.unsigned_tail_allowance > absl::ZeroDuration();
  if (!live && result_.checkpoints == 0) {
    Fail(0, result_.records == 0
                ? std::string("no signed checkpoint: an export always ends with one (its checkpoint lines were "
                              "removed)")
                : absl::StrCat("none of the ", result_.records, " records is covered by a signed checkpoint: ",
                               "an export always ends with one (its checkpoint lines were removed)"));
    return;
  }
  if (unsigned_records == 0) return;
  const std::string which = absl::StrCat(unsigned_records, unsigned_records == 1 ? " record (" : " records (",
                                         unsigned_records == 1 ? absl::StrCat("record ", result_.signed_records)
                                                               : absl::StrCat("records ", result_.signed_records,
                                                                              " to ", result_.records - 1),
                                         result_.checkpoints == 0
                                             ? std::string(") without any checkpoint")
                                             : absl::StrCat(") after the last checkpoint (over ",
                                                            result_.signed_records, " records)"));
  if (!live) {
    Fail(result_.signed_records,
         absl::StrCat(which, ": not covered by a signature: checkpoints were removed (with the tail cut ",
                      "after them?), or records were added to a signed export"));
    return;
  }
  const absl::Time oldest_allowed = options_.now - options_.unsigned_tail_allowance;
  if (first_unsigned_time_ >= oldest_allowed || last_checkpoint_time_ >= oldest_allowed) return;
  Fail(result_.signed_records,
       absl::StrCat(which, ": not signed, the first from ", FormatAuditTime(first_unsigned_time_),
                    ", older than the checkpoint interval allows (",
                    absl::FormatDuration(options_.unsigned_tail_allowance),
                    "): checkpoints were removed from the store, or the controller stopped signing"));
}

AuditVerification AuditChainVerifier::Finish() {
  if (result_.ok && next_checkpoint_ < checkpoints_.size()) {
    const AuditCheckpoint& c = checkpoints_[next_checkpoint_];
    Fail(result_.records, absl::StrCat("checkpoint over ", c.record_count, " records, but only ", result_.records,
                                       " present (records removed from the end)"));
  }
  if (result_.ok) CheckUnsignedTail();
  if (result_.ok && next_head_ < options_.heads.size()) {
    const AuditSignedHead& h = options_.heads.back();
    Fail(result_.records, absl::StrCat("the log holds ", result_.records, " records, but ", HeadName(h),
                                       ": the log was cut back (rolled back to an earlier checkpoint, ",
                                       "or records removed from its end)"));
  }
  return result_;
}

absl::StatusOr<AuditVerification> VerifyStoredAudit(Store& store, const AuditPublicKey& key,
                                                    AuditVerifyOptions options) {
  ASSIGN_OR_RETURN(std::vector<AuditCheckpoint> checkpoints, store.ListCheckpoints());
  AuditChainVerifier verifier(key, std::move(checkpoints), std::move(options));
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
                                    std::vector<AuditCheckpoint> checkpoints, const AuditPublicKey& key,
                                    std::vector<AuditSignedHead> heads) {
  AuditVerifyOptions options;
  options.heads = std::move(heads);
  AuditChainVerifier verifier(key, std::move(checkpoints), std::move(options));
  for (const AuditRecord& r : records) {
    if (!verifier.Add(r)) break;
  }
  return verifier.Finish();
}

absl::StatusOr<AuditVerification> VerifyAuditExportFile(const std::string& path, const AuditPublicKey& key,
                                                        std::vector<AuditSignedHead> heads) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  ASSIGN_OR_RETURN(AuditExport parsed, ParseAuditExport(text, path));
  return VerifyAuditExport(parsed.records, std::move(parsed.checkpoints), key, std::move(heads));
}

}  // namespace sesame::controller
