// EtcdStore::Writer, private to controller/store/etcd: one batch of store
// operations decided against the controller's copy (etcd_mirror.h) and
// committed as one etcd transaction. Operations read through it (what the
// batch wrote so far, else the copy, else etcd for what is not copied) and
// write into it; an operation that fails is undone alone.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/store/etcd/etcd_store.h"

namespace sesame::controller {

class EtcdStore::Writer final : public BatchTransaction {
 public:
  Writer(EtcdClient& client, EtcdMirror& mirror, const EtcdKeys& keys, std::string controller,
         absl::Duration sync_timeout);

  uint64_t NextRevision() { return ++head_.revision; }
  uint64_t NextSequenceId() { return ++head_.last_sequence_id; }
  uint64_t NextGrantId() { return ++head_.last_grant_id; }

  // Reads: what this batch wrote, else the copy.
  std::optional<Door> FindDoor(const std::string& name) const;
  std::optional<Sequence> FindSequence(uint64_t id) const;  // stored state
  // The unused sequence with these knocks, else the newest burnt one.
  std::optional<Sequence> FindSequenceByKnocks(const std::string& text) const;
  // An unused sequence equal to text or starting with text + ",": its id.
  std::optional<uint64_t> UnusedAtOrUnder(const std::string& text) const;
  std::optional<uint64_t> UnusedExactly(const std::string& text) const;
  // The answer kept in the row of the sequence this agent's request burnt,
  // if that request burnt it.
  std::optional<ConsumptionRecord> BurnAnswerTo(uint64_t sequence_id, const std::string& agent,
                                                const std::string& request_id) const;
  std::optional<GrantRecord> FindGrant(uint64_t id) const;
  std::optional<AgentRecord> FindAgent(const std::string& name) const;
  // A key the copy does not hold (consumption/, origin/): read from etcd
  // once per batch; nullopt when absent. The commit compares it with what
  // was read, so a batch decided on a stale read is decided again.
  absl::StatusOr<std::optional<std::string>> Fetch(const std::string& key);
  // What the caller read of such a key before queueing (in its own thread,
  // beside other callers, instead of one read after another in the batch):
  // used on the batch's first attempt only.
  void Seed(const std::string& key, const etcdserverpb::RangeResponse& read);

  void PutDoor(const Door& door);
  void PutSequence(const Sequence& sequence);
  // A sequence a report burnt, in one key with the answer kept for that
  // report's resends (BurnAnswerTo) and the grant the burn opened (from
  // OpenGrant), when there are.
  void PutBurn(const Sequence& sequence, std::optional<BurnAnswer> answer, std::optional<GrantRecord> opened);
  // A new sequence, seen by the reads above at once; PutNewSequences
  // writes those added so far as one value.
  void AddSequence(const Sequence& sequence);
  void PutNewSequences();
  void PutGrant(const GrantRecord& grant);
  // A grant a burn opens: seen by the reads above at once, written by the
  // PutBurn that follows, in the burnt sequence's key.
  void OpenGrant(const GrantRecord& grant);
  void PutAgent(const AgentRecord& agent);
  void PutRaw(const std::string& key, std::string value);

  // Seals and appends one record (or returns the one with the same origin).
  // A batch's records are one key, audit/LAST, put at the commit.
  absl::StatusOr<AuditRecord> Append(AuditEntry entry);
  absl::Status AppendAll(std::vector<AuditEntry> entries);

  // Every commit also compares the leader key's creation revision with
  // fence (FencedScope); 0: no fence.
  void set_fence(int64_t fence) { fence_ = fence; }

  absl::Status Begin() override;
  absl::Status BeginOperation() override;
  absl::Status EndOperation(bool ok) override;
  absl::Status Commit() override;
  void Rollback() override;

 private:
  // etcd's default --max-txn-ops; the head and the mark take two.
  static constexpr size_t kMaxTxnOps = 128;
  static constexpr size_t kMaxOperationOps = kMaxTxnOps - 2;
  // Undone in reverse when the operation or the batch is rolled back.
  void OnUndo(std::function<void()> undo) { undo_.push_back(std::move(undo)); }
  template <typename Map, typename Key>
  void Remember(Map& map, const Key& key);
  void Clear();
  void PutSequenceRow(const Sequence& sequence, const store::etcd::SequenceRow& row);
  // A record whose origin key named it: appended by this batch, or read.
  absl::StatusOr<AuditRecord> RecordAt(uint64_t index, const std::string& origin);
  size_t PutCount() const { return puts_.size() + (appended_.empty() ? 0 : 1); }
  absl::Status Refetch();
  // The answer of a transaction that may or may not have committed.
  absl::Status Resolve(const std::string& mark, const absl::Status& error);

  EtcdClient& client_;
  EtcdMirror& mirror_;
  const EtcdKeys& keys_;
  const std::string controller_;
  const absl::Duration sync_timeout_;

  int64_t base_mod_revision_ = 0;  // the head key's, as the batch began
  int64_t fence_ = 0;
  EtcdHead head_;
  // This batch's writes by key (etcd allows one write per key per
  // transaction: the last one wins), and typed for reading.
  std::map<std::string, std::string> puts_;
  std::map<std::string, Door> doors_;
  std::map<uint64_t, Sequence> sequences_;
  std::map<std::string, uint64_t> unused_by_knocks_;  // added or still unused here
  std::set<uint64_t> burnt_here_;
  std::map<std::string, uint64_t> burnt_by_knocks_;
  std::map<uint64_t, GrantRecord> grants_;
  std::map<std::string, AgentRecord> agents_;
  std::map<uint64_t, BurnAnswer> burn_answers_;
  std::vector<AuditRecord> appended_;  // this batch's records, in order
  struct Fetched {
    std::optional<std::string> value;
    int64_t mod_revision = 0;  // 0: absent
  };
  std::map<std::string, Fetched> fetched_;  // read from etcd for this batch
  bool retry_ = false;                      // the last commit lost: seeds are stale
  // After a lost commit, the keys its batch had read: read again together
  // (one transaction of reads) when the batch is decided again.
  std::vector<std::string> refetch_;
  std::vector<std::function<void()>> undo_;
  size_t op_undo_ = 0;
  EtcdHead op_head_;
  std::vector<Sequence> new_sequences_;  // added, not yet put
};

}  // namespace sesame::controller
