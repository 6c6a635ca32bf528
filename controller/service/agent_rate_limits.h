// Per-agent rate limits on what a bastion's reports may cost the fleet:
// knock reports (each a consumption attempt and a durable audit record) and
// the grants they order. A real bastion sees a handful a minute; a stolen
// agent key must not burn the fleet's sequences in one loop, open doors at
// will, or grow the audit log one record per forged report.
//
// Each (agent, limit) is a token bucket: per_minute tokens a minute, at
// most burst saved, full at start. A report over a limit is refused
// (AgentService: verdict REFUSED, nothing consumed). Refusals are not
// recorded one by one: the first refusal of (agent, limit) opens a window
// of audit_window; refusals in it are counted, and once it has passed,
// TakeClosedWindows returns one summary per window, for one audit record.
// Thread-safe. Bounded: one bucket per agent name and limit, and agent
// names come from certificates of the fleet's CA.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace sesame::controller {

struct RateLimit {
  int per_minute = 1;  // 1..kMaxRate
  int burst = 1;       // 1..kMaxRate
};

// [limits] in the controller's configuration (controller_config.h).
struct AgentLimits {
  RateLimit knock_reports{12, 30};
  RateLimit grants{6, 20};
  absl::Duration audit_window = absl::Minutes(1);
};

inline constexpr int kMaxRate = 1000000;
absl::Status ValidateAgentLimits(const AgentLimits& limits);

enum class LimitKind { kKnockReports, kGrants };
const char* LimitKindName(LimitKind kind);  // "knock_reports", "grants": the metric label `limit`

// Refusals of one (agent, limit) in one window.
struct RefusalWindow {
  std::string agent;
  LimitKind kind = LimitKind::kKnockReports;
  absl::Time opened;          // the first refusal
  absl::Time last;            // the latest refusal
  uint64_t refused = 0;
};

class AgentRateLimiter {
 public:
  AgentRateLimiter(AgentLimits limits, const Clock& clock);

  enum class Verdict {
    kAdmitted,
    kRefused,
    kRefusedFirstInWindow,  // refused, and a new window opened (log it once)
  };
  // Takes one token.
  Verdict Take(const std::string& agent, LimitKind kind);
  // Returns a token taken for something that did not happen (a grant the
  // report did not order after all).
  void GiveBack(const std::string& agent, LimitKind kind);

  // Windows that have passed (all of them with all = true, at shutdown),
  // oldest first; each is returned once.
  std::vector<RefusalWindow> TakeClosedWindows(bool all = false);

  const AgentLimits& limits() const { return limits_; }
  const RateLimit& limit(LimitKind kind) const;

 private:
  // A bucket holds time: each token costs Cost(kind) of it, it fills at
  // the clock's pace up to burst tokens (exact, no rounding drift).
  struct Bucket {
    absl::Duration credit;
    absl::Time updated;
    bool window_open = false;
    RefusalWindow window;
  };
  absl::Duration Cost(LimitKind kind) const;
  Bucket& BucketLocked(const std::string& agent, LimitKind kind, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AgentLimits limits_;
  const Clock& clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::pair<std::string, LimitKind>, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sesame::controller
