// The audit export file: the whole chain and its signed checkpoints as text,
// one item per line, fields separated by a tab, so that it can be read,
// grepped and verified offline with nothing but the controller's public key.
//
//   sesame-audit-export v1
//   R  INDEX  TIME  WHO  WHAT  WHERE  ORIGIN  DETAILS  PREV_HASH  HASH
//   C  RECORD_COUNT  TIME  CHAIN_HASH  SIGNATURE
//
// TIME is RFC 3339 in UTC with microseconds ("2024-05-01T12:00:00.123456Z");
// WHO, WHAT, WHERE and ORIGIN are escaped with EscapeField, DETAILS with
// DetailsToText (audit_record.h); hashes and the signature are lower-case
// hex. A checkpoint line follows the record it covers last. Lines starting
// with '#' and empty lines are ignored. Verification recomputes every hash
// from the fields (audit_verifier.h); the text form is not what is hashed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/audit/audit_record.h"

namespace sesame::controller {

inline constexpr std::string_view kAuditExportHeader = "sesame-audit-export v1";

std::string FormatAuditTime(absl::Time t);
// The inverse of FormatAuditTime; the error says what was expected.
absl::StatusOr<absl::Time> ParseAuditTime(std::string_view text);
std::string FormatRecordLine(const AuditRecord& record);          // with '\n'
std::string FormatCheckpointLine(const AuditCheckpoint& checkpoint);  // with '\n'

struct AuditExport {
  std::vector<AuditRecord> records;  // in file order
  std::vector<AuditCheckpoint> checkpoints;
};

// Errors read "FILE:LINE: what was expected".
absl::StatusOr<AuditExport> ParseAuditExport(std::string_view text, std::string_view file_name);

}  // namespace sesame::controller
