// The Store on etcd: the controller's state shared by any number of
// controllers, in a 3- or 5-member etcd cluster (etcd_keys.h has the
// layout). For a fleet whose control plane must survive losing a machine;
// SQLite stays the store of a single controller.
//
// Writes: group commit as on SQLite (group_commit.h), each batch one etcd
// transaction that compares the head key's mod revision with the one the
// batch was decided against and rewrites it. Two controllers deciding at
// once: one commits, the other's compare fails, it catches up and decides
// its batch again. So a sequence is burnt at most once fleet-wide, and the
// audit chain, whose head is in the head key, never forks. A batch stays
// within etcd's 128 operations per transaction; a bulk AddSequences is one
// value.
//
// A transaction whose answer is lost (the member died while committing) is
// looked up by the id this controller wrote with it (txn/CONTROLLER):
// committed, it is answered as committed; not, its callers get Unavailable
// and nothing was done twice (an agent resends its report with the same
// request id, which a later commit answers with the first answer).
//
// Reads come from the controller's watched copy (etcd_mirror.h) once it has
// caught up with etcd; the audit log and checkpoints are read from etcd.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/store/etcd/etcd_client.h"
#include "controller/store/etcd/etcd_keys.h"
#include "controller/store/etcd/etcd_mirror.h"
#include "controller/store/group_commit.h"
#include "controller/store/store.h"

namespace sesame::controller {

struct EtcdStoreOptions {
  EtcdClientOptions client;
  std::string prefix = "/sesame/";
  // This controller's name: its transaction marks are kept under it.
  std::string controller = "controller";
  const Clock* clock = &RealClock::Instance();
  size_t max_batch = 128;  // store operations per transaction at most
  // How long a write or a read waits for the controller's copy to catch up.
  absl::Duration sync_timeout = absl::Seconds(5);
};

class EtcdStore final : public Store {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdStore>> Open(const EtcdStoreOptions& options);
  ~EtcdStore() override;

  // In its scope, the calling thread's writes are the leader's
  // (etcd_leader.h): each is a transaction of its own that also compares
  // the leader key's creation revision with revision, and fails with
  // FailedPrecondition, changing nothing, once another controller leads.
  class FencedScope {
   public:
    explicit FencedScope(int64_t revision);
    ~FencedScope();
    FencedScope(const FencedScope&) = delete;
    FencedScope& operator=(const FencedScope&) = delete;

   private:
    int64_t previous_;
  };

  GroupCommitStats commit_stats() const { return committer_->stats(); }
  EtcdClient& client() { return *client_; }
  const EtcdKeys& keys() const { return keys_; }
  // Whether the store answers now: a linearizable read within the client's
  // timeout (false without an etcd quorum).
  absl::Status CheckReachable();

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
  // One transaction of ClaimSequences: at most count sequences.
  absl::StatusOr<std::vector<Sequence>> ClaimSome(const SequenceClaim& claim, size_t count,
                                                  const std::vector<AuditEntry>& audit);
  class Writer;
  EtcdStore(const EtcdStoreOptions& options, std::unique_ptr<EtcdClient> client);

  // Runs op inside a group-committed etcd transaction.
  absl::Status Write(absl::AnyInvocable<absl::Status(Writer&)> op);
  absl::Status WriteFenced(absl::AnyInvocable<absl::Status(Writer&)>& op, int64_t fence);
  // The copy caught up with etcd, for a read.
  absl::Status Sync() { return mirror_->Sync(sync_timeout_); }
  // Up to limit audit records from from_index on, in order.
  static absl::StatusOr<std::vector<AuditRecord>> ReadAuditFrom(EtcdClient& client, const EtcdKeys& keys,
                                                                uint64_t from_index, size_t limit);
  absl::Status ConsumeInTransaction(Writer& w, const ConsumeRequest& request, ConsumeResult& result);
  // Agents whose reports read their kept answers before the batch (one of
  // their resends was assumed answered by nobody, wrongly), until when.
  static constexpr absl::Duration kReadKeptFor = absl::Minutes(1);
  static constexpr size_t kMaxAgentsReadingKept = 4096;
  bool ReadsKeptAnswers(const std::string& agent);
  void ReadKeptAnswersOf(const std::string& agent);

  const Clock& clock_;
  const absl::Duration sync_timeout_;
  const EtcdKeys keys_;
  std::unique_ptr<EtcdClient> client_;
  std::unique_ptr<EtcdMirror> mirror_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<GroupCommitter> committer_;
  absl::Mutex fenced_mu_;
  std::unique_ptr<Writer> fenced_writer_ ABSL_GUARDED_BY(fenced_mu_);
  absl::Mutex kept_mu_;
  absl::flat_hash_map<std::string, absl::Time> read_kept_until_ ABSL_GUARDED_BY(kept_mu_);
};

}  // namespace sesame::controller
