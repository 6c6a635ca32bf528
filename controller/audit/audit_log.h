// The controller's audit log: appends go to the store's hash chain (durable
// on return), checkpoints are signed with the controller's Ed25519 key, and
// the whole log can be exported to a file that anyone with the public key
// verifies offline (audit_export.h, audit_verifier.h).
//
// Truncation: a chain cut after its last checkpoint verifies as a shorter
// chain; that is why every export ends with a fresh checkpoint (a record
// after the last checkpoint of an export fails verification), why the
// controller signs one every checkpoint interval while records arrive, and
// why each checkpoint it signs leaves the machine: it is logged as one line
// "audit.checkpoint {head JSON}" (audit_head.h), so log shipping keeps the
// heads elsewhere, and an auditor verifies an export against saved heads.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/audit/audit_head.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_record.h"
#include "controller/audit/audit_verifier.h"
#include "controller/store/store.h"

namespace sesame::controller {

class AuditLog {
 public:
  // How much later than the checkpoint interval the live log may still hold
  // unsigned records (the controller signs on its one-second tick, and a
  // signature waits for the store).
  static constexpr absl::Duration kCheckpointMargin = absl::Seconds(10);

  // checkpoint_interval: how often the controller signs ([audit]
  // Checkpoint_Interval); Verify allows an unsigned tail that young.
  AuditLog(Store& store, AuditSigningKey key, const Clock& clock = RealClock::Instance(),
           absl::Duration checkpoint_interval = absl::Minutes(1));

  // entry.time unset (InfinitePast) is taken as now.
  absl::StatusOr<AuditRecord> Append(AuditEntry entry);

  // Signs the chain's current head, stores the checkpoint and logs it
  // (audit.checkpoint ...); when the last checkpoint already covers the
  // head, returns it without signing again.
  absl::StatusOr<AuditCheckpoint> Checkpoint();
  // The latest stored checkpoint, without signing; NotFound when none.
  absl::StatusOr<AuditCheckpoint> LatestCheckpoint();

  // The whole log in the export format, ending with a checkpoint over
  // everything it holds.
  absl::StatusOr<std::string> ExportText();
  // ExportText written atomically to path (0644: it holds no secret).
  absl::Status Export(const std::string& path);

  // The stored chain and checkpoints, and that it contains each saved head;
  // records after the last checkpoint pass while younger than the
  // checkpoint interval (plus kCheckpointMargin).
  absl::StatusOr<AuditVerification> Verify(std::vector<AuditSignedHead> heads = {});

  const AuditPublicKey& public_key() const { return public_key_; }
  const std::string& key_id() const { return key_id_; }

 private:
  Store& store_;
  const AuditSigningKey key_;
  const AuditPublicKey public_key_;
  const std::string key_id_;
  const Clock& clock_;
  const absl::Duration checkpoint_interval_;
};

}  // namespace sesame::controller
