// sesame.v1.AgentService: one long-lived Session stream per agent.
//
// The caller must present an agent certificate (IdentityResolver); its name
// is the agent's name for everything in the session, so an agent can only
// ever speak for itself. The first message must be Hello; the session then
// attaches to the FleetHub, which queues the agent's Snapshot and, after it,
// every Delta that concerns the agent.
//
// Per message from the agent (each on a WorkQueue, never on gRPC's threads):
//   Ack           -> Store::AckRevision
//   KnockMatched  -> Store::Consume (request id = message id, so a resend
//                    gets the first answer) -> KnockVerdict; the burn and the
//                    grant reach every agent through the change feed before
//                    the verdict is sent
//   GrantResult, RevokeApplied -> per-bastion grant state + audit record
//   ScannerSeen, AuditEvent    -> audit record
//   Heartbeat     -> the agent's record (last heartbeat, reserve, spool);
//                    its metrics to ControllerMetrics (when given)
// Every message except Ack and Heartbeat is confirmed by a Receipt (or the
// verdict) once durable; audit records carry origin "agent:NAME/ID", so a
// resent message is never recorded twice.
//
// Sessions are bounded: at most max_pending messages in processing (reading
// pauses beyond), at most max_queued messages waiting to be written (the
// session is ended with RESOURCE_EXHAUSTED beyond; the agent reconnects and
// gets a fresh snapshot). A second session of the same agent replaces the
// first, which ends with ABORTED; the replacement is logged and audited
// ("agent.session_replaced", with the new session's peer address, which
// every "agent.connected" record also carries).
#pragma once

#include <memory>

#include "common/clock.h"
#include "controller/service/fleet_hub.h"
#include "controller/service/peer_identity.h"
#include "controller/service/work_queue.h"
#include "controller/store/store.h"
#include "sesame/v1/agent.grpc.pb.h"

namespace sesame::controller {

class ControllerMetrics;

struct AgentServiceOptions {
  absl::Duration heartbeat_interval = absl::Seconds(10);
  size_t max_pending = 256;
  size_t max_queued = 65536;
  // Counts knock outcomes, scanners and store write latency, keeps the
  // agents' heartbeat metrics. Optional; must outlive the service.
  ControllerMetrics* metrics = nullptr;
};

class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(Store& store, FleetHub& hub, WorkQueue& work, IdentityResolver identity,
                   const Clock& clock = RealClock::Instance(), AgentServiceOptions options = {});
  // Waits for the bookkeeping of ended sessions.
  ~AgentServiceImpl() override;

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Session(
      grpc::CallbackServerContext* context) override;

 private:
  class SessionReactor;

  Store& store_;
  FleetHub& hub_;
  WorkQueue& work_;
  const IdentityResolver identity_;
  const Clock& clock_;
  const AgentServiceOptions options_;
  // One thread: the agents' records (connect, heartbeat, disconnect) are
  // written in the order sessions post them.
  WorkQueue bookkeeping_{1};
};

}  // namespace sesame::controller
