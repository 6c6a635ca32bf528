#include "agent/agent_daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/capture/capture_filter.h"
#include "agent/capture/local_addresses.h"
#include "agent/capture/pcap_source.h"
#include "agent/grants/backends/backend_factory.h"
#include "agent/grants/grant_manager.h"
#include "agent/grants/process_runner.h"
#include "agent/managed/backend_switch.h"
#include "agent/managed/managed_agent.h"
#include "agent/managed/tls_identity.h"
#include "agent/match/knock_pipeline.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/prometheus_text.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

constexpr absl::Duration kTickInterval = absl::Milliseconds(100);
constexpr absl::Duration kAddressRefresh = absl::Seconds(5);
constexpr absl::Duration kMaxReopenBackoff = absl::Seconds(30);
// How often the managed agent gets fresh counters for its heartbeats.
constexpr absl::Duration kHeartbeatMetricsInterval = absl::Seconds(1);
constexpr int kFramesPerDispatch = 512;

absl::Status ConfigureLog(const AgentConfig& config, const DaemonOptions& options) {
  LogOptions log;
  log.ident = "sesame-agent";
  log.to_stderr = !options.daemonize;
  log.file = config.options.log_file;
  log.syslog = config.options.use_syslog;
  log.min_level = options.debug ? LogLevel::kDebug : LogLevel::kInfo;
  return ConfigureLogging(log);
}

// One interface's capture, re-opened with backoff when it fails (an
// interface that goes down and comes back must not kill the daemon).
struct Capture {
  std::string interface;
  std::unique_ptr<PcapSource> source;
  absl::Time retry_at = absl::InfinitePast();
  absl::Duration backoff = absl::Seconds(1);
  CaptureStats past;  // totals of earlier incarnations
};

CaptureStats Add(CaptureStats a, const CaptureStats& b) {
  a.frames += b.frames;
  a.kernel_drops += b.kernel_drops;
  a.interface_drops += b.interface_drops;
  a.malformed += b.malformed;
  a.ignored += b.ignored;
  return a;
}

// The lookup keeps the set alive until the grant book lets go of it.
BackendLookup LookupIn(std::shared_ptr<BackendSet> set) {
  return [set = std::move(set)](const std::string& door) { return set->ForDoor(door); };
}

// In managed mode, a standalone door's grant also goes to the controller's
// audit log.
class AuditedSink final : public GrantSink {
 public:
  AuditedSink(GrantSink& grants, ManagedAgent& managed) : grants_(grants), managed_(managed) {}
  void Open(Grant grant) override {
    managed_.StandaloneOpened(grant);
    grants_.Open(std::move(grant));
  }

 private:
  GrantSink& grants_;
  ManagedAgent& managed_;
};

absl::Status Daemonize() {
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid > 0) _exit(0);
  if (setsid() < 0) return absl::InternalError(absl::StrCat("setsid: ", std::strerror(errno)));
  pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid > 0) _exit(0);
  umask(022);
  if (chdir("/") != 0) return absl::InternalError("chdir /");
  const int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    if (null > STDERR_FILENO) close(null);
  }
  return absl::OkStatus();
}

class Daemon {
 public:
  Daemon(AgentConfig config, std::string config_path, ConfigOverrides overrides, DaemonOptions options)
      : config_(std::move(config)),
        config_path_(std::move(config_path)),
        overrides_(std::move(overrides)),
        options_(options) {}
  // The managed agent orders grants through grants_: it stops first.
  ~Daemon() {
    if (managed_) managed_->Stop();
  }

  absl::Status Run();

 private:
  absl::Status Start();
  absl::Status StartManaged(std::unique_ptr<GrantStore> store);
  // The daemon's own counters and gauges (capture, matching, grants). The
  // metrics file adds the managed side's (ManagedAgent::Metrics); so does
  // each heartbeat.
  std::vector<MetricSample> CollectMetrics();
  void PublishMetrics(absl::Time now);
  CaptureScope ScopeFor(const KnockPipeline& pipeline) const;
  void OpenCaptures(const std::vector<std::string>& interfaces);
  void TryOpen(Capture& capture);
  void ServiceCapture(Capture& capture);
  void RefreshFilterIfNeeded();
  void RefreshLocalAddresses();
  void Reload();
  void LogStats();
  absl::StatusOr<std::shared_ptr<BackendSet>> MakeBackends(const AgentConfig& config);
  // The grant book over `store` and `backends`, on its worker thread.
  void StartGrants(std::unique_ptr<GrantStore> store, BackendLookup backends);

  AgentConfig config_;
  const std::string config_path_;
  const ConfigOverrides overrides_;
  const DaemonOptions options_;
  const PipelineOptions pipeline_options_{options_.verbose, options_.only_ipv4};

  std::unique_ptr<ProcessRunner> runner_;
  // Managed mode only (declared before grants_, destroyed after it).
  std::unique_ptr<ManagedAgent> managed_;
  std::unique_ptr<BackendSwitch> backend_switch_;
  std::unique_ptr<GrantWorker> grants_;
  std::unique_ptr<AuditedSink> audited_sink_;
  std::unique_ptr<KnockPipeline> pipeline_;
  uint64_t managed_generation_ = 0;
  // Counters of pipelines replaced by a reload: metrics are counters.
  MatcherCounters past_matcher_;
  std::vector<Capture> captures_;
  CaptureScope scope_;
  uint64_t filter_generation_ = 0;
  std::vector<IpAddress> local_addresses_;
  int signal_fd_ = -1;
  const absl::Time started_at_ = absl::Now();
  // MetricsFile: written on its own thread (fsync stays off the capture loop).
  std::unique_ptr<PrometheusFileWriter> metrics_file_;
  absl::Time next_metrics_file_ = absl::InfinitePast();
  absl::Time next_heartbeat_metrics_ = absl::InfinitePast();
};

absl::StatusOr<std::shared_ptr<BackendSet>> Daemon::MakeBackends(const AgentConfig& config) {
  ASSIGN_OR_RETURN(std::unique_ptr<BackendSet> set, BackendSet::Create(config, *runner_));
  return std::shared_ptr<BackendSet>(std::move(set));
}



CaptureScope Daemon::ScopeFor(const KnockPipeline& pipeline) const {
  std::vector<Knock> current;
  for (const std::vector<Knock>& sequence : pipeline.CurrentSequences()) {
    current.insert(current.end(), sequence.begin(), sequence.end());
  }
  if (managed_) {
    if (managed_->matcher().AnyStrict()) return CaptureScope::Everything();
    const std::vector<Knock> managed = managed_->matcher().CurrentKnocks();
    current.insert(current.end(), managed.begin(), managed.end());
  }
  return ScopeForConfig(config_, current);
}

absl::Status Daemon::Start() {
  RETURN_IF_ERROR(ConfigureLog(config_, options_));
  RETURN_IF_ERROR(MakeDirectories(config_.options.state_dir, 0750));
  // The grants file is read before anything forks, so a corrupt one stops
  // the start with its message on the terminal.
  ASSIGN_OR_RETURN(std::unique_ptr<GrantStore> store,
                   GrantStore::Open(config_.options.state_dir + "/grants",
                                    options_.salvage_grants ? GrantStore::OnCorrupt::kSalvage
                                                            : GrantStore::OnCorrupt::kRefuse));
  if (config_.options.managed.enabled()) {
    // Files only (no gRPC before the fork): bad certificates, an unreadable
    // spool show on the terminal.
    ASSIGN_OR_RETURN(const TlsIdentity identity, LoadTlsIdentity(config_.options.managed));
    ManagedAgentOptions managed_options = ManagedAgentOptionsFor(config_, identity);
    managed_options.state_dir = config_.options.state_dir + "/managed";
    ASSIGN_OR_RETURN(managed_, ManagedAgent::Create(config_, std::move(managed_options)));
    LogInfo(absl::StrCat("managed mode: agent \"", identity.agent_name, "\", controller ",
                         absl::StrJoin(config_.options.managed.controllers, ", ")));
  }
  if (options_.daemonize) RETURN_IF_ERROR(Daemonize());

  // Threads start only now: fork() keeps none of them.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal_fd_ = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0) return absl::InternalError(absl::StrCat("signalfd: ", std::strerror(errno)));

  ProcessRunnerOptions po;
  po.max_children = config_.options.max_children;
  po.time_limit = config_.options.command_time_limit;
  runner_ = std::make_unique<ProcessRunner>(po);
  if (!config_.options.metrics_file.empty()) {
    metrics_file_ = std::make_unique<PrometheusFileWriter>(config_.options.metrics_file);
  }
  if (managed_) {
    RETURN_IF_ERROR(StartManaged(std::move(store)));
  } else {
    ASSIGN_OR_RETURN(std::shared_ptr<BackendSet> backends, MakeBackends(config_));
    RETURN_IF_ERROR(backends->PrepareAll());
    StartGrants(std::move(store), LookupIn(std::move(backends)));
    ASSIGN_OR_RETURN(pipeline_, KnockPipeline::Create(config_, pipeline_options_, *grants_));
  }
  RefreshLocalAddresses();
  scope_ = ScopeFor(*pipeline_);
  filter_generation_ = pipeline_->generation();
  if (managed_) managed_generation_ = managed_->matcher().generation();
  OpenCaptures(config_.options.interfaces);

  if (!config_.options.pid_file.empty()) {
    RETURN_IF_ERROR(WriteFileAtomically(config_.options.pid_file, absl::StrCat(getpid(), "\n"), 0644));
  }
  LogInfo(absl::StrCat("sesame-agent started: ", config_.doors.size(), " door(s) on ",
                       absl::StrJoin(config_.options.interfaces, ","), ", ", grants_->stats().open_now,
                       " grant(s) carried over"));
  return absl::OkStatus();
}

void Daemon::StartGrants(std::unique_ptr<GrantStore> store, BackendLookup backends) {
  auto book = std::make_unique<GrantBook>(std::move(store), std::move(backends), RealClock::Instance());
  book->set_resolve_names(options_.lookup_names);
  grants_ = std::make_unique<GrantWorker>(std::move(book));
}

// Backends for standalone and managed doors alike, through one switch; the
// managed agent's reporting sees every grant the backends handle.
absl::Status Daemon::StartManaged(std::unique_ptr<GrantStore> store) {
  ManagedAgent* managed = managed_.get();
  backend_switch_ = std::make_unique<BackendSwitch>(
      config_, managed->DoorConfigs(),
      [this](const AgentConfig& doors) -> absl::StatusOr<BackendSwitch::Built> {
        ASSIGN_OR_RETURN(std::shared_ptr<BackendSet> set, MakeBackends(doors));
        return BackendSwitch::Built{LookupIn(set), [set] { return set->PrepareAll(); }};
      },
      [managed](BackendLookup lookup) { return managed->Reporting(std::move(lookup)); });
  ASSIGN_OR_RETURN(BackendLookup lookup, backend_switch_->BuildInitial());
  StartGrants(std::move(store), std::move(lookup));
  backend_switch_->Attach(grants_.get());
  audited_sink_ = std::make_unique<AuditedSink>(*grants_, *managed);
  ASSIGN_OR_RETURN(pipeline_, KnockPipeline::Create(config_, pipeline_options_, *audited_sink_));
  BackendSwitch* backend_switch = backend_switch_.get();
  managed->Start(*grants_, [backend_switch](std::vector<DoorConfig> doors) {
    if (absl::Status s = backend_switch->SetManaged(std::move(doors)); !s.ok()) {
      LogError(absl::StrCat("managed doors: ", s.message()));
    }
  });
  return absl::OkStatus();
}

std::vector<MetricSample> Daemon::CollectMetrics() {
  auto n = [](uint64_t v) { return static_cast<double>(v); };
  CaptureStats capture;
  int down = 0;
  for (Capture& c : captures_) {
    capture = Add(capture, c.source ? Add(c.past, c.source->Stats()) : c.past);
    down += c.source ? 0 : 1;
  }
  MatcherCounters m = pipeline_->matcher().counters();
  m.knocks += past_matcher_.knocks;
  m.completions += past_matcher_.completions;
  m.resets += past_matcher_.resets;
  m.scanners += past_matcher_.scanners;
  m.evictions += past_matcher_.evictions;
  size_t sources = pipeline_->matcher().occupancy();
  if (managed_) {
    const MatcherCounters managed = managed_->matcher().counters();
    m.knocks += managed.knocks;
    m.completions += managed.completions;
    m.resets += managed.resets;
    m.scanners += managed.scanners;
    m.evictions += managed.evictions;
  }
  const GrantStats g = grants_->stats();
  std::vector<MetricSample> out = {
      Gauge("sesame_agent_start_time_seconds", "When the agent started (Unix time): counters restart from 0 then.",
            absl::ToDoubleSeconds(started_at_ - absl::UnixEpoch())),
      Gauge("sesame_agent_managed", "1 in managed mode, 0 standalone.", managed_ ? 1 : 0),
      Counter("sesame_agent_capture_frames_total", "Frames captured.", n(capture.frames)),
      Counter("sesame_agent_capture_drops_total", "Frames dropped by the kernel or the interface before capture.",
              n(capture.kernel_drops + capture.interface_drops)),
      Counter("sesame_agent_capture_malformed_total", "Captured frames that did not decode.", n(capture.malformed)),
      Gauge("sesame_agent_captures_down", "Interfaces whose capture is not open (being retried).", down),
      Counter("sesame_agent_knocks_seen_total", "Packets that started or advanced a door's sequence.", n(m.knocks)),
      Counter("sesame_agent_sequences_matched_total", "Sequences completed.", n(m.completions)),
      Counter("sesame_agent_wrong_knock_resets_total", "Sequences in progress reset by a wrong knock.", n(m.resets)),
      Counter("sesame_agent_scanners_total", "Sources flagged as scanners.", n(m.scanners)),
      Counter("sesame_agent_source_evictions_total", "Sources displaced from the full per-source table.",
              n(m.evictions)),
      Gauge("sesame_agent_sources_tracked", "Sources in the standalone doors' per-source table.", n(sources)),
      Gauge("sesame_agent_grants_open", "Grants open now.", n(g.open_now)),
      Counter("sesame_agent_grants_opened_total", "Grants opened.", n(g.opened)),
      Counter("sesame_agent_grants_closed_total", "Grants closed (expired or revoked).", n(g.closed)),
      Counter("sesame_agent_grant_failures_total", "Grants a backend failed to open or close.", n(g.failures)),
      Gauge("sesame_agent_commands_running", "Start/stop commands running.", n(runner_->running())),
      Gauge("sesame_agent_commands_queued", "Start/stop commands waiting for a slot.", n(runner_->queued())),
  };
  return out;
}

void Daemon::PublishMetrics(absl::Time now) {
  const bool heartbeat = managed_ != nullptr && now >= next_heartbeat_metrics_;
  const bool file = metrics_file_ != nullptr && now >= next_metrics_file_;
  if (!heartbeat && !file) return;
  std::vector<MetricSample> metrics = CollectMetrics();
  if (file) {
    next_metrics_file_ = now + config_.options.metrics_interval;
    std::vector<MetricSample> all = metrics;
    if (managed_) {
      std::vector<MetricSample> managed = managed_->Metrics();
      all.insert(all.end(), std::make_move_iterator(managed.begin()), std::make_move_iterator(managed.end()));
    }
    metrics_file_->Post(std::move(all));
  }
  if (heartbeat) {
    next_heartbeat_metrics_ = now + kHeartbeatMetricsInterval;
    managed_->SetMetrics(std::move(metrics));
  }
}

void Daemon::OpenCaptures(const std::vector<std::string>& interfaces) {
  captures_.clear();
  for (const std::string& name : interfaces) {
    captures_.emplace_back().interface = name;
    TryOpen(captures_.back());
  }
}

void Daemon::TryOpen(Capture& capture) {
  LiveCaptureOptions o;
  o.interface = capture.interface;
  o.scope = scope_;
  absl::StatusOr<std::unique_ptr<PcapSource>> source = OpenLiveCapture(o);
  if (source.ok()) {
    if (capture.backoff > absl::Seconds(1)) LogInfo(absl::StrCat(capture.interface, ": capture open again"));
    capture.source = std::move(*source);
    capture.backoff = absl::Seconds(1);
    return;
  }
  // Said once per outage at warning level; the retries stay quiet.
  if (capture.backoff == absl::Seconds(1)) {
    LogWarning(absl::StrCat(capture.interface, ": ", source.status().message(), "; retrying"));
  }
  capture.retry_at = absl::Now() + capture.backoff;
  capture.backoff = std::min(capture.backoff * 2, kMaxReopenBackoff);
}

void Daemon::ServiceCapture(Capture& capture) {
  // Bounded, so signals and ticks are served even under a flood.
  for (int round = 0; round < 64; ++round) {
    absl::StatusOr<int> n =
        capture.source->Dispatch(kFramesPerDispatch, [this](const Packet& p) {
          pipeline_->OnPacket(p);
          if (managed_) managed_->matcher().OnPacket(p);
        });
    if (!n.ok()) {
      LogWarning(absl::StrCat(capture.interface, ": capture failed (", n.status().message(),
                              "); re-opening when the interface is back"));
      capture.past = Add(capture.past, capture.source->Stats());
      capture.source.reset();
      capture.backoff = absl::Seconds(2);  // the first retry is not the first failure
      capture.retry_at = absl::Now() + absl::Seconds(1);
      return;
    }
    if (*n < kFramesPerDispatch) return;
  }
}

void Daemon::RefreshFilterIfNeeded() {
  const uint64_t managed_generation = managed_ ? managed_->matcher().generation() : 0;
  if (pipeline_->generation() == filter_generation_ && managed_generation == managed_generation_) return;
  filter_generation_ = pipeline_->generation();
  managed_generation_ = managed_generation;
  CaptureScope scope = ScopeFor(*pipeline_);
  if (scope == scope_) return;
  scope_ = std::move(scope);
  for (Capture& c : captures_) {
    if (!c.source) continue;
    if (absl::Status s = c.source->SetScope(scope_); !s.ok()) {
      LogError(absl::StrCat(c.interface, ": cannot install the new capture filter: ", s.ToString()));
    }
  }
}

void Daemon::RefreshLocalAddresses() {
  absl::StatusOr<std::vector<IpAddress>> addresses = ListLocalAddresses();
  if (!addresses.ok()) {
    LogWarning(addresses.status().ToString());
    return;
  }
  if (*addresses == local_addresses_) return;
  local_addresses_ = std::move(*addresses);
  pipeline_->SetLocalAddresses(local_addresses_);
  if (managed_) managed_->matcher().SetLocalAddresses(local_addresses_);
}

void Daemon::Reload() {
  LogInfo(absl::StrCat("SIGHUP: reloading ", config_path_));
  absl::StatusOr<AgentConfig> next = LoadConfig(config_path_);
  if (!next.ok()) {
    LogError(absl::StrCat("reload refused, keeping the running configuration: ", next.status().message()));
    return;
  }
  ApplyOverrides(overrides_, *next);
  if (next->options.state_dir != config_.options.state_dir) {
    LogWarning("StateDir changed: it takes effect at the next restart");
    next->options.state_dir = config_.options.state_dir;
  }
  if (next->options.managed.enabled() != config_.options.managed.enabled()) {
    LogError("reload refused, keeping the running configuration: switching between standalone and managed mode "
             "takes a restart");
    return;
  }
  if (managed_) {
    const ManagedOptions& was = config_.options.managed;
    const ManagedOptions& is = next->options.managed;
    if (is.controllers != was.controllers || is.ca_cert != was.ca_cert || is.cert != was.cert ||
        is.key != was.key || is.keepalive != was.keepalive || is.backoff_min != was.backoff_min ||
        is.backoff_max != was.backoff_max || is.connect_timeout != was.connect_timeout) {
      LogWarning("the controller link's settings changed: they take effect at the next restart");
    }
  }
  std::shared_ptr<BackendSet> backends;
  if (!managed_) {
    absl::StatusOr<std::shared_ptr<BackendSet>> built = MakeBackends(*next);
    if (!built.ok()) {
      LogError(absl::StrCat("reload refused, keeping the running configuration: ", built.status().message()));
      return;
    }
    backends = *std::move(built);
  }
  GrantSink& sink = managed_ ? static_cast<GrantSink&>(*audited_sink_) : static_cast<GrantSink&>(*grants_);
  absl::StatusOr<std::unique_ptr<KnockPipeline>> pipeline = KnockPipeline::Create(*next, pipeline_options_, sink);
  if (!pipeline.ok()) {
    LogError(absl::StrCat("reload refused, keeping the running configuration: ", pipeline.status().message()));
    return;
  }
  if (managed_) {
    // Builds standalone and managed doors together, then hands them over.
    if (absl::Status s = backend_switch_->SetConfig(*next); !s.ok()) {
      LogError(absl::StrCat("reload refused, keeping the running configuration: ", s.message()));
      return;
    }
    managed_->Reconfigure(*next);
    if (absl::Status s = ConfigureLog(*next, options_); !s.ok()) {
      LogError(absl::StrCat("reload: keeping the previous log settings: ", s.message()));
    }
  } else {
    if (absl::Status s = ConfigureLog(*next, options_); !s.ok()) {
      LogError(absl::StrCat("reload refused, keeping the running configuration: ", s.message()));
      return;
    }
    // Committed. The grant worker swaps backends between two grants and
    // re-applies the live grants through the new ones.
    grants_->Reconfigure([set = std::move(backends)](GrantBook& book) mutable {
      if (absl::Status s = set->PrepareAll(); !s.ok()) LogError(absl::StrCat("after reload: ", s.ToString()));
      book.SetBackends(LookupIn(std::move(set)));
    });
  }
  const bool interfaces_changed = next->options.interfaces != config_.options.interfaces;
  if (next->options.metrics_file != config_.options.metrics_file) {
    // The old file stays: node_exporter's node_textfile_mtime_seconds shows it is stale.
    metrics_file_.reset();
    if (!next->options.metrics_file.empty()) {
      metrics_file_ = std::make_unique<PrometheusFileWriter>(next->options.metrics_file);
    }
  }
  if (next->options.metrics_interval != config_.options.metrics_interval) next_metrics_file_ = absl::InfinitePast();
  config_ = std::move(*next);
  const MatcherCounters& old = pipeline_->matcher().counters();
  past_matcher_.knocks += old.knocks;
  past_matcher_.completions += old.completions;
  past_matcher_.scanners += old.scanners;
  pipeline_ = std::move(*pipeline);
  pipeline_->SetLocalAddresses(local_addresses_);
  scope_ = ScopeFor(*pipeline_);
  filter_generation_ = pipeline_->generation();
  if (interfaces_changed) {
    OpenCaptures(config_.options.interfaces);
  } else {
    for (Capture& c : captures_) {
      if (!c.source) continue;
      if (absl::Status s = c.source->SetScope(scope_); !s.ok()) {
        LogError(absl::StrCat(c.interface, ": cannot install the new capture filter: ", s.ToString()));
      }
    }
  }
  LogInfo(absl::StrCat("reloaded: ", config_.doors.size(), " door(s); knocks in progress start over"));
}

void Daemon::LogStats() {
  for (Capture& c : captures_) {
    const CaptureStats s = c.source ? Add(c.past, c.source->Stats()) : c.past;
    LogInfo(absl::StrCat("stats ", c.interface, ": frames=", s.frames, " kernel_drops=", s.kernel_drops,
                         " interface_drops=", s.interface_drops, " malformed=", s.malformed, " ignored=", s.ignored,
                         c.source ? "" : " (down)"));
  }
  const MatcherCounters& m = pipeline_->matcher().counters();
  const GrantStats g = grants_->stats();
  LogInfo(absl::StrCat("stats matcher: packets=", m.packets, " knocks=", m.knocks, " completions=", m.completions,
                       " resets=", m.resets, " timeouts=", m.timeouts, " evictions=", m.evictions,
                       " insert_failures=", m.insert_failures, " scanners=", m.scanners,
                       " sources=", pipeline_->matcher().occupancy(), "/", pipeline_->matcher().capacity()));
  LogInfo(absl::StrCat("stats grants: open=", g.open_now, " opened=", g.opened, " closed=", g.closed,
                       " failures=", g.failures, " commands_running=", runner_->running(),
                       " commands_queued=", runner_->queued()));
  if (managed_) {
    const ManagedStatus s = managed_->status();
    const MatcherCounters mm = managed_->matcher().counters();
    LogInfo(absl::StrCat("stats managed: online=", s.online ? "yes" : "no", " revision=", s.revision,
                         " sequences=", s.sequences, " live=", managed_->matcher().live(),
                         " reserve_left=", s.reserve_left, " spool_depth=", s.spool_depth,
                         " knocks_reported=", s.knocks_reported, " offline_admitted=", s.offline_admitted,
                         " sessions=", s.link.sessions, " connect_failures=", s.link.connect_failures,
                         " shards=", managed_->matcher().shards(), " completions=", mm.completions,
                         s.last_error.empty() ? "" : absl::StrCat(" last_error=\"", s.last_error, "\"")));
  }
}

absl::Status Daemon::Run() {
  absl::Cleanup close_signal_fd = [this] {
    if (signal_fd_ >= 0) close(signal_fd_);
  };
  RETURN_IF_ERROR(Start());
  absl::Cleanup remove_pid_file = [this] {
    if (!config_.options.pid_file.empty()) unlink(config_.options.pid_file.c_str());
  };
  absl::Time next_tick = absl::Now();
  absl::Time next_address_refresh = absl::Now() + kAddressRefresh;
  std::vector<pollfd> fds;
  std::vector<Capture*> polled;
  for (;;) {
    fds.assign(1, pollfd{signal_fd_, POLLIN, 0});
    polled.clear();
    for (Capture& c : captures_) {
      if (c.source && c.source->selectable_fd() >= 0) {
        fds.push_back(pollfd{c.source->selectable_fd(), POLLIN, 0});
        polled.push_back(&c);
      }
    }
    const int timeout_ms =
        static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(next_tick - absl::Now())) + 1);
    if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    }
    for (size_t i = 0; i < polled.size(); ++i) {
      if (fds[i + 1].revents != 0 && polled[i]->source) ServiceCapture(*polled[i]);
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      while (read(signal_fd_, &info, sizeof info) == sizeof info) {
        switch (info.ssi_signo) {
          case SIGHUP:
            Reload();
            (void)ReopenLogFile();
            break;
          case SIGUSR1:
            LogStats();
            break;
          default:
            LogInfo(absl::StrCat("signal ", info.ssi_signo, ": shutting down; open grants stay and close on time"));
            LogStats();
            if (managed_) managed_->Stop();
            grants_->Drain();
            // The file's last word is the final count (written before the writer stops).
            next_metrics_file_ = absl::InfinitePast();
            PublishMetrics(absl::Now());
            return absl::OkStatus();
        }
      }
    }
    const absl::Time now = absl::Now();
    if (now >= next_tick) {
      pipeline_->Tick(now);
      if (managed_) managed_->matcher().Tick(now);
      PublishMetrics(now);
      RefreshFilterIfNeeded();
      for (Capture& c : captures_) {
        if (!c.source && now >= c.retry_at) TryOpen(c);
      }
      next_tick = now + kTickInterval;
    }
    if (now >= next_address_refresh) {
      RefreshLocalAddresses();
      next_address_refresh = now + kAddressRefresh;
    }
  }
}

}  // namespace

absl::Status RunAgentDaemon(AgentConfig config, const std::string& config_path, const ConfigOverrides& overrides,
                            const DaemonOptions& options) {
  Daemon daemon(std::move(config), config_path, overrides, options);
  return daemon.Run();
}

}  // namespace sesame
