// The Store on SQLite: one database file in the controller's state
// directory, WAL journal, synchronous=FULL (a commit is on disk when it
// returns: a burnt sequence never comes back after a crash or power loss).
//
// Writes go through one connection on one writer thread with group commit
// (group_commit.h): concurrent callers share transactions, which is how
// consumption reaches tens of thousands of durable operations per second
// with an fsync per commit. Reads use a second, read-only connection and see
// the last committed state; WAL lets them run beside the writer.
//
// The file and the -wal/-shm files beside it are created 0600 (the database
// holds unused sequences), the state directory 0700 when created. One store
// at a time owns a database: Open takes an exclusive lock on FILE.lock
// (the writer keeps the revision and the audit chain's head in memory), and
// a second Open fails with FailedPrecondition while the first is alive.
//
// Besides the Store contract: AddSequences adds details["sequences"] (the
// new ids, comma-separated) to its audit entries, AddGrant and CloseGrant
// add details["grant"], unless the caller set them.
#pragma once

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "controller/store/group_commit.h"
#include "controller/store/sqlite/sqlite_db.h"
#include "controller/store/store.h"

namespace sesame::controller {

struct SqliteStoreOptions {
  std::string state_dir;                       // created if missing
  std::string file_name = "controller.db";
  const Clock* clock = &RealClock::Instance();  // times of burns, grants, audit records
  size_t max_batch = 1024;                      // operations per transaction at most
  int schema_version = 0;                       // 0: latest; tests migrate from older ones
  // WAL pages between checkpoints (a checkpoint copies pages into the
  // database file and fsyncs it inside a commit): 10000 pages (~40 MB of
  // WAL) measured 15-25% more consumptions/s than SQLite's 1000.
  int wal_autocheckpoint = 10000;
  int cache_kib = 16384;  // the writer's page cache
};

class SqliteStore final : public Store {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(const SqliteStoreOptions& options);
  // Waits for queued writes to commit.
  ~SqliteStore() override;

  const std::string& path() const { return path_; }
  GroupCommitStats commit_stats() const { return committer_->stats(); }

  void SetChangeListener(ChangeListener* listener) override;
  absl::StatusOr<FleetState> LoadFleetState() override;
  absl::StatusOr<uint64_t> CurrentRevision() override;

  absl::StatusOr<Door> PutDoor(const Door& door, std::vector<AuditEntry> audit) override;
  absl::StatusOr<Door> GetDoor(const std::string& name) override;
  absl::StatusOr<std::vector<Door>> ListDoors() override;

  absl::StatusOr<std::vector<Sequence>> AddSequences(const std::vector<NewSequence>& sequences,
                                                     std::vector<AuditEntry> audit) override;
  absl::StatusOr<std::vector<Sequence>> ExpireSequences(size_t limit) override;
  absl::StatusOr<std::vector<Sequence>> ClaimSequences(const SequenceClaim& claim,
                                                       std::vector<AuditEntry> audit) override;
  absl::StatusOr<Sequence> GetSequence(uint64_t id) override;
  absl::StatusOr<std::vector<Sequence>> ListSequences(const SequenceFilter& filter) override;
  absl::StatusOr<ConsumeResult> Consume(const ConsumeRequest& request) override;

  absl::Status PutAgent(const AgentRecord& agent, std::vector<AuditEntry> audit) override;
  absl::StatusOr<AgentRecord> GetAgent(const std::string& name) override;
  absl::StatusOr<std::vector<AgentRecord>> ListAgents() override;
  absl::Status AckRevision(const std::string& agent, uint64_t revision) override;

  absl::StatusOr<GrantRecord> AddGrant(const NewGrant& grant, std::vector<AuditEntry> audit) override;
  absl::StatusOr<GrantRecord> GetGrant(uint64_t id) override;
  absl::StatusOr<std::vector<GrantRecord>> ListGrants(const GrantFilter& filter) override;
  absl::StatusOr<GrantRecord> CloseGrant(uint64_t id, GrantState state, bool kill_sessions,
                                         std::vector<AuditEntry> audit) override;
  absl::Status SetGrantAgentState(uint64_t id, const GrantAgentStatus& status,
                                  std::vector<AuditEntry> audit) override;

  absl::StatusOr<std::vector<AuditRecord>> AppendAudit(std::vector<AuditEntry> entries) override;
  absl::StatusOr<std::vector<AuditRecord>> ReadAudit(uint64_t from_index, size_t limit) override;
  absl::StatusOr<AuditHead> GetAuditHead() override;
  absl::Status AddCheckpoint(const AuditCheckpoint& checkpoint) override;
  absl::StatusOr<std::vector<AuditCheckpoint>> ListCheckpoints() override;

 private:
  class Writer;
  SqliteStore(std::string path, const Clock& clock);

  // Runs op on the writer thread inside a group-committed transaction.
  absl::Status Write(absl::AnyInvocable<absl::Status(Writer&)> op);
  absl::Status ConsumeInTransaction(Writer& w, const ConsumeRequest& request, ConsumeResult& result);

  const std::string path_;
  const Clock& clock_;
  int lock_fd_ = -1;  // flock'ed for the store's lifetime
  absl::Mutex read_mu_;
  std::unique_ptr<SqliteDb> reader_ ABSL_GUARDED_BY(read_mu_);
  std::unique_ptr<Writer> writer_;  // used on the writer thread only, once open
  std::unique_ptr<GroupCommitter> committer_;
};

}  // namespace sesame::controller
