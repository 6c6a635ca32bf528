// The managed agent's status and metrics: the status published for other
// threads, the managed side's counters and gauges, the heartbeat that
// carries them after the daemon's, and the last error.
#include "agent/managed/managed_agent.h"

#include <utility>
#include <vector>

#include "agent/managed/proto_convert.h"
#include "common/log.h"
#include "common/metric_wire.h"

namespace sesame {
namespace {

std::vector<MetricSample> ManagedMetrics(const ManagedStatus& s, int reserve_size) {
  auto n = [](uint64_t v) { return static_cast<double>(v); };
  std::vector<MetricSample> m = {
      Gauge("sesame_agent_controller_connected", "1 while a session with the controller is up.", s.online ? 1 : 0),
      Gauge("sesame_agent_revision", "Highest controller revision applied.", n(s.revision)),
      Gauge("sesame_agent_managed_sequences", "Managed sequences held (fleet and offline reserve).", n(s.sequences)),
      Gauge("sesame_agent_managed_sequences_capacity",
            "Managed sequences the matcher recognises at once (live and recently spent).",
            n(s.sequences_capacity)),
      Gauge("sesame_agent_managed_sequences_waiting",
            "Live managed sequences not recognised for lack of room in the matcher.", n(s.sequences_waiting)),
      Gauge("sesame_agent_reserve_left", "Unused offline-reserve sequences held.", n(s.reserve_left)),
      Gauge("sesame_agent_spool_depth", "Reports spooled and not yet confirmed by the controller.", n(s.spool_depth)),
      Gauge("sesame_agent_spool_bytes", "Size of the report spool's file.", n(s.spool_bytes)),
      Gauge("sesame_agent_spool_limit_bytes", "The report spool's size limit (SpoolLimitMB).", n(s.spool_limit)),
      Counter("sesame_agent_spool_notices_refused_total",
              "Scanner notices not spooled: the spool was at its limit (counted into a later aggregate).",
              n(s.spool.notices_refused)),
      Counter("sesame_agent_spool_notices_shed_total",
              "Spooled scanner notices dropped to make room for other reports at the limit.",
              n(s.spool.notices_shed)),
      Counter("sesame_agent_spool_records_refused_total",
              "Reports not spooled: the spool was at its limit with knocks and grants only.",
              n(s.spool.records_refused)),
      Counter("sesame_agent_spool_over_limit_total",
              "Knock consumptions spooled past the limit (they are never refused).", n(s.spool.over_limit)),
      Counter("sesame_agent_scanners_flagged_total", "Scanner reports of the matcher (every shard's).",
              n(s.scanner_notices.flagged)),
      Counter("sesame_agent_scanner_notices_total", "Scanner notices made for the controller: one source alone.",
              n(s.scanner_notices.alone)),
      Counter("sesame_agent_scanner_aggregates_total",
              "Scanner notices made for the controller: one reporting window's aggregate.",
              n(s.scanner_notices.aggregates)),
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

}  // namespace

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

void ManagedAgent::NoteError(const std::string& error) {
  LogError(error);
  last_error_ = error.substr(0, kMaxErrorLength);
}

ManagedStatus ManagedAgent::LiveStatus() const {
  ManagedStatus s;
  s.online = online_;
  s.revision = state_.revision();
  s.sequences = state_.sequences().size();
  s.sequences_capacity = matcher_->capacity();
  s.sequences_waiting = matcher_->over_capacity();
  s.reserve_left = state_.reserve_left();
  s.spool_depth = spool_->depth();
  s.spool_bytes = spool_->file_bytes();
  s.spool_limit = spool_->max_bytes();
  s.spool = spool_->counters();
  s.scanner_notices = scanner_notices_.counters();
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
