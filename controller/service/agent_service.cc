#include "controller/service/agent_service.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controller/service/controller_metrics.h"
#include "controller/service/wire_convert.h"

namespace sesame::controller {
namespace {

constexpr size_t kMaxIdSize = 64;
constexpr size_t kMaxText = 1024;
constexpr int kMaxDetails = 64;

grpc::Status GrpcError(grpc::StatusCode code, const std::string& message) { return grpc::Status(code, message); }

absl::Status ValidateEvent(const v1::AuditEvent& e) {
  if (e.what().empty() || e.what().size() > 64) return absl::InvalidArgumentError("audit.what: expected 1..64 bytes");
  if (e.details_size() > kMaxDetails) return absl::InvalidArgumentError("audit.details: too many entries");
  for (const auto& [key, value] : e.details()) {
    if (key.size() > 64 || value.size() > kMaxText) return absl::InvalidArgumentError("audit.details: too long");
  }
  return absl::OkStatus();
}

v1::KnockOutcome ToWire(ConsumeOutcome o) {
  switch (o) {
    case ConsumeOutcome::kWon: return v1::KNOCK_OUTCOME_OPENED;
    case ConsumeOutcome::kReplay: return v1::KNOCK_OUTCOME_REPLAY;
    case ConsumeOutcome::kUnknown: return v1::KNOCK_OUTCOME_UNKNOWN;
  }
  return v1::KNOCK_OUTCOME_UNSPECIFIED;
}

}  // namespace

// One agent's stream. Three kinds of activity meet here: gRPC reactions
// (reads, writes, cancellation), work on the queues, and the hub's Send.
// mu_ guards the state that decides which gRPC operation comes next; the
// operations themselves (StartRead, StartWrite, Finish) are called without
// it, since gRPC may run the next reaction inline. Finish is called once,
// when nothing is being written, no work is pending (work refers to this
// object) and no StartRead is being issued.
class AgentServiceImpl::SessionReactor final
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>,
      public AgentLink {
 public:
  SessionReactor(AgentServiceImpl& service, std::string name, std::string peer)
      : service_(service), name_(std::move(name)), peer_(std::move(peer)) {}

  void Start() { IssueRead(); }

  // Refuses the stream before anything happens.
  void Refuse(const absl::Status& why) {
    {
      absl::MutexLock lock(&mu_);
      RequestFinishLocked(ToGrpcStatus(why), /*flush=*/false);
    }
    Pump();
  }

  // --- AgentLink ---
  const std::string& agent() const override { return name_; }

  void Send(v1::ControllerMessage message) override {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      if (outbox_.size() >= service_.options_.max_queued) {
        RequestFinishLocked(GrpcError(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                      "the agent reads too slowly; reconnect for a fresh snapshot"),
                            /*flush=*/false);
      } else {
        outbox_.push_back(std::move(message));
      }
    }
    Pump();
  }

  void Close(absl::Status why) override {
    {
      absl::MutexLock lock(&mu_);
      RequestFinishLocked(ToGrpcStatus(why), /*flush=*/false);
    }
    Pump();
  }

  // --- Reactions ---
  void OnReadDone(bool ok) override {
    if (!ok) {
      // The agent closed its side, or the stream broke: answer what is
      // pending, then finish.
      {
        absl::MutexLock lock(&mu_);
        RequestFinishLocked(grpc::Status::OK, /*flush=*/true);
      }
      Pump();
      return;
    }
    v1::AgentMessage message = std::move(in_);
    bool accepted = false;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) {
        // Nothing more is read or handled.
      } else if (!hello_seen_) {
        if (!message.has_hello()) {
          RequestFinishLocked(GrpcError(grpc::StatusCode::FAILED_PRECONDITION, "the first message must be Hello"),
                              /*flush=*/false);
        } else {
          hello_seen_ = true;
          accepted = true;
        }
      } else if (pending_ >= service_.options_.max_pending) {
        RequestFinishLocked(
            GrpcError(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many messages in processing; slow down"),
            /*flush=*/false);
      } else if (message.has_hello()) {
        RequestFinishLocked(GrpcError(grpc::StatusCode::FAILED_PRECONDITION, "Hello twice"), /*flush=*/false);
      } else {
        accepted = true;
      }
      if (accepted) ++pending_;
    }
    if (!accepted) {
      Pump();
      return;
    }
    if (message.has_hello()) {
      // Reading resumes once the agent is attached, so nothing it sends is
      // handled before its hello.
      HandleHello(std::move(message));
      Pump();
      return;
    }
    Dispatch(std::move(message));
    IssueRead();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) RequestFinishLocked(GrpcError(grpc::StatusCode::CANCELLED, "write failed"), /*flush=*/false);
    }
    Pump();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      RequestFinishLocked(GrpcError(grpc::StatusCode::CANCELLED, "cancelled"), /*flush=*/false);
    }
    Pump();
  }

  void OnDone() override {
    // Detaching takes the hub's lock, which the thread running this may
    // already hold (the hub's Send can start a write whose completion, and
    // then this, runs inline). So the session detaches and is deleted on the
    // bookkeeping thread; until then the hub may still call Send, which drops
    // everything once finishing.
    service_.bookkeeping_.Post([this] {
      if (attached_ && service_.hub_.Detach(this)) {
        record_.connected = false;
        record_.disconnected_at = service_.clock_.Now();
        AuditEntry audit;
        audit.time = record_.disconnected_at;
        audit.who = absl::StrCat("agent:", name_);
        audit.what = "agent.disconnected";
        audit.where = audit.who;
        absl::Status s = service_.store_.PutAgent(record_, {std::move(audit)});
        if (!s.ok()) LogWarning(absl::StrCat("agent ", name_, ": cannot record the disconnect: ", s.message()));
      }
      delete this;
    });
  }

 private:
  // Starts the next read unless the stream is finishing.
  void IssueRead() {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      read_starting_ = true;
    }
    StartRead(&in_);
    {
      absl::MutexLock lock(&mu_);
      read_starting_ = false;
    }
    Pump();
  }

  void RequestFinishLocked(grpc::Status status, bool flush) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_) return;
    finishing_ = true;
    flush_ = flush;
    status_ = std::move(status);
    if (!flush) outbox_.clear();
  }

  // Starts the next write, or finishes when everything is quiet.
  void Pump() {
    enum class Next { kNothing, kWrite, kFinish } next = Next::kNothing;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || writing_) return;
      if (!outbox_.empty() && (!finishing_ || flush_)) {
        current_ = std::move(outbox_.front());
        outbox_.pop_front();
        writing_ = true;
        next = Next::kWrite;
      } else if (finishing_ && pending_ == 0 && !read_starting_) {
        finished_ = true;
        status = status_;
        next = Next::kFinish;
      }
    }
    if (next == Next::kWrite) StartWrite(&current_);
    if (next == Next::kFinish) Finish(status);
  }

  // A piece of work is over; it may have been the last thing Finish waited
  // for.
  void WorkDone() {
    {
      absl::MutexLock lock(&mu_);
      --pending_;
    }
    Pump();
  }

  void Fail(const absl::Status& status) {
    LogWarning(absl::StrCat("agent ", name_, ": ", status.message()));
    Close(absl::UnavailableError(absl::StrCat("controller store: ", status.message())));
  }

  void Receipt(const std::string& id) {
    v1::ControllerMessage m;
    m.mutable_receipt()->add_ids(id);
    Send(std::move(m));
  }

  std::string Origin(const std::string& id) const { return absl::StrCat("agent:", name_, "/", id); }

  void HandleHello(v1::AgentMessage message) {
    service_.bookkeeping_.Post([this, message = std::move(message)] {
      bool finishing;
      {
        absl::MutexLock lock(&mu_);
        finishing = finishing_;
      }
      if (finishing) {  // gone before it was attached
        WorkDone();
        return;
      }
      const v1::Hello& hello = message.hello();
      absl::StatusOr<AgentRecord> known = service_.store_.GetAgent(name_);
      if (known.ok()) {
        record_ = *std::move(known);
      } else if (absl::IsNotFound(known.status())) {
        record_ = AgentRecord{};
        record_.name = name_;
      } else {
        Fail(known.status());
        WorkDone();
        return;
      }
      record_.version = hello.version().substr(0, 64);
      record_.connected = true;
      record_.connected_at = service_.clock_.Now();
      record_.spool_depth = static_cast<int>(hello.spool_depth());
      record_.advertise_hosts.clear();
      for (const std::string& host : hello.advertise_hosts()) {
        if (!host.empty() && host.size() <= 255 && host.find_first_of(" \t\r\n") == std::string::npos) {
          record_.advertise_hosts.push_back(host);
        }
      }
      AuditEntry audit;
      audit.time = record_.connected_at;
      audit.who = absl::StrCat("agent:", name_);
      audit.what = "agent.connected";
      audit.where = audit.who;
      audit.details = {{"version", record_.version},
                       {"last_revision", absl::StrCat(hello.last_revision())},
                       {"spool_depth", absl::StrCat(hello.spool_depth())},
                       {"peer", peer_}};
      if (absl::Status s = service_.store_.PutAgent(record_, {std::move(audit)}); !s.ok()) {
        Fail(s);
        WorkDone();
        return;
      }
      AgentLink* replaced = service_.hub_.Attach(this, service_.options_.heartbeat_interval);
      attached_ = true;
      if (replaced != nullptr) {
        // Two sessions of one name: a restarted agent, or a second holder of
        // its certificate. The newer one wins either way, never silently.
        replaced->Close(absl::AbortedError("replaced by a newer session of the same agent"));
        LogWarning(absl::StrCat("agent ", name_, ": a new session from ", peer_, " replaced the one before"));
        AuditEntry replace;
        replace.time = service_.clock_.Now();
        replace.who = absl::StrCat("agent:", name_);
        replace.what = "agent.session_replaced";
        replace.where = "controller";
        replace.details = {{"peer", peer_}};
        absl::StatusOr<std::vector<AuditRecord>> r = service_.store_.AppendAudit({std::move(replace)});
        if (!r.ok()) {
          LogWarning(absl::StrCat("agent ", name_, ": cannot audit the replaced session: ", r.status().message()));
        }
      }
      IssueRead();
      WorkDone();
    });
  }

  void Dispatch(v1::AgentMessage message) {
    switch (message.body_case()) {
      case v1::AgentMessage::kAck:
      case v1::AgentMessage::kHeartbeat:
        service_.bookkeeping_.Post([this, message = std::move(message)] {
          HandleBookkeeping(message);
          WorkDone();
        });
        return;
      default:
        service_.work_.Post([this, message = std::move(message)] {
          HandleReport(message);
          WorkDone();
        });
        return;
    }
  }

  ControllerMetrics* metrics() const { return service_.options_.metrics; }

  // Runs a durable store write, timing it for the metrics.
  template <typename Write>
  auto Timed(Write&& write) {
    const absl::Time start = absl::Now();
    auto result = write();
    if (metrics() != nullptr) metrics()->StoreWrite(absl::Now() - start);
    return result;
  }

  // On the bookkeeping thread, in order with hello and disconnect.
  void HandleBookkeeping(const v1::AgentMessage& message) {
    absl::Status s;
    if (message.has_ack()) {
      record_.acked_revision = std::max(record_.acked_revision, message.ack().revision());
      s = Timed([&] { return service_.store_.AckRevision(name_, message.ack().revision()); });
    } else {
      const v1::Heartbeat& hb = message.heartbeat();
      record_.last_heartbeat = service_.clock_.Now();
      record_.reserve_left = static_cast<int>(hb.reserve_left());
      record_.spool_depth = static_cast<int>(hb.spool_depth());
      record_.last_error = hb.last_error().substr(0, kMaxText);
      s = Timed([&] { return service_.store_.PutAgent(record_, {}); });
      if (metrics() != nullptr) metrics()->AgentHeartbeat(name_, hb.metrics());
    }
    if (!s.ok()) Fail(s);
  }

  // On the work queue: everything the agent reports.
  void HandleReport(const v1::AgentMessage& message) {
    const std::string& id = message.id();
    if (id.empty() || id.size() > kMaxIdSize) {
      LogWarning(absl::StrCat("agent ", name_, ": message without a valid id ignored"));
      return;
    }
    switch (message.body_case()) {
      case v1::AgentMessage::kKnockMatched: return HandleKnock(id, message.knock_matched());
      case v1::AgentMessage::kGrantResult: {
        const v1::GrantResult& r = message.grant_result();
        GrantAgentStatus status{name_, r.applied() ? GrantAgentState::kApplied : GrantAgentState::kFailed,
                                r.error().substr(0, kMaxText), FromWireTime(r.at())};
        AuditEntry audit = AgentAudit(id, r.applied() ? "grant.applied" : "grant.failed", r.at());
        audit.details = {{"grant", absl::StrCat(r.grant_id())}};
        if (!r.applied()) audit.details["error"] = status.detail;
        return GrantReport(id, r.grant_id(), status, std::move(audit));
      }
      case v1::AgentMessage::kRevokeApplied: {
        const v1::RevokeApplied& r = message.revoke_applied();
        GrantAgentStatus status{name_, GrantAgentState::kRemoved, r.error().substr(0, kMaxText),
                                FromWireTime(r.at())};
        AuditEntry audit = AgentAudit(id, r.error().empty() ? "grant.removed" : "grant.remove_failed", r.at());
        audit.details = {{"grant", absl::StrCat(r.grant_id())}, {"expired", r.expired() ? "true" : "false"}};
        if (!r.error().empty()) audit.details["error"] = status.detail;
        return GrantReport(id, r.grant_id(), status, std::move(audit));
      }
      case v1::AgentMessage::kScannerSeen: {
        const v1::ScannerSeen& s = message.scanner_seen();
        std::optional<IpAddress> source = IpAddress::Parse(s.source());
        AuditEntry audit = AgentAudit(id, "scanner.seen", s.at());
        audit.who = source ? source->ToString() : "invalid-address";
        audit.details = {{"distinct_ports", absl::StrCat(s.distinct_ports())},
                         {"window", absl::FormatDuration(FromWireDuration(s.window()))}};
        if (metrics() != nullptr) metrics()->ScannerReported();
        return Record(id, std::move(audit));
      }
      case v1::AgentMessage::kAudit: {
        const v1::AuditEvent& e = message.audit();
        if (absl::Status s = ValidateEvent(e); !s.ok()) {
          LogWarning(absl::StrCat("agent ", name_, ": audit event ", id, " refused: ", s.message()));
          return Receipt(id);  // never valid: do not let it sit in the spool
        }
        AuditEntry audit = AgentAudit(id, e.what(), e.time());
        for (const auto& [key, value] : e.details()) audit.details[key] = value;
        return Record(id, std::move(audit));
      }
      default:
        LogWarning(absl::StrCat("agent ", name_, ": message ", id, " of an unknown kind ignored"));
        return;
    }
  }

  AuditEntry AgentAudit(const std::string& id, const std::string& what, const google::protobuf::Timestamp& at) {
    AuditEntry audit;
    audit.time = at.seconds() != 0 ? FromWireTime(at) : service_.clock_.Now();
    audit.who = absl::StrCat("agent:", name_);
    audit.what = what;
    audit.where = audit.who;
    audit.origin = Origin(id);
    return audit;
  }

  void Record(const std::string& id, AuditEntry audit) {
    absl::StatusOr<std::vector<AuditRecord>> r =
        Timed([&] { return service_.store_.AppendAudit({std::move(audit)}); });
    if (!r.ok()) return Fail(r.status());
    Receipt(id);
  }

  void GrantReport(const std::string& id, uint64_t grant_id, const GrantAgentStatus& status, AuditEntry audit) {
    absl::Status s = Timed([&] { return service_.store_.SetGrantAgentState(grant_id, status, {std::move(audit)}); });
    if (absl::IsNotFound(s) || absl::IsInvalidArgument(s)) {
      LogWarning(absl::StrCat("agent ", name_, ": report ", id, " about grant ", grant_id, ": ", s.message()));
    } else if (!s.ok()) {
      return Fail(s);
    }
    Receipt(id);
  }

  void HandleKnock(const std::string& id, const v1::KnockMatched& k) {
    v1::ControllerMessage reply;
    v1::KnockVerdict* verdict = reply.mutable_knock_verdict();
    verdict->set_reply_to(id);
    std::optional<IpAddress> source = IpAddress::Parse(k.source());
    absl::StatusOr<std::vector<Knock>> knocks = FromWireKnocks(k.knocks(), "knocks");
    if (!source || !knocks.ok() || (k.sequence_id() == 0 && knocks->empty())) {
      LogWarning(absl::StrCat("agent ", name_, ": knock report ", id, " is malformed"));
      if (metrics() != nullptr) metrics()->KnockReported(ConsumeOutcome::kUnknown);
      verdict->set_outcome(v1::KNOCK_OUTCOME_UNKNOWN);
      Send(std::move(reply));
      return;
    }
    ConsumeRequest request;
    request.sequence_id = k.sequence_id();
    request.knocks = *std::move(knocks);
    request.agent = name_;
    request.source = *source;
    request.request_id = id;
    request.offline = k.offline();
    // An offline reserve knock already opened the door on the agent.
    request.order_grant = !k.offline();
    absl::StatusOr<ConsumeResult> result = Timed([&] { return service_.store_.Consume(request); });
    if (!result.ok()) {
      if (absl::IsInvalidArgument(result.status())) {
        if (metrics() != nullptr) metrics()->KnockReported(ConsumeOutcome::kUnknown);
        verdict->set_outcome(v1::KNOCK_OUTCOME_UNKNOWN);
        Send(std::move(reply));
        return;
      }
      return Fail(result.status());
    }
    // A resent report gets the first answer again: counted once.
    if (metrics() != nullptr && !result->repeated) metrics()->KnockReported(result->outcome);
    verdict->set_outcome(ToWire(result->outcome));
    verdict->set_sequence_id(result->sequence_id);
    if (result->outcome == ConsumeOutcome::kReplay) verdict->set_first_agent(result->first_agent);
    if (result->grant) *verdict->mutable_grant() = controller::ToWire(*result->grant, /*with_agents=*/false);
    Send(std::move(reply));
  }

  AgentServiceImpl& service_;
  const std::string name_;
  const std::string peer_;    // the TCP peer, for the audit
  v1::AgentMessage in_;       // the read chain's buffer
  v1::ControllerMessage current_;  // the write chain's buffer
  AgentRecord record_;        // bookkeeping thread only
  bool attached_ = false;     // set on the bookkeeping thread before any read after hello

  absl::Mutex mu_;
  std::deque<v1::ControllerMessage> outbox_ ABSL_GUARDED_BY(mu_);
  bool hello_seen_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_starting_ ABSL_GUARDED_BY(mu_) = false;
  size_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool flush_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

AgentServiceImpl::AgentServiceImpl(Store& store, FleetHub& hub, WorkQueue& work, IdentityResolver identity,
                                   const Clock& clock, AgentServiceOptions options)
    : store_(store), hub_(hub), work_(work), identity_(std::move(identity)), clock_(clock), options_(options) {}

AgentServiceImpl::~AgentServiceImpl() = default;

grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* AgentServiceImpl::Session(
    grpc::CallbackServerContext* context) {
  absl::StatusOr<PeerIdentity> who = identity_(*context);
  if (who.ok() && who->role != PeerRole::kAgent) {
    who = absl::PermissionDeniedError(
        absl::StrCat("AgentService needs an agent certificate; ", who->principal(), " is not one"));
  }
  auto* session = new SessionReactor(*this, who.ok() ? who->name : std::string(), context->peer().substr(0, 256));
  if (!who.ok()) {
    session->Refuse(who.status());
  } else {
    session->Start();
  }
  return session;
}

}  // namespace sesame::controller
