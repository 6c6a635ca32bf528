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
// first signed checkpoint that covers them. Records after the last
// checkpoint are checked for consistency but are not yet signed
// (AuditVerification::signed_records says how far the signatures reach).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_record.h"
#include "controller/store/store.h"

namespace sesame::controller {

struct AuditVerification {
  bool ok = true;
  uint64_t records = 0;         // records read
  uint64_t checkpoints = 0;     // good checkpoints
  uint64_t signed_records = 0;  // records covered by the last good checkpoint
  // When !ok: the index of the first bad record (for a checkpoint problem,
  // the record count it claims).
  uint64_t first_bad_index = 0;
  std::string problem;  // when !ok, e.g. "record 41: contents do not match its hash (altered)"
};

// Streaming: feed the records in the order read, then Finish.
class AuditChainVerifier {
 public:
  AuditChainVerifier(const AuditPublicKey& key, std::vector<AuditCheckpoint> checkpoints);

  // Returns false once a problem was found (further records are ignored).
  bool Add(const AuditRecord& record);
  AuditVerification Finish();

 private:
  void CheckCheckpointsAt(uint64_t count);
  void Fail(uint64_t index, std::string problem);

  const AuditPublicKey& key_;
  std::vector<AuditCheckpoint> checkpoints_;  // by record_count
  size_t next_checkpoint_ = 0;
  ChainHash prev_{};
  AuditVerification result_;
};

// Reads the whole chain from the store, in pages.
absl::StatusOr<AuditVerification> VerifyStoredAudit(Store& store, const AuditPublicKey& key);
// Parses and verifies an export file; a file that does not parse is an error
// status (FILE:LINE: ...), not a verification result.
absl::StatusOr<AuditVerification> VerifyAuditExportFile(const std::string& path, const AuditPublicKey& key);
AuditVerification VerifyAuditExport(const std::vector<AuditRecord>& records,
                                    std::vector<AuditCheckpoint> checkpoints, const AuditPublicKey& key);

}  // namespace sesame::controller
