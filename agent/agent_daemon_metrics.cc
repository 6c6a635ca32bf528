// What the daemon counts and where it goes: the metrics file (written on
// its own thread), the counters the managed agent sends with each heartbeat,
// and the statistics SIGUSR1 logs.
#include "agent/internal/daemon.h"

#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace sesame::daemon_internal {
namespace {

// How often the managed agent gets fresh counters for its heartbeats.
constexpr absl::Duration kHeartbeatMetricsInterval = absl::Seconds(1);

}  // namespace

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
      Counter("sesame_agent_grants_evicted_total",
              "Grants closed early at the limit of open grants (the door holding the most gives up its first).",
              n(g.evicted)),
      Counter("sesame_agent_grant_record_writes_total", "Rewrites of the grants file (one per batch of changes).",
              n(g.record_writes)),
      Gauge("sesame_agent_grant_queue_pending", "Completions waiting for the grant worker.", n(g.pending)),
      Gauge("sesame_agent_grant_queue_limit", "Completions that may wait for the grant worker.", n(g.pending_limit)),
      Counter("sesame_agent_grant_queue_coalesced_total",
              "Completions merged into one already waiting for the same door and source.", n(g.coalesced)),
      Counter("sesame_agent_grant_queue_dropped_total",
              "Completions dropped because the grant queue was full (oldest of the busiest door first).",
              n(g.dropped)),
      Gauge("sesame_agent_grant_control_pending",
            "Revocations and reloads waiting for the grant worker (callers wait beyond 1024).",
            n(g.control_pending)),
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
                       " young_evictions=", m.young_evictions, " scanners=", m.scanners,
                       " sources=", pipeline_->matcher().occupancy(), "/", pipeline_->matcher().capacity()));
  LogInfo(absl::StrCat("stats grants: open=", g.open_now, " opened=", g.opened, " closed=", g.closed,
                       " failures=", g.failures, " evicted=", g.evicted, " record_writes=", g.record_writes,
                       " pending=", g.pending, "/", g.pending_limit, " coalesced=", g.coalesced,
                       " dropped=", g.dropped, " commands_running=", runner_->running(),
                       " commands_queued=", runner_->queued()));
  if (managed_) {
    const ManagedStatus s = managed_->status();
    const MatcherCounters mm = managed_->matcher().counters();
    LogInfo(absl::StrCat("stats managed: online=", s.online ? "yes" : "no", " revision=", s.revision,
                         " sequences=", s.sequences, " live=", managed_->matcher().live(),
                         " reserve_left=", s.reserve_left, " spool_depth=", s.spool_depth,
                         " knocks_reported=", s.knocks_reported, " offline_admitted=", s.offline_admitted,
                         " sessions=", s.link.sessions, " connect_failures=", s.link.connect_failures,
                         " capacity=", managed_->matcher().capacity(),
                         " waiting=", managed_->matcher().over_capacity(), " completions=", mm.completions,
                         s.last_error.empty() ? "" : absl::StrCat(" last_error=\"", s.last_error, "\"")));
  }
}

}  // namespace sesame::daemon_internal
