// The connected agents and what each must hold.
//
// The hub keeps the fleet's state in memory (doors, unused sequences, open
// grants), loaded from the store once and then kept current by the store's
// change feed, which arrives in revision order right after each commit. Each
// change becomes a Delta for the agents it concerns:
//   - sequence added / burnt: every agent for a fleet sequence, the reserve
//     agent alone for a reserve sequence;
//   - grant opened / closed: the grant's agent, or every agent when it is
//     fleet-wide;
//   - door changed: every agent.
// The store's writer thread only updates the state and queues the deltas;
// a dispatcher thread of the hub writes them to the sessions, so a fan-out
// to a thousand agents never holds up a commit.
// Attaching an agent takes its Snapshot at the state's revision R and
// registers the link with R in one critical section; the dispatcher skips,
// for that link, every delta at or below R (already in the snapshot) and
// sends it every delta above R after the snapshot: nothing is missed,
// nothing comes twice, whatever commits meanwhile. Every door is served by every
// agent (there is no door-to-bastion assignment yet).
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/store/store.h"
#include "sesame/v1/agent.pb.h"

namespace sesame::controller {

// One agent's session, as the hub sees it.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  virtual const std::string& agent() const = 0;
  // Queues a message for the agent. Never blocks; a link that is closing
  // drops it.
  virtual void Send(v1::ControllerMessage message) = 0;
  // Ends the session (e.g. replaced by a newer one).
  virtual void Close(absl::Status why) = 0;
};

class FleetHub final : public ChangeListener {
 public:
  // Loads the state and subscribes to the store's changes. The store must
  // outlive the hub; the hub unsubscribes when destroyed, after sending
  // what it had queued.
  static absl::StatusOr<std::unique_ptr<FleetHub>> Create(Store& store, const Clock& clock = RealClock::Instance());
  ~FleetHub() override;

  // Registers link as agent link->agent() and queues its Snapshot on it:
  // in parts of at most kSnapshotPartItems sequences and grants when the
  // agent accepts parts (Hello.accepts_snapshot_parts), else whole. A
  // previous link of the same agent is detached and returned (the caller
  // closes it); nullptr otherwise.
  AgentLink* Attach(AgentLink* link, absl::Duration heartbeat_interval, bool parts = false);
  // About 40 bytes a sequence on the wire: a part stays near 400 KB.
  static constexpr int kSnapshotPartItems = 10000;
  // Unregisters link; true when it was the agent's current link (false when
  // a newer session replaced it). After it returns, the hub never touches
  // link again.
  bool Detach(AgentLink* link);
  bool IsAttached(const std::string& agent) const;
  // Ends every agent's session (the controller stops serving: they go to
  // another controller). Links detach as their sessions end.
  void CloseAll(const absl::Status& why);
  // Ends the sessions `judge` finds wrong (non-OK: the reason given to the
  // agent). Called with the links held: keep it short, never Attach/Detach.
  void CloseWhere(const std::function<absl::Status(AgentLink&)>& judge);
  size_t sessions() const;
  // Unused reserve sequences held, by (agent, door): what the leader tops
  // up, read from memory (a walk of the unused ones, no store query).
  std::map<std::pair<std::string, std::string>, size_t> UnusedReserves() const;
  uint64_t revision() const;

  void OnCommitted(const std::vector<StoreChange>& changes) override;

 private:
  struct Outgoing {
    uint64_t revision;
    std::string only_agent;  // empty: every agent
    v1::ControllerMessage message;
  };
  struct Attached {
    AgentLink* link;
    uint64_t snapshot_revision;
  };

  FleetHub(Store& store, const Clock& clock) : store_(store), clock_(clock) {}
  void Queue(uint64_t revision, std::string only_agent, v1::ControllerMessage message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DispatchLoop();

  Store& store_;
  const Clock& clock_;

  // The fleet's state. Lock order: mu_, then links_mu_.
  mutable absl::Mutex mu_;
  uint64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, Door> doors_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Sequence> unused_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, GrantRecord> open_grants_ ABSL_GUARDED_BY(mu_);

  // The sessions; held by the dispatcher while it writes to them.
  mutable absl::Mutex links_mu_ ABSL_ACQUIRED_AFTER(mu_);
  absl::flat_hash_map<std::string, Attached> links_ ABSL_GUARDED_BY(links_mu_);

  absl::Mutex queue_mu_;
  std::deque<Outgoing> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::thread dispatcher_;
};

}  // namespace sesame::controller
