#include "controller/service/agent_service.h"

#include <grpcpp/security/auth_context.h>

#include <deque>
#include <optional>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controller/service/client_certificates.h"
#include "controller/service/controller_metrics.h"
#include "controller/service/scanner_audit.h"
#include "controller/service/wire_convert.h"
#include "controller/store/knock_report_checks.h"

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
    case ConsumeOutcome::kRefused: return v1::KNOCK_OUTCOME_REFUSED;
  }
  return v1::KNOCK_OUTCOME_UNSPECIFIED;
}

bool IsSet(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

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

  // The client certificate the session started with, judged again when
  // the CA bundle or the CRLs change.
  void KeepCertificate(const grpc::AuthContext* auth) {
    if (auth != nullptr) certificate_ = PeerCertificateOf(*auth);
  }
  const PeerCertificate& certificate() const { return certificate_; }
  const std::string& peer() const { return peer_; }

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
    // Flow control: with max_pending messages in processing, reading pauses
    // until one is done (WorkDone). The agent's writes then wait in HTTP/2's
    // flow-control window and its own queue: a spool of thousands after an
    // outage drains at the store's pace, in one session.
    bool read_now = false;
    {
      absl::MutexLock lock(&mu_);
      read_now = pending_ < service_.options_.max_pending;
      read_paused_ = !read_now;
    }
    if (read_now) IssueRead();
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
        if (!s.ok()) {
          LogEvent(LogLevel::kWarning, "agent.disconnect_not_recorded",
                   {{"agent", name_}, {"error", std::string(s.message())}},
                   absl::StrCat("agent ", name_, ": cannot record the disconnect: ", s.message()));
        }
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
    bool resume = false;
    {
      absl::MutexLock lock(&mu_);
      --pending_;
      if (read_paused_ && pending_ < service_.options_.max_pending) {
        read_paused_ = false;
        resume = !finishing_;
      }
    }
    if (resume) IssueRead();
    Pump();
  }

  void Fail(const absl::Status& status) {
    LogEvent(LogLevel::kWarning, "agent.session_failed", {{"agent", name_}, {"error", std::string(status.message())}},
             absl::StrCat("agent ", name_, ": ", status.message()));
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
      // This bastion's own addresses: no knocker has them.
      std::vector<IpAddress> own = AddressLiterals(record_.advertise_hosts);
      if (std::optional<IpAddress> from = PeerAddress(peer_)) own.push_back(*from);
      service_.own_addresses_.AddAgent(name_, own);
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
      AgentLink* replaced =
          service_.hub_.Attach(this, service_.options_.heartbeat_interval, hello.accepts_snapshot_parts());
      attached_ = true;
      if (replaced != nullptr) {
        // Two sessions of one name: a restarted agent, or a second holder of
        // its certificate. The newer one wins either way, never silently.
        replaced->Close(absl::AbortedError("replaced by a newer session of the same agent"));
        LogEvent(LogLevel::kWarning, "agent.session_replaced", {{"agent", name_}, {"peer", peer_}},
                 absl::StrCat("agent ", name_, ": a new session from ", peer_, " replaced the one before"));
        AuditEntry replace;
        replace.time = service_.clock_.Now();
        replace.who = absl::StrCat("agent:", name_);
        replace.what = "agent.session_replaced";
        replace.where = "controller";
        replace.details = {{"peer", peer_}};
        absl::StatusOr<std::vector<AuditRecord>> r = service_.store_.AppendAudit({std::move(replace)});
        if (!r.ok()) {
          LogEvent(LogLevel::kWarning, "agent.audit_failed",
                   {{"agent", name_},
                    {"record", "agent.session_replaced"},
                    {"error", std::string(r.status().message())}},
                   absl::StrCat("agent ", name_, ": cannot audit the replaced session: ", r.status().message()));
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
      LogEvent(LogLevel::kWarning, "agent.message_ignored", {{"agent", name_}, {"why", "no valid id"}},
               absl::StrCat("agent ", name_, ": message without a valid id ignored"));
      return;
    }
    switch (message.body_case()) {
      case v1::AgentMessage::kKnockMatched: return HandleKnock(id, message.knock_matched());
      case v1::AgentMessage::kGrantResult: {
        const v1::GrantResult& r = message.grant_result();
        AuditEntry audit = AgentAudit(id, r.applied() ? "grant.applied" : "grant.failed", r.at());
        GrantAgentStatus status{name_, r.applied() ? GrantAgentState::kApplied : GrantAgentState::kFailed,
                                r.error().substr(0, kMaxText), audit.time};
        audit.details["grant"] = absl::StrCat(r.grant_id());
        if (!r.applied()) audit.details["error"] = status.detail;
        return GrantReport(id, r.grant_id(), status, std::move(audit));
      }
      case v1::AgentMessage::kRevokeApplied: {
        const v1::RevokeApplied& r = message.revoke_applied();
        AuditEntry audit = AgentAudit(id, r.error().empty() ? "grant.removed" : "grant.remove_failed", r.at());
        GrantAgentStatus status{name_, GrantAgentState::kRemoved, r.error().substr(0, kMaxText), audit.time};
        audit.details["grant"] = absl::StrCat(r.grant_id());
        audit.details["expired"] = r.expired() ? "true" : "false";
        if (!r.error().empty()) audit.details["error"] = status.detail;
        return GrantReport(id, r.grant_id(), status, std::move(audit));
      }
      case v1::AgentMessage::kScannerSeen: {
        // One record per report, also for an aggregate of a whole window.
        const v1::ScannerSeen& s = message.scanner_seen();
        AuditEntry audit = AgentAudit(id, "scanner.seen", s.at());
        const uint64_t scanners = DescribeScannerSeen(s, audit);
        if (metrics() != nullptr) metrics()->ScannerReported(scanners);
        return Record(id, std::move(audit));
      }
      case v1::AgentMessage::kAudit: {
        const v1::AuditEvent& e = message.audit();
        if (absl::Status s = ValidateEvent(e); !s.ok()) {
          LogEvent(LogLevel::kWarning, "agent.message_ignored",
                   {{"agent", name_}, {"id", id}, {"why", std::string(s.message())}},
                   absl::StrCat("agent ", name_, ": audit event ", id, " refused: ", s.message()));
          return Receipt(id);  // never valid: do not let it sit in the spool
        }
        AuditEntry audit = AgentAudit(id, e.what(), e.time());
        // The agent's own details, except where they would pass for the
        // controller's view of the agent's time.
        for (const auto& [key, value] : e.details()) {
          if (key != "agent_time" && key != "agent_time_refused") audit.details[key] = value;
        }
        return Record(id, std::move(audit));
      }
      default:
        LogEvent(LogLevel::kWarning, "agent.message_ignored", {{"agent", name_}, {"id", id}, {"why", "unknown kind"}},
                 absl::StrCat("agent ", name_, ": message ", id, " of an unknown kind ignored"));
        return;
    }
  }

  // A record of what the agent reports. Its time is the controller's: the
  // agent's (at) is only a detail, and refused more than a day off.
  AuditEntry AgentAudit(const std::string& id, const std::string& what, const google::protobuf::Timestamp& at) {
    AuditEntry audit;
    audit.time = service_.clock_.Now();
    audit.who = absl::StrCat("agent:", name_);
    audit.what = what;
    audit.where = audit.who;
    audit.origin = Origin(id);
    if (IsSet(at)) {
      const absl::Time agent_time = FromWireTime(at);
      if (!CheckAgentTime(agent_time, audit.time, audit.time)) {
        audit.details["agent_time"] = AgentTimeText(agent_time);
      } else {
        audit.details["agent_time_refused"] = AgentTimeText(agent_time);
        if (metrics() != nullptr) metrics()->AgentTimeRefused();
      }
    }
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
      LogEvent(LogLevel::kWarning, "agent.grant_report_refused",
               {{"agent", name_}, {"id", id}, {"grant", absl::StrCat(grant_id)}, {"why", std::string(s.message())}},
               absl::StrCat("agent ", name_, ": report ", id, " about grant ", grant_id, ": ", s.message()));
    } else if (!s.ok()) {
      return Fail(s);
    }
    Receipt(id);
  }

  // Takes a token of the agent's limit; false (and counted, logged once a
  // window) when it is over it.
  bool Admit(LimitKind kind) {
    const AgentRateLimiter::Verdict v = service_.limiter_.Take(name_, kind);
    if (v == AgentRateLimiter::Verdict::kAdmitted) return true;
    if (metrics() != nullptr) metrics()->RateLimited(name_, LimitKindName(kind));
    if (v == AgentRateLimiter::Verdict::kRefusedFirstInWindow) {
      const RateLimit& l = service_.limiter_.limit(kind);
      LogEvent(LogLevel::kWarning, "agent.rate_limited",
               {{"agent", name_},
                {"limit", LimitKindName(kind)},
                {"per_minute", absl::StrCat(l.per_minute)},
                {"burst", absl::StrCat(l.burst)}},
               absl::StrCat("agent ", name_, ": over its limit of ", l.per_minute, " ",
                            kind == LimitKind::kGrants ? "grant orders" : "knock reports", " a minute (burst ",
                            l.burst, "): refusing them; audited once per ",
                            absl::FormatDuration(service_.limiter_.limits().audit_window)));
    }
    return false;
  }

  void HandleKnock(const std::string& id, const v1::KnockMatched& k) {
    v1::ControllerMessage reply;
    v1::KnockVerdict* verdict = reply.mutable_knock_verdict();
    verdict->set_reply_to(id);
    // Rate limits first: nothing over them reaches the store. An offline
    // report is left unanswered (see agent_service.h).
    const bool orders_grant = !k.offline();
    if (!Admit(LimitKind::kKnockReports) || (orders_grant && !Admit(LimitKind::kGrants))) {
      if (k.offline()) return;
      verdict->set_outcome(v1::KNOCK_OUTCOME_REFUSED);
      Send(std::move(reply));
      return;
    }
    // A grant token not spent on a grant goes back.
    absl::Cleanup unused_grant = [&] {
      if (orders_grant) service_.limiter_.GiveBack(name_, LimitKind::kGrants);
    };
    std::optional<IpAddress> source = IpAddress::Parse(k.source());
    absl::StatusOr<std::vector<Knock>> knocks = FromWireKnocks(k.knocks(), "knocks");
    if (!source || !knocks.ok() || (k.sequence_id() == 0 && knocks->empty())) {
      LogEvent(LogLevel::kWarning, "agent.message_ignored",
               {{"agent", name_}, {"id", id}, {"why", "malformed knock report"}},
               absl::StrCat("agent ", name_, ": knock report ", id, " is malformed"));
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
    request.spent_here = k.spent_here();
    // An offline reserve knock already opened the door on the agent.
    request.order_grant = orders_grant;
    if (k.has_matched_at() && IsSet(k.matched_at())) request.agent_time = FromWireTime(k.matched_at());
    request.own_addresses = service_.own_addresses_.Get();
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
    if (result->grant && !result->repeated) std::move(unused_grant).Cancel();
    // A resent report gets the first answer again: counted once.
    if (metrics() != nullptr && !result->repeated) metrics()->KnockReported(result->outcome, result->refused_reason);
    verdict->set_outcome(ToWire(result->outcome));
    verdict->set_sequence_id(result->sequence_id);
    if (result->outcome == ConsumeOutcome::kReplay) verdict->set_first_agent(result->first_agent);
    if (result->grant) *verdict->mutable_grant() = controller::ToWire(*result->grant, /*with_agents=*/false);
    Send(std::move(reply));
  }

  AgentServiceImpl& service_;
  const std::string name_;
  const std::string peer_;    // the TCP peer, for the audit
  PeerCertificate certificate_;  // set before Start
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
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;  // at max_pending: the next read waits for WorkDone
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool flush_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

AgentServiceImpl::AgentServiceImpl(Store& store, FleetHub& hub, WorkQueue& work, IdentityResolver identity,
                                   const Clock& clock, AgentServiceOptions options)
    : store_(store),
      hub_(hub),
      work_(work),
      identity_(std::move(identity)),
      clock_(clock),
      options_(std::move(options)),
      limiter_(options_.limits, clock) {
  own_addresses_.SetController(options_.controller_addresses);
  // The bastions' addresses known from before this start; their sessions
  // add the addresses they come from.
  absl::StatusOr<std::vector<AgentRecord>> agents = store_.ListAgents();
  if (!agents.ok()) {
    LogWarning(absl::StrCat("cannot read the agents' advertised addresses: ", agents.status().message()));
  } else {
    for (const AgentRecord& a : *agents) own_addresses_.AddAgent(a.name, AddressLiterals(a.advertise_hosts));
  }
}

AgentServiceImpl::~AgentServiceImpl() { FlushRefusalWindows(/*all=*/true); }

void AgentServiceImpl::FlushRefusalWindows(bool all) {
  std::vector<AuditEntry> entries;
  for (const RefusalWindow& w : limiter_.TakeClosedWindows(all)) {
    const RateLimit& l = limiter_.limit(w.kind);
    const char* what = w.kind == LimitKind::kGrants ? "grant orders" : "knock reports";
    AuditEntry e;
    e.time = clock_.Now();
    e.who = absl::StrCat("agent:", w.agent);
    e.where = e.who;
    e.what = "knock.refused";
    e.details = {{"reason", "rate_limit"},
                 {"limit", LimitKindName(w.kind)},
                 {"refused", absl::StrCat(w.refused)},
                 {"first", AgentTimeText(w.opened)},
                 {"last", AgentTimeText(w.last)},
                 {"why", absl::StrCat("over the agent's limit of ", l.per_minute, " ", what, " a minute (burst ",
                                      l.burst, "): ", w.refused, " refused, recorded once per ",
                                      absl::FormatDuration(limiter_.limits().audit_window))}};
    entries.push_back(std::move(e));
  }
  if (entries.empty()) return;
  absl::StatusOr<std::vector<AuditRecord>> r = store_.AppendAudit(std::move(entries));
  if (!r.ok()) LogWarning(absl::StrCat("cannot record the rate-limit refusals: ", r.status().message()));
}

void AgentServiceImpl::SetServing(bool serving, const std::string& reason) {
  {
    absl::MutexLock lock(&serving_mu_);
    not_serving_ = serving ? "" : (reason.empty() ? "the store is unusable" : reason);
  }
  if (!serving) hub_.CloseAll(absl::UnavailableError(absl::StrCat("controller not serving: ", reason)));
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* AgentServiceImpl::Session(
    grpc::CallbackServerContext* context) {
  absl::StatusOr<PeerIdentity> who = identity_(*context);
  if (who.ok() && who->role != PeerRole::kAgent) {
    who = absl::PermissionDeniedError(
        absl::StrCat("AgentService needs an agent certificate; ", who->principal(), " is not one"));
  }
  auto* session = new SessionReactor(*this, who.ok() ? who->name : std::string(), context->peer().substr(0, 256));
  std::string not_serving;
  {
    absl::MutexLock lock(&serving_mu_);
    not_serving = not_serving_;
  }
  if (who.ok() && !not_serving.empty()) who = absl::UnavailableError(absl::StrCat("controller not serving: ", not_serving));
  if (!who.ok()) {
    session->Refuse(who.status());
  } else {
    session->KeepCertificate(context->auth_context().get());
    session->Start();
  }
  return session;
}

void AgentServiceImpl::RecheckCertificates(ClientCertificates& clients) {
  hub_.CloseWhere([&clients](AgentLink& link) -> absl::Status {
    auto* session = dynamic_cast<SessionReactor*>(&link);
    if (session == nullptr || session->certificate().leaf_pem.empty()) return absl::OkStatus();
    return clients.CheckCall(session->certificate().leaf_pem, session->certificate().chain_pem, session->peer());
  });
}

}  // namespace sesame::controller
