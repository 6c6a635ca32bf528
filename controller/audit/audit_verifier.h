// Verifies an audit chain and its signed checkpoints, from the store or from
// an export file, and says where the first problem is.
//
// For the record at position p (in the order read):
// - its index must be p, else a record was removed, inserted or reordered
//   there;
// - its prev_hash must be the hash of record p-1, else the link is broken
//   (record p-1 was altered and rehashed, or this one was);
// - SHA-256(prev || canonical bytes) must equal its hash, else its contents
//   were altered.
// Each checkpoint must carry a valid Ed25519 signature by the key, and its
// chain_hash must equal the recomputed hash after record_count records; a
// checkpoint beyond the last record means records were removed from the end.
// Altering records and recomputing every hash after them is caught by the
// first signed checkpoint that covers them.
//
// Omissions (Certificate Transparency's signed tree heads are the model):
// - Every record must be covered by a good checkpoint. An export ends with
//   one over all it holds, so a record after the last checkpoint fails
//   (checkpoint lines stripped, or the tail cut together with the
//   checkpoints after the cut), and the problem says how many. The live log
//   may have an unsigned tail while the controller has not yet signed it:
//   AuditVerifyOptions::unsigned_tail_allowance.
// - A log cut back to an earlier checkpoint is a shorter, consistent,
//   signed log; only a head saved elsewhere shows it. Each saved head
//   (audit_head.h) must carry a good signature by the key, and the log must
//   contain its chain: at least record_count records, hashing to its
//   chain_hash there. Fewer records: the log was cut back (rolled back);
//   another hash: the log was forked (rewritten and re-signed).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/audit/audit_head.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_record.h"
#include "controller/store/store.h"

namespace sesame::controller {

struct AuditVerifyOptions {
  // Heads saved away from the controller; the log must contain each one.
  std::vector<AuditSignedHead> heads;
  // Records after the last checkpoint are a failure (zero, for exports),
  // unless the controller may not have signed them yet: the first of them
  // and the last checkpoint are both younger than this at now. The live
  // log passes the checkpoint interval plus a margin (AuditLog::Verify).
  absl::Duration unsigned_tail_allowance = absl::ZeroDuration();
  absl::Time now = absl::InfinitePast();
};

struct AuditVerification {
  bool ok = true;
  uint64_t records = 0;         // records read
  uint64_t checkpoints = 0;     // good checkpoints
  uint64_t signed_records = 0;  // records covered by the last good checkpoint
  uint64_t heads = 0;           // saved heads the log contains
  // When !ok: the index of the first bad record (for a checkpoint problem,
  // the record count it claims).
  uint64_t first_bad_index = 0;
  std::string problem;  // when !ok, e.g. "record 41: contents do not match its hash (altered)"
};

// Streaming: feed the records in the order read, then Finish.
class AuditChainVerifier {
 public:
  AuditChainVerifier(const AuditPublicKey& key, std::vector<AuditCheckpoint> checkpoints,
                     AuditVerifyOptions options = {});

  // Returns false once a problem was found (further records are ignored).
  bool Add(const AuditRecord& record);
  AuditVerification Finish();

 private:
  void CheckHeadSignatures();
  void CheckCheckpointsAt(uint64_t count);
  void CheckHeadsAt(uint64_t count);
  void CheckUnsignedTail();
  void Fail(uint64_t index, std::string problem);

  const AuditPublicKey& key_;
  const std::string key_id_;
  std::vector<AuditCheckpoint> checkpoints_;  // by record_count
  size_t next_checkpoint_ = 0;
  AuditVerifyOptions options_;  // heads by record_count
  size_t next_head_ = 0;
  ChainHash prev_{};
  absl::Time last_checkpoint_time_ = absl::InfinitePast();
  absl::Time first_unsigned_time_ = absl::InfinitePast();  // of record signed_records, once read
  AuditVerification result_;
};

// Reads the whole chain from the store, in pages.
absl::StatusOr<AuditVerification> VerifyStoredAudit(Store& store, const AuditPublicKey& key,
                                                    AuditVerifyOptions options = {});
// Parses and verifies an export file; a file that does not parse is an error
// status (FILE:LINE: ...), not a verification result.
absl::StatusOr<AuditVerification> VerifyAuditExportFile(const std::string& path, const AuditPublicKey& key,
                                                        std::vector<AuditSignedHead> heads = {});
AuditVerification VerifyAuditExport(const std::vector<AuditRecord>& records,
                                    std::vector<AuditCheckpoint> checkpoints, const AuditPublicKey& key,
                                    std::vector<AuditSignedHead> heads = {});

}  // namespace sesame::controller
