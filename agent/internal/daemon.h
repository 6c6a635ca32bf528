// Private to the daemon's files (agent/agent_daemon*.cc): the Daemon class
// behind RunAgentDaemon, one interface's capture, and the helpers more than
// one of those files uses. Which file holds which member:
//   agent_daemon.cc          start-up, signals and the main loop
//   agent_daemon_grants.cc   backends, the grant worker, managed mode's wiring
//   agent_daemon_capture.cc  captures, their filter, the local addresses
//   agent_daemon_reload.cc   SIGHUP: a new configuration, or the old one kept
//   agent_daemon_metrics.cc  the metrics file, heartbeat counters, SIGUSR1 stats
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/agent_options.h"
#include "agent/capture/capture_filter.h"
#include "agent/capture/pcap_source.h"
#include "agent/config/config.h"
#include "agent/grants/backends/backend_factory.h"
#include "agent/grants/grant_manager.h"
#include "agent/grants/grant_store.h"
#include "agent/grants/process_runner.h"
#include "agent/managed/backend_switch.h"
#include "agent/managed/managed_agent.h"
#include "agent/match/knock_pipeline.h"
#include "agent/match/matcher.h"
#include "common/ip_address.h"
#include "common/prometheus_text.h"
#include "common/service_notifier.h"

namespace sesame::daemon_internal {

// Logging as `config` and the command line ask (at start and on reload).
absl::Status ConfigureLog(const AgentConfig& config, const DaemonOptions& options);

// One interface's capture, re-opened with backoff when it fails (an
// interface that goes down and comes back must not kill the daemon).
struct Capture {
  std::string interface;
  std::unique_ptr<PcapSource> source;
  absl::Time retry_at = absl::InfinitePast();
  absl::Duration backoff = absl::Seconds(1);
  CaptureStats past;  // totals of earlier incarnations
};

// a + b, field by field.
CaptureStats Add(CaptureStats a, const CaptureStats& b);

// The lookup keeps the set alive until the grant book lets go of it.
BackendLookup LookupIn(std::shared_ptr<BackendSet> set);

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
  void OpenCaptures(const std::vector<std::string>& interfaces);
  void TryOpen(Capture& capture);
  void ServiceCapture(Capture& capture);
  void RefreshLocalAddresses();
  void Reload();
  void LogStats();
  // At each tick: READY=1 once every interface captures; STATUS= says
  // which ones it waits for until then (sent when it changes).
  void TellSystemdStatus();
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
  // Counters of pipelines replaced by a reload: metrics are counters.
  MatcherCounters past_matcher_;
  std::vector<Capture> captures_;
  std::vector<IpAddress> local_addresses_;
  int signal_fd_ = -1;
  ServiceNotifier systemd_;
  std::string systemd_status_;  // the last STATUS= sent
  const absl::Time started_at_ = absl::Now();
  // MetricsFile: written on its own thread (fsync stays off the capture loop).
  std::unique_ptr<PrometheusFileWriter> metrics_file_;
  absl::Time next_metrics_file_ = absl::InfinitePast();
  absl::Time next_heartbeat_metrics_ = absl::InfinitePast();
};

}  // namespace sesame::daemon_internal
