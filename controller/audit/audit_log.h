// The controller's audit log: appends go to the store's hash chain (durable
// on return), checkpoints are signed with the controller's Ed25519 key, and
// the whole log can be exported to a file that anyone with the public key
// verifies offline (audit_export.h, audit_verifier.h).
//
// Truncation: a chain cut after its last checkpoint verifies as a shorter
// chain; that is why every export ends with a fresh checkpoint, and why the
// controller signs one every few seconds while records arrive.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_record.h"
#include "controller/audit/audit_verifier.h"
#include "controller/store/store.h"

namespace sesame::controller {

class AuditLog {
 public:
  AuditLog(Store& store, AuditSigningKey key, const Clock& clock = RealClock::Instance());

  // entry.time unset (InfinitePast) is taken as now.
  absl::StatusOr<AuditRecord> Append(AuditEntry entry);

  // Signs the chain's current head and stores the checkpoint; when the last
  // checkpoint already covers the head, returns it without signing again.
  absl::StatusOr<AuditCheckpoint> Checkpoint();

  // The whole log in the export format, ending with a checkpoint over
  // everything it holds.
  absl::StatusOr<std::string> ExportText();
  // ExportText written atomically to path (0644: it holds no secret).
  absl::Status Export(const std::string& path);

  absl::StatusOr<AuditVerification> Verify() { return VerifyStoredAudit(store_, public_key_); }

  const AuditPublicKey& public_key() const { return public_key_; }

 private:
  Store& store_;
  const AuditSigningKey key_;
  const AuditPublicKey public_key_;
  const Clock& clock_;
};

}  // namespace sesame::controller
