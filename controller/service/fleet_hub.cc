#include "controller/service/fleet_hub.h"

#include "common/status_macros.h"
#include "controller/service/wire_convert.h"

namespace sesame::controller {
namespace {

v1::HeldSequence ToHeld(const Sequence& q) {
  v1::HeldSequence out;
  out.set_id(q.id);
  out.set_door(q.door);
  AppendWireKnocks(q.knocks, out.mutable_knocks());
  out.set_reserve(!q.reserve_agent.empty());
  if (q.expires_at != absl::InfiniteFuture()) *out.mutable_expires_at() = ToWireTime(q.expires_at);
  return out;
}

bool SequenceConcerns(const Sequence& q, const std::string& agent) {
  return q.reserve_agent.empty() || q.reserve_agent == agent;
}

bool GrantConcerns(const GrantRecord& g, const std::string& agent) { return g.fleet_wide || g.agent == agent; }

}  // namespace

absl::StatusOr<std::unique_ptr<FleetHub>> FleetHub::Create(Store& store, const Clock& clock) {
  std::unique_ptr<FleetHub> hub(new FleetHub(store, clock));
  // Subscribe, then load while holding the lock: changes committed meanwhile
  // wait in OnCommitted until the state is in place, and those the load
  // already saw (revision <= the loaded one) are skipped there.
  absl::MutexLock lock(&hub->mu_);
  store.SetChangeListener(hub.get());
  absl::StatusOr<FleetState> state = store.LoadFleetState();
  if (!state.ok()) {
    store.SetChangeListener(nullptr);
    return state.status();
  }
  hub->revision_ = state->revision;
  hub->dispatcher_ = std::thread([h = hub.get()] { h->DispatchLoop(); });
  for (Door& d : state->doors) hub->doors_.emplace(d.name, std::move(d));
  for (Sequence& q : state->unused_sequences) hub->unused_.emplace(q.id, std::move(q));
  for (GrantRecord& g : state->open_grants) hub->open_grants_.emplace(g.id, std::move(g));
  return hub;
}

FleetHub::~FleetHub() {
  store_.SetChangeListener(nullptr);
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
  }
  if (dispatcher_.joinable()) dispatcher_.join();
}

AgentLink* FleetHub::Attach(AgentLink* link, absl::Duration heartbeat_interval, bool parts) {
  const std::string& agent = link->agent();
  std::vector<v1::ControllerMessage> messages(1);
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  v1::Snapshot* first = messages[0].mutable_snapshot();
  first->set_revision(revision_);
  for (const auto& [name, door] : doors_) *first->add_doors() = ToWire(door);
  *first->mutable_controller_time() = ToWireTime(now);
  *first->mutable_heartbeat_interval() = ToWireDuration(heartbeat_interval);
  int items = 0;
  // The part the next sequence or grant goes into.
  auto part = [&]() -> v1::Snapshot* {
    if (parts && items == kSnapshotPartItems) {
      messages.back().mutable_snapshot()->set_more(true);
      messages.emplace_back().mutable_snapshot()->set_revision(revision_);
      items = 0;
    }
    ++items;
    return messages.back().mutable_snapshot();
  };
  for (const auto& [id, q] : unused_) {
    if (SequenceConcerns(q, agent)) *part()->add_sequences() = ToHeld(q);
  }
  for (const auto& [id, g] : open_grants_) {
    if (GrantConcerns(g, agent) && g.expires_at > now) *part()->add_grants() = ToWire(g, /*with_agents=*/false);
  }
  AgentLink* previous = nullptr;
  absl::MutexLock links_lock(&links_mu_);
  auto [it, inserted] = links_.try_emplace(agent, Attached{link, revision_});
  if (!inserted) {
    previous = it->second.link;
    it->second = Attached{link, revision_};
  }
  // Queued before the link is visible to the dispatcher: no delta can
  // overtake it.
  for (v1::ControllerMessage& m : messages) link->Send(std::move(m));
  return previous;
}

bool FleetHub::Detach(AgentLink* link) {
  absl::MutexLock lock(&links_mu_);
  auto it = links_.find(link->agent());
  if (it == links_.end() || it->second.link != link) return false;
  links_.erase(it);
  return true;
}

void FleetHub::CloseAll(const absl::Status& why) {
  absl::MutexLock lock(&links_mu_);
  for (const auto& [name, a] : links_) a.link->Close(why);
}

void FleetHub::CloseWhere(const std::function<absl::Status(AgentLink&)>& judge) {
  absl::MutexLock lock(&links_mu_);
  for (const auto& [name, a] : links_) {
    absl::Status why = judge(*a.link);
    if (!why.ok()) a.link->Close(std::move(why));
  }
}

bool FleetHub::IsAttached(const std::string& agent) const {
  absl::MutexLock lock(&links_mu_);
  return links_.contains(agent);
}

std::map<std::pair<std::string, std::string>, size_t> FleetHub::UnusedReserves() const {
  absl::MutexLock lock(&mu_);
  std::map<std::pair<std::string, std::string>, size_t> out;
  for (const auto& [id, q] : unused_) {
    if (!q.reserve_agent.empty()) ++out[{q.reserve_agent, q.door}];
  }
  return out;
}

size_t FleetHub::sessions() const {
  absl::MutexLock lock(&links_mu_);
  return links_.size();
}

uint64_t FleetHub::revision() const {
  absl::MutexLock lock(&mu_);
  return revision_;
}

void FleetHub::Queue(uint64_t revision, std::string only_agent, v1::ControllerMessage message) {
  absl::MutexLock lock(&queue_mu_);
  queue_.push_back(Outgoing{revision, std::move(only_agent), std::move(message)});
}

void FleetHub::DispatchLoop() {
  std::deque<Outgoing> batch;
  for (;;) {
    {
      absl::MutexLock lock(&queue_mu_);
      queue_mu_.Await(absl::Condition(
          +[](FleetHub* h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(h->queue_mu_) { return !h->queue_.empty() || h->stopping_; },
          this));
      if (queue_.empty()) return;  // stopping, all sent
      batch.swap(queue_);
    }
    absl::MutexLock lock(&links_mu_);
    for (const Outgoing& out : batch) {
      auto send = [&out](const Attached& a) {
        if (out.revision > a.snapshot_revision) a.link->Send(out.message);
      };
      if (out.only_agent.empty()) {
        for (const auto& [name, a] : links_) send(a);
        continue;
      }
      // The others get the revision alone, so that every agent acknowledges
      // every revision and "acknowledged = the controller's revision" means
      // in step, whatever concerned whom.
      v1::ControllerMessage marker;
      marker.mutable_delta()->set_revision(out.revision);
      for (const auto& [name, a] : links_) {
        if (name == out.only_agent) {
          send(a);
        } else if (out.revision > a.snapshot_revision) {
          a.link->Send(marker);
        }
      }
    }
    batch.clear();
  }
}

void FleetHub::OnCommitted(const std::vector<StoreChange>& changes) {
  absl::MutexLock lock(&mu_);
  for (const StoreChange& c : changes) {
    if (c.revision <= revision_) continue;  // already in the loaded state
    revision_ = c.revision;
    v1::ControllerMessage message;
    v1::Delta* delta = message.mutable_delta();
    delta->set_revision(c.revision);
    switch (c.kind) {
      case StoreChange::Kind::kSequenceAdded:
        unused_[c.sequence.id] = c.sequence;
        *delta->mutable_sequence_added() = ToHeld(c.sequence);
        Queue(c.revision, c.sequence.reserve_agent, std::move(message));
        break;
      case StoreChange::Kind::kSequenceBurnt:
        unused_.erase(c.sequence.id);
        delta->mutable_sequence_burnt()->set_sequence_id(c.sequence.id);
        delta->mutable_sequence_burnt()->set_door(c.sequence.door);
        Queue(c.revision, c.sequence.reserve_agent, std::move(message));
        break;
      case StoreChange::Kind::kGrantOpened:
        open_grants_[c.grant.id] = c.grant;
        *delta->mutable_grant() = ToWire(c.grant, /*with_agents=*/false);
        Queue(c.revision, c.grant.fleet_wide ? std::string() : c.grant.agent, std::move(message));
        break;
      case StoreChange::Kind::kGrantClosed: {
        open_grants_.erase(c.grant.id);
        v1::Revoke* revoke = delta->mutable_revoke();
        revoke->set_grant_id(c.grant.id);
        revoke->set_address(c.grant.address.ToString());
        revoke->set_door(c.grant.door);
        revoke->set_kill_sessions(c.grant.kill_sessions);
        Queue(c.revision, c.grant.fleet_wide ? std::string() : c.grant.agent, std::move(message));
        break;
      }
      case StoreChange::Kind::kDoorChanged:
        doors_[c.door.name] = c.door;
        *delta->mutable_door_changed()->mutable_door() = ToWire(c.door);
        Queue(c.revision, "", std::move(message));
        break;
    }
  }
}

}  // namespace sesame::controller
