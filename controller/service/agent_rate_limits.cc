// Per-agent token buckets and their refusal windows (agent_rate_limits.h).
#include "controller/service/agent_rate_limits.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace sesame::controller {

absl::Status ValidateAgentLimits(const AgentLimits& limits) {
  for (const auto& [name, l] : {std::pair<const char*, RateLimit>{"knock reports", limits.knock_reports},
                                {"grants", limits.grants}}) {
    if (l.per_minute < 1 || l.per_minute > kMaxRate || l.burst < 1 || l.burst > kMaxRate) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": expected a rate and a burst of 1..", kMaxRate));
    }
  }
  if (limits.audit_window <= absl::ZeroDuration() || limits.audit_window > absl::Hours(24)) {
    return absl::InvalidArgumentError("the refusal audit window: expected more than 0 and at most 24h");
  }
  return absl::OkStatus();
}

const char* LimitKindName(LimitKind kind) {
  switch (kind) {
    case LimitKind::kKnockReports: return "knock_reports";
    case LimitKind::kGrants: return "grants";
  }
  return "?";
}

AgentRateLimiter::AgentRateLimiter(AgentLimits limits, const Clock& clock) : limits_(limits), clock_(clock) {}

const RateLimit& AgentRateLimiter::limit(LimitKind kind) const {
  return kind == LimitKind::kGrants ? limits_.grants : limits_.knock_reports;
}

absl::Duration AgentRateLimiter::Cost(LimitKind kind) const { return absl::Minutes(1) / limit(kind).per_minute; }

AgentRateLimiter::Bucket& AgentRateLimiter::BucketLocked(const std::string& agent, LimitKind kind, absl::Time now) {
  const absl::Duration full = Cost(kind) * limit(kind).burst;
  auto [it, inserted] = buckets_.try_emplace(std::make_pair(agent, kind));
  Bucket& b = it->second;
  if (inserted) {
    b.credit = full;
  } else if (now > b.updated) {
    b.credit = std::min(full, b.credit + (now - b.updated));
  }
  b.updated = std::max(b.updated, now);
  return b;
}

AgentRateLimiter::Verdict AgentRateLimiter::Take(const std::string& agent, LimitKind kind) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  Bucket& b = BucketLocked(agent, kind, now);
  if (b.credit >= Cost(kind)) {
    b.credit -= Cost(kind);
    return Verdict::kAdmitted;
  }
  // A window that has passed but was not taken yet (TakeClosedWindows runs
  // every second or so) counts this refusal too: a new one opens only once
  // it is taken, so no refusal is left out of a record.
  if (b.window_open) {
    ++b.window.refused;
    b.window.last = now;
    return Verdict::kRefused;
  }
  b.window_open = true;
  b.window = RefusalWindow{agent, kind, now, now, 1};
  return Verdict::kRefusedFirstInWindow;
}

void AgentRateLimiter::GiveBack(const std::string& agent, LimitKind kind) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  Bucket& b = BucketLocked(agent, kind, now);
  b.credit = std::min(Cost(kind) * limit(kind).burst, b.credit + Cost(kind));
}

std::vector<RefusalWindow> AgentRateLimiter::TakeClosedWindows(bool all) {
  const absl::Time now = clock_.Now();
  std::vector<RefusalWindow> out;
  absl::MutexLock lock(&mu_);
  for (auto& [key, b] : buckets_) {
    if (!b.window_open || (!all && now - b.window.opened < limits_.audit_window)) continue;
    out.push_back(b.window);
    b.window_open = false;
  }
  std::sort(out.begin(), out.end(), [](const RefusalWindow& a, const RefusalWindow& b) {
    return std::tie(a.opened, a.agent) < std::tie(b.opened, b.agent);
  });
  return out;
}

}  // namespace sesame::controller
