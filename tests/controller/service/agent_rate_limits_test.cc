// Per-agent token buckets on simulated time: the burst, the refill, agents
// and limits apart, a token given back, and one refusal window per (agent,
// limit) counting every refusal in it.
#include "controller/service/agent_rate_limits.h"

#include "gtest/gtest.h"

namespace sesame::controller {
namespace {

using Verdict = AgentRateLimiter::Verdict;

AgentLimits Limits() {
  AgentLimits l;
  l.knock_reports = {6, 3};  // one every 10 s, three at once
  l.grants = {2, 1};
  l.audit_window = absl::Minutes(1);
  return l;
}

TEST(AgentRateLimitsTest, TheBurstThenTheRate) {
  ManualClock clock(absl::FromUnixSeconds(1000));
  AgentRateLimiter limiter(Limits(), clock);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kAdmitted) << i;
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kRefusedFirstInWindow);
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kRefused);
  clock.Advance(absl::Seconds(9));
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kRefused);
  clock.Advance(absl::Seconds(1));  // 10 s: one token
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kAdmitted);
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kRefused);
  // A long pause refills up to the burst, not beyond.
  clock.Advance(absl::Hours(1));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kAdmitted) << i;
  EXPECT_NE(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kAdmitted);
}

TEST(AgentRateLimitsTest, AgentsAndLimitsAreApartAndATokenCanComeBack) {
  ManualClock clock(absl::FromUnixSeconds(1000));
  AgentRateLimiter limiter(Limits(), clock);
  EXPECT_EQ(limiter.Take("b1", LimitKind::kGrants), Verdict::kAdmitted);
  EXPECT_EQ(limiter.Take("b1", LimitKind::kGrants), Verdict::kRefusedFirstInWindow);
  EXPECT_EQ(limiter.Take("b2", LimitKind::kGrants), Verdict::kAdmitted);
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kAdmitted);
  limiter.GiveBack("b2", LimitKind::kGrants);
  EXPECT_EQ(limiter.Take("b2", LimitKind::kGrants), Verdict::kAdmitted);
  limiter.GiveBack("b2", LimitKind::kGrants);
  limiter.GiveBack("b2", LimitKind::kGrants);  // never beyond the burst
  EXPECT_EQ(limiter.Take("b2", LimitKind::kGrants), Verdict::kAdmitted);
  EXPECT_NE(limiter.Take("b2", LimitKind::kGrants), Verdict::kAdmitted);
}

TEST(AgentRateLimitsTest, RefusalsAreSummedOncePerWindow) {
  ManualClock clock(absl::FromUnixSeconds(1000));
  AgentLimits limits = Limits();
  limits.knock_reports = {1, 1};  // one a minute
  AgentRateLimiter limiter(limits, clock);
  const absl::Time opened = clock.Now();
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kAdmitted);
  for (int i = 0; i < 5; ++i) limiter.Take("b1", LimitKind::kKnockReports);  // 5 refused
  EXPECT_EQ(limiter.Take("b1", LimitKind::kGrants), Verdict::kAdmitted);
  EXPECT_EQ(limiter.Take("b1", LimitKind::kGrants), Verdict::kRefusedFirstInWindow);
  EXPECT_TRUE(limiter.TakeClosedWindows().empty());  // still open
  clock.Advance(absl::Seconds(30));
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kRefused);  // 6
  clock.Advance(absl::Seconds(30));
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kAdmitted);  // a minute: one token
  // The window has passed but was not taken yet: this refusal counts into it.
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kRefused);  // 7

  std::vector<RefusalWindow> closed = limiter.TakeClosedWindows();
  ASSERT_EQ(closed.size(), 2u);
  uint64_t reports = 0, grants = 0;
  for (const RefusalWindow& w : closed) {
    EXPECT_EQ(w.agent, "b1");
    EXPECT_EQ(w.opened, opened);
    (w.kind == LimitKind::kKnockReports ? reports : grants) = w.refused;
    if (w.kind == LimitKind::kKnockReports) EXPECT_EQ(w.last, opened + absl::Minutes(1));
  }
  EXPECT_EQ(reports, 7u);
  EXPECT_EQ(grants, 1u);
  EXPECT_TRUE(limiter.TakeClosedWindows().empty());  // each once

  // The next refusal opens a new window; at shutdown it is taken early.
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kRefusedFirstInWindow);
  EXPECT_EQ(limiter.Take("b1", LimitKind::kKnockReports), Verdict::kRefused);
  EXPECT_TRUE(limiter.TakeClosedWindows().empty());
  closed = limiter.TakeClosedWindows(/*all=*/true);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].refused, 2u);
}

TEST(AgentRateLimitsTest, LimitsAreValidated) {
  EXPECT_TRUE(ValidateAgentLimits(AgentLimits{}).ok());
  AgentLimits bad;
  bad.grants.burst = 0;
  EXPECT_FALSE(ValidateAgentLimits(bad).ok());
  bad = AgentLimits{};
  bad.audit_window = absl::ZeroDuration();
  EXPECT_FALSE(ValidateAgentLimits(bad).ok());
  EXPECT_STREQ(LimitKindName(LimitKind::kKnockReports), "knock_reports");
  EXPECT_STREQ(LimitKindName(LimitKind::kGrants), "grants");
}

}  // namespace
}  // namespace sesame::controller
