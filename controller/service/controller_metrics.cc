#include "controller/service/controller_metrics.h"

#include <algorithm>

#include "controller/store/knock_report_checks.h"

namespace sesame::controller {
namespace {

double N(uint64_t v) { return static_cast<double>(v); }

MetricSample ForAgent(MetricSample sample, const std::string& agent) {
  sample.labels["agent"] = agent;
  return sample;
}

}  // namespace

ControllerMetrics::ControllerMetrics(std::function<GroupCommitStats()> commit_stats)
    : commit_stats_(std::move(commit_stats)) {}

void ControllerMetrics::KnockReported(ConsumeOutcome outcome, const std::string& refused_reason) {
  absl::MutexLock lock(&mu_);
  ++knocks_;
  switch (outcome) {
    case ConsumeOutcome::kWon: ++won_; break;
    case ConsumeOutcome::kReplay: ++replays_; break;
    case ConsumeOutcome::kUnknown: ++unknown_; break;
    case ConsumeOutcome::kRefused: ++refused_[refused_reason.empty() ? "unspecified" : refused_reason]; break;
  }
}

void ControllerMetrics::RateLimited(const std::string& agent, const std::string& limit) {
  absl::MutexLock lock(&mu_);
  ++rate_limited_[{agent, limit}];
}

void ControllerMetrics::AgentTimeRefused() {
  absl::MutexLock lock(&mu_);
  ++agent_times_refused_;
}

void ControllerMetrics::CallerRefused(const std::string& what, bool audited) {
  absl::MutexLock lock(&mu_);
  ++callers_refused_[{what, audited}];
}

void ControllerMetrics::ScannerReported(uint64_t scanners) {
  absl::MutexLock lock(&mu_);
  scanners_ += scanners;
}

void ControllerMetrics::StoreWrite(absl::Duration took) {
  absl::MutexLock lock(&mu_);
  ++store_writes_;
  store_write_total_ += took;
  store_write_last_ = took;
  store_write_max_ = std::max(store_write_max_, took);
}

void ControllerMetrics::AgentHeartbeat(const std::string& agent,
                                       const google::protobuf::RepeatedPtrField<v1::Metric>& metrics) {
  std::vector<v1::Metric> kept;
  kept.reserve(std::min<size_t>(metrics.size(), kMaxAgentMetrics));
  for (const v1::Metric& m : metrics) {
    if (kept.size() == kMaxAgentMetrics) break;
    if (m.name().size() > 128 || !IsValidMetricName(m.name())) continue;
    kept.push_back(m);
  }
  absl::MutexLock lock(&mu_);
  agents_[agent] = std::move(kept);
}

std::vector<v1::Metric> ControllerMetrics::AgentMetrics(const std::string& agent) const {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent);
  return it == agents_.end() ? std::vector<v1::Metric>() : it->second;
}

void ControllerMetrics::SetStoreUsable(bool usable) {
  absl::MutexLock lock(&mu_);
  store_usable_ = usable;
}

bool ControllerMetrics::store_usable() const {
  absl::MutexLock lock(&mu_);
  return store_usable_;
}

std::vector<MetricSample> ControllerMetrics::Collect(Store& store) const {
  // The store first, outside the lock.
  const absl::StatusOr<uint64_t> revision = store.CurrentRevision();
  const absl::StatusOr<std::vector<AgentRecord>> agents = store.ListAgents();
  const absl::StatusOr<std::vector<GrantRecord>> open = store.ListGrants(GrantFilter{});
  const absl::StatusOr<AuditHead> head = store.GetAuditHead();
  const bool answered = revision.ok() && agents.ok() && open.ok() && head.ok();

  std::vector<MetricSample> out;
  out.push_back(Gauge("sesame_controller_start_time_seconds",
                      "When the controller started (Unix time): in-memory counters restart from 0 then.",
                      absl::ToDoubleSeconds(started_at_ - absl::UnixEpoch())));
  {
    absl::MutexLock lock(&mu_);
    out.push_back(Gauge("sesame_controller_up", "1 while the store is usable (the health service says SERVING).",
                        store_usable_ && answered ? 1 : 0));
  }
  if (revision.ok()) out.push_back(Gauge("sesame_controller_revision", "The store's revision.", N(*revision)));
  if (agents.ok()) {
    size_t connected = 0;
    for (const AgentRecord& a : *agents) connected += a.connected ? 1 : 0;
    out.push_back(Gauge("sesame_controller_agents", "Agents known.", N(agents->size())));
    out.push_back(Gauge("sesame_controller_sessions", "Agent sessions open.", N(connected)));
    for (const AgentRecord& a : *agents) {
      out.push_back(ForAgent(Gauge("sesame_controller_agent_connected", "1 while the agent has a session open.",
                                   a.connected ? 1 : 0),
                             a.name));
      if (a.last_heartbeat != absl::InfinitePast()) {
        out.push_back(ForAgent(Gauge("sesame_controller_agent_last_heartbeat_timestamp_seconds",
                                     "When the agent's last heartbeat arrived (Unix time).",
                                     absl::ToDoubleSeconds(a.last_heartbeat - absl::UnixEpoch())),
                               a.name));
      }
      if (revision.ok()) {
        const uint64_t lag = *revision > a.acked_revision ? *revision - a.acked_revision : 0;
        out.push_back(ForAgent(Gauge("sesame_controller_agent_revision_lag",
                                     "Revisions the agent has not acknowledged yet.", N(lag)),
                               a.name));
      }
      out.push_back(ForAgent(Gauge("sesame_controller_agent_reserve_left",
                                   "Unused offline-reserve sequences the agent holds (last heartbeat).",
                                   std::max(0, a.reserve_left)),
                             a.name));
      out.push_back(ForAgent(Gauge("sesame_controller_agent_spool_depth",
                                   "Reports the agent has spooled and not had confirmed (last heartbeat).",
                                   std::max(0, a.spool_depth)),
                             a.name));
    }
  }
  if (open.ok()) out.push_back(Gauge("sesame_controller_grants_open", "Grants open.", N(open->size())));
  if (head.ok()) {
    out.push_back(Counter("sesame_controller_audit_records_total", "Records in the audit chain.",
                          N(head->record_count)));
  }
  {
    absl::MutexLock lock(&mu_);
    out.push_back(Counter("sesame_controller_knocks_reported_total", "Completed knocks agents reported.", N(knocks_)));
    out.push_back(Counter("sesame_controller_consumptions_won_total",
                          "Reported knocks that consumed their sequence (first use).", N(won_)));
    out.push_back(Counter("sesame_controller_replays_total", "Reported knocks of a sequence already burnt.",
                          N(replays_)));
    out.push_back(Counter("sesame_controller_unknown_sequences_total", "Reported knocks of no sequence.",
                          N(unknown_)));
    // Every reason, 0 until it happens, so that an alert sees the series.
    for (RefusalReason r : kAllRefusalReasons) {
      const auto it = refused_.find(RefusalReasonName(r));
      MetricSample m = Counter("sesame_controller_knocks_refused_total",
                               "Reported knocks refused as not what the agent could have seen (label reason).",
                               N(it == refused_.end() ? 0 : it->second));
      m.labels["reason"] = RefusalReasonName(r);
      out.push_back(std::move(m));
    }
    // Sorted, so that the file reads the same from one write to the next.
    std::vector<std::pair<std::pair<std::string, std::string>, uint64_t>> limited(rate_limited_.begin(),
                                                                                  rate_limited_.end());
    std::sort(limited.begin(), limited.end());
    for (const auto& [key, count] : limited) {
      MetricSample m = ForAgent(Counter("sesame_controller_rate_limited_total",
                                        "Agent reports refused by a per-agent rate limit (label limit).", N(count)),
                                key.first);
      m.labels["limit"] = key.second;
      out.push_back(std::move(m));
    }
    std::vector<std::pair<std::pair<std::string, bool>, uint64_t>> callers(callers_refused_.begin(),
                                                                           callers_refused_.end());
    std::sort(callers.begin(), callers.end());
    for (const auto& [key, count] : callers) {
      MetricSample m = Counter("sesame_controller_refusals_total",
                               "Callers refused: TLS certificates, calls outside a role (labels what, audited: "
                               "audited=\"false\" ones were only counted, over the audit's budget).",
                               N(count));
      m.labels["what"] = key.first;
      m.labels["audited"] = key.second ? "true" : "false";
      out.push_back(std::move(m));
    }
    out.push_back(Counter("sesame_controller_agent_times_refused_total",
                          "Agent reports (not knocks) whose agent time was more than a day off; recorded without it.",
                          N(agent_times_refused_)));
    out.push_back(Counter("sesame_controller_scanners_reported_total", "Scanners agents reported.", N(scanners_)));
    out.push_back(Counter("sesame_controller_store_writes_total",
                          "Durable store writes timed on the agents' path (consume, audit, reports, heartbeats).",
                          N(store_writes_)));
    out.push_back(Counter("sesame_controller_store_write_seconds_total",
                          "Time spent waiting for those writes; with store_writes_total, the mean latency.",
                          absl::ToDoubleSeconds(store_write_total_)));
    out.push_back(Gauge("sesame_controller_store_write_last_seconds", "Latency of the latest timed store write.",
                        absl::ToDoubleSeconds(store_write_last_)));
    out.push_back(Gauge("sesame_controller_store_write_max_seconds", "Slowest timed store write since start.",
                        absl::ToDoubleSeconds(store_write_max_)));
  }
  if (commit_stats_) {
    const GroupCommitStats stats = commit_stats_();
    out.push_back(Counter("sesame_controller_store_commits_total", "Store transactions committed.", N(stats.batches)));
    out.push_back(Counter("sesame_controller_store_operations_total", "Store writes committed (many per transaction).",
                          N(stats.operations)));
    out.push_back(Gauge("sesame_controller_store_max_batch", "Most writes one transaction has carried.",
                        N(stats.max_batch)));
  }
  return out;
}
}  // namespace sesame::controller
