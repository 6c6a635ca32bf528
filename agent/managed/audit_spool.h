// The managed agent's durable outbox. Every report to the controller that
// must not be lost (KnockMatched, GrantResult, RevokeApplied, ScannerSeen,
// AuditEvent) is appended here and fsynced before it counts as written, and
// kept until the controller confirms its id (a Receipt, or for a
// KnockMatched the KnockVerdict's reply_to). After a reconnect or an agent
// restart the unconfirmed ones are sent again; their ids make a resend
// harmless, so a lost confirmation costs one duplicate send, never a
// duplicate record.
//
// Ids are "<run>/<n>": <run> is 16 random hex digits drawn at every Open,
// n counts from 1. An id handed out and never written (a crash in between)
// can therefore never be handed out again for another message, with no
// counter to persist. Stored messages keep the ids they were sent with.
//
// File format, version 1: the 8 bytes "SSPOOL1\n", then records, each
//   u32 payload length (little endian), u32 CRC-32 of the payload, payload
// where the payload is a type byte and its data: 'M' a serialized
// AgentMessage, 'C' the ids of confirmed messages separated by '\n'.
// An append is one write() and one fdatasync(). A crash in the middle of an
// append leaves a torn last record, which Open drops (it was never
// acknowledged). A record that fails its check with more data behind it is
// corruption: Open keeps every good record before it, copies the file aside
// to FILE.corrupt-UNIXTIME for a human and logs an error. Once confirmations
// pile up (at least 256, and more than the records pending) the file is
// rewritten atomically with only the pending records.
//
// Not thread-safe: one owner (the managed agent's worker thread).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sesame/v1/agent.pb.h"

namespace sesame {

class AuditSpool {
 public:
  // Opens or creates the spool at `path` (its directory must exist). Fails on
  // a file that is not a spool, or one it can neither read nor write.
  static absl::StatusOr<std::unique_ptr<AuditSpool>> Open(const std::string& path);
  ~AuditSpool();
  AuditSpool(const AuditSpool&) = delete;
  AuditSpool& operator=(const AuditSpool&) = delete;

  // A fresh id for a message (at most 64 bytes, as the contract asks).
  std::string NewId();
  // Appends `message` (its id set by NewId; a message of that id already
  // pending is not added twice) and syncs it to disk. OK: it survives a
  // crash or a power loss. On error nothing is pending and the caller must
  // not act as if it were recorded.
  //
  // sync = false defers the fsync to the next synced append or Sync(): for
  // a report that is already on its way to the controller, where the spool
  // only covers the case of a lost session, and the fsync would otherwise
  // sit between the report and the handling of its answer.
  absl::Status Append(const v1::AgentMessage& message, bool sync = true);
  // Syncs deferred appends (nothing to do: OK at once).
  absl::Status Sync();
  bool unsynced() const { return unsynced_; }
  // Drops confirmed messages; unknown ids are ignored. Not synced: a lost
  // confirmation only means one resend.
  absl::Status Confirm(const std::vector<std::string>& ids);

  bool Contains(const std::string& id) const { return index_.contains(id); }
  // Unconfirmed messages, oldest first.
  std::vector<const v1::AgentMessage*> Pending() const;
  size_t depth() const { return pending_.size(); }
  const std::string& path() const { return path_; }
  // Bytes in the file now (tests, diagnostics).
  uint64_t file_bytes() const { return file_bytes_; }

 private:
  explicit AuditSpool(std::string path);
  absl::Status Load();
  absl::Status WriteRecord(char type, const std::string& data, bool sync);
  // Rewrites the file with only the pending records.
  absl::Status Compact();
  absl::Status OpenForAppend();

  const std::string path_;
  std::string run_;
  uint64_t next_ = 0;
  int fd_ = -1;
  uint64_t file_bytes_ = 0;
  size_t confirmed_since_compaction_ = 0;
  bool unsynced_ = false;  // deferred appends not yet synced
  uint64_t order_ = 0;
  std::map<uint64_t, v1::AgentMessage> pending_;         // by append order
  absl::flat_hash_map<std::string, uint64_t> index_;     // id -> order
};

// CRC-32 (IEEE 802.3), as zlib computes it.
uint32_t Crc32(const char* data, size_t size);

}  // namespace sesame
