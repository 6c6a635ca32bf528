// A controller's copy of the fleet state EtcdStore keeps in etcd (head,
// doors, sequences, grants, agents; not the audit log), kept current by one
// Watch on the prefix from the last revision applied. Writes are decided
// against it (etcd_writer.h) and reads answered from it once it has caught
// up with etcd (Sync), so reads are linearizable without a round trip per
// row.
//
// Every change agents must learn about reaches the ChangeListener from
// here, in revision order, whichever controller committed it: a burn
// committed by another controller reaches this one's agents as its own do.
// A watch that breaks (member down) resumes on another member from the
// next revision; one cancelled by compaction reloads a fresh snapshot and
// hands the listener what differs from what it had.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "controller/audit/audit_record.h"
#include "controller/model/model.h"
#include "controller/store/consume_decision.h"
#include "controller/store/etcd/etcd_client.h"
#include "controller/store/etcd/etcd_keys.h"
#include "controller/store/store.h"
#include "etcd_rows.pb.h"

namespace sesame::controller {

// What every write advances, as in the head key.
struct EtcdHead {
  uint64_t revision = 0;  // fleet revision
  uint64_t last_sequence_id = 0;
  uint64_t last_grant_id = 0;
  AuditHead audit;
};

store::etcd::HeadRow ToRow(const EtcdHead& head);
absl::StatusOr<EtcdHead> FromRow(const store::etcd::HeadRow& row);

// Kept in the row of a sequence a report burnt by id: that report's request
// id and answer, for its resends (the agent is the row's consumed_by).
struct BurnAnswer {
  std::string request_id;
  ConsumptionRecord record;

  // Whether it answers agent's request_id, kept in burnt's row.
  bool Answers(const Sequence& burnt, const std::string& agent, const std::string& id) const {
    return !burnt.unused() && burnt.consumed_by == agent && request_id == id;
  }
  // The answer kept for agent's request_id among `answers` (by sequence id,
  // each sequence in `sequences`), if that request burnt sequence_id.
  static std::optional<ConsumptionRecord> Find(const std::map<uint64_t, BurnAnswer>& answers,
                                               const std::map<uint64_t, Sequence>& sequences, uint64_t sequence_id,
                                               const std::string& agent, const std::string& id) {
    auto kept = answers.find(sequence_id);
    if (kept == answers.end() || !kept->second.Answers(sequences.at(sequence_id), agent, id)) return std::nullopt;
    return kept->second.record;
  }
};

struct MirrorState {
  // Applied, and handed to the listener, through this etcd revision.
  int64_t etcd_revision = 0;
  int64_t head_mod_revision = 0;  // of the head key; 0: no head yet (empty store)
  EtcdHead head;
  std::map<std::string, Door> doors;
  std::map<uint64_t, Sequence> sequences;  // stored state: issued or burnt
  std::map<std::string, uint64_t> unused_by_knocks;  // KnocksToText -> id
  std::map<std::string, uint64_t> burnt_by_knocks;   // KnocksToText -> newest burnt id
  std::map<uint64_t, BurnAnswer> burn_answers;       // sequence id ->
  std::map<uint64_t, GrantRecord> grants;
  std::map<std::string, AgentRecord> agents;
  // By controller, from the watch (not from a snapshot): the etcd revision
  // of its last commit, and when this copy saw its last two commits and its
  // last lost commit (this copy's clock). They tell who writes now
  // (EtcdMirror::AwaitTurn).
  struct Activity {
    int64_t commit_revision = 0;
    absl::Time committed = absl::InfinitePast();
    absl::Time committed_before = absl::InfinitePast();
    absl::Time lost = absl::InfinitePast();
  };
  std::map<std::string, Activity> activity;

  // The answer kept in sequence_id's row for agent's request_id, if that
  // request burnt it.
  std::optional<ConsumptionRecord> BurnAnswerTo(uint64_t sequence_id, const std::string& agent,
                                                const std::string& request_id) const;

  // The sequence as the model reads it: live once an agent that may hold it
  // acknowledged the revision that added it.
  Sequence Effective(const Sequence& stored) const;
};

class EtcdMirror {
 public:
  EtcdMirror(EtcdClient& client, EtcdKeys keys);
  ~EtcdMirror();

  // Loads the state and starts watching.
  absl::Status Start();
  void SetListener(ChangeListener* listener);

  // Waits until every etcd revision up to revision is applied (and its
  // changes handed to the listener); Unavailable after timeout.
  absl::Status WaitFor(int64_t revision, absl::Duration timeout);
  // Catches up with etcd as it is now (one linearizable read of the head).
  absl::Status Sync(absl::Duration timeout);
  // Turns between controllers that write at once. Optimistic commits sent
  // at once all fail but one, and favour the controller whose member
  // learns of each commit first; a lost commit costs a round through etcd
  // and a batch decided again. So the controllers writing now (committed
  // twice, or lost, within kBusyWindow) take turns in name order: one
  // waits until the next after the last commit's is itself, each step at
  // most patience (the one whose turn it is may have nothing to write).
  // Alone, a controller never waits.
  void AwaitTurn(const std::string& controller, absl::Duration patience);

  // f(const MirrorState&) under the read lock.
  template <typename F>
  auto Read(F f) const {
    absl::ReaderMutexLock lock(&mu_);
    return f(state_);
  }

 private:
  struct Event {
    bool put = true;
    std::string key;
    std::string value;
    int64_t mod_revision = 0;
  };

  // A full copy of the mirrored folders at one revision.
  absl::StatusOr<MirrorState> LoadSnapshot();
  // Applies one etcd revision's events; returns the changes agents must learn.
  absl::StatusOr<std::vector<StoreChange>> ApplyLocked(const std::vector<Event>& events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyOne(MirrorState& s, const Event& e, std::vector<StoreChange>& changes);
  // Replaces the state with a fresh snapshot; the differences as changes.
  void Reload();
  void WatchLoop();
  // One watch stream until it ends; returns whether it was cancelled by
  // compaction.
  bool WatchOnce();
  void Deliver(std::vector<StoreChange> changes);

  static constexpr absl::Duration kBusyWindow = absl::Milliseconds(200);

  EtcdClient& client_;
  const EtcdKeys keys_;
  mutable absl::Mutex mu_;
  MirrorState state_ ABSL_GUARDED_BY(mu_);
  // Called on the watch thread only, so in order; never under a lock of
  // ours (the listener takes its own, and reads the store under it).
  std::atomic<ChangeListener*> listener_{nullptr};
  std::atomic<bool> stopping_{false};
  absl::Mutex context_mu_;
  grpc::ClientContext* stream_context_ ABSL_GUARDED_BY(context_mu_) = nullptr;
  std::thread watcher_;
};

}  // namespace sesame::controller
