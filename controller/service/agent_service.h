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
//   KnockMatched  -> the agent's rate limits, then Store::Consume (request
//                    id = message id, so a resend gets the first answer),
//                    checked against what this agent could have seen
//                    (consume_decision.h) -> KnockVerdict; the burn and the
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
// A bastion is trusted for its own traffic only:
//   - Knock reports are checked by the store's decision against the
//     sequence, the knocker's address (not the controller's or a known
//     bastion's own, own_addresses.h) and the agent's clock.
//   - Per agent, knock reports and the grants they order are rate-limited
//     (options.limits, agent_rate_limits.h): a report over a limit gets
//     the verdict REFUSED and nothing is consumed, except a report of a knock
//     admitted offline, which gets no answer (the agent keeps it spooled and
//     resends it at its next session; its reserve sequence stays spent
//     there). Refusals are counted (sesame_controller_rate_limited_total),
//     logged once per window and recorded once per window
//     (FlushRefusalWindows: "knock.refused", reason "rate_limit", with the
//     count), never one record per report.
//   - Times agents send are not trusted: every record's time is the
//     controller's; the agent's time is the detail "agent_time", or, more
//     than a day off, "agent_time_refused" (and a knock report is refused).
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
#include "common/ip_address.h"
#include "controller/service/agent_rate_limits.h"
#include "controller/service/fleet_hub.h"
#include "controller/service/own_addresses.h"
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
  // Per agent: knock reports and grant orders.
  AgentLimits limits;
  // The controller's own addresses (LocalAddresses); the bastions' are
  // learnt from the store and their sessions.
  std::vector<IpAddress> controller_addresses;
};

class ClientCertificates;

class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(Store& store, FleetHub& hub, WorkQueue& work, IdentityResolver identity,
                   const Clock& clock = RealClock::Instance(), AgentServiceOptions options = {});
  // Waits for the bookkeeping of ended sessions.
  ~AgentServiceImpl() override;

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Session(
      grpc::CallbackServerContext* context) override;

  // Records the rate-limit refusal windows that have passed (all of them
  // with all = true), one "knock.refused" record each. Call every second
  // or so; the destructor records what is left.
  void FlushRefusalWindows(bool all = false);
  // Not serving (the store is unusable: no etcd quorum, a lost database):
  // every session ends with UNAVAILABLE and new ones are refused, so agents
  // move to another controller or, with none, admit through their reserves.
  void SetServing(bool serving, const std::string& reason);
  // Ends the sessions whose client certificate `clients` now refuses (the
  // CA bundle or the CRLs changed): a revoked agent does not keep the
  // session it had.
  void RecheckCertificates(ClientCertificates& clients);

 private:
  class SessionReactor;

  Store& store_;
  FleetHub& hub_;
  WorkQueue& work_;
  const IdentityResolver identity_;
  const Clock& clock_;
  const AgentServiceOptions options_;
  AgentRateLimiter limiter_;
  OwnAddressBook own_addresses_;
  // One thread: the agents' records (connect, heartbeat, disconnect) are
  // written in the order sessions post them.
  WorkQueue bookkeeping_{1};
  absl::Mutex serving_mu_;
  std::string not_serving_ ABSL_GUARDED_BY(serving_mu_);  // why, while not serving
};

}  // namespace sesame::controller
