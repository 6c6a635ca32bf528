#include "controller/audit/audit_export.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace sesame::controller {
namespace {

constexpr char kTimeFormat[] = "%Y-%m-%dT%H:%M:%E6SZ";

absl::StatusOr<std::string> Unescape(absl::string_view field, const char* name) {
  absl::StatusOr<std::string> out = UnescapeField(std::string_view(field.data(), field.size()));
  if (!out.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", out.status().message()));
  return out;
}

absl::StatusOr<uint64_t> ParseCount(absl::string_view field, const char* name) {
  uint64_t value = 0;
  if (field.empty() || field[0] == '+' || field[0] == '-' || !absl::SimpleAtoi(field, &value)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " \"", field, "\": expected a decimal number"));
  }
  return value;
}

absl::StatusOr<ChainHash> ParseHash(absl::string_view field, const char* name) {
  absl::StatusOr<ChainHash> hash = HashFromHex(std::string_view(field.data(), field.size()));
  if (!hash.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", hash.status().message()));
  return hash;
}

absl::StatusOr<AuditRecord> ParseRecord(const std::vector<absl::string_view>& f) {
  if (f.size() != 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("record line with ", f.size(), " fields: expected 10 (R, index, time, who, what, where, ",
                     "origin, details, prev_hash, hash)"));
  }
  AuditRecord r;
  absl::StatusOr<uint64_t> index = ParseCount(f[1], "index");
  if (!index.ok()) return index.status();
  r.index = *index;
  absl::StatusOr<absl::Time> time = ParseAuditTime(std::string_view(f[2].data(), f[2].size()));
  if (!time.ok()) return time.status();
  r.entry.time = *time;
  std::string* const text_fields[] = {&r.entry.who, &r.entry.what, &r.entry.where, &r.entry.origin};
  const char* const names[] = {"who", "what", "where", "origin"};
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<std::string> value = Unescape(f[3 + i], names[i]);
    if (!value.ok()) return value.status();
    *text_fields[i] = *std::move(value);
  }
  absl::StatusOr<std::map<std::string, std::string>> details =
      DetailsFromText(std::string_view(f[7].data(), f[7].size()));
  if (!details.ok()) return absl::InvalidArgumentError(absl::StrCat("details: ", details.status().message()));
  r.entry.details = *std::move(details);
  absl::StatusOr<ChainHash> prev = ParseHash(f[8], "prev_hash");
  if (!prev.ok()) return prev.status();
  r.prev_hash = *prev;
  absl::StatusOr<ChainHash> hash = ParseHash(f[9], "hash");
  if (!hash.ok()) return hash.status();
  r.hash = *hash;
  return r;
}

absl::StatusOr<AuditCheckpoint> ParseCheckpoint(const std::vector<absl::string_view>& f) {
  if (f.size() != 5) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint line with ", f.size(),
                                                   " fields: expected 5 (C, record_count, time, chain_hash, "
                                                   "signature)"));
  }
  AuditCheckpoint c;
  absl::StatusOr<uint64_t> count = ParseCount(f[1], "record_count");
  if (!count.ok()) return count.status();
  c.record_count = *count;
  absl::StatusOr<absl::Time> time = ParseAuditTime(std::string_view(f[2].data(), f[2].size()));
  if (!time.ok()) return time.status();
  c.time = *time;
  absl::StatusOr<ChainHash> hash = ParseHash(f[3], "chain_hash");
  if (!hash.ok()) return hash.status();
  c.chain_hash = *hash;
  absl::StatusOr<std::string> signature = BytesFromHex(std::string_view(f[4].data(), f[4].size()));
  if (!signature.ok() || signature->size() != 64) {
    return absl::InvalidArgumentError("signature: expected 128 hex digits (Ed25519)");
  }
  c.signature = *std::move(signature);
  return c;
}

}  // namespace

std::string FormatAuditTime(absl::Time t) { return absl::FormatTime(kTimeFormat, t, absl::UTCTimeZone()); }

absl::StatusOr<absl::Time> ParseAuditTime(std::string_view text) {
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(kTimeFormat, absl::string_view(text.data(), text.size()), absl::UTCTimeZone(), &t, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("time \"", std::string(text), "\": expected YYYY-MM-DDTHH:MM:SS.UUUUUUZ (", error, ")"));
  }
  return t;
}

std::string FormatRecordLine(const AuditRecord& r) {
  return absl::StrCat("R\t", r.index, "\t", FormatAuditTime(r.entry.time), "\t", EscapeField(r.entry.who), "\t",
                      EscapeField(r.entry.what), "\t", EscapeField(r.entry.where), "\t", EscapeField(r.entry.origin),
                      "\t", DetailsToText(r.entry.details), "\t", HashToHex(r.prev_hash), "\t", HashToHex(r.hash),
                      "\n");
}

std::string FormatCheckpointLine(const AuditCheckpoint& c) {
  return absl::StrCat("C\t", c.record_count, "\t", FormatAuditTime(c.time), "\t", HashToHex(c.chain_hash), "\t",
                      BytesToHex(c.signature), "\n");
}

absl::StatusOr<AuditExport> ParseAuditExport(std::string_view text, std::string_view file_name) {
  AuditExport out;
  const std::string file(file_name);
  int line_number = 0;
  bool header = false;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line[0] == '#') continue;
    if (!header) {
      if (line != absl::string_view(kAuditExportHeader.data(), kAuditExportHeader.size())) {
        return absl::InvalidArgumentError(absl::StrCat(file, ":", line_number, ": expected the header \"",
                                                       std::string(kAuditExportHeader), "\""));
      }
      header = true;
      continue;
    }
    const std::vector<absl::string_view> fields = absl::StrSplit(line, '\t');
    absl::Status status;
    if (fields[0] == "R") {
      absl::StatusOr<AuditRecord> r = ParseRecord(fields);
      if (r.ok()) out.records.push_back(*std::move(r));
      status = r.status();
    } else if (fields[0] == "C") {
      absl::StatusOr<AuditCheckpoint> c = ParseCheckpoint(fields);
      if (c.ok()) out.checkpoints.push_back(*std::move(c));
      status = c.status();
    } else {
      status = absl::InvalidArgumentError(absl::StrCat("line starts with \"", fields[0],
                                                       "\": expected R (record) or C (checkpoint)"));
    }
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ":", line_number, ": ", status.message()));
    }
  }
  if (!header) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": empty: expected the header \"", std::string(kAuditExportHeader), "\""));
  }
  return out;
}

}  // namespace sesame::controller
