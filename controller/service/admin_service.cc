#include "controller/service/admin_service.h"

#include <grpcpp/alarm.h>

#include <atomic>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/metric_wire.h"
#include "common/status_macros.h"
#include "controller/audit/audit_export.h"
#include "controller/sequences/sequence_issuer.h"
#include "controller/service/wire_convert.h"

namespace sesame::controller {
namespace {

constexpr size_t kDefaultListLimit = 1000;
constexpr size_t kMaxListLimit = 10000;
constexpr size_t kTailPage = 500;
constexpr size_t kExportChunk = 64 * 1024;
// Saved heads one VerifyAudit may check (a head is about 200 bytes on the
// wire, so this stays far below gRPC's 4 MiB message limit).
constexpr int kMaxVerifyHeads = 10000;

size_t ListLimit(uint32_t requested) {
  if (requested == 0) return kDefaultListLimit;
  return std::min<size_t>(requested, kMaxListLimit);
}

void FillAgentInfo(const AgentRecord& a, uint64_t revision, v1::AgentInfo* out) {
  out->set_name(a.name);
  out->set_connected(a.connected);
  out->set_version(a.version);
  if (a.connected_at != absl::InfinitePast()) *out->mutable_connected_at() = ToWireTime(a.connected_at);
  if (!a.connected && a.disconnected_at != absl::InfinitePast()) {
    *out->mutable_disconnected_at() = ToWireTime(a.disconnected_at);
  }
  if (a.last_heartbeat != absl::InfinitePast()) *out->mutable_last_heartbeat() = ToWireTime(a.last_heartbeat);
  out->set_acked_revision(a.acked_revision);
  out->set_revision(revision);
  out->set_reserve_left(static_cast<uint32_t>(std::max(0, a.reserve_left)));
  out->set_spool_depth(static_cast<uint32_t>(std::max(0, a.spool_depth)));
  out->set_last_error(a.last_error);
  for (const std::string& host : a.advertise_hosts) out->add_advertise_hosts(host);
}

// What the agent's last heartbeat said about the sequences it holds.
struct HeldSequences {
  uint64_t held = 0;
  uint64_t capacity = 0;  // 0: not known
};
HeldSequences HeldBy(const ControllerMetrics& metrics, const std::string& agent) {
  HeldSequences h;
  for (const v1::Metric& m : metrics.AgentMetrics(agent)) {
    if (m.value() < 0 || m.value() > 1e12) continue;
    if (m.name() == "sesame_agent_managed_sequences") h.held = static_cast<uint64_t>(m.value());
    if (m.name() == "sesame_agent_managed_sequences_capacity") h.capacity = static_cast<uint64_t>(m.value());
  }
  return h;
}

void FillHeld(const ControllerMetrics& metrics, const std::string& agent, v1::AgentInfo* out) {
  const HeldSequences h = HeldBy(metrics, agent);
  out->set_sequences_held(h.held);
  out->set_sequences_capacity(h.capacity);
}

std::string KnockCommand(const std::string& host, const std::vector<Knock>& knocks) {
  std::string out = absl::StrCat("knock ", host);
  for (const Knock& k : knocks) absl::StrAppend(&out, " ", KnockToString(k));
  return out;
}

}  // namespace

AdminServiceImpl::AdminServiceImpl(Store& store, AuditLog& audit, WorkQueue& work,
                                   IdentityResolver identity, const Clock& clock, AdminServiceOptions options)
    : store_(store),
      audit_(audit),
      work_(work),
      identity_(std::move(identity)),
      clock_(clock),
      options_(options),
      metrics_(options.metrics != nullptr ? *options.metrics : own_metrics_),
      own_refusals_(options.refusals != nullptr ? nullptr
                                                : std::make_unique<RefusalAudit>(audit, work, clock, nullptr)),
      refusals_(options.refusals != nullptr ? *options.refusals : *own_refusals_) {}

absl::StatusOr<PeerIdentity> AdminServiceImpl::Authorize(const grpc::CallbackServerContext& context) {
  absl::StatusOr<PeerIdentity> who = identity_(context);
  if (who.ok() && who->role != PeerRole::kAdmin) {
    const std::string principal = who->principal();
    who = absl::PermissionDeniedError(
        absl::StrCat("AdminService needs an admin certificate; ", principal, " is not one"));
    AuditRefusal(principal, context.peer(), who.status());
  }
  // A caller the resolver refused was audited there ("tls.refused").
  return who;
}

// A refused caller has a current certificate of the CA but may not call
// AdminService: an agent's certificate, or one without a sesame identity.
// Recorded within bounds (RefusalAudit), off gRPC's thread.
void AdminServiceImpl::AuditRefusal(const std::string& who, const std::string& peer, const absl::Status& why) {
  AuditEntry entry;
  entry.time = clock_.Now();
  entry.who = who;
  entry.what = "admin.refused";
  entry.where = "controller";
  entry.details = {{"peer", peer.substr(0, 256)}, {"reason", std::string(why.message().substr(0, 512))}};
  refusals_.Record(std::move(entry));
}

template <typename Fn>
grpc::ServerUnaryReactor* AdminServiceImpl::Unary(grpc::CallbackServerContext* context, Fn fn) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<PeerIdentity> who = Authorize(*context);
  if (!who.ok()) {
    reactor->Finish(ToGrpcStatus(who.status()));
    return reactor;
  }
  work_.Post([reactor, fn = std::move(fn), admin = *std::move(who)]() mutable {
    reactor->Finish(ToGrpcStatus(fn(admin)));
  });
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListAgents(grpc::CallbackServerContext* context,
                                                       const v1::ListAgentsRequest*,
                                                       v1::ListAgentsResponse* response) {
  return Unary(context, [this, response](const PeerIdentity&) -> absl::Status {
    ASSIGN_OR_RETURN(uint64_t revision, store_.CurrentRevision());
    ASSIGN_OR_RETURN(std::vector<AgentRecord> agents, store_.ListAgents());
    for (const AgentRecord& a : agents) {
      v1::AgentInfo* info = response->add_agents();
      FillAgentInfo(a, revision, info);
      FillHeld(metrics_, a.name, info);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetAgent(grpc::CallbackServerContext* context,
                                                     const v1::GetAgentRequest* request, v1::AgentInfo* response) {
  return Unary(context, [this, request, response](const PeerIdentity&) -> absl::Status {
    ASSIGN_OR_RETURN(uint64_t revision, store_.CurrentRevision());
    ASSIGN_OR_RETURN(AgentRecord agent, store_.GetAgent(request->name()));
    FillAgentInfo(agent, revision, response);
    FillHeld(metrics_, agent.name, response);
    for (v1::Metric& m : metrics_.AgentMetrics(agent.name)) *response->add_metrics() = std::move(m);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListDoors(grpc::CallbackServerContext* context,
                                                      const v1::ListDoorsRequest*, v1::ListDoorsResponse* response) {
  return Unary(context, [this, response](const PeerIdentity&) -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<Door> doors, store_.ListDoors());
    for (const Door& d : doors) *response->add_doors() = ToWire(d);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::IssueSequences(grpc::CallbackServerContext* context,
                                                           const v1::IssueSequencesRequest* request,
                                                           v1::IssueSequencesResponse* response) {
  return Unary(context, [this, request, response](const PeerIdentity& admin) -> absl::Status {
    IssueRequest issue;
    issue.door = request->door();
    issue.count = request->count();
    issue.issued_to = request->issued_to().empty() ? admin.name : request->issued_to();
    if (!IsValidName(issue.issued_to) || issue.issued_to == kUnclaimedReserve) {
      return absl::InvalidArgumentError("issued_to: expected a name of [A-Za-z0-9_.-]{1,64}, not \"unclaimed\"");
    }
    issue.reserve_agent = request->reserve_agent();
    issue.actor = admin.principal();
    const absl::Time now = clock_.Now();
    issue.expires_at = request->has_expires_at() ? FromWireTime(request->expires_at())
                                                  : now + options_.sequence_lifetime;
    if (issue.expires_at <= now) return absl::InvalidArgumentError("expires_at: expected a time in the future");
    if (issue.expires_at > now + kMaxSequenceLifetime) {
      return absl::InvalidArgumentError(absl::StrCat("expires_at: at most ",
                                                     absl::ToInt64Hours(kMaxSequenceLifetime) / 24,
                                                     " days ahead"));
    }
    // Where the sequences can be knocked: the reserve's own bastion, or
    // every bastion for fleet sequences.
    std::vector<AgentRecord> bastions;
    if (!issue.reserve_agent.empty()) {
      ASSIGN_OR_RETURN(AgentRecord agent, store_.GetAgent(issue.reserve_agent));
      bastions.push_back(std::move(agent));
    } else {
      ASSIGN_OR_RETURN(bastions, store_.ListAgents());
    }
    // Sequences past a bastion's capacity would wait there unrecognised:
    // refused while it is known (its last heartbeat to this controller).
    for (const AgentRecord& b : bastions) {
      const HeldSequences h = HeldBy(metrics_, b.name);
      if (h.capacity == 0 || h.held + issue.count <= h.capacity) continue;
      return absl::ResourceExhaustedError(absl::StrCat(
          "bastion ", b.name, " holds ", h.held, " sequences and recognises at most ", h.capacity, " at once: ",
          issue.count, " more would not all be recognised there"));
    }
    ASSIGN_OR_RETURN(std::vector<Sequence> issued,
                     controller::IssueSequences(store_, generator_, issue, clock_, &issue_cache_));
    for (const Sequence& q : issued) ShowIssued(q, bastions, *response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ClaimReserve(grpc::CallbackServerContext* context,
                                                         const v1::ClaimReserveRequest* request,
                                                         v1::IssueSequencesResponse* response) {
  return Unary(context, [this, request, response](const PeerIdentity& admin) -> absl::Status {
    SequenceClaim claim;
    claim.reserve_agent = request->agent();
    claim.door = request->door();
    claim.count = request->count() == 0 ? 1 : request->count();
    claim.claimant = request->claimed_by().empty() ? admin.name : request->claimed_by();
    if (!IsValidName(claim.claimant) || claim.claimant == kUnclaimedReserve) {
      return absl::InvalidArgumentError("claimed_by: expected a name of [A-Za-z0-9_.-]{1,64}, not \"unclaimed\"");
    }
    ASSIGN_OR_RETURN(AgentRecord agent, store_.GetAgent(claim.reserve_agent));
    AuditEntry audit;
    audit.time = clock_.Now();
    audit.who = admin.principal();
    audit.what = "sequences.claimed";
    audit.where = "controller";
    audit.details = {{"reserve_agent", claim.reserve_agent}, {"claimed_by", claim.claimant}};
    if (!claim.door.empty()) audit.details["door"] = claim.door;
    ASSIGN_OR_RETURN(std::vector<Sequence> claimed, store_.ClaimSequences(claim, {std::move(audit)}));
    for (const Sequence& q : claimed) ShowIssued(q, {agent}, *response);
    return absl::OkStatus();
  });
}

// A sequence shown to its holder: its knocks, its expiry, and a knock(1)
// command line for every host of the bastions where it works.
void AdminServiceImpl::ShowIssued(const Sequence& q, const std::vector<AgentRecord>& bastions,
                                  v1::IssueSequencesResponse& response) {
  v1::IssuedSequence* out = response.add_sequences();
  out->set_id(q.id);
  out->set_door(q.door);
  AppendWireKnocks(q.knocks, out->mutable_knocks());
  *out->mutable_expires_at() = ToWireTime(q.expires_at);
  for (const AgentRecord& b : bastions) {
    for (const std::string& host : b.advertise_hosts) {
      v1::KnockCommand* c = out->add_commands();
      c->set_agent(b.name);
      c->set_host(host);
      c->set_command(KnockCommand(host, q.knocks));
    }
  }
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListSequences(grpc::CallbackServerContext* context,
                                                          const v1::ListSequencesRequest* request,
                                                          v1::ListSequencesResponse* response) {
  return Unary(context, [this, request, response](const PeerIdentity&) -> absl::Status {
    SequenceFilter filter;
    filter.door = request->door();
    if (request->state() != v1::SEQUENCE_STATE_UNSPECIFIED) {
      ASSIGN_OR_RETURN(filter.state, FromWire(request->state()));
    }
    filter.reserve_agent = request->reserve_agent();
    filter.limit = ListLimit(request->limit());
    ASSIGN_OR_RETURN(std::vector<Sequence> sequences, store_.ListSequences(filter));
    for (const Sequence& q : sequences) {
      // Never the knocks: they were shown once, when issued.
      v1::SequenceInfo* out = response->add_sequences();
      out->set_id(q.id);
      out->set_door(q.door);
      out->set_state(ToWire(q.state));
      out->set_issued_to(q.issued_to);
      *out->mutable_issued_at() = ToWireTime(q.issued_at);
      out->set_reserve_agent(q.reserve_agent);
      if (q.expires_at != absl::InfiniteFuture()) *out->mutable_expires_at() = ToWireTime(q.expires_at);
      if (q.state == SequenceState::kBurnt) {
        out->set_consumed_by(q.consumed_by);
        if (q.consumed_from) out->set_consumed_from(q.consumed_from->ToString());
        *out->mutable_consumed_at() = ToWireTime(q.consumed_at);
        out->set_expired(q.expired);
      }
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListGrants(grpc::CallbackServerContext* context,
                                                       const v1::ListGrantsRequest* request,
                                                       v1::ListGrantsResponse* response) {
  return Unary(context, [this, request, response](const PeerIdentity&) -> absl::Status {
    GrantFilter filter;
    filter.open_only = !request->all();
    if (!request->address().empty()) {
      filter.address = IpAddress::Parse(request->address());
      if (!filter.address) return absl::InvalidArgumentError("address: expected an IPv4 or IPv6 address");
    }
    filter.limit = ListLimit(request->limit());
    ASSIGN_OR_RETURN(std::vector<GrantRecord> grants, store_.ListGrants(filter));
    for (const GrantRecord& g : grants) *response->add_grants() = ToWire(g, /*with_agents=*/true);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::OpenGrant(grpc::CallbackServerContext* context,
                                                      const v1::OpenGrantRequest* request, v1::Grant* response) {
  return Unary(context, [this, request, response](const PeerIdentity& admin) -> absl::Status {
    std::optional<IpAddress> address = IpAddress::Parse(request->address());
    if (!address) return absl::InvalidArgumentError("address: expected an IPv4 or IPv6 address");
    if (request->fleet_wide() == !request->agent().empty()) {
      return absl::InvalidArgumentError("give either agent or fleet_wide");
    }
    ASSIGN_OR_RETURN(Door door, store_.GetDoor(request->door()));
    if (!request->fleet_wide()) {
      ASSIGN_OR_RETURN(AgentRecord agent, store_.GetAgent(request->agent()));
      (void)agent;
    }
    absl::Duration ttl = door.policy.grant_ttl;
    if (request->has_ttl()) {
      ttl = FromWireDuration(request->ttl());
      if (ttl <= absl::ZeroDuration() || ttl > options_.max_grant_ttl) {
        return absl::InvalidArgumentError(
            absl::StrCat("ttl: expected more than 0 and at most ", absl::FormatDuration(options_.max_grant_ttl)));
      }
    }
    NewGrant grant;
    grant.door = door.name;
    grant.address = *address;
    grant.ports = door.policy.grant_ports;
    grant.agent = request->agent();
    grant.fleet_wide = request->fleet_wide();
    grant.expires_at = clock_.Now() + ttl;
    grant.opened_by = admin.principal();
    AuditEntry audit;
    audit.time = clock_.Now();
    audit.who = admin.principal();
    audit.what = "grant.opened";
    audit.where = grant.fleet_wide ? "fleet" : absl::StrCat("agent:", grant.agent);
    audit.details = {{"address", address->ToString()}, {"door", door.name}, {"ttl", absl::FormatDuration(ttl)}};
    ASSIGN_OR_RETURN(GrantRecord opened, store_.AddGrant(grant, {std::move(audit)}));
    *response = ToWire(opened, /*with_agents=*/true);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RevokeGrants(grpc::CallbackServerContext* context,
                                                         const v1::RevokeGrantsRequest* request,
                                                         v1::RevokeGrantsResponse* response) {
  return Unary(context, [this, request, response](const PeerIdentity& admin) -> absl::Status {
    std::vector<uint64_t> ids;
    if (request->target_case() == v1::RevokeGrantsRequest::kGrantId) {
      ASSIGN_OR_RETURN(GrantRecord g, store_.GetGrant(request->grant_id()));
      ids.push_back(g.id);
    } else if (request->target_case() == v1::RevokeGrantsRequest::kAddress) {
      GrantFilter filter;
      filter.address = IpAddress::Parse(request->address());
      if (!filter.address) return absl::InvalidArgumentError("address: expected an IPv4 or IPv6 address");
      ASSIGN_OR_RETURN(std::vector<GrantRecord> open, store_.ListGrants(filter));
      for (const GrantRecord& g : open) ids.push_back(g.id);
    } else {
      return absl::InvalidArgumentError("give grant_id or address");
    }
    for (uint64_t id : ids) {
      AuditEntry audit;
      audit.time = clock_.Now();
      audit.who = admin.principal();
      audit.what = "grant.revoked";
      audit.where = "controller";
      ASSIGN_OR_RETURN(GrantRecord before, store_.GetGrant(id));
      if (before.state != GrantState::kOpen) continue;
      audit.details = {{"address", before.address.ToString()}, {"door", before.door}};
      if (request->kill_sessions()) audit.details["kill_sessions"] = "true";
      ASSIGN_OR_RETURN(GrantRecord closed,
                       store_.CloseGrant(id, GrantState::kRevoked, request->kill_sessions(), {std::move(audit)}));
      if (closed.revision == before.revision) continue;  // closed by someone else meanwhile
      response->add_grant_ids(id);
    }
    return absl::OkStatus();
  });
}

// Streams records from a position; with follow, keeps polling for new ones
// until the client goes away. One chain of work at a time: a fetch on the
// work queue, then writes one by one, then the next fetch (or a timer).
class AdminServiceImpl::TailReactor final : public grpc::ServerWriteReactor<v1::AuditRecord> {
 public:
  TailReactor(AdminServiceImpl& service, const v1::TailAuditRequest& request)
      : service_(service), from_(request.from_index()), from_end_(request.from_end()), follow_(request.follow()) {}

  void Start() {
    service_.work_.Post([this] { Fetch(); });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    WriteNext();
  }
  void OnCancel() override {
    cancelled_ = true;
    alarm_.Cancel();
  }
  void OnDone() override { delete this; }

 private:
  void Fetch() {
    if (cancelled_) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
      return;
    }
    if (from_end_) {
      absl::StatusOr<AuditHead> head = service_.store_.GetAuditHead();
      if (!head.ok()) {
        Finish(ToGrpcStatus(head.status()));
        return;
      }
      next_ = head->record_count > from_ ? head->record_count - from_ : 0;
      from_end_ = false;
    } else if (next_ == 0) {
      next_ = from_;
    }
    absl::StatusOr<std::vector<AuditRecord>> page = service_.store_.ReadAudit(next_, kTailPage);
    if (!page.ok()) {
      Finish(ToGrpcStatus(page.status()));
      return;
    }
    if (page->empty()) {
      if (!follow_) {
        Finish(grpc::Status::OK);
        return;
      }
      const auto deadline =
          std::chrono::system_clock::now() + absl::ToChronoMilliseconds(service_.options_.tail_poll);
      alarm_.Set(deadline, [this](bool fired) {
        if (!fired || cancelled_) {
          Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
          return;
        }
        service_.work_.Post([this] { Fetch(); });
      });
      return;
    }
    pending_ = *std::move(page);
    position_ = 0;
    next_ = pending_.back().index + 1;
    WriteNext();
  }

  void WriteNext() {
    if (position_ < pending_.size()) {
      out_ = ToWire(pending_[position_++]);
      StartWrite(&out_);
      return;
    }
    service_.work_.Post([this] { Fetch(); });
  }

  AdminServiceImpl& service_;
  const uint64_t from_;
  bool from_end_;
  const bool follow_;
  uint64_t next_ = 0;
  std::vector<AuditRecord> pending_;
  size_t position_ = 0;
  v1::AuditRecord out_;
  grpc::Alarm alarm_;
  std::atomic<bool> cancelled_{false};
};

grpc::ServerWriteReactor<v1::AuditRecord>* AdminServiceImpl::TailAudit(grpc::CallbackServerContext* context,
                                                                       const v1::TailAuditRequest* request) {
  auto* reactor = new TailReactor(*this, *request);
  absl::StatusOr<PeerIdentity> who = Authorize(*context);
  if (!who.ok()) {
    reactor->Finish(ToGrpcStatus(who.status()));
  } else {
    reactor->Start();
  }
  return reactor;
}

// The export text (with its fresh checkpoint) in chunks.
class AdminServiceImpl::ExportReactor final : public grpc::ServerWriteReactor<v1::ExportAuditChunk> {
 public:
  explicit ExportReactor(AdminServiceImpl& service) : service_(service) {}

  void Start(const PeerIdentity& admin) {
    service_.work_.Post([this, admin] {
      absl::StatusOr<std::string> text = service_.audit_.ExportText();
      if (!text.ok()) {
        Finish(ToGrpcStatus(text.status()));
        return;
      }
      text_ = *std::move(text);
      AuditEntry entry;
      entry.who = admin.principal();
      entry.what = "admin.audit.export";
      entry.where = "controller";
      (void)service_.audit_.Append(std::move(entry));  // after the export: its own record is in the next one
      WriteNext();
    });
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (offset_ >= text_.size()) {
      Finish(grpc::Status::OK);
      return;
    }
    const size_t n = std::min(kExportChunk, text_.size() - offset_);
    chunk_.set_data(text_.substr(offset_, n));
    offset_ += n;
    StartWrite(&chunk_);
  }

  AdminServiceImpl& service_;
  std::string text_;
  size_t offset_ = 0;
  v1::ExportAuditChunk chunk_;
};

grpc::ServerWriteReactor<v1::ExportAuditChunk>* AdminServiceImpl::ExportAudit(grpc::CallbackServerContext* context,
                                                                              const v1::ExportAuditRequest*) {
  auto* reactor = new ExportReactor(*this);
  absl::StatusOr<PeerIdentity> who = Authorize(*context);
  if (!who.ok()) {
    reactor->Finish(ToGrpcStatus(who.status()));
  } else {
    reactor->Start(*who);
  }
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::VerifyAudit(grpc::CallbackServerContext* context,
                                                        const v1::VerifyAuditRequest* request,
                                                        v1::VerifyAuditResponse* response) {
  return Unary(context, [this, request, response](const PeerIdentity&) -> absl::Status {
    if (request->heads_size() > kMaxVerifyHeads) {
      return absl::InvalidArgumentError(absl::StrCat("heads: ", request->heads_size(), " heads, at most ",
                                                     kMaxVerifyHeads, ": give the latest ones"));
    }
    std::vector<AuditSignedHead> heads;
    for (int i = 0; i < request->heads_size(); ++i) {
      ASSIGN_OR_RETURN(AuditCheckpoint c,
                       FromWire(request->heads(i).checkpoint(), absl::StrCat("heads[", i, "].checkpoint")));
      heads.push_back(AuditSignedHead{c, request->heads(i).key_id().substr(0, 64), ""});
    }
    ASSIGN_OR_RETURN(AuditVerification v, audit_.Verify(std::move(heads)));
    response->set_ok(v.ok);
    response->set_records(v.records);
    response->set_checkpoints(v.checkpoints);
    response->set_signed_records(v.signed_records);
    response->set_heads(v.heads);
    if (!v.ok) {
      response->set_first_bad_index(v.first_bad_index);
      response->set_problem(v.problem);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetAuditPublicKey(grpc::CallbackServerContext* context,
                                                              const v1::GetAuditPublicKeyRequest*,
                                                              v1::GetAuditPublicKeyResponse* response) {
  return Unary(context, [this, response](const PeerIdentity&) -> absl::Status {
    response->set_public_key_pem(audit_.public_key().ToPem());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetAuditHead(grpc::CallbackServerContext* context,
                                                         const v1::GetAuditHeadRequest*,
                                                         v1::SignedAuditHead* response) {
  return Unary(context, [this, response](const PeerIdentity&) -> absl::Status {
    ASSIGN_OR_RETURN(AuditCheckpoint head, audit_.LatestCheckpoint());
    *response->mutable_checkpoint() = ToWire(head);
    response->set_key_id(audit_.key_id());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetStats(grpc::CallbackServerContext* context,
                                                     const v1::GetStatsRequest*, v1::GetStatsResponse* response) {
  return Unary(context, [this, response](const PeerIdentity&) -> absl::Status {
    ASSIGN_OR_RETURN(uint64_t revision, store_.CurrentRevision());
    response->set_revision(revision);
    // The same list as the Prometheus file.
    for (const MetricSample& m : metrics_.Collect(store_)) *response->add_metrics() = ToWireMetric(m);
    return absl::OkStatus();
  });
}

}  // namespace sesame::controller
