// The matcher's semantics, case by case. Tests named Knockd* pin a defect of
// knockd 0.8 (src/knockd.c, sniff / process_attempt) that sesame fixes; the
// comment says what knockd does.
#include "agent/match/matcher.h"

#include <malloc.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sesame {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);
const IpAddress kServer = *IpAddress::Parse("192.0.2.1");
const IpAddress kServer6 = *IpAddress::Parse("2001:db8::1");
const IpAddress kOther = *IpAddress::Parse("192.0.2.99");

constexpr uint8_t kSyn = tcp_flags::kSyn;
constexpr uint8_t kAck = tcp_flags::kAck;
constexpr uint8_t kFin = tcp_flags::kFin;
constexpr uint8_t kRst = tcp_flags::kRst;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }
IpAddress V4(uint32_t n) { return IpAddress::V4(n); }
Knock Tcp(uint16_t port) { return Knock{port, Protocol::kTcp}; }
Knock Udp(uint16_t port) { return Knock{port, Protocol::kUdp}; }
absl::Duration S(double seconds) { return absl::Seconds(seconds); }

MatcherDoor Door(std::string name, std::vector<Knock> sequence, ResetMode mode = ResetMode::kCompat,
                 absl::Duration timeout = absl::Seconds(5)) {
  MatcherDoor door;
  door.name = std::move(name);
  door.sequence = std::move(sequence);
  door.reset_mode = mode;
  door.seq_timeout = timeout;
  return door;
}

MatcherOptions TestOptions() {
  MatcherOptions options;
  options.max_sources = 1024;
  options.hash_seed = 42;
  return options;
}

Packet MakePacket(const IpAddress& source, Knock knock, absl::Duration at, uint8_t flags = kSyn,
                  const IpAddress& destination = kServer) {
  Packet p;
  p.time = kT0 + at;
  p.source = source;
  p.destination = destination;
  p.protocol = knock.protocol;
  p.source_port = 40000;
  p.destination_port = knock.port;
  p.tcp_flags = knock.protocol == Protocol::kTcp ? flags : 0;
  return p;
}

class MatcherTest : public ::testing::Test {
 protected:
  void Make(std::vector<MatcherDoor> doors, MatcherOptions options = TestOptions()) {
    auto m = KnockMatcher::Create(options, std::move(doors));
    ASSERT_TRUE(m.ok()) << m.status();
    matcher_ = std::move(*m);
    matcher_->SetObserver([this](const MatcherEvent& e) { events_.push_back(e); });
  }

  // One knock; returns the doors it completed.
  std::vector<size_t> K(const IpAddress& source, Knock knock, absl::Duration at, uint8_t flags = kSyn,
                        const IpAddress& destination = kServer) {
    return matcher_->Process(MakePacket(source, knock, at, flags, destination)).completed.ToVector();
  }

  // Knocks a whole sequence, 100 ms apart from `at`; the doors the last knock completed.
  std::vector<size_t> Sequence(const IpAddress& source, const std::vector<Knock>& knocks, absl::Duration at) {
    std::vector<size_t> completed;
    for (const Knock& k : knocks) {
      completed = K(source, k, at);
      at += absl::Milliseconds(100);
    }
    return completed;
  }

  std::vector<MatcherEvent> Events(MatcherEventKind kind) const {
    std::vector<MatcherEvent> out;
    for (const auto& e : events_) {
      if (e.kind == kind) out.push_back(e);
    }
    return out;
  }

  std::unique_ptr<KnockMatcher> matcher_;
  std::vector<MatcherEvent> events_;
};

const IpAddress kAlice = Ip("198.51.100.7");
const IpAddress kBob = Ip("198.51.100.8");
const std::vector<Knock> kOpen = {Tcp(7000), Tcp(8000), Tcp(9000)};

// ---------------------------------------------------------------- basics

TEST_F(MatcherTest, InOrderCompletes) {
  Make({Door("ssh", kOpen)});
  EXPECT_THAT(K(kAlice, Tcp(7000), S(0)), IsEmpty());
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 1);
  EXPECT_THAT(K(kAlice, Tcp(8000), S(1)), IsEmpty());
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 2);
  EXPECT_THAT(K(kAlice, Tcp(9000), S(2)), ElementsAre(0));
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);  // completed progress is gone
  ASSERT_EQ(Events(MatcherEventKind::kCompleted).size(), 1u);
  EXPECT_EQ(Events(MatcherEventKind::kCompleted)[0].source, kAlice);
  EXPECT_EQ(matcher_->counters().completions, 1u);
  EXPECT_EQ(matcher_->counters().knocks, 3u);
  EXPECT_EQ(matcher_->counters().packets, 3u);
}

TEST_F(MatcherTest, WrongOrderDoesNotComplete) {
  Make({Door("ssh", kOpen)});
  EXPECT_THAT(Sequence(kAlice, {Tcp(8000), Tcp(7000), Tcp(9000)}, S(0)), IsEmpty());
  EXPECT_THAT(Sequence(kAlice, {Tcp(7000), Tcp(9000), Tcp(8000)}, S(1)), IsEmpty());
  EXPECT_EQ(matcher_->counters().completions, 0u);
  EXPECT_THAT(Sequence(kAlice, kOpen, S(2)), ElementsAre(0));
}

TEST_F(MatcherTest, OneKnockDoorCompletesAtOnce) {
  Make({Door("one", {Udp(4444)})});
  EXPECT_THAT(K(kAlice, Udp(4444), S(0)), ElementsAre(0));
  EXPECT_EQ(matcher_->occupancy(), 0u);  // nothing to remember
}

// ------------------------------------------------------------ reset modes

// knockd's filter never shows it knocks to ports of no sequence, so it
// forgives any number. sesame sees them (a sweep is made of them): compat
// forgives one per attempt, a stray SYN, and resets on the second.
TEST_F(MatcherTest, CompatForgivesOneKnockToAPortOfNoSequence) {
  Make({Door("ssh", kOpen)});
  EXPECT_THAT(Sequence(kAlice, {Tcp(7000), Tcp(1234), Tcp(8000), Tcp(8000), Tcp(9000)}, S(0)), ElementsAre(0));
  EXPECT_EQ(matcher_->counters().resets, 0u);
}

TEST_F(MatcherTest, CompatResetsOnTheSecondKnockToAPortOfNoSequence) {
  Make({Door("ssh", kOpen)});
  EXPECT_THAT(Sequence(kAlice, {Tcp(7000), Tcp(1234), Tcp(8000), Udp(8000), Tcp(9000)}, S(0)), IsEmpty());
  EXPECT_EQ(matcher_->counters().resets, 1u);
  EXPECT_THAT(Sequence(kAlice, kOpen, S(1)), ElementsAre(0));
}

TEST_F(MatcherTest, CompatResetsOnAPortOfAnotherDoorsSequence) {
  Make({Door("ssh", kOpen), Door("web", {Tcp(5000), Tcp(6000)})});
  K(kAlice, Tcp(7000), S(0));
  K(kAlice, Tcp(6000), S(1));  // in web's sequence: disturbs ssh, as in knockd
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);
  EXPECT_THAT(Sequence(kAlice, {Tcp(8000), Tcp(9000)}, S(2)), IsEmpty());
  EXPECT_EQ(matcher_->counters().resets, 1u);
}

TEST_F(MatcherTest, CompatResetsOnAWrongPortOfItsOwnSequence) {
  Make({Door("ssh", kOpen)});
  K(kAlice, Tcp(7000), S(0));
  K(kAlice, Tcp(9000), S(1));
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);
  EXPECT_THAT(K(kAlice, Tcp(8000), S(2)), IsEmpty());
}

// knockd: a wrong knock marks the attempt failed and is spent doing so; it
// does not start a new attempt, even when it is the door's first port. Compat
// mirrors that.
TEST_F(MatcherTest, CompatFirstPortAgainResetsWithoutRestarting) {
  Make({Door("ssh", kOpen)});
  Sequence(kAlice, {Tcp(7000), Tcp(8000)}, S(0));
  K(kAlice, Tcp(7000), S(1));
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);
  EXPECT_THAT(Sequence(kAlice, {Tcp(8000), Tcp(9000)}, S(2)), IsEmpty());
  EXPECT_THAT(Sequence(kAlice, kOpen, S(3)), ElementsAre(0));  // a fresh start works
}

TEST_F(MatcherTest, StrictResetsOnAnyOtherPort) {
  Make({Door("ssh", kOpen, ResetMode::kStrict)});
  EXPECT_THAT(Sequence(kAlice, {Tcp(7000), Tcp(1234), Tcp(8000), Tcp(9000)}, S(0)), IsEmpty());
  EXPECT_THAT(Sequence(kAlice, {Tcp(7000), Udp(8000), Tcp(8000), Tcp(9000)}, S(1)), IsEmpty());  // wrong protocol
  EXPECT_EQ(matcher_->counters().resets, 2u);
  EXPECT_THAT(Sequence(kAlice, kOpen, S(2)), ElementsAre(0));
}

TEST_F(MatcherTest, StrictRestartsAtStageOneOnTheFirstPort) {
  Make({Door("ssh", kOpen, ResetMode::kStrict)});
  Sequence(kAlice, {Tcp(7000), Tcp(8000)}, S(0));
  K(kAlice, Tcp(7000), S(1));
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 1);
  EXPECT_THAT(Sequence(kAlice, {Tcp(8000), Tcp(9000)}, S(2)), ElementsAre(0));
}

// A sequential sweep (knockd walks through every ascending door) opens
// nothing in either mode, at any rate, even with scanner detection off: it
// knocks two or more ports of no sequence during a door's attempt. Only a
// door so close in sweep order that the sweep makes at most one wrong knock
// on the way (7000,7001,7002) is walked: nothing tells that sweep from a
// knock (docs/design.md).
TEST_F(MatcherTest, SequentialSweepWalksThroughNoDoor) {
  MatcherOptions options = TestOptions();
  options.scan_threshold = 0;
  const std::vector<Knock> close = {Tcp(7100), Tcp(7102), Tcp(7104)};
  const std::vector<Knock> mixed = {Tcp(7200), Udp(7300), Tcp(7400)};
  for (ResetMode mode : {ResetMode::kCompat, ResetMode::kStrict}) {
    for (absl::Duration gap : {absl::Microseconds(100), absl::Milliseconds(10), absl::Seconds(1)}) {
      for (bool with_udp : {false, true}) {
        Make({Door("ssh", kOpen, mode, absl::Hours(24)), Door("close", close, mode, absl::Hours(24)),
              Door("mixed", mixed, mode, absl::Hours(24))},
             options);
        size_t completions = 0;
        absl::Duration at = S(0);
        for (int port = 6990; port <= 9010; ++port) {
          completions += matcher_->Process(MakePacket(kAlice, Tcp(port), at)).completed.size();
          if (with_udp) completions += matcher_->Process(MakePacket(kAlice, Udp(port), at)).completed.size();
          at += gap;
        }
        EXPECT_EQ(completions, 0u) << (mode == ResetMode::kStrict ? "strict" : "compat") << " " << gap << (with_udp ? " tcp+udp" : " tcp");
      }
    }
  }
}

class RepeatTest : public MatcherTest, public ::testing::WithParamInterface<ResetMode> {};

// A retransmitted SYN repeats the port just knocked. knockd treats it as a
// wrong knock and fails the attempt; sesame ignores it in both modes.
TEST_P(RepeatTest, KnockdRepeatOfThePortJustKnockedNeverResets) {
  Make({Door("ssh", kOpen, GetParam())});
  EXPECT_THAT(Sequence(kAlice, {Tcp(7000), Tcp(7000), Tcp(8000), Tcp(8000), Tcp(8000), Tcp(9000)}, S(0)),
              ElementsAre(0));
  EXPECT_EQ(matcher_->counters().resets, 0u);
}

TEST_P(RepeatTest, RepeatOfAnEarlierPortIsWrong) {
  Make({Door("ssh", kOpen, GetParam())});
  Sequence(kAlice, {Tcp(7000), Tcp(8000), Tcp(7000)}, S(0));
  EXPECT_EQ(matcher_->counters().resets, 1u);
}

INSTANTIATE_TEST_SUITE_P(BothModes, RepeatTest, ::testing::Values(ResetMode::kCompat, ResetMode::kStrict));

TEST_F(MatcherTest, ResetEventsFromStageTwoByDefault) {
  Make({Door("ssh", kOpen, ResetMode::kStrict)});
  Sequence(kAlice, {Tcp(7000), Tcp(1)}, S(0));             // reset at stage 1: counted only
  Sequence(kAlice, {Tcp(7000), Tcp(8000), Tcp(2)}, S(1));  // reset at stage 2: reported
  EXPECT_EQ(matcher_->counters().resets, 2u);
  const auto resets = Events(MatcherEventKind::kReset);
  ASSERT_EQ(resets.size(), 1u);
  EXPECT_EQ(resets[0].stage, 2);
  EXPECT_EQ(resets[0].door, 0);
  EXPECT_EQ(resets[0].knock, Tcp(2));
  EXPECT_EQ(resets[0].source, kAlice);
}

// --------------------------------------------------------------- timeouts

TEST_F(MatcherTest, TimeoutIsMeasuredFromTheFirstKnock) {
  Make({Door("ssh", kOpen)});  // 5 s
  K(kAlice, Tcp(7000), S(0));
  K(kAlice, Tcp(8000), S(3));
  EXPECT_THAT(K(kAlice, Tcp(9000), S(5.5)), IsEmpty());  // every gap < 5 s, the whole > 5 s
  EXPECT_EQ(matcher_->counters().timeouts, 1u);
}

TEST_F(MatcherTest, LateKnockIsNeverAccepted) {
  Make({Door("ssh", kOpen)});
  K(kAlice, Tcp(7000), S(0));
  K(kAlice, Tcp(8000), S(1));
  EXPECT_THAT(K(kAlice, Tcp(9000), S(5)), IsEmpty());  // exactly seq_timeout: late (knockd: >=)
  K(kBob, Tcp(7000), S(0));
  K(kBob, Tcp(8000), S(1));
  EXPECT_THAT(K(kBob, Tcp(9000), absl::Seconds(5) - absl::Milliseconds(1)), ElementsAre(0));
}

// knockd compares whole seconds of capture time (pkt_secs - seq_start), so a
// sequence that takes 4.2 s but spans second boundaries 10.9 -> 15.1 times
// out with seq_timeout = 5. sesame measures milliseconds.
TEST_F(MatcherTest, KnockdTimeoutIsNotRoundedToSeconds) {
  Make({Door("ssh", kOpen)});
  K(kAlice, Tcp(7000), S(10.9));
  K(kAlice, Tcp(8000), S(12));
  EXPECT_THAT(K(kAlice, Tcp(9000), S(15.1)), ElementsAre(0));
}

// knockd only notices a timeout when the next packet arrives; Expire drops and
// reports it on time.
TEST_F(MatcherTest, KnockdExpireDropsAndReportsStaleProgress) {
  Make({Door("ssh", kOpen)});
  K(kAlice, Tcp(7000), S(0));
  K(kBob, Tcp(7000), S(0));
  K(kAlice, Tcp(8000), S(1));
  EXPECT_EQ(matcher_->Expire(kT0 + S(4.9)), 0u);
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 2);
  EXPECT_EQ(matcher_->Expire(kT0 + S(5)), 2u);
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);
  EXPECT_EQ(matcher_->StageOf(kBob, 0), 0);
  EXPECT_EQ(matcher_->counters().timeouts, 2u);
  const auto timeouts = Events(MatcherEventKind::kTimeout);
  ASSERT_EQ(timeouts.size(), 1u);  // Bob's lone first knock is only counted
  EXPECT_EQ(timeouts[0].source, kAlice);
  EXPECT_EQ(timeouts[0].stage, 2);
  EXPECT_EQ(timeouts[0].time, kT0 + S(5));
  // With nothing in progress and no wrong knocks to remember, entries are freed.
  EXPECT_EQ(matcher_->occupancy(), 0u);
}

TEST_F(MatcherTest, AfterATimeoutTheNextKnockIsJudgedAfresh) {
  Make({Door("ssh", kOpen)});
  K(kAlice, Tcp(7000), S(0));
  K(kAlice, Tcp(8000), S(6));  // late: not accepted, and no first knock either
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);
  K(kAlice, Tcp(7000), S(7));  // a first knock after a timeout starts again (even in compat)
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 1);
  EXPECT_THAT(Sequence(kAlice, {Tcp(8000), Tcp(9000)}, S(8)), ElementsAre(0));
}

TEST_F(MatcherTest, EachDoorHasItsOwnTimeout) {
  Make({Door("fast", {Tcp(7000), Tcp(8000)}, ResetMode::kCompat, S(1)),
        Door("slow", {Tcp(7000), Tcp(8000), Tcp(9000)}, ResetMode::kCompat, S(10))});
  K(kAlice, Tcp(7000), S(0));
  EXPECT_THAT(K(kAlice, Tcp(8000), S(2)), IsEmpty());  // fast timed out
  EXPECT_EQ(matcher_->StageOf(kAlice, 1), 2);
  EXPECT_THAT(K(kAlice, Tcp(9000), S(3)), ElementsAre(1));
}

// ---------------------------------------------------------- packet shape

TEST_F(MatcherTest, DefaultShapeIsSynWithoutAck) {
  for (ResetMode mode : {ResetMode::kCompat, ResetMode::kStrict}) {
    Make({Door("ssh", kOpen, mode)});
    K(kAlice, Tcp(7000), S(0));
    // Not knocks: invisible, neither advancing nor resetting.
    K(kAlice, Tcp(8000), S(1), kSyn | kAck);
    K(kAlice, Tcp(1234), S(1), kAck);
    K(kAlice, Tcp(9000), S(1), kRst);
    K(kAlice, Tcp(9000), S(1), 0);
    EXPECT_EQ(matcher_->StageOf(kAlice, 0), 1);
    K(kAlice, Tcp(8000), S(2), kSyn | tcp_flags::kPsh);  // other bits are free
    EXPECT_THAT(K(kAlice, Tcp(9000), S(3)), ElementsAre(0));
  }
}

// "tcpflags = fin,!syn,!ack". (knockd 0.7 had "!ack" and "!urg" inverted.)
TEST_F(MatcherTest, TcpFlagsWithNegation) {
  MatcherDoor door = Door("fin", kOpen, ResetMode::kStrict);
  door.tcp_flags_set = kFin;
  door.tcp_flags_clear = kSyn | kAck;
  Make({door});
  K(kAlice, Tcp(7000), S(0), kFin);
  K(kAlice, Tcp(8000), S(1), kFin | kAck);  // !ack: not a knock
  K(kAlice, Tcp(8000), S(1), kSyn);         // no fin: not a knock
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 1);
  K(kAlice, Tcp(8000), S(1), kFin | tcp_flags::kUrg);
  EXPECT_THAT(K(kAlice, Tcp(9000), S(2), kFin), ElementsAre(0));
}

// knockd without a tcpflags line: any TCP packet is a knock.
TEST_F(MatcherTest, NoFlagRuleTakesAnyTcpPacket) {
  MatcherDoor door = Door("any", kOpen);
  door.tcp_flags_set = 0;
  door.tcp_flags_clear = 0;
  Make({door});
  K(kAlice, Tcp(7000), S(0), kAck);
  K(kAlice, Tcp(8000), S(1), 0);
  EXPECT_THAT(K(kAlice, Tcp(9000), S(2), kSyn | kAck), ElementsAre(0));
}

TEST_F(MatcherTest, UdpKnocksHaveNoFlags) {
  Make({Door("udp", {Udp(7000), Udp(8000)})});
  EXPECT_THAT(Sequence(kAlice, {Udp(7000), Udp(8000)}, S(0)), ElementsAre(0));
  EXPECT_THAT(Sequence(kAlice, {Tcp(7000), Tcp(8000)}, S(1)), IsEmpty());  // wrong protocol
}

TEST_F(MatcherTest, MixedTcpUdpSequence) {
  const std::vector<Knock> seq = {Tcp(7000), Udp(8000), Tcp(9000)};
  Make({Door("compat", seq), Door("strict", {Tcp(7000), Udp(8000), Tcp(9001)}, ResetMode::kStrict)});
  K(kAlice, Tcp(7000), S(0));
  K(kAlice, Tcp(8000), S(1));  // 8000/tcp is in no sequence: compat ignores it, strict resets
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 1);
  EXPECT_EQ(matcher_->StageOf(kAlice, 1), 0);
  K(kAlice, Udp(8000), S(2));
  EXPECT_THAT(K(kAlice, Tcp(9000), S(3)), ElementsAre(0));
  EXPECT_THAT(Sequence(kBob, {Tcp(7000), Udp(8000), Tcp(9001)}, S(4)), ElementsAre(1));
}

// ---------------------------------------------------------------- sources

TEST_F(MatcherTest, Ipv6Sources) {
  Make({Door("ssh", kOpen)});
  const IpAddress six = Ip("2001:db8:1::42");
  EXPECT_THAT(Sequence(six, kOpen, S(0)), ElementsAre(0));
  ASSERT_EQ(Events(MatcherEventKind::kCompleted).size(), 1u);
  EXPECT_EQ(Events(MatcherEventKind::kCompleted)[0].source, six);
}

TEST_F(MatcherTest, SameBytesInBothFamiliesAreDifferentSources) {
  Make({Door("ssh", kOpen)});
  const IpAddress four = Ip("1.2.3.4");
  const IpAddress six = Ip("102:304::");  // the same leading bytes
  K(four, Tcp(7000), S(0));
  K(six, Tcp(7000), S(0));
  K(six, Tcp(8000), S(1));
  EXPECT_EQ(matcher_->StageOf(four, 0), 1);
  EXPECT_EQ(matcher_->StageOf(six, 0), 2);
  EXPECT_EQ(matcher_->StageOf(Ip("::ffff:1.2.3.4"), 0), 0);
}

// knockd 0.8 keeps attempts in a list; removing the head (the oldest attempt,
// e.g. the first knocker completing) sets the list to NULL and forgets every
// other attempt. Thirty clients knocking interleaved: knockd lets one in.
TEST_F(MatcherTest, KnockdThirtyInterleavedSourcesAllGetIn) {
  Make({Door("ssh", kOpen)});
  std::vector<IpAddress> clients;
  for (uint32_t i = 0; i < 30; ++i) clients.push_back(V4(0x0a000001 + i));
  size_t completed = 0;
  absl::Duration at = S(0);
  for (const Knock& k : kOpen) {
    for (const IpAddress& c : clients) {
      completed += K(c, k, at).size();
      at += absl::Milliseconds(10);
    }
  }
  EXPECT_EQ(completed, 30u);
}

// -------------------------------------------------------------- destinations

TEST_F(MatcherTest, TargetDoorOnlyTakesKnocksToItsTarget) {
  MatcherDoor door = Door("t", kOpen, ResetMode::kStrict);
  door.target = kOther;
  Make({door, Door("local", {Tcp(5000), Tcp(6000)}, ResetMode::kStrict)});
  matcher_->SetLocalAddresses({kServer});
  K(kAlice, Tcp(7000), S(0), kSyn, kOther);
  K(kAlice, Tcp(1234), S(1), kSyn, kServer);  // to a local address: not a knock for door t
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 1);
  K(kAlice, Tcp(8000), S(1), kSyn, kOther);
  EXPECT_THAT(K(kAlice, Tcp(9000), S(2), kSyn, kServer), IsEmpty());
  EXPECT_THAT(K(kAlice, Tcp(9000), S(2), kSyn, kOther), ElementsAre(0));
  // The untargeted door does not take knocks to the other door's target.
  K(kBob, Tcp(5000), S(3), kSyn, kOther);
  EXPECT_THAT(K(kBob, Tcp(6000), S(3), kSyn, kOther), IsEmpty());
  EXPECT_THAT(Sequence(kBob, {Tcp(5000), Tcp(6000)}, S(4)), ElementsAre(1));
}

TEST_F(MatcherTest, LocalAddressesRule) {
  Make({Door("ssh", kOpen)});
  // Unset: any destination (capture-file replay).
  EXPECT_THAT(Sequence(kAlice, kOpen, S(0)), ElementsAre(0));
  matcher_->SetLocalAddresses({kServer, kServer6});
  for (const Knock& k : kOpen) K(kBob, k, S(1), kSyn, kOther);
  EXPECT_EQ(matcher_->counters().completions, 1u);
  EXPECT_THAT(Sequence(kBob, kOpen, S(2)), ElementsAre(0));
  const IpAddress six = Ip("2001:db8:1::42");
  for (const Knock& k : kOpen) K(six, k, S(3), kSyn, kServer6);
  EXPECT_EQ(matcher_->counters().completions, 3u);
  matcher_->AcceptAnyDestination();
  for (const Knock& k : kOpen) K(kBob, k, S(4), kSyn, kOther);
  EXPECT_EQ(matcher_->counters().completions, 4u);
}

// ------------------------------------------------------ sequences, doors

// 1000,1000,2000: advancing wins over the retransmission rule, so the second
// 1000 is the second knock; a third 1000 repeats the port just knocked and is
// ignored. A single retransmitted first SYN therefore counts as knock two.
TEST_F(MatcherTest, SequenceRepeatingAPort) {
  const std::vector<Knock> seq = {Tcp(1000), Tcp(1000), Tcp(2000)};
  for (ResetMode mode : {ResetMode::kCompat, ResetMode::kStrict}) {
    Make({Door("rep", seq, mode)});
    EXPECT_THAT(Sequence(kAlice, seq, S(0)), ElementsAre(0));
    EXPECT_THAT(Sequence(kAlice, {Tcp(1000), Tcp(1000), Tcp(1000), Tcp(2000)}, S(1)), ElementsAre(0));
    EXPECT_THAT(Sequence(kAlice, {Tcp(1000), Tcp(2000)}, S(2)), IsEmpty());
    EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);
  }
}

TEST_F(MatcherTest, TwoDoorsSharingPorts) {
  Make({Door("a", {Tcp(7000), Tcp(8000), Tcp(9000)}), Door("b", {Tcp(7000), Tcp(8000), Tcp(10000)})});
  K(kAlice, Tcp(7000), S(0));
  K(kAlice, Tcp(8000), S(0.1));
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 2);
  EXPECT_EQ(matcher_->StageOf(kAlice, 1), 2);
  EXPECT_THAT(K(kAlice, Tcp(10000), S(0.2)), ElementsAre(1));
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);  // 10000 is a sequence port: a resets
  EXPECT_THAT(Sequence(kBob, {Tcp(7000), Tcp(8000), Tcp(9000)}, S(1)), ElementsAre(0));
}

TEST_F(MatcherTest, IdenticalSequencesCompleteTogether) {
  Make({Door("a", kOpen), Door("b", {Tcp(1), Tcp(2)}), Door("c", kOpen)});
  EXPECT_THAT(Sequence(kAlice, kOpen, S(0)), ElementsAre(0, 2));
  EXPECT_EQ(matcher_->counters().completions, 2u);
}

// knockd's classic pair. Completing openSSH on 9000 also starts closeSSH.
TEST_F(MatcherTest, OpenAndCloseDoors) {
  Make({Door("openSSH", kOpen), Door("closeSSH", {Tcp(9000), Tcp(8000), Tcp(7000)})});
  EXPECT_THAT(Sequence(kAlice, kOpen, S(0)), ElementsAre(0));
  EXPECT_THAT(Sequence(kAlice, {Tcp(9000), Tcp(8000), Tcp(7000)}, S(1)), ElementsAre(1));
}

// knockd starts no door while any attempt of the source is pending: a stray
// first knock of openSSH makes closeSSH's first knock a wrong knock for
// openSSH, spent on resetting it, and closeSSH never starts.
TEST_F(MatcherTest, KnockdStrayFirstKnockDoesNotEatAnotherDoorsFirstKnock) {
  Make({Door("openSSH", kOpen), Door("closeSSH", {Tcp(9000), Tcp(8000), Tcp(7000)})});
  K(kAlice, Tcp(7000), S(0));
  EXPECT_THAT(Sequence(kAlice, {Tcp(9000), Tcp(8000), Tcp(7000)}, S(1)), ElementsAre(1));
}

// Overlapping doors that would need three progress groups keep the two
// furthest (a documented limit).
TEST_F(MatcherTest, ProgressGroupsKeepTheFurthest) {
  Make({Door("a", {Tcp(1), Tcp(2), Tcp(3), Tcp(4)}), Door("b", {Tcp(2), Tcp(3), Tcp(4), Tcp(5)}),
        Door("c", {Tcp(3), Tcp(4), Tcp(5), Tcp(6)})});
  Sequence(kAlice, {Tcp(1), Tcp(2), Tcp(3)}, S(0));
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 3);
  EXPECT_EQ(matcher_->StageOf(kAlice, 1), 2);
  EXPECT_EQ(matcher_->StageOf(kAlice, 2), 0);
  EXPECT_EQ(matcher_->counters().progress_dropped, 1u);
  EXPECT_THAT(K(kAlice, Tcp(4), S(1)), ElementsAre(0));
  EXPECT_THAT(K(kAlice, Tcp(5), S(1.1)), ElementsAre(1));
}

TEST_F(MatcherTest, SetSequenceReplacesAndDropsProgress) {
  Make({Door("once", kOpen), Door("other", {Tcp(5000), Tcp(6000)})});
  Sequence(kAlice, {Tcp(7000), Tcp(8000)}, S(0));
  K(kBob, Tcp(5000), S(0));
  ASSERT_TRUE(matcher_->SetSequence(0, {Tcp(1111), Udp(2222), Tcp(3333)}).ok());
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);
  EXPECT_EQ(matcher_->StageOf(kBob, 1), 1);  // other doors keep theirs
  EXPECT_THAT(K(kAlice, Tcp(9000), S(1)), IsEmpty());
  EXPECT_THAT(Sequence(kAlice, kOpen, S(2)), IsEmpty());
  EXPECT_THAT(Sequence(kAlice, {Tcp(1111), Udp(2222), Tcp(3333)}, S(3)), ElementsAre(0));
  EXPECT_THAT(K(kBob, Tcp(6000), S(3)), ElementsAre(1));
  EXPECT_FALSE(matcher_->SetSequence(0, {}).ok());
  EXPECT_FALSE(matcher_->SetSequence(7, kOpen).ok());
}

TEST_F(MatcherTest, DisabledDoorIgnoresKnocks) {
  Make({Door("once", kOpen)});
  Sequence(kAlice, {Tcp(7000), Tcp(8000)}, S(0));
  ASSERT_TRUE(matcher_->SetDoorEnabled(0, false).ok());
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);
  EXPECT_THAT(Sequence(kAlice, kOpen, S(1)), IsEmpty());
  // Exhausted one-time file: no sequence, cannot be enabled.
  ASSERT_TRUE(matcher_->SetSequence(0, {}).ok());
  EXPECT_FALSE(matcher_->SetDoorEnabled(0, true).ok());
  ASSERT_TRUE(matcher_->SetSequence(0, kOpen).ok());
  ASSERT_TRUE(matcher_->SetDoorEnabled(0, true).ok());
  EXPECT_THAT(Sequence(kAlice, kOpen, S(2)), ElementsAre(0));
}

TEST_F(MatcherTest, InvalidConfigurationsAreRefused) {
  MatcherOptions options = TestOptions();
  EXPECT_FALSE(KnockMatcher::Create(options, {Door("empty", {})}).ok());
  EXPECT_FALSE(KnockMatcher::Create(options, {Door("long", std::vector<Knock>(33, Tcp(1)))}).ok());
  EXPECT_TRUE(KnockMatcher::Create(options, {Door("long", std::vector<Knock>(32, Tcp(1)))}).ok());
  EXPECT_FALSE(KnockMatcher::Create(options, {Door("t", kOpen, ResetMode::kCompat, absl::ZeroDuration())}).ok());
  MatcherDoor contradictory = Door("flags", kOpen);
  contradictory.tcp_flags_set = kSyn;
  contradictory.tcp_flags_clear = kSyn | kAck;
  auto status = KnockMatcher::Create(options, {contradictory}).status();
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("'flags'"));
  EXPECT_FALSE(KnockMatcher::Create(options, std::vector<MatcherDoor>(65, Door("d", kOpen))).ok());
  EXPECT_TRUE(KnockMatcher::Create(options, std::vector<MatcherDoor>(64, Door("d", kOpen))).ok());
  MatcherDoor disabled = Door("exhausted", {});
  disabled.enabled = false;
  EXPECT_TRUE(KnockMatcher::Create(options, {disabled}).ok());
  options.max_sources = 0;
  EXPECT_FALSE(KnockMatcher::Create(options, {}).ok());
}

TEST_F(MatcherTest, SixtyFourDoors) {
  std::vector<MatcherDoor> doors;
  for (int i = 0; i < 64; ++i) doors.push_back(Door("d", {Tcp(1000 + i), Tcp(2000 + i)}));
  Make(doors);
  EXPECT_THAT(Sequence(kAlice, {Tcp(1063), Tcp(2063)}, S(0)), ElementsAre(63));
  EXPECT_THAT(Sequence(kAlice, {Tcp(1000), Tcp(2000)}, S(1)), ElementsAre(0));
}

TEST_F(MatcherTest, StageEventsOnlyWhenAskedFor) {
  Make({Door("ssh", kOpen)});
  Sequence(kAlice, kOpen, S(0));
  EXPECT_THAT(Events(MatcherEventKind::kStage), IsEmpty());
  MatcherOptions options = TestOptions();
  options.report_stages = true;
  Make({Door("ssh", kOpen)}, options);
  events_.clear();
  Sequence(kAlice, kOpen, S(0));
  std::vector<int> stages;
  for (const auto& e : Events(MatcherEventKind::kStage)) stages.push_back(e.stage);
  EXPECT_THAT(stages, ElementsAre(1, 2, 3));
  EXPECT_EQ(Events(MatcherEventKind::kCompleted).size(), 1u);
}

// ------------------------------------------------------------ scanners

MatcherOptions ScanOptions() {
  MatcherOptions options = TestOptions();
  options.scan_threshold = 12;
  options.scan_window = absl::Seconds(5);
  options.scan_ban = absl::Seconds(300);
  return options;
}

// A scanner is reported once per episode, not ignored: its address may be
// forged, and a forged sweep must not keep the address's owner out once the
// forgery stops.
TEST_F(MatcherTest, ScannerIsFlaggedOnceNotIgnoredAndReleased) {
  Make({Door("ssh", kOpen)}, ScanOptions());
  K(kAlice, Tcp(7000), S(0));
  int flagged_after = 0;
  for (int port = 1; port <= 100 && flagged_after == 0; ++port) {
    K(kAlice, Tcp(port), S(0.01 * port));
    if (matcher_->IsBanned(kAlice)) flagged_after = port;
  }
  EXPECT_GE(flagged_after, 12);
  EXPECT_LE(flagged_after, 20);
  EXPECT_EQ(matcher_->counters().scanners, 1u);
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);
  for (int port = 200; port < 300; ++port) K(kAlice, Tcp(port), S(2));  // still scanning: reported once
  // The address's own knock right after opens.
  EXPECT_THAT(Sequence(kAlice, kOpen, S(3)), ElementsAre(0));
  // Judged as any source: compat forgives one stray knock, resets on the second.
  EXPECT_THAT(Sequence(kAlice, {Tcp(7000), Tcp(22), Tcp(8000), Tcp(9000)}, S(4)), ElementsAre(0));
  Sequence(kAlice, {Tcp(7000), Tcp(8000)}, S(5));
  K(kAlice, Tcp(8001), S(5.3));
  K(kAlice, Tcp(8002), S(5.4));
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 0);
  const auto flagged = Events(MatcherEventKind::kScannerFlagged);
  ASSERT_EQ(flagged.size(), 1u);
  EXPECT_EQ(flagged[0].source, kAlice);
  EXPECT_EQ(matcher_->counters().scanner_packets, 111u);
  // Bob is unaffected.
  EXPECT_THAT(Sequence(kBob, kOpen, S(3)), ElementsAre(0));

  // The episode ends scan_ban after the last wrong knock.
  matcher_->Expire(kT0 + S(305));
  EXPECT_TRUE(matcher_->IsBanned(kAlice));
  matcher_->Expire(kT0 + S(306));
  EXPECT_FALSE(matcher_->IsBanned(kAlice));
  const auto released = Events(MatcherEventKind::kScannerReleased);
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].ignored_packets, 111u);
  EXPECT_THAT(Sequence(kAlice, kOpen, S(400)), ElementsAre(0));
}

// The attack of a forged sweep: the engineer's address as the source of a
// sweep across the door's ports, then the engineer's correct knock 2 s
// after the sweep's last packet. It opens, in both modes.
TEST_F(MatcherTest, ForgedSweepDoesNotLockTheAddressOut) {
  const std::vector<Knock> door = {Tcp(7000), Udp(8000), Tcp(9000)};
  for (ResetMode mode : {ResetMode::kCompat, ResetMode::kStrict}) {
    Make({Door("ssh", door, mode, S(10))}, ScanOptions());
    absl::Duration at = S(0);
    for (int port = 6990; port <= 9010; ++port) {
      K(kAlice, Tcp(port), at);
      at += absl::Microseconds(500);  // 2,000 packets/s
    }
    EXPECT_EQ(matcher_->counters().scanners, 1u) << (mode == ResetMode::kStrict ? "strict" : "compat");
    at += S(2);
    EXPECT_THAT(Sequence(kAlice, door, at), ElementsAre(0)) << (mode == ResetMode::kStrict ? "strict" : "compat");
  }
}

TEST_F(MatcherTest, ScannerBanEndsOnTheNextPacketToo) {
  Make({Door("ssh", kOpen)}, ScanOptions());
  K(kAlice, Tcp(7000), S(0));
  for (int port = 1; port <= 100; ++port) K(kAlice, Tcp(port), S(0.01 * port));
  ASSERT_TRUE(matcher_->IsBanned(kAlice));
  EXPECT_THAT(Sequence(kAlice, kOpen, S(302)), ElementsAre(0));
  EXPECT_EQ(Events(MatcherEventKind::kScannerReleased).size(), 1u);
}

TEST_F(MatcherTest, FewOrSlowWrongKnocksAreNoScan) {
  Make({Door("ssh", kOpen)}, ScanOptions());
  K(kAlice, Tcp(7000), S(0));
  for (int port = 1; port <= 11; ++port) K(kAlice, Tcp(port), S(0.01 * port));  // below the threshold
  for (int i = 0; i < 100; ++i) K(kAlice, Tcp(5), S(1));                        // one port, many times
  EXPECT_FALSE(matcher_->IsBanned(kAlice));
  // One wrong port a second with a 5 s window: never 12 in a window.
  K(kBob, Tcp(7000), S(0));
  for (int port = 1; port <= 100; ++port) K(kBob, Tcp(port), S(port));
  EXPECT_FALSE(matcher_->IsBanned(kBob));
  EXPECT_EQ(matcher_->counters().scanners, 0u);
}

TEST_F(MatcherTest, SweepFromAnUntrackedSourceCostsNothing) {
  Make({Door("ssh", kOpen)}, ScanOptions());
  for (int port = 1; port < 6000; ++port) K(kAlice, Tcp(port), S(0.001 * port));
  EXPECT_EQ(matcher_->occupancy(), 0u);
}

TEST_F(MatcherTest, ScannerDetectionCanBeOff) {
  MatcherOptions options = ScanOptions();
  options.scan_threshold = 0;
  Make({Door("ssh", kOpen)}, options);
  K(kAlice, Tcp(7000), S(0));
  for (int port = 1; port <= 1000; ++port) K(kAlice, Tcp(port), S(0.001 * port));
  EXPECT_FALSE(matcher_->IsBanned(kAlice));
}

// ------------------------------------------------ bounded table, eviction

// capacity 8 = a single bucket: every source competes for the same 8 ways.
MatcherOptions OneBucket() {
  MatcherOptions options = TestOptions();
  options.max_sources = 8;
  return options;
}

// Least recently used, by table activity rather than time: a flood puts
// thousands of packets in a millisecond.
TEST_F(MatcherTest, EvictsTheLeastRecentFirstKnockFirst) {
  Make({Door("ssh", kOpen, ResetMode::kCompat, S(60))}, OneBucket());
  for (uint32_t i = 0; i < 8; ++i) K(V4(100 + i), Tcp(7000), S(0));
  EXPECT_EQ(matcher_->occupancy(), 8u);
  K(V4(200), Tcp(7000), S(0));
  EXPECT_EQ(matcher_->StageOf(V4(100), 0), 0);
  for (uint32_t i = 1; i < 8; ++i) EXPECT_EQ(matcher_->StageOf(V4(100 + i), 0), 1) << i;
  EXPECT_EQ(matcher_->counters().evictions, 1u);
  EXPECT_EQ(matcher_->counters().evicted_progress, 1u);
}

TEST_F(MatcherTest, SourcesWithoutProgressGoBeforeFirstKnocks) {
  Make({Door("ssh", kOpen, ResetMode::kCompat, S(60))}, OneBucket());
  Sequence(V4(100), kOpen, S(0));  // completed: tracked, nothing in progress
  for (uint32_t i = 1; i < 8; ++i) K(V4(100 + i), Tcp(7000), S(1));
  K(V4(200), Tcp(7000), S(2));
  EXPECT_EQ(matcher_->counters().evicted_progress, 0u);
  for (uint32_t i = 1; i < 8; ++i) EXPECT_EQ(matcher_->StageOf(V4(100 + i), 0), 1) << i;
}

// Progress older than a second goes before any younger, whatever the stage.
TEST_F(MatcherTest, YoungProgressOutlastsOld) {
  Make({Door("ssh", kOpen, ResetMode::kCompat, S(60))}, OneBucket());
  for (uint32_t i = 0; i < 7; ++i) K(V4(100 + i), Tcp(7000), S(0));
  matcher_->Expire(kT0 + S(1.5));
  Sequence(V4(1), {Tcp(7000), Tcp(8000)}, S(1.5));
  for (uint32_t i = 0; i < 7; ++i) K(V4(1000 + i), Tcp(7000), S(1.8));  // displace the old first knocks
  EXPECT_EQ(matcher_->StageOf(V4(1), 0), 2);
  EXPECT_THAT(K(V4(1), Tcp(9000), S(1.9)), ElementsAre(0));
  EXPECT_EQ(matcher_->counters().young_evictions, 0u);
  for (uint32_t i = 0; i < 7; ++i) EXPECT_EQ(matcher_->StageOf(V4(100 + i), 0), 0) << i;
}

// Forged half-knocks (the first two knocks from sources that never finish)
// hold their rank for a second only; then a new knocker displaces them.
TEST_F(MatcherTest, HalfKnocksLoseTheirEdgeAfterASecond) {
  Make({Door("ssh", kOpen, ResetMode::kCompat, S(60))}, OneBucket());
  for (uint32_t i = 0; i < 8; ++i) {
    K(V4(10 + i), Tcp(7000), S(0));
    K(V4(10 + i), Tcp(8000), S(0));
  }
  matcher_->Expire(kT0 + S(1.5));
  EXPECT_THAT(Sequence(V4(99), kOpen, S(2)), ElementsAre(0));
  EXPECT_EQ(matcher_->counters().evicted_progress, 1u);
  EXPECT_EQ(matcher_->counters().young_evictions, 0u);
}

// A bucket full of fresh half-knocks (a flood of more new sources a second
// than the table holds) still takes a new source: the least recent goes.
// The newcomer is not the next victim: forged half-knocks never outrank a
// real first knock.
TEST_F(MatcherTest, ABucketOfFreshHalfKnocksStillTakesANewSource) {
  Make({Door("ssh", kOpen, ResetMode::kCompat, S(60))}, OneBucket());
  for (uint32_t i = 0; i < 8; ++i) Sequence(V4(10 + i), {Tcp(7000), Tcp(8000)}, S(0.01 * i));
  K(V4(99), Tcp(7000), S(0.2));
  K(V4(200), Tcp(7000), S(0.21));  // one more forged first knock lands in the bucket
  EXPECT_THAT(Sequence(V4(99), {Tcp(8000), Tcp(9000)}, S(0.22)), ElementsAre(0));
  EXPECT_EQ(matcher_->counters().young_evictions, 2u);
  EXPECT_EQ(matcher_->StageOf(V4(10), 0), 0);
  EXPECT_EQ(matcher_->StageOf(V4(11), 0), 0);
  for (uint32_t i = 2; i < 8; ++i) EXPECT_EQ(matcher_->StageOf(V4(10 + i), 0), 2) << i;
}

// Random sources from a seeded generator.
IpAddress RandomV4(std::mt19937_64& rng) { return V4(static_cast<uint32_t>(rng())); }

// 150,000 spoofed sources each send the first two knocks of the door (at
// about 70,000 sources a second, more than the table holds), then 20 real
// knockers knock: all get in.
TEST_F(MatcherTest, FloodOfSpoofedHalfKnocksThenRealKnockers) {
  MatcherOptions options = TestOptions();
  options.max_sources = 65536;
  Make({Door("ssh", kOpen, ResetMode::kStrict, S(15))}, options);
  matcher_->SetObserver(nullptr);
  std::mt19937_64 rng(11);
  absl::Duration now = S(0);
  absl::Duration next_expire = S(0.1);
  for (int i = 0; i < 150000; ++i) {
    const IpAddress spoofed = RandomV4(rng);
    matcher_->Process(MakePacket(spoofed, Tcp(7000), now));
    matcher_->Process(MakePacket(spoofed, Tcp(8000), now));
    now += absl::Microseconds(14);
    if (now >= next_expire) {  // the daemon's tick
      matcher_->Expire(kT0 + now);
      next_expire += S(0.1);
    }
  }
  size_t completed = 0;
  for (uint32_t r = 0; r < 20; ++r) completed += Sequence(V4(0xc6336400 + r), kOpen, now).size();
  EXPECT_EQ(completed, 20u);
}

// The attack the table is built for: spoofed first knocks from random
// sources. A knocker survives as long as its bucket sees fewer than 8 new
// sources between two of its knocks (about capacity flood packets).
TEST_F(MatcherTest, FloodOfSpoofedFirstKnocksDoesNotStopRealKnockers) {
  MatcherOptions options = TestOptions();
  options.max_sources = 65536;
  Make({Door("ssh", kOpen, ResetMode::kStrict, S(25))}, options);
  matcher_->SetObserver(nullptr);
  const size_t table_bytes = matcher_->TableBytes();
  std::mt19937_64 rng(7);
  absl::Duration now = S(0);
  auto flood = [&](int n) {
    for (int i = 0; i < n; ++i) {
      matcher_->Process(MakePacket(RandomV4(rng), Tcp(7000), now));
      now += absl::Microseconds(1);
    }
  };
  flood(200000);  // the table is full of flood before the first real knock
  const size_t heap_before = mallinfo2().uordblks;

  // 100 knockers one after the other, ~3,300 flood packets between two
  // knocks (a 10 Mpps flood and knocks 0.3 ms apart): 1,000,000 in all.
  size_t completed = 0;
  for (uint32_t r = 0; r < 100; ++r) {
    const IpAddress real = V4(0xc6336400 + r);
    for (const Knock& k : kOpen) {
      completed += matcher_->Process(MakePacket(real, k, now)).completed.size();
      flood(3333);
    }
    flood(1);
  }
  EXPECT_EQ(completed, 100u);

  // 100 knockers two knocks in, then 3,000 spoofed first knocks (10 ms of a
  // 300,000 packets/s flood), then the last knocks.
  for (uint32_t r = 0; r < 100; ++r) {
    for (const Knock& k : {Tcp(7000), Tcp(8000)}) matcher_->Process(MakePacket(V4(0xcb007100 + r), k, now));
  }
  flood(3000);
  completed = 0;
  for (uint32_t r = 0; r < 100; ++r) {
    completed += matcher_->Process(MakePacket(V4(0xcb007100 + r), Tcp(9000), now)).completed.size();
  }
  EXPECT_EQ(completed, 100u);

  EXPECT_EQ(mallinfo2().uordblks, heap_before);  // no allocation on the packet path
  EXPECT_EQ(matcher_->TableBytes(), table_bytes);
  EXPECT_EQ(matcher_->occupancy(), matcher_->capacity());
  EXPECT_GT(matcher_->counters().evictions, 1000000u);
}

TEST_F(MatcherTest, Ipv6FloodIsBoundedToo) {
  MatcherOptions options = TestOptions();
  options.max_sources = 4096;
  Make({Door("ssh", kOpen, ResetMode::kStrict, S(25))}, options);
  std::mt19937_64 rng(9);
  for (int i = 0; i < 100000; ++i) {
    uint8_t b[16];
    for (int j = 0; j < 16; j += 8) {
      const uint64_t r = rng();
      std::memcpy(b + j, &r, 8);
    }
    matcher_->Process(MakePacket(IpAddress::V6(b), Tcp(7000), S(0)));
    if (i % 1000 == 0) {
      const IpAddress real = Ip("2001:db8:77::1");
      K(real, Tcp(7000), S(1));
      K(real, Tcp(8000), S(1));
      EXPECT_THAT(K(real, Tcp(9000), S(1)), ElementsAre(0));
    }
  }
  EXPECT_EQ(matcher_->occupancy(), matcher_->capacity());
}

// ProcessBatch is Process with prefetching: same results, same state.
TEST_F(MatcherTest, BatchEqualsOneByOne) {
  MatcherOptions options = TestOptions();
  options.max_sources = 256;
  const std::vector<MatcherDoor> doors = {Door("a", kOpen, ResetMode::kStrict), Door("b", {Udp(5000), Tcp(7000)})};
  auto one = KnockMatcher::Create(options, doors);
  auto batch = KnockMatcher::Create(options, doors);
  ASSERT_TRUE(one.ok() && batch.ok());
  std::mt19937_64 rng(3);
  std::vector<Packet> packets;
  const Knock knocks[] = {Tcp(7000), Tcp(8000), Tcp(9000), Udp(5000), Tcp(1234)};
  for (int i = 0; i < 20000; ++i) {
    packets.push_back(MakePacket(V4(0x0a000000 + rng() % 400), knocks[rng() % 5], absl::Milliseconds(i)));
  }
  std::vector<MatchResult> results(packets.size());
  for (size_t i = 0; i < packets.size(); i += 1000) {
    (*batch)->ProcessBatch(absl::MakeConstSpan(packets).subspan(i, 1000), absl::MakeSpan(results).subspan(i));
  }
  size_t completions = 0;
  for (size_t i = 0; i < packets.size(); ++i) {
    const DoorSet expected = (*one)->Process(packets[i]).completed;
    ASSERT_EQ(results[i].completed.bits(), expected.bits()) << i;
    completions += expected.size();
  }
  EXPECT_GT(completions, 100u);
  EXPECT_EQ((*one)->counters().evictions, (*batch)->counters().evictions);
  EXPECT_EQ((*one)->occupancy(), (*batch)->occupancy());
}

// ---------------------------------------------------------------- time

// Ticks are 32-bit milliseconds; the matcher moves its epoch forward as time
// goes by (and across a jump of months).
TEST_F(MatcherTest, RunsForMonths) {
  Make({Door("ssh", kOpen)});
  for (int day = 0; day < 120; day += 3) {
    const absl::Duration at = absl::Hours(24 * day);
    K(kBob, Tcp(7000), at);  // Bob never finishes
    EXPECT_THAT(Sequence(kAlice, kOpen, at), ElementsAre(0)) << day;
    EXPECT_EQ(matcher_->StageOf(kBob, 0), 1);
    matcher_->Expire(kT0 + at + S(1));
  }
  EXPECT_THAT(Sequence(kAlice, kOpen, absl::Hours(24 * 400)), ElementsAre(0));
  EXPECT_THAT(K(kBob, Tcp(8000), absl::Hours(24 * 400)), IsEmpty());  // long expired
}

TEST_F(MatcherTest, SlightlyReorderedTimestampsCountAsTheLatest) {
  Make({Door("ssh", kOpen)});
  K(kAlice, Tcp(7000), S(10));
  K(kBob, Tcp(1), S(12));
  K(kAlice, Tcp(8000), S(11.5));  // from another interface, stamped earlier
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 2);
  EXPECT_THAT(K(kAlice, Tcp(9000), S(13)), ElementsAre(0));
}

TEST_F(MatcherTest, ClockSetBackCarriesOn) {
  Make({Door("ssh", kOpen)});
  K(kAlice, Tcp(7000), absl::Hours(2));
  const absl::Duration back = absl::Hours(1);  // the capture clock is set back an hour
  K(kAlice, Tcp(8000), back + S(1));
  EXPECT_EQ(matcher_->StageOf(kAlice, 0), 2);
  EXPECT_THAT(K(kAlice, Tcp(9000), back + S(2)), ElementsAre(0));
  // And timeouts still work on the new clock.
  K(kBob, Tcp(7000), back + S(3));
  EXPECT_EQ(matcher_->Expire(kT0 + back + S(8)), 1u);
}

TEST_F(MatcherTest, TableSizeIsWhatWasAskedFor) {
  MatcherOptions options = TestOptions();
  options.max_sources = 65536;
  Make({Door("ssh", kOpen)}, options);
  EXPECT_EQ(matcher_->capacity(), 65536u);
  EXPECT_EQ(KnockMatcher::BytesPerSource(), 72u);
  EXPECT_EQ(matcher_->TableBytes(), 65536u * 72u);
}

// ------------------------------------------------------------ SourceTable

TEST(SourceTableTest, FindInsertErase) {
  auto table = SourceTable::Create(64, 1);
  ASSERT_NE(table, nullptr);
  const SourceKey four = SourceKey::From(Ip("10.0.0.1"));
  const SourceKey six = SourceKey::From(Ip("a00:1::"));
  EXPECT_EQ(table->Find(four, table->Hash(four)), SourceTable::kNone);
  SourceTable::Victim victim;
  const int32_t i = table->Insert(four, table->Hash(four), 1, 1, &victim);
  ASSERT_NE(i, SourceTable::kNone);
  EXPECT_FALSE(victim.occupied);
  EXPECT_EQ(table->Find(four, table->Hash(four)), i);
  EXPECT_EQ(table->Find(six, table->Hash(six)), SourceTable::kNone);
  EXPECT_EQ(table->entry(i).family, 4);
  EXPECT_EQ(four.ToAddress(), Ip("10.0.0.1"));
  EXPECT_EQ(six.ToAddress(), Ip("a00:1::"));
  EXPECT_EQ(table->occupancy(), 1u);
  table->Erase(i);
  EXPECT_EQ(table->Find(four, table->Hash(four)), SourceTable::kNone);
  EXPECT_EQ(table->occupancy(), 0u);
}

// Placement depends on the per-process key: knowing the hash function is not
// enough to aim at a bucket.
TEST(SourceTableTest, PlacementDependsOnTheKey) {
  auto a = SourceTable::Create(65536, 1);
  auto b = SourceTable::Create(65536, 2);
  int same = 0;
  for (uint32_t n = 0; n < 1000; ++n) {
    const SourceKey k = SourceKey::From(V4(0x0a000000 + n));
    same += a->Hash(k).bucket == b->Hash(k).bucket;
  }
  EXPECT_LT(same, 10);  // expected: 1000 / 8192
}

// An attacker's /16 spreads over the buckets like random addresses do.
TEST(SourceTableTest, ConsecutiveAddressesSpreadEvenly) {
  for (uint64_t seed : {1, 2, 3}) {
    auto table = SourceTable::Create(65536, seed);
    std::vector<int> load(8192);
    for (uint32_t n = 0; n < 65536; ++n) ++load[table->Hash(SourceKey::From(V4(0xc0a80000 + n))).bucket];
    EXPECT_LE(*std::max_element(load.begin(), load.end()), 24) << seed;  // mean 8
  }
}

}  // namespace
}  // namespace sesame
