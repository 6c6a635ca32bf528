// sesame.v1.AdminService: what sesamectl calls.
//
// Every call first establishes the caller from its certificate (an
// IdentityResolver): no identity is UNAUTHENTICATED, an identity without the
// admin role (an agent's certificate) is PERMISSION_DENIED, audited within
// bounds ("admin.refused", who = the caller's principal; a caller without
// an identity is audited by the TLS resolver, "tls.refused"). Work that waits on the store runs on a WorkQueue, never
// on gRPC's callback threads. Every
// call that changes something is audited with who = "admin:NAME" in the
// transaction that makes the change; agents learn of it through the store's
// change feed (store.h), not from this service.
#pragma once

#include <memory>

#include "common/clock.h"
#include "controller/audit/audit_log.h"
#include "controller/sequences/sequence_generator.h"
#include "controller/sequences/sequence_issuer.h"
#include "controller/service/controller_metrics.h"
#include "controller/service/peer_identity.h"
#include "controller/service/refusal_audit.h"
#include "controller/service/work_queue.h"
#include "controller/store/store.h"
#include "sesame/v1/admin.grpc.pb.h"

namespace sesame::controller {

struct AdminServiceOptions {
  absl::Duration max_grant_ttl = absl::Hours(24);
  // TailAudit with follow: how often to look for new records.
  absl::Duration tail_poll = absl::Milliseconds(250);
  // GetStats' counters and GetAgent's heartbeat metrics (the same object
  // the AgentService counts into). Null: a private one (store gauges only).
  const ControllerMetrics* metrics = nullptr;
  // Where "admin.refused" records go, within bounds (the daemon's, shared
  // with the TLS refusals and flushed by its tick). Null: a private one.
  RefusalAudit* refusals = nullptr;
  // How long issued sequences live when the request does not say
  // ([controller] Sequence_Lifetime).
  absl::Duration sequence_lifetime = kDefaultSequenceLifetime;
};

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  AdminServiceImpl(Store& store, AuditLog& audit, WorkQueue& work, IdentityResolver identity,
                   const Clock& clock = RealClock::Instance(), AdminServiceOptions options = {});

  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* context, const v1::ListAgentsRequest* request,
                                       v1::ListAgentsResponse* response) override;
  grpc::ServerUnaryReactor* GetAgent(grpc::CallbackServerContext* context, const v1::GetAgentRequest* request,
                                     v1::AgentInfo* response) override;
  grpc::ServerUnaryReactor* ListDoors(grpc::CallbackServerContext* context, const v1::ListDoorsRequest* request,
                                      v1::ListDoorsResponse* response) override;
  grpc::ServerUnaryReactor* IssueSequences(grpc::CallbackServerContext* context,
                                           const v1::IssueSequencesRequest* request,
                                           v1::IssueSequencesResponse* response) override;
  grpc::ServerUnaryReactor* ClaimReserve(grpc::CallbackServerContext* context, const v1::ClaimReserveRequest* request,
                                         v1::IssueSequencesResponse* response) override;
  grpc::ServerUnaryReactor* ListSequences(grpc::CallbackServerContext* context,
                                          const v1::ListSequencesRequest* request,
                                          v1::ListSequencesResponse* response) override;
  grpc::ServerUnaryReactor* ListGrants(grpc::CallbackServerContext* context, const v1::ListGrantsRequest* request,
                                       v1::ListGrantsResponse* response) override;
  grpc::ServerUnaryReactor* OpenGrant(grpc::CallbackServerContext* context, const v1::OpenGrantRequest* request,
                                      v1::Grant* response) override;
  grpc::ServerUnaryReactor* RevokeGrants(grpc::CallbackServerContext* context,
                                         const v1::RevokeGrantsRequest* request,
                                         v1::RevokeGrantsResponse* response) override;
  grpc::ServerWriteReactor<v1::AuditRecord>* TailAudit(grpc::CallbackServerContext* context,
                                                       const v1::TailAuditRequest* request) override;
  grpc::ServerWriteReactor<v1::ExportAuditChunk>* ExportAudit(grpc::CallbackServerContext* context,
                                                              const v1::ExportAuditRequest* request) override;
  grpc::ServerUnaryReactor* VerifyAudit(grpc::CallbackServerContext* context, const v1::VerifyAuditRequest* request,
                                        v1::VerifyAuditResponse* response) override;
  grpc::ServerUnaryReactor* GetAuditPublicKey(grpc::CallbackServerContext* context,
                                              const v1::GetAuditPublicKeyRequest* request,
                                              v1::GetAuditPublicKeyResponse* response) override;
  grpc::ServerUnaryReactor* GetAuditHead(grpc::CallbackServerContext* context, const v1::GetAuditHeadRequest* request,
                                         v1::SignedAuditHead* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context, const v1::GetStatsRequest* request,
                                     v1::GetStatsResponse* response) override;

 private:
  class TailReactor;
  class ExportReactor;

  // Authorises, then runs fn(admin) on the work queue and finishes with its
  // status.
  template <typename Fn>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, Fn fn);
  absl::StatusOr<PeerIdentity> Authorize(const grpc::CallbackServerContext& context);
  static void ShowIssued(const Sequence& q, const std::vector<AgentRecord>& bastions,
                         v1::IssueSequencesResponse& response);
  // Appends an "admin.refused" audit record (on the work queue).
  void AuditRefusal(const std::string& who, const std::string& peer, const absl::Status& why);

  Store& store_;
  AuditLog& audit_;
  WorkQueue& work_;
  const IdentityResolver identity_;
  const Clock& clock_;
  const AdminServiceOptions options_;
  SequenceGenerator generator_;
  IssueCache issue_cache_;
  const ControllerMetrics own_metrics_;
  const ControllerMetrics& metrics_;
  std::unique_ptr<RefusalAudit> own_refusals_;  // when options.refusals is null
  RefusalAudit& refusals_;
};

}  // namespace sesame::controller
