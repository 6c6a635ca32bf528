// SIGHUP: the daemon re-reads its configuration and switches to it, or
// refuses it whole and keeps the running one. A switch between standalone
// and managed mode is refused; a new state directory or new controller link
// settings are logged and wait for the next restart.
#include "agent/internal/daemon.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace sesame::daemon_internal {

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
  past_matcher_.resets += old.resets;
  past_matcher_.evictions += old.evictions;
  pipeline_ = std::move(*pipeline);
  pipeline_->SetLocalAddresses(local_addresses_);
  if (interfaces_changed) OpenCaptures(config_.options.interfaces);
  LogInfo(absl::StrCat("reloaded: ", config_.doors.size(), " door(s); knocks in progress start over"));
}

}  // namespace sesame::daemon_internal
