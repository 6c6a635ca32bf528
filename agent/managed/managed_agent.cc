// The managed agent's frame: options from a configuration, creation (the
// held state and the spool loaded), start and stop, the entry points other
// threads call (each only posts an event), and the worker's loop, which
// handles the events and runs the timers (state save, spool sync, acks,
// heartbeats). The handlers are in managed_agent_*.cc (see the header).
#include "agent/managed/managed_agent.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "agent/managed/proto_convert.h"
#include "agent/managed/tls_identity.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

// How long the state file and deferred spool appends may lag (see the header).
constexpr absl::Duration kSaveDelay = absl::Milliseconds(50);

}  // namespace

std::string ManagedAgent::Key(const std::string& door, const IpAddress& address) {
  return absl::StrCat(door, "|", address.ToString());
}

ManagedAgentOptions ManagedAgentOptionsFor(const AgentConfig& config, const TlsIdentity& identity) {
  const ManagedOptions& m = config.options.managed;
  ManagedAgentOptions o;
  o.state_dir = config.options.state_dir;
  o.link.addresses = m.controllers;
  o.link.keepalive = m.keepalive;
  o.link.keepalive_timeout = std::min(absl::Seconds(10), m.keepalive);
  o.link.connect_timeout = m.connect_timeout;
  o.link.backoff_min = m.backoff_min;
  o.link.backoff_max = m.backoff_max;
  o.credentials = [identity] { return MakeChannelCredentials(identity); };
  o.advertise_hosts = config.options.managed.advertise_hosts;
  o.reserve_size = config.options.managed.reserve_size;
  o.matcher.max_sources = config.options.max_sources;
  o.matcher.scan_threshold = config.options.scan_threshold;
  o.matcher.scan_window = config.options.scan_window;
  o.matcher.scan_ban = config.options.scan_ban;
  o.scan_report_window = config.options.scan_report_window;
  o.spool_limit_bytes = config.options.managed.spool_limit_bytes;
  return o;
}

namespace {

ScannerNoticeOptions NoticeOptions(const ManagedAgentOptions& o) {
  ScannerNoticeOptions n;
  n.report_window = o.scan_report_window;
  n.scan_threshold = o.matcher.scan_threshold;
  n.scan_window = o.matcher.scan_window;
  n.scan_ban = o.matcher.scan_ban;
  return n;
}

}  // namespace

ManagedAgent::ManagedAgent(const AgentConfig& config, ManagedAgentOptions options)
    : options_(std::move(options)),
      state_path_(options_.state_dir + "/managed-state"),
      started_at_(options_.clock->Now()),
      scanner_notices_(NoticeOptions(options_)),
      config_(config) {}

absl::StatusOr<std::unique_ptr<ManagedAgent>> ManagedAgent::Create(const AgentConfig& config,
                                                                   ManagedAgentOptions options) {
  if (options.link.addresses.empty()) return absl::InvalidArgumentError("managed agent: no controller address");
  RETURN_IF_ERROR(MakeDirectories(options.state_dir, 0750));
  std::unique_ptr<ManagedAgent> agent(new ManagedAgent(config, std::move(options)));
  absl::StatusOr<ManagedState> state = ManagedState::Load(agent->state_path_);
  if (state.ok()) {
    agent->state_ = *std::move(state);
  } else {
    // The controller sends everything again; only the offline reserve is
    // missing until then.
    const std::string aside = absl::StrCat(agent->state_path_, ".unreadable");
    std::rename(agent->state_path_.c_str(), aside.c_str());
    LogError(absl::StrCat(state.status().message(), "; moved to ", aside, ", starting with nothing held"));
  }
  ASSIGN_OR_RETURN(agent->spool_,
                   AuditSpool::Open(agent->options_.state_dir + "/spool", agent->options_.spool_limit_bytes));
  // What was reported and never answered is spent: not recognised again.
  for (uint64_t id : agent->Consumed()) agent->state_.RemoveSequence(id);
  agent->matcher_ = std::make_unique<ManagedMatcher>(agent->options_.matcher, *agent, agent->options_.max_sequences);
  agent->RecomputeDoors();
  agent->PublishToMatcher();  // publish_all_ starts true
  agent->PublishStatus();
  if (agent->spool_->depth() > 0 || agent->state_.revision() > 0) {
    LogInfo(absl::StrCat("managed: holding revision ", agent->state_.revision(), ", ", agent->state_.doors().size(),
                         " door(s), ", agent->state_.sequences().size(), " sequence(s) (",
                         agent->state_.reserve_left(), " in reserve), ", agent->spool_->depth(),
                         " report(s) to resend"));
  }
  return agent;
}

ManagedAgent::~ManagedAgent() { Stop(); }

void ManagedAgent::Start(GrantWorker& grants, std::function<void(std::vector<DoorConfig>)> doors_changed) {
  grants_ = &grants;
  doors_changed_ = std::move(doors_changed);
  LinkOptions link = options_.link;
  if (link.credentials == nullptr && options_.credentials) link.credentials = options_.credentials();
  link_ = std::make_unique<ControllerLink>(std::move(link), *this);
  // Threads start here, not at Create: the daemon may fork in between.
  writer_ = std::make_unique<StateWriter>(state_path_,
                                          [this](uint64_t g, const absl::Status& s) { Post(StateSaved{g, s}); });
  thread_ = std::thread([this] { Run(); });
  link_->Start();
}

void ManagedAgent::Stop() {
  shutting_down_.store(true);
  if (link_) link_->Stop();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  writer_.reset();  // the worker flushed it at its stop
}

void ManagedAgent::Reconfigure(const AgentConfig& config) { Post(NewConfig{config}); }

void ManagedAgent::StandaloneOpened(const Grant& grant) { Post(StandaloneGrant{grant}); }

void ManagedAgent::OnCompleted(CompletedKnock knock) { Post(std::move(knock)); }
void ManagedAgent::OnScanner(ScannerReport report) {
  // Counted here, on the capture thread: only a notice to send now wakes the
  // worker, so a flood of scanners does not fill the inbox.
  if (scanner_notices_.Add(report)) Post(ScannerNoticeReady{});
}
void ManagedAgent::OnSessionStarted(uint64_t session, const std::string& address) {
  Post(SessionStarted{session, address});
}
void ManagedAgent::OnMessage(uint64_t session, v1::ControllerMessage message) {
  Post(Received{session, std::move(message)});
}
void ManagedAgent::OnSessionEnded(uint64_t session, const absl::Status& status) { Post(SessionEnded{session, status}); }

void ManagedAgent::OnConnectFailed(const std::string& address, const absl::Status& status, absl::Duration retry_in) {
  // Quiet after the first: an outage is one warning, not one per attempt.
  const LinkStats stats = link_->stats();
  const LogLevel level = stats.connect_failures <= 1 ? LogLevel::kWarning : LogLevel::kDebug;
  Log(level, absl::StrCat("controller ", address, ": ", status.message(),
                          retry_in > absl::ZeroDuration() ? absl::StrCat("; retrying in ", absl::FormatDuration(retry_in))
                                                          : "; trying the next address"));
}

void ManagedAgent::Post(Event event) {
  absl::MutexLock lock(&mu_);
  inbox_.push_back(std::move(event));
}

void ManagedAgent::Run() {
  for (;;) {
    std::deque<Event> events;
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time wake =
          std::min({next_heartbeat_, save_due_, sync_due_, absl::Now() + absl::Seconds(1)});
      mu_.AwaitWithDeadline(absl::Condition(
                                +[](ManagedAgent* a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(a->mu_) {
                                  return !a->inbox_.empty() || a->stopping_;
                                },
                                this),
                            wake);
      events.swap(inbox_);
      stopping = stopping_;
    }
    for (Event& e : events) Handle(e);
    // An aggregate whose window is over; at a stop, the open window's too
    // (spooled, it reaches the controller after the restart).
    ReportScannerNotices(stopping ? absl::InfiniteFuture() : options_.clock->Now());
    const absl::Time now = absl::Now();
    PublishToMatcher();
    if (dirty_) {
      dirty_ = false;
      // A save serializes the whole state here (the write is writer_'s):
      // saves take at most a tenth of the worker's time.
      save_due_ = std::min(save_due_, std::max(now + kSaveDelay, last_save_ + 10 * last_save_took_));
    }
    if (spool_->unsynced()) sync_due_ = std::min(sync_due_, now + kSaveDelay);
    if (stopping) {
      if (save_due_ != absl::InfiniteFuture()) SaveState();
      if (save_generation_ > 0) HandleStateSaved(StateSaved{save_generation_, writer_->Flush()});
    } else if (now >= save_due_) {
      SaveState();
    }
    if (now >= sync_due_ || stopping) {
      if (absl::Status s = spool_->Sync(); !s.ok()) NoteError(absl::StrCat("spool: ", s.message()));
      sync_due_ = absl::InfiniteFuture();
    }
    if (online_ && state_.revision() != acked_) {
      v1::AgentMessage ack;
      ack.set_id(spool_->NewId());
      ack.mutable_ack()->set_revision(state_.revision());
      SendNow(std::move(ack));
      acked_ = state_.revision();
    }
    if (online_ && options_.clock->Now() >= next_heartbeat_) SendHeartbeat();
    PublishStatus();
    if (stopping) return;
  }
}

void ManagedAgent::Handle(Event& event) {
  if (auto* e = std::get_if<SessionStarted>(&event)) {
    HandleSessionStarted(*e);
  } else if (auto* e = std::get_if<Received>(&event)) {
    if (e->session == session_) HandleMessage(e->message);
  } else if (auto* e = std::get_if<SessionEnded>(&event)) {
    if (e->session != session_) return;
    session_ = 0;
    online_ = false;
    next_heartbeat_ = absl::InfiniteFuture();
    if (shutting_down_.load()) {
      LogInfo("controller session closed: the agent is stopping");
      return;
    }
    LogWarning(absl::StrCat("controller session ended: ", e->status.ToString(),
                            state_.reserve_left() > 0
                                ? absl::StrCat("; ", state_.reserve_left(), " reserve sequence(s) work meanwhile")
                                : "; no reserve sequence left: only standalone doors work meanwhile"));
  } else if (auto* e = std::get_if<CompletedKnock>(&event)) {
    HandleCompleted(*e);
  } else if (std::holds_alternative<ScannerNoticeReady>(event)) {
    ReportScannerNotices(options_.clock->Now());
  } else if (auto* e = std::get_if<GrantOutcome>(&event)) {
    HandleGrantOutcome(*e);
  } else if (auto* e = std::get_if<SessionsKilled>(&event)) {
    ReportSessionsKilled(*e);
  } else if (auto* e = std::get_if<StandaloneGrant>(&event)) {
    v1::AgentMessage m;
    v1::AuditEvent* a = m.mutable_audit();
    *a->mutable_time() = ToProtoTime(e->grant.opened);
    a->set_what("knock.opened");
    (*a->mutable_details())["door"] = e->grant.door;
    (*a->mutable_details())["address"] = e->grant.address.ToString();
    (*a->mutable_details())["standalone"] = "true";
    local_opens_[Key(e->grant.door, e->grant.address)] = "standalone";
    Report(std::move(m));
  } else if (auto* e = std::get_if<StateSaved>(&event)) {
    HandleStateSaved(*e);
  } else if (auto* e = std::get_if<NewConfig>(&event)) {
    config_ = std::move(e->config);
    RecomputeDoors();
    publish_all_ = true;
    dirty_ = true;
  }
}

}  // namespace sesame
