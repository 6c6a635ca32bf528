// What a consumption decides, without a store: each check of "what a
// report must be" (consume_decision.h) refuses on its own, with its reason,
// a record that says why, nothing burnt and no grant; the outcomes a
// plausible report gets are unchanged.
#include "controller/store/consume_decision.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace sesame::controller {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1700000000);

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

std::vector<Knock> K(std::initializer_list<uint16_t> ports) {
  std::vector<Knock> out;
  for (uint16_t p : ports) out.push_back(Knock{p, Protocol::kTcp});
  return out;
}

Sequence Unused(uint64_t id, const std::string& reserve_agent = "") {
  Sequence q;
  q.id = id;
  q.door = "ssh";
  q.knocks = K({7000, 8000, 9000});
  q.issued_to = "alice";
  q.issued_at = kNow - absl::Hours(1);
  q.reserve_agent = reserve_agent;
  q.revision = 3;
  return q;
}

// bastion1 reports sequence 12 by id, as it saw it.
ConsumeRequest Report() {
  ConsumeRequest r;
  r.sequence_id = 12;
  r.knocks = K({7000, 8000, 9000});
  r.agent = "bastion1";
  r.source = Ip("198.51.100.7");
  r.request_id = "m1";
  r.agent_time = kNow - absl::Milliseconds(3);
  r.own_addresses = std::make_shared<const std::vector<OwnAddress>>(std::vector<OwnAddress>{
      {Ip("192.0.2.10"), "the controller"},
      {Ip("192.0.2.12"), "agent bastion2"},
      {Ip("2001:db8::12"), "agent bastion2"}});
  return r;
}

// Refused with reason, nothing consumed, a record that says why.
void ExpectRefused(const ConsumeDecision& d, const std::string& reason, const std::string& why_part) {
  EXPECT_EQ(d.result.outcome, ConsumeOutcome::kRefused);
  EXPECT_EQ(d.result.refused_reason, reason);
  EXPECT_FALSE(d.burnt.has_value());
  EXPECT_FALSE(d.open_grant);
  EXPECT_EQ(d.audit.what, "knock.refused");
  EXPECT_EQ(d.audit.details.at("reason"), reason);
  EXPECT_NE(d.audit.details.at("why").find(why_part), std::string::npos) << d.audit.details.at("why");
  EXPECT_EQ(d.audit.time, kNow);
}

TEST(ConsumeDecisionTest, APlausibleReportWinsAndItsRecordHasTheControllersTime) {
  const ConsumeDecision d = DecideConsume(Report(), Unused(12), kNow);
  EXPECT_EQ(d.result.outcome, ConsumeOutcome::kWon);
  ASSERT_TRUE(d.burnt.has_value());
  EXPECT_EQ(d.burnt->consumed_by, "bastion1");
  EXPECT_TRUE(d.open_grant);
  EXPECT_EQ(d.audit.what, "knock.opened");
  EXPECT_EQ(d.audit.time, kNow);
  EXPECT_EQ(d.audit.details.at("agent_time"), "2023-11-14T22:13:19Z");
  EXPECT_EQ(d.audit.details.at("knocks"), "7000:tcp,8000:tcp,9000:tcp");
  EXPECT_TRUE(d.result.refused_reason.empty());
}

// Found by fleet_controller_down: a reserve sequence used offline by one
// knocker and replayed on the same bastion by another reaches the
// controller as two reports; judged in the wrong order (several threads),
// the replay won and opened for the replayer. The agent marks the replay.
TEST(ConsumeDecisionTest, AReportOfASequenceSpentOnTheAgentNeverWins) {
  ConsumeRequest replay = Report();
  replay.spent_here = true;
  const ConsumeDecision d = DecideConsume(replay, Unused(12, "bastion1"), kNow);
  EXPECT_EQ(d.result.outcome, ConsumeOutcome::kReplay);
  EXPECT_FALSE(d.burnt.has_value());
  EXPECT_FALSE(d.open_grant);
  EXPECT_EQ(d.audit.what, "knock.replay");
  EXPECT_EQ(d.audit.details.at("spent_here"), "true");
  EXPECT_EQ(d.result.first_agent, "bastion1");
  // The first report, judged after it, still wins.
  ConsumeRequest first = Report();
  first.offline = true;
  first.request_id = "m0";
  EXPECT_EQ(DecideConsume(first, Unused(12, "bastion1"), kNow).result.outcome, ConsumeOutcome::kWon);
}

TEST(ConsumeDecisionTest, AReportByIdWithOtherKnocksIsRefused) {
  ConsumeRequest r = Report();
  r.knocks = K({7000, 8000, 9001});
  ConsumeDecision d = DecideConsume(r, Unused(12), kNow);
  ExpectRefused(d, "knocks_differ", "not sequence 12's");
  EXPECT_EQ(d.audit.details.at("knocks"), "7000:tcp,8000:tcp,9001:tcp");  // what was reported
  EXPECT_EQ(d.result.sequence_id, 12u);

  r.knocks.clear();
  d = DecideConsume(r, Unused(12), kNow);
  ExpectRefused(d, "knocks_differ", "without the knocks");

  // Also for a burnt sequence: the knocks are checked before the replay.
  Sequence burnt = Unused(12);
  burnt.state = SequenceState::kBurnt;
  burnt.consumed_by = "bastion3";
  r.knocks = K({1, 2, 3});
  ExpectRefused(DecideConsume(r, burnt, kNow), "knocks_differ", "not sequence 12's");
  r.knocks = K({7000, 8000, 9000});
  EXPECT_EQ(DecideConsume(r, burnt, kNow).result.outcome, ConsumeOutcome::kReplay);
}

TEST(ConsumeDecisionTest, AKnockerAddressThatIsNotUnicastIsRefused) {
  for (const char* source : {"0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.1", "239.255.255.250", "255.255.255.255",
                             "240.0.0.1", "::", "::1", "ff02::1", "::ffff:198.51.100.7"}) {
    ConsumeRequest r = Report();
    r.source = Ip(source);
    ExpectRefused(DecideConsume(r, Unused(12), kNow), "source_not_unicast", source);
  }
  // Ordinary unicast addresses, public or private, v4 or v6, link-local too.
  for (const char* source : {"10.1.2.3", "203.0.113.9", "169.254.1.1", "2001:db8::7", "fe80::1"}) {
    ConsumeRequest r = Report();
    r.source = Ip(source);
    EXPECT_EQ(DecideConsume(r, Unused(12), kNow).result.outcome, ConsumeOutcome::kWon) << source;
  }
}

TEST(ConsumeDecisionTest, TheControllersOrABastionsOwnAddressIsRefused) {
  ConsumeRequest r = Report();
  r.source = Ip("192.0.2.10");
  ExpectRefused(DecideConsume(r, Unused(12), kNow), "source_own_address", "192.0.2.10 is the controller's own");
  r.source = Ip("2001:db8::12");
  ExpectRefused(DecideConsume(r, Unused(12), kNow), "source_own_address", "agent bastion2's own");
  // Without a list, only the unicast check applies.
  r.own_addresses = nullptr;
  EXPECT_EQ(DecideConsume(r, Unused(12), kNow).result.outcome, ConsumeOutcome::kWon);
}

TEST(ConsumeDecisionTest, RightKnocksRefusedAreWithheldFromTheRecord) {
  ConsumeRequest r = Report();
  r.source = Ip("192.0.2.12");
  const ConsumeDecision d = DecideConsume(r, Unused(12), kNow);
  ExpectRefused(d, "source_own_address", "bastion2");
  EXPECT_EQ(d.audit.details.at("knocks"), "withheld: those of unused sequence 12");
}

TEST(ConsumeDecisionTest, AnotherBastionsReserveIsRefusedAndStaysUnused) {
  const ConsumeDecision d = DecideConsume(Report(), Unused(12, "bastion2"), kNow);
  ExpectRefused(d, "other_bastion", "reserve sequence of agent bastion2");
  EXPECT_EQ(d.audit.details.at("reserve_of"), "bastion2");
  EXPECT_EQ(d.audit.details.at("knocks"), "withheld: those of unused sequence 12");
  // Its own reserve is consumable there.
  EXPECT_EQ(DecideConsume(Report(), Unused(12, "bastion1"), kNow).result.outcome, ConsumeOutcome::kWon);
}

TEST(ConsumeDecisionTest, AnOfflineReportOfAFleetSequenceIsRefused) {
  ConsumeRequest r = Report();
  r.offline = true;
  r.order_grant = false;
  ExpectRefused(DecideConsume(r, Unused(12), kNow), "offline_fleet_sequence", "admit only their reserve");
  const ConsumeDecision own = DecideConsume(r, Unused(12, "bastion1"), kNow);
  EXPECT_EQ(own.result.outcome, ConsumeOutcome::kWon);
  EXPECT_FALSE(own.open_grant);
}

TEST(ConsumeDecisionTest, AnAgentTimeMoreThanADayOffIsRefused) {
  ConsumeRequest r = Report();
  for (absl::Time t : {kNow + absl::Hours(25), kNow - absl::Hours(25), absl::FromUnixSeconds(-620000000000),
                       absl::FromUnixSeconds(9223372036), absl::InfinitePast()}) {
    r.agent_time = t;
    ExpectRefused(DecideConsume(r, Unused(12), kNow), "agent_time", "more than 24h");
  }
  r.agent_time = absl::FromUnixSeconds(9223372036);
  EXPECT_EQ(DecideConsume(r, Unused(12), kNow).audit.details.at("agent_time"), "2262-04-11T23:47:16Z");
  for (absl::Time t : {kNow + absl::Hours(23), kNow - absl::Hours(23)}) {
    r.agent_time = t;
    EXPECT_EQ(DecideConsume(r, Unused(12), kNow).result.outcome, ConsumeOutcome::kWon);
  }
  r.agent_time.reset();  // none sent: nothing to check
  EXPECT_EQ(DecideConsume(r, Unused(12), kNow).result.outcome, ConsumeOutcome::kWon);
}

TEST(ConsumeDecisionTest, AnOfflineReserveKnockMayBeOlderThanADayButNotOlderThanItsSequence) {
  ConsumeRequest r = Report();
  r.offline = true;
  r.order_grant = false;
  Sequence q = Unused(12, "bastion1");
  q.issued_at = kNow - absl::Hours(24 * 10);
  r.agent_time = kNow - absl::Hours(24 * 3);  // a three-day controller outage
  EXPECT_EQ(DecideConsume(r, q, kNow).result.outcome, ConsumeOutcome::kWon);
  r.agent_time = q.issued_at - absl::Hours(25);
  const ConsumeDecision d = DecideConsume(r, q, kNow);
  EXPECT_EQ(d.result.outcome, ConsumeOutcome::kRefused);
  EXPECT_EQ(d.result.refused_reason, "agent_time");
  // Refused, and burnt all the same: the door is open there already, and
  // the sequence must not come back to that agent. No grant.
  ASSERT_TRUE(d.burnt.has_value());
  EXPECT_EQ(d.burnt->state, SequenceState::kBurnt);
  EXPECT_FALSE(d.open_grant);
  EXPECT_EQ(d.audit.details.at("burnt"), "the agent's own reserve, spent there");
}

TEST(ConsumeDecisionTest, UnknownSequencesStayUnknownUnlessTheReportIsImplausible) {
  EXPECT_EQ(DecideConsume(Report(), std::nullopt, kNow).result.outcome, ConsumeOutcome::kUnknown);
  ConsumeRequest r = Report();
  r.source = Ip("224.0.0.1");
  const ConsumeDecision d = DecideConsume(r, std::nullopt, kNow);
  ExpectRefused(d, "source_not_unicast", "multicast");
  EXPECT_EQ(d.result.sequence_id, 0u);
}

TEST(ConsumeDecisionTest, ARefusedAnswerIsKeptForResends) {
  ConsumeDecision d = DecideConsume(Report(), Unused(12, "bastion2"), kNow);
  d.result.audit_index = 41;
  const ConsumptionRecord kept = ConsumptionRecordOf(d.result);
  EXPECT_EQ(kept.outcome, ConsumeOutcome::kRefused);
  const ConsumeResult again = RepeatedConsumeResult(kept, Unused(12, "bastion2"), std::nullopt);
  EXPECT_EQ(again.outcome, ConsumeOutcome::kRefused);
  EXPECT_TRUE(again.repeated);
  EXPECT_EQ(again.audit_index, 41u);
  EXPECT_EQ(std::string(ConsumeOutcomeName(again.outcome)), "refused");
}

}  // namespace
}  // namespace sesame::controller
