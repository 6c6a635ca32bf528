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
// Size limit (max_bytes; SpoolLimitMB, 16 MiB by default): what hostile
// traffic makes must not grow the file without bound, and it is the least
// valuable. Each message is of one class (ClassOf, or the caller's word):
//   notice       a ScannerSeen: detail an operator can live without;
//   consumption  a KnockMatched that used a sequence held here (online,
//                offline, reserve): the controller must hear of it, or the
//                sequence could come back; at most one per sequence held;
//   record       everything else (grant results, audit events, replays).
// Below the limit everything is written. A message that would pass it:
//   1. the confirmed records still in the file are compacted away;
//   2. if that is not enough, a notice is not written (ResourceExhausted,
//      notices_refused); any other message first sheds every pending
//      notice (the file is rewritten without them, notices_shed);
//   3. if it still does not fit, the spool holds only records and
//      consumptions: a consumption is written past the limit (over_limit;
//      refusing it would lose a sequence's burn, and there are at most as
//      many as sequences held, so the file stays within max_bytes plus one
//      record per sequence held), a record is refused (ResourceExhausted,
//      records_refused): the caller logs it, the controller sees the
//      counter in the next heartbeat.
// A file found larger than the limit at Open is kept whole: nothing is
// dropped at start.
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

enum class SpoolClass { kNotice, kRecord, kConsumption };

struct SpoolCounters {
  uint64_t notices_refused = 0;  // notices not written: the spool was full
  uint64_t notices_shed = 0;     // pending notices dropped to make room
  uint64_t records_refused = 0;  // records not written: full of records and consumptions
  uint64_t over_limit = 0;       // consumptions written past the limit
};

class AuditSpool {
 public:
  static constexpr uint64_t kDefaultMaxBytes = uint64_t{16} << 20;

  // Opens or creates the spool at `path` (its directory must exist). Fails on
  // a file that is not a spool, or one it can neither read nor write.
  static absl::StatusOr<std::unique_ptr<AuditSpool>> Open(const std::string& path,
                                                          uint64_t max_bytes = kDefaultMaxBytes);
  // A ScannerSeen is a notice, a KnockMatched a consumption, the rest records.
  static SpoolClass ClassOf(const v1::AgentMessage& message);
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
  //
  // At the size limit (see the top): ResourceExhausted for a message that
  // is not written; then nothing is pending for it.
  absl::Status Append(const v1::AgentMessage& message, bool sync = true) {
    return Append(message, ClassOf(message), sync);
  }
  // The same with the class given by the caller (a replay's KnockMatched
  // is a record: it used nothing).
  absl::Status Append(const v1::AgentMessage& message, SpoolClass cls, bool sync);
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
  // Bytes in the file now, and the limit.
  uint64_t file_bytes() const { return file_bytes_; }
  uint64_t max_bytes() const { return max_bytes_; }
  const SpoolCounters& counters() const { return counters_; }

 private:
  struct Entry {
    v1::AgentMessage message;
    uint64_t bytes = 0;  // of its record in the file
    bool notice = false;
  };

  AuditSpool(std::string path, uint64_t max_bytes);
  absl::Status Load();
  void AddPending(v1::AgentMessage message, uint64_t bytes, bool notice);
  void ErasePending(std::map<uint64_t, Entry>::iterator it);
  // Room for a record of `bytes` (see the top); ResourceExhausted if none.
  absl::Status MakeRoom(SpoolClass cls, uint64_t bytes);
  absl::Status WriteRecord(char type, const std::string& data, bool sync);
  // Rewrites the file with only the pending records.
  absl::Status Compact();
  absl::Status OpenForAppend();

  const std::string path_;
  const uint64_t max_bytes_;
  std::string run_;
  uint64_t next_ = 0;
  int fd_ = -1;
  uint64_t file_bytes_ = 0;
  size_t confirmed_since_compaction_ = 0;
  bool unsynced_ = false;  // deferred appends not yet synced
  uint64_t order_ = 0;
  std::map<uint64_t, Entry> pending_;                 // by append order
  absl::flat_hash_map<std::string, uint64_t> index_;  // id -> order
  uint64_t pending_bytes_ = 0;                        // records of pending_ in the file
  size_t pending_notices_ = 0;
  SpoolCounters counters_;
};

// CRC-32 (IEEE 802.3), as zlib computes it.
uint32_t Crc32(const char* data, size_t size);

}  // namespace sesame
