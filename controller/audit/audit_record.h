// Audit records, the hash chain that links them and the checkpoints that the
// controller signs. This file defines the bytes that are hashed and signed;
// they must never change for version 1 (a new encoding gets a new magic).
//
// Canonical bytes of a record (all integers big-endian):
//
//   "sesame-audit-record-v1"   22 bytes, no terminator
//   index                      u64
//   time                       i64, microseconds since the Unix epoch (UTC)
//   who, what, where, origin   each: u32 byte length, then the bytes
//   detail count               u32
//   details                    each: u32 key length, key, u32 value length,
//                              value; keys in ascending bytewise order,
//                              no key twice
//
// Chain: hash(i) = SHA-256(hash(i-1) || canonical bytes of record i), with
// hash(-1) = 32 zero bytes. A record's index is inside its bytes, so a record
// moved, removed or inserted changes every hash from there on.
//
// Canonical bytes of a checkpoint, signed with Ed25519 (pure, no prehash):
//
//   "sesame-audit-checkpoint-v1"  26 bytes
//   record_count                  u64 (records 0..record_count-1 covered)
//   chain_hash                    32 bytes: hash(record_count-1), zeros if 0
//   time                          i64, microseconds since the Unix epoch
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sesame::controller {

using ChainHash = std::array<uint8_t, 32>;

// What a caller appends; the store seals it into an AuditRecord.
struct AuditEntry {
  absl::Time time;    // truncated to microseconds when sealed
  std::string who;    // knocker's address, "agent:NAME", "admin:NAME", "controller"
  std::string what;   // dotted event name: "knock.opened", "grant.revoked", ...
  std::string where;  // "agent:NAME" or "controller"
  // Unique key of the report behind the record ("agent:NAME/ID"); a second
  // append with the same non-empty origin records nothing and returns the
  // first record. Empty: always recorded.
  std::string origin;
  std::map<std::string, std::string> details;

  friend bool operator==(const AuditEntry&, const AuditEntry&) = default;
};

struct AuditRecord {
  uint64_t index = 0;
  AuditEntry entry;
  ChainHash prev_hash{};
  ChainHash hash{};

  friend bool operator==(const AuditRecord&, const AuditRecord&) = default;
};

struct AuditCheckpoint {
  uint64_t record_count = 0;
  ChainHash chain_hash{};
  absl::Time time;
  std::string signature;  // 64 bytes of Ed25519

  friend bool operator==(const AuditCheckpoint&, const AuditCheckpoint&) = default;
};

// The head of a chain: how many records, and the hash of the last one.
struct AuditHead {
  uint64_t record_count = 0;
  ChainHash hash{};  // zeros when empty
};

// The record's time as sealed (microsecond precision).
absl::Time TruncateToMicros(absl::Time t);

std::string CanonicalRecordBytes(uint64_t index, const AuditEntry& entry);
ChainHash NextChainHash(const ChainHash& prev, uint64_t index, const AuditEntry& entry);
// Seals entry as record head.record_count after head; returns the record
// (index, truncated time, hashes). The caller advances its head to it.
AuditRecord SealRecord(const AuditHead& head, AuditEntry entry);

std::string CanonicalCheckpointBytes(uint64_t record_count, const ChainHash& chain_hash, absl::Time time);

// The text form of fields in the store and in export files (not what is
// hashed): bytes that are '%', tab, CR, LF, any other byte below 0x20, 0x7f,
// and the separators '=' and ';' become %XX (upper-case hex); everything else
// is kept as is.
std::string EscapeField(std::string_view raw);
absl::StatusOr<std::string> UnescapeField(std::string_view text);
// Details as "key=value;key=value" with escaped keys and values, keys in
// canonical order; "" when empty.
std::string DetailsToText(const std::map<std::string, std::string>& details);
absl::StatusOr<std::map<std::string, std::string>> DetailsFromText(std::string_view text);

std::string HashToHex(const ChainHash& hash);
absl::StatusOr<ChainHash> HashFromHex(std::string_view hex);
std::string BytesToHex(std::string_view bytes);
absl::StatusOr<std::string> BytesFromHex(std::string_view hex);

}  // namespace sesame::controller
