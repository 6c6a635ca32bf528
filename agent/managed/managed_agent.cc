#include "agent/managed/managed_agent.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/managed/managed_doors.h"
#include "agent/managed/proto_convert.h"
#include "agent/managed/reporting_backend.h"
#include "agent/managed/tls_identity.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/metric_wire.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

constexpr size_t kMaxErrorLength = 512;
// How long the state file and deferred spool appends may lag (see the header).
constexpr absl::Duration kSaveDelay = absl::Milliseconds(50);

std::string Key(const std::string& door, const IpAddress& address) {
  return absl::StrCat(door, "|", address.ToString());
}

std::vector<MetricSample> ManagedMetrics(const ManagedStatus& s, int reserve_size) {
  auto n = [](uint64_t v) { return static_cast<double>(v); };
  std::vector<MetricSample> m = {
      Gauge("sesame_agent_controller_connected", "1 while a session with the controller is up.", s.online ? 1 : 0),
      Gauge("sesame_agent_revision", "Highest controller revision applied.", n(s.revision)),
      Gauge("sesame_agent_managed_sequences", "Managed sequences held (fleet and offline reserve).", n(s.sequences)),
      Gauge("sesame_agent_reserve_left", "Unused offline-reserve sequences held.", n(s.reserve_left)),
      Gauge("sesame_agent_spool_depth", "Reports spooled and not yet confirmed by the controller.", n(s.spool_depth)),
      Counter("sesame_agent_knocks_reported_total", "Managed knocks reported to the controller.",
              n(s.knocks_reported)),
      Counter("sesame_agent_offline_admitted_total", "Knocks admitted through the offline reserve.",
              n(s.offline_admitted)),
      Counter("sesame_agent_replays_total", "Reported knocks the controller refused as replays.", n(s.replays)),
      Counter("sesame_agent_unknown_sequences_total", "Reported knocks the controller did not know.",
              n(s.unknown_verdicts)),
      Counter("sesame_agent_reports_confirmed_total", "Spooled reports the controller confirmed.", n(s.confirmed)),
      Counter("sesame_agent_sessions_total", "Sessions started with the controller.", n(s.link.sessions)),
      Counter("sesame_agent_connect_failures_total", "Attempts to reach the controller that failed.",
              n(s.link.connect_failures)),
  };
  if (reserve_size > 0) {
    // The contract has no field for it yet: the wish travels as a gauge.
    m.push_back(Gauge("sesame_agent_reserve_wanted", "Offline-reserve sequences wished for (ReserveSize).",
                      reserve_size));
  }
  return m;
}

const char* OutcomeName(v1::KnockOutcome outcome) {
  switch (outcome) {
    case v1::KNOCK_OUTCOME_OPENED:
      return "opened";
    case v1::KNOCK_OUTCOME_REPLAY:
      return "replay";
    case v1::KNOCK_OUTCOME_UNKNOWN:
      return "unknown";
    default:
      return "unspecified";
  }
}

}  // namespace

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
  return o;
}

ManagedAgent::ManagedAgent(const AgentConfig& config, ManagedAgentOptions options)
    : options_(std::move(options)),
      state_path_(options_.state_dir + "/managed-state"),
      started_at_(options_.clock->Now()),
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
  ASSIGN_OR_RETURN(agent->spool_, AuditSpool::Open(agent->options_.state_dir + "/spool"));
  // What was reported and never answered is spent: not recognised again.
  for (uint64_t id : agent->Consumed()) agent->state_.RemoveSequence(id);
  agent->matcher_ = std::make_unique<ManagedMatcher>(agent->options_.matcher, *agent, agent->options_.max_shards);
  agent->RecomputeDoors();
  agent->PublishSequences();
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

std::vector<DoorConfig> ManagedAgent::DoorConfigs() const {
  absl::MutexLock lock(&mu_);
  return door_configs_shared_;
}

BackendLookup ManagedAgent::Reporting(BackendLookup inner) {
  struct Wrappers {
    absl::Mutex mu;
    absl::flat_hash_map<FirewallBackend*, std::unique_ptr<ReportingBackend>> by_inner ABSL_GUARDED_BY(mu);
  };
  auto wrappers = std::make_shared<Wrappers>();
  return [this, inner = std::move(inner), wrappers](const std::string& door) -> FirewallBackend* {
    FirewallBackend* backend = inner(door);
    if (backend == nullptr) return nullptr;
    absl::MutexLock lock(&wrappers->mu);
    std::unique_ptr<ReportingBackend>& w = wrappers->by_inner[backend];
    if (w == nullptr) {
      w = std::make_unique<ReportingBackend>(backend, [this](bool opened, const Grant& g, const absl::Status& s) {
        Post(GrantOutcome{opened, g, s});
      });
    }
    return w.get();
  };
}

void ManagedAgent::Start(GrantWorker& grants, std::function<void(std::vector<DoorConfig>)> doors_changed) {
  grants_ = &grants;
  doors_changed_ = std::move(doors_changed);
  LinkOptions link = options_.link;
  if (link.credentials == nullptr && options_.credentials) link.credentials = options_.credentials();
  link_ = std::make_unique<ControllerLink>(std::move(link), *this);
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
}

void ManagedAgent::Reconfigure(const AgentConfig& config) { Post(NewConfig{config}); }

void ManagedAgent::StandaloneOpened(const Grant& grant) { Post(StandaloneGrant{grant}); }

void ManagedAgent::SetMetrics(std::vector<MetricSample> metrics) {
  absl::MutexLock lock(&mu_);
  metrics_ = std::move(metrics);
}

std::vector<MetricSample> ManagedAgent::Metrics() const { return ManagedMetrics(status(), options_.reserve_size); }

ManagedStatus ManagedAgent::status() const {
  ManagedStatus s;
  {
    absl::MutexLock lock(&mu_);
    s = status_;
  }
  if (link_) s.link = link_->stats();
  return s;
}

void ManagedAgent::OnCompleted(CompletedKnock knock) { Post(std::move(knock)); }
void ManagedAgent::OnScanner(ScannerReport report) { Post(std::move(report)); }
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
    const absl::Time now = absl::Now();
    if (dirty_) {
      PublishSequences();
      dirty_ = false;
      save_due_ = std::min(save_due_, now + kSaveDelay);
    }
    if (spool_->unsynced()) sync_due_ = std::min(sync_due_, now + kSaveDelay);
    if (now >= save_due_ || stopping) {
      if (save_due_ != absl::InfiniteFuture()) SaveState();
      save_due_ = absl::InfiniteFuture();
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
  } else if (auto* e = std::get_if<ScannerReport>(&event)) {
    HandleScanner(*e);
  } else if (auto* e = std::get_if<GrantOutcome>(&event)) {
    HandleGrantOutcome(*e);
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
  } else if (auto* e = std::get_if<NewConfig>(&event)) {
    config_ = std::move(e->config);
    RecomputeDoors();
    dirty_ = true;
  }
}

v1::AgentMessage ManagedAgent::MakeHello() {
  v1::AgentMessage m;
  m.set_id(spool_->NewId());
  v1::Hello* h = m.mutable_hello();
  h->set_version(options_.version);
  h->set_last_revision(state_.revision());
  for (const auto& [id, s] : state_.sequences()) h->add_sequence_ids(id);
  for (const auto& [id, g] : state_.grants()) h->add_grant_ids(id);
  h->set_spool_depth(static_cast<uint32_t>(spool_->depth()));
  *h->mutable_started_at() = ToProtoTime(started_at_);
  for (const std::string& host : options_.advertise_hosts) h->add_advertise_hosts(host);
  *h->mutable_agent_time() = ToProtoTime(options_.clock->Now());
  return m;
}

void ManagedAgent::HandleSessionStarted(const SessionStarted& e) {
  session_ = e.session;
  online_ = false;
  acked_ = 0;
  std::vector<v1::AgentMessage> batch;
  batch.push_back(MakeHello());
  for (const v1::AgentMessage* m : spool_->Pending()) batch.push_back(*m);
  LogInfo(absl::StrCat("controller session open with ", e.address,
                       spool_->depth() > 0 ? absl::StrCat("; resending ", spool_->depth(), " report(s)") : ""));
  link_->Send(session_, std::move(batch));
}

void ManagedAgent::HandleMessage(v1::ControllerMessage& m) {
  switch (m.body_case()) {
    case v1::ControllerMessage::kSnapshot: {
      const v1::Snapshot& s = m.snapshot();
      Carry(state_.ApplySnapshot(s, Consumed()));
      dirty_ = true;
      if (!online_) {
        LogInfo(absl::StrCat("controller snapshot at revision ", s.revision(), ": ", state_.doors().size(),
                             " door(s), ", state_.sequences().size(), " sequence(s) (", state_.reserve_left(),
                             " in reserve), ", state_.grants().size(), " grant(s)"));
      }
      online_ = true;
      acked_ = 0;  // a snapshot is always acknowledged
      next_heartbeat_ = options_.clock->Now();
      break;
    }
    case v1::ControllerMessage::kDelta:
      Carry(state_.ApplyDelta(m.delta(), Consumed()));
      dirty_ = true;
      break;
    case v1::ControllerMessage::kKnockVerdict:
      HandleVerdict(m.knock_verdict());
      break;
    case v1::ControllerMessage::kReceipt: {
      Confirm(std::vector<std::string>(m.receipt().ids().begin(), m.receipt().ids().end()));
      break;
    }
    case v1::ControllerMessage::BODY_NOT_SET:
      break;
  }
}

void ManagedAgent::HandleVerdict(const v1::KnockVerdict& v) {
  Confirm({v.reply_to()});
  switch (v.outcome()) {
    case v1::KNOCK_OUTCOME_OPENED:
      LogInfo(absl::StrCat("controller: sequence ", v.sequence_id(), " won, ",
                           v.has_grant() ? absl::StrCat("grant ", v.grant().id()) : std::string("no grant here")));
      // Held from now on, so that the Delta carrying the same grant does not
      // open it a second time (which would change nothing anyway).
      if (v.has_grant() && v.grant().id() != 0 && state_.PutGrant(v.grant())) {
        dirty_ = true;
        OpenGrant(v.grant());
      }
      break;
    case v1::KNOCK_OUTCOME_REPLAY:
      ++replays_;
      LogWarning(absl::StrCat("controller: sequence ", v.sequence_id(), " is a replay",
                              v.first_agent().empty() ? "" : absl::StrCat(" (first used on ", v.first_agent(), ")")));
      break;
    default:
      if (v.outcome() == v1::KNOCK_OUTCOME_UNKNOWN) ++unknown_verdicts_;
      LogWarning(absl::StrCat("controller: knock ", v.reply_to(), ": ", OutcomeName(v.outcome()), " sequence"));
      break;
  }
}

void ManagedAgent::Carry(const ManagedState::Changes& changes) {
  for (const std::string& e : changes.errors) NoteError(absl::StrCat("from the controller: ", e));
  // Order matters on the grant worker's queue: closes while a removed
  // door's backend still exists, opens once a new door's backend does.
  for (const v1::Grant& g : changes.grants_to_close) CloseGrant(g);
  if (changes.doors_changed) RecomputeDoors();
  if (changes.sequences_changed) dirty_ = true;
  for (const v1::Grant& g : changes.grants_to_open) OpenGrant(g);
}

void ManagedAgent::OpenGrant(const v1::Grant& g) {
  const absl::Time now = options_.clock->Now();
  auto fail = [&](const std::string& error) {
    NoteError(absl::StrCat("grant ", g.id(), ": ", error));
    v1::AgentMessage m;
    v1::GrantResult* r = m.mutable_grant_result();
    r->set_grant_id(g.id());
    r->set_applied(false);
    r->set_error(error.substr(0, kMaxErrorLength));
    *r->mutable_at() = ToProtoTime(now);
    Report(std::move(m));
  };
  absl::StatusOr<Grant> grant = FromProtoGrant(g, GrantPortsOf(g.door()));
  if (!grant.ok()) return fail(std::string(grant.status().message()));
  if (!ServesDoor(grant->door)) return fail(absl::StrCat("no door \"", grant->door, "\" on this agent"));
  if (grant->expires <= now) return;  // nothing to open; the controller closes it on its side
  awaiting_open_[Key(grant->door, grant->address)].push_back(g.id());
  grants_->Open(*std::move(grant));
}

void ManagedAgent::CloseGrant(const v1::Grant& g) {
  const std::optional<IpAddress> address = IpAddress::Parse(g.address());
  if (!address.has_value()) {
    NoteError(absl::StrCat("revoke of grant ", g.id(), ": bad address \"", g.address(), "\""));
    return;
  }
  if (!ServesDoor(g.door())) {
    // Nothing can be open here for a door this agent does not serve.
    v1::AgentMessage m;
    v1::RevokeApplied* r = m.mutable_revoke_applied();
    r->set_grant_id(g.id());
    *r->mutable_at() = ToProtoTime(options_.clock->Now());
    Report(std::move(m));
    return;
  }
  revoking_[g.id()] = Key(g.door(), *address);
  grants_->Revoke(g.door(), *address);
}

void ManagedAgent::HandleGrantOutcome(const GrantOutcome& o) {
  const std::string key = Key(o.grant.door, o.grant.address);
  const absl::Time now = options_.clock->Now();
  if (o.opened) {
    if (auto it = awaiting_open_.find(key); it != awaiting_open_.end()) {
      for (uint64_t id : it->second) {
        v1::AgentMessage m;
        v1::GrantResult* r = m.mutable_grant_result();
        r->set_grant_id(id);
        r->set_applied(o.status.ok());
        if (!o.status.ok()) r->set_error(o.status.ToString().substr(0, kMaxErrorLength));
        *r->mutable_at() = ToProtoTime(now);
        Report(std::move(m));
      }
      awaiting_open_.erase(it);
    }
    if (auto it = local_opens_.find(key); it != local_opens_.end()) {
      v1::AgentMessage m;
      v1::AuditEvent* a = m.mutable_audit();
      *a->mutable_time() = ToProtoTime(now);
      a->set_what(o.status.ok() ? "grant.applied" : "grant.failed");
      (*a->mutable_details())["door"] = o.grant.door;
      (*a->mutable_details())["address"] = o.grant.address.ToString();
      (*a->mutable_details())["origin"] = it->second;
      if (!o.status.ok()) (*a->mutable_details())["error"] = o.status.ToString().substr(0, kMaxErrorLength);
      local_opens_.erase(it);
      Report(std::move(m));
    }
    if (!o.status.ok()) NoteError(absl::StrCat(o.grant.door, ": cannot open for ", o.grant.address.ToString(), ": ",
                                               o.status.message()));
    return;
  }
  // Closed: a revocation we asked for, or an expiry the grant book ran.
  std::vector<std::pair<uint64_t, bool>> closed;  // (id, expired)
  for (const auto& [id, k] : revoking_) {
    if (k == key) closed.emplace_back(id, false);
  }
  for (const auto& [id, g] : state_.grants()) {
    if (g.door() == o.grant.door && g.address() == o.grant.address.ToString()) closed.emplace_back(id, true);
  }
  for (const auto& [id, expired] : closed) {
    v1::AgentMessage m;
    v1::RevokeApplied* r = m.mutable_revoke_applied();
    r->set_grant_id(id);
    r->set_expired(expired);
    if (!o.status.ok()) r->set_error(o.status.ToString().substr(0, kMaxErrorLength));
    *r->mutable_at() = ToProtoTime(now);
    Report(std::move(m));
    if (o.status.ok()) {
      revoking_.erase(id);
      if (state_.RemoveGrant(id)) dirty_ = true;
    }
  }
}

void ManagedAgent::HandleCompleted(const CompletedKnock& k) {
  const absl::Time now = options_.clock->Now();
  if (state_.RemoveSequence(k.sequence_id)) dirty_ = true;
  v1::AgentMessage m;
  m.set_id(spool_->NewId());
  v1::KnockMatched* km = m.mutable_knock_matched();
  km->set_door(k.door);
  km->set_sequence_id(k.sequence_id);
  AppendProtoKnocks(k.knocks, km->mutable_knocks());
  km->set_source(k.source.ToString());
  *km->mutable_matched_at() = ToProtoTime(k.time);
  ++knocks_reported_;
  if (k.spent) {
    // A replay (the matcher's replay watch): the controller judges and
    // audits it; nothing opens here, online or not, reserve or not. Spooled
    // like an online report (synced within kSaveDelay).
    LogWarning(absl::StrCat(k.source.ToString(), ": ", k.door, ": sequence ", k.sequence_id,
                            " knocked again after it was spent here: replay, reported to the controller"));
    if (session_ != 0) link_->Send(session_, m);
    if (absl::Status s = spool_->Append(m, /*sync=*/false); !s.ok()) NoteError(absl::StrCat("spool: ", s.message()));
    return;
  }
  if (online_ && session_ != 0) {
    // The controller first: the knocker is waiting. The spool follows at
    // once; a crash in between loses a report the controller already has.
    link_->Send(session_, m);
    if (absl::Status s = spool_->Append(m, /*sync=*/false); !s.ok()) NoteError(absl::StrCat("spool: ", s.message()));
    LogInfo(absl::StrCat(k.source.ToString(), ": ", k.door, ": sequence ", k.sequence_id,
                         " complete, asking the controller"));
    return;
  }
  if (!k.reserve) {
    Report(m);  // sent now if a session is up without its snapshot yet
    LogWarning(absl::StrCat(k.source.ToString(), ": ", k.door, ": sequence ", k.sequence_id,
                            " complete while the controller is unreachable; it decides when the link is back"));
    return;
  }
  // Offline reserve: recorded durably before the door opens, so that no
  // crash can make this sequence usable a second time.
  km->set_offline(true);
  if (absl::Status s = spool_->Append(m); !s.ok()) {
    NoteError(absl::StrCat(k.source.ToString(), ": ", k.door, ": reserve sequence ", k.sequence_id,
                           " used but cannot be recorded (", s.message(), "); not opening"));
    return;
  }
  SaveState();
  if (session_ != 0) link_->Send(session_, m);
  Grant grant;
  grant.door = k.door;
  grant.address = k.source;
  grant.ports = GrantPortsOf(k.door);
  grant.opened = now;
  grant.expires = now + GrantTtlOf(k.door);
  ++offline_admitted_;
  local_opens_[Key(grant.door, grant.address)] = "offline-reserve";
  LogInfo(absl::StrCat(k.source.ToString(), ": ", k.door, ": reserve sequence ", k.sequence_id,
                       " complete while the controller is unreachable: OPEN SESAME (offline)"));
  grants_->Open(std::move(grant));
}

void ManagedAgent::HandleScanner(const ScannerReport& r) {
  auto [it, inserted] = scanners_reported_.try_emplace(r.source, r.ignored_until);
  if (!inserted) {
    if (it->second > r.at) return;  // reported by another shard already
    it->second = r.ignored_until;
  }
  if (scanners_reported_.size() > 4096) {
    for (auto i = scanners_reported_.begin(); i != scanners_reported_.end();) {
      auto next = std::next(i);
      if (i->second <= r.at) scanners_reported_.erase(i);
      i = next;
    }
  }
  v1::AgentMessage m;
  v1::ScannerSeen* s = m.mutable_scanner_seen();
  s->set_source(r.source.ToString());
  s->set_distinct_ports(static_cast<uint32_t>(r.distinct_ports));
  *s->mutable_window() = ToProtoDuration(r.window);
  *s->mutable_ignored_until() = ToProtoTime(r.ignored_until);
  *s->mutable_at() = ToProtoTime(r.at);
  Report(std::move(m));
}

void ManagedAgent::RecomputeDoors() {
  std::vector<std::string> errors;
  std::vector<DoorConfig> doors = ManagedDoorConfigs(config_, state_.doors(), &errors);
  for (const std::string& e : errors) NoteError(e);
  door_configs_ = doors;
  {
    absl::MutexLock lock(&mu_);
    door_configs_shared_ = doors;
  }
  if (doors_changed_) doors_changed_(std::move(doors));
}

const DoorConfig* ManagedAgent::DoorConfigFor(const std::string& door) const {
  for (const DoorConfig& d : door_configs_) {
    if (d.name == door) return &d;
  }
  return nullptr;
}

bool ManagedAgent::ServesDoor(const std::string& door) const {
  if (DoorConfigFor(door) != nullptr) return true;
  for (const DoorConfig& d : config_.doors) {
    if (!d.managed && d.name == door) return true;
  }
  return false;
}

std::vector<Knock> ManagedAgent::GrantPortsOf(const std::string& door) const {
  if (const DoorConfig* d = DoorConfigFor(door)) return d->ports;
  for (const DoorConfig& d : config_.doors) {
    if (d.name == door) return d.ports;
  }
  return {{22, Protocol::kTcp}};
}

absl::Duration ManagedAgent::GrantTtlOf(const std::string& door) const {
  if (const DoorConfig* d = DoorConfigFor(door)) return d->cmd_timeout;
  return absl::Seconds(10);
}

void ManagedAgent::PublishSequences() {
  std::vector<LiveSequence> live;
  live.reserve(state_.sequences().size());
  for (const auto& [id, s] : state_.sequences()) {
    const DoorConfig* door = DoorConfigFor(s.door());
    if (door == nullptr) continue;  // a door this agent does not serve
    absl::StatusOr<std::vector<Knock>> knocks = FromProtoKnocks(s.knocks(), kMaxSequenceLength);
    if (!knocks.ok()) continue;  // ManagedState let none of these in
    LiveSequence l;
    l.id = id;
    l.door = s.door();
    l.knocks = *std::move(knocks);
    l.reserve = s.reserve();
    l.params = MatchParamsFor(config_, *door);
    live.push_back(std::move(l));
  }
  matcher_->Publish(std::move(live));
}

void ManagedAgent::SaveState() {
  if (absl::Status s = state_.Save(state_path_); !s.ok()) NoteError(absl::StrCat("managed state: ", s.message()));
  save_due_ = absl::InfiniteFuture();
}

absl::flat_hash_set<uint64_t> ManagedAgent::Consumed() const {
  absl::flat_hash_set<uint64_t> ids;
  for (const v1::AgentMessage* m : spool_->Pending()) {
    if (m->has_knock_matched()) ids.insert(m->knock_matched().sequence_id());
  }
  return ids;
}

void ManagedAgent::Report(v1::AgentMessage message) {
  if (message.id().empty()) message.set_id(spool_->NewId());
  if (absl::Status s = spool_->Append(message); !s.ok()) {
    NoteError(absl::StrCat("spool: ", s.message(), " (a report may be lost)"));
  }
  if (session_ != 0) link_->Send(session_, std::move(message));
}

void ManagedAgent::SendNow(v1::AgentMessage message) {
  if (session_ != 0) link_->Send(session_, std::move(message));
}

void ManagedAgent::SendHeartbeat() {
  const absl::Time now = options_.clock->Now();
  v1::AgentMessage m;
  m.set_id(spool_->NewId());
  v1::Heartbeat* h = m.mutable_heartbeat();
  *h->mutable_agent_time() = ToProtoTime(now);
  h->set_revision(state_.revision());
  h->set_reserve_left(static_cast<uint32_t>(state_.reserve_left()));
  h->set_spool_depth(static_cast<uint32_t>(spool_->depth()));
  {
    absl::MutexLock lock(&mu_);
    for (const MetricSample& metric : metrics_) *h->add_metrics() = ToWireMetric(metric);
  }
  for (const MetricSample& metric : ManagedMetrics(LiveStatus(), options_.reserve_size)) {
    *h->add_metrics() = ToWireMetric(metric);
  }
  h->set_last_error(last_error_);
  SendNow(std::move(m));
  next_heartbeat_ = now + state_.heartbeat_interval();
}

void ManagedAgent::Confirm(const std::vector<std::string>& ids) {
  const size_t before = spool_->depth();
  if (absl::Status s = spool_->Confirm(ids); !s.ok()) NoteError(absl::StrCat("spool: ", s.message()));
  confirmed_ += before - spool_->depth();
}

void ManagedAgent::NoteError(const std::string& error) {
  LogError(error);
  last_error_ = error.substr(0, kMaxErrorLength);
}

ManagedStatus ManagedAgent::LiveStatus() const {
  ManagedStatus s;
  s.online = online_;
  s.revision = state_.revision();
  s.sequences = state_.sequences().size();
  s.reserve_left = state_.reserve_left();
  s.spool_depth = spool_->depth();
  s.knocks_reported = knocks_reported_;
  s.offline_admitted = offline_admitted_;
  s.confirmed = confirmed_;
  s.replays = replays_;
  s.unknown_verdicts = unknown_verdicts_;
  s.last_error = last_error_;
  if (link_) s.link = link_->stats();
  return s;
}

void ManagedAgent::PublishStatus() {
  ManagedStatus s = LiveStatus();
  absl::MutexLock lock(&mu_);
  status_ = std::move(s);
}

}  // namespace sesame
