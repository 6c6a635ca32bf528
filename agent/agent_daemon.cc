// The daemon's process: RunAgentDaemon, start-up (log, state directory,
// grants file, managed agent, fork, signal mask, pid file) and the main loop
// (poll on the captures and the signalfd, signals, periodic ticks). The
// other Daemon members are in agent_daemon_*.cc (see internal/daemon.h).
#include "agent/agent_daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/grants/backends/command_backend.h"
#include "agent/internal/daemon.h"
#include "agent/managed/tls_identity.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {
namespace daemon_internal {
namespace {

constexpr absl::Duration kTickInterval = absl::Milliseconds(100);
constexpr absl::Duration kAddressRefresh = absl::Seconds(5);

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

}  // namespace

absl::Status ConfigureLog(const AgentConfig& config, const DaemonOptions& options) {
  LogOptions log;
  log.ident = "sesame-agent";
  log.to_stderr = !options.daemonize;
  log.file = config.options.log_file;
  log.syslog = config.options.use_syslog;
  log.format = config.options.log_format;
  log.min_level = options.debug ? LogLevel::kDebug : LogLevel::kInfo;
  return ConfigureLogging(log);
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
  systemd_ = ServiceNotifier::FromEnvironment();  // before any command inherits it

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
  OpenCaptures(config_.options.interfaces);

  if (!config_.options.pid_file.empty()) {
    RETURN_IF_ERROR(WriteFileAtomically(config_.options.pid_file, absl::StrCat(getpid(), "\n"), 0644));
  }
  for (const DoorConfig& door : config_.doors) {
    if (door.backend != BackendKind::kCommand) continue;
    if (std::optional<std::string> notice = CommandBackend::ShellNotice(door)) LogInfo(*notice);
  }
  LogInfo(absl::StrCat("sesame-agent started: ", config_.doors.size(), " door(s) on ",
                       absl::StrJoin(config_.options.interfaces, ","), ", ", grants_->stats().open_now,
                       " grant(s) carried over"));
  return absl::OkStatus();
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
            systemd_.Stopping();
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
    systemd_.PingWatchdog(now);  // every turn: proves the loop turns
    if (now >= next_tick) {
      TellSystemdStatus();
      pipeline_->Tick(now);
      if (managed_) managed_->matcher().Tick(now);
      PublishMetrics(now);
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

}  // namespace daemon_internal

absl::Status RunAgentDaemon(AgentConfig config, const std::string& config_path, const ConfigOverrides& overrides,
                            const DaemonOptions& options) {
  daemon_internal::Daemon daemon(std::move(config), config_path, overrides, options);
  return daemon.Run();
}

}  // namespace sesame
