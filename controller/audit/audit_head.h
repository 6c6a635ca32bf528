// Signed heads: checkpoints as an auditor keeps them, away from the
// controller, as Certificate Transparency's signed tree heads. A head says
// "the first record_count records hash to chain_hash", signed with the
// controller's audit key; a log that no longer contains a saved head's chain
// was cut back or rewritten (audit_verifier.h checks it).
//
// The head format: one JSON object, on one line, keys in this order
// (`sesamectl audit head -o json` prints it, the controller logs it):
//
//   {"record_count": 20, "chain_hash": "<64 hex>", "time": "2024-05-01T12:00:00.123456Z",
//    "signature": "<128 hex>", "key_id": "<64 hex>"}
//
// record_count, chain_hash, time and signature are the checkpoint's fields
// (audit_record.h; time as in the export, audit_export.h); key_id is the
// signing key's AuditPublicKey::KeyId(), optional when read.
//
// The controller writes every checkpoint it signs to its log (stderr, so
// journald; syslog) as one line "audit.checkpoint {...}" with that object.
//
// A head file holds one or more heads, each either a JSON object on its
// own (it may span lines) or a line that contains "audit.checkpoint "
// followed by the object (so the controller's log, grepped or whole, is a
// head file). Other lines are ignored; a file with no head is an error.
// Unknown keys are ignored; a missing or malformed field is an error
// "FILE:LINE: what was expected". At most kMaxAuditHeadFileBytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/audit/audit_record.h"

namespace sesame::controller {

inline constexpr char kAuditCheckpointLogEvent[] = "audit.checkpoint";
inline constexpr uint64_t kMaxAuditHeadFileBytes = 64ull << 20;

struct AuditSignedHead {
  AuditCheckpoint checkpoint;
  std::string key_id;  // empty when the file did not say
  std::string source;  // "FILE:LINE" when read from a file; for messages only

  friend bool operator==(const AuditSignedHead&, const AuditSignedHead&) = default;
};

// The head as one line of JSON, without a newline.
std::string FormatAuditHeadJson(const AuditCheckpoint& checkpoint, std::string_view key_id);
// "audit.checkpoint " and the JSON: the controller's log line.
std::string FormatAuditCheckpointLogLine(const AuditCheckpoint& checkpoint, std::string_view key_id);

// The heads of a head file's text, in file order.
absl::StatusOr<std::vector<AuditSignedHead>> ParseAuditHeads(std::string_view text, std::string_view file_name);
absl::StatusOr<std::vector<AuditSignedHead>> LoadAuditHeads(const std::string& path);

}  // namespace sesame::controller
