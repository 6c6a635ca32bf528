// The controller's counters and gauges, one list for both readers:
// AdminService.GetStats (sesamectl stats) and the Prometheus text file
// ([metrics] File). Also the metrics each agent sent in its last heartbeat,
// for AdminService.GetAgent (sesamectl agents show NAME).
//
// What the store holds durably (agents, open grants, audit records, the
// revision) is read from it at collection time; what only passes through
// (knock reports and their outcomes, scanners, store write latency, the
// agents' heartbeat metrics) is counted here, in memory, from this process's
// start (sesame_controller_start_time_seconds says when). Thread-safe.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/prometheus_text.h"
#include "controller/store/group_commit.h"
#include "controller/store/store.h"
#include "sesame/v1/common.pb.h"

namespace sesame::controller {

// An agent may send this many metrics per heartbeat; more are dropped.
inline constexpr size_t kMaxAgentMetrics = 256;

class ControllerMetrics {
 public:
  // `commit_stats`, when set, reports the store's group commits (SqliteStore).
  explicit ControllerMetrics(std::function<GroupCommitStats()> commit_stats = nullptr);

  // AgentService: a knock report's outcome (a resent report's repeated
  // answer is not counted again); a report too malformed to look up counts
  // as unknown. kRefused with its reason (RefusalReasonName).
  void KnockReported(ConsumeOutcome outcome, const std::string& refused_reason = "");
  // A report refused by a per-agent rate limit ("knock_reports", "grants"):
  // nothing was decided, so it is not a knock reported.
  void RateLimited(const std::string& agent, const std::string& limit);
  // A report other than a knock whose agent time was more than a day off
  // (recorded, without that time).
  void AgentTimeRefused();
  // A caller refused (RefusalAudit: `what` is the audit kind), and whether
  // the refusal got an audit record of its own.
  void CallerRefused(const std::string& what, bool audited);
  // A ScannerSeen report standing for `scanners` sources (an aggregate, many).
  void ScannerReported(uint64_t scanners = 1);
  // A durable store write on the agents' path (consume, audit, grant
  // reports, heartbeats), as long as the caller waited for it.
  void StoreWrite(absl::Duration took);
  // The metrics of the agent's latest heartbeat (at most kMaxAgentMetrics;
  // names that are not Prometheus names are dropped).
  void AgentHeartbeat(const std::string& agent, const google::protobuf::RepeatedPtrField<v1::Metric>& metrics);
  // Empty until the agent's first heartbeat since this process started.
  std::vector<v1::Metric> AgentMetrics(const std::string& agent) const;

  // The daemon's health probe: whether the store is usable.
  void SetStoreUsable(bool usable);
  bool store_usable() const;

  // Everything, read now: the counters above, the store's gauges, and per
  // agent (label agent="NAME") connected, last heartbeat, revision lag,
  // reserve left and spool depth. A store that does not answer leaves its
  // part out and makes sesame_controller_up 0.
  std::vector<MetricSample> Collect(Store& store) const;

 private:
  const std::function<GroupCommitStats()> commit_stats_;
  const absl::Time started_at_ = absl::Now();
  mutable absl::Mutex mu_;
  uint64_t knocks_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t won_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t replays_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t unknown_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, uint64_t> refused_ ABSL_GUARDED_BY(mu_);  // by reason
  // By (agent, limit); agents are the CA's, limits two.
  absl::flat_hash_map<std::pair<std::string, std::string>, uint64_t> rate_limited_ ABSL_GUARDED_BY(mu_);
  uint64_t agent_times_refused_ ABSL_GUARDED_BY(mu_) = 0;
  // By (what, audited); the kinds are the code's own strings.
  absl::flat_hash_map<std::pair<std::string, bool>, uint64_t> callers_refused_ ABSL_GUARDED_BY(mu_);
  uint64_t scanners_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t store_writes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration store_write_total_ ABSL_GUARDED_BY(mu_);
  absl::Duration store_write_last_ ABSL_GUARDED_BY(mu_);
  absl::Duration store_write_max_ ABSL_GUARDED_BY(mu_);
  bool store_usable_ ABSL_GUARDED_BY(mu_) = true;
  absl::flat_hash_map<std::string, std::vector<v1::Metric>> agents_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sesame::controller
