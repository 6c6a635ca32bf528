// ManagedMatcher: many live sequences per door in shards of 64, adopted from
// another thread before the next packet, spent at once when completed, and
// spent sequences watched for replays (reported as spent, never as live)
// for a bounded time in room live sequences do not need.
#include "agent/managed/managed_matcher.h"

#include <thread>

#include "gtest/gtest.h"

namespace sesame {
namespace {

class RecordingSink final : public ManagedKnockSink {
 public:
  void OnCompleted(CompletedKnock knock) override { completed.push_back(std::move(knock)); }
  void OnScanner(ScannerReport report) override { scanners.push_back(std::move(report)); }
  std::vector<CompletedKnock> completed;
  std::vector<ScannerReport> scanners;
};

MatcherOptions Options() {
  MatcherOptions o;
  o.max_sources = 1024;
  o.hash_seed = 7;
  return o;
}

LiveSequence Live(uint64_t id, std::vector<uint16_t> ports, bool reserve = false) {
  LiveSequence s;
  s.id = id;
  s.door = "ssh";
  for (uint16_t p : ports) s.knocks.push_back(Knock{p, Protocol::kTcp});
  s.reserve = reserve;
  return s;
}

const IpAddress kSource = *IpAddress::Parse("198.51.100.7");
const IpAddress kLocal = *IpAddress::Parse("10.0.0.1");

class ManagedMatcherTest : public ::testing::Test {
 protected:
  void KnockOn(std::vector<uint16_t> ports, const IpAddress& source = kSource) {
    for (uint16_t p : ports) {
      Packet packet;
      now_ += absl::Milliseconds(10);
      packet.time = now_;
      packet.source = source;
      packet.destination = kLocal;
      packet.protocol = Protocol::kTcp;
      packet.source_port = 40000;
      packet.destination_port = p;
      packet.tcp_flags = tcp_flags::kSyn;
      matcher_.OnPacket(packet);
    }
  }

  RecordingSink sink_;
  ManagedMatcher matcher_{Options(), sink_, /*max_shards=*/4};
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

TEST_F(ManagedMatcherTest, RecognisesPublishedSequencesAndSpendsThemOnce) {
  matcher_.Publish({Live(1, {7001, 7002, 7003}), Live(2, {8001, 8002}, /*reserve=*/true)});
  KnockOn({7001, 7002, 7003});
  ASSERT_EQ(sink_.completed.size(), 1u);
  EXPECT_EQ(sink_.completed[0].sequence_id, 1u);
  EXPECT_EQ(sink_.completed[0].door, "ssh");
  EXPECT_EQ(sink_.completed[0].source, kSource);
  EXPECT_FALSE(sink_.completed[0].spent);
  EXPECT_FALSE(matcher_.IsLive(1));
  EXPECT_TRUE(matcher_.IsSpent(1));
  // Spent: the same knocks again are a replay, from anywhere.
  const IpAddress elsewhere = *IpAddress::Parse("2001:db8::9");
  KnockOn({7001, 7002, 7003}, elsewhere);
  ASSERT_EQ(sink_.completed.size(), 2u);
  EXPECT_EQ(sink_.completed[1].sequence_id, 1u);
  EXPECT_TRUE(sink_.completed[1].spent);
  EXPECT_EQ(sink_.completed[1].source, elsewhere);
  KnockOn({8001, 8002});
  ASSERT_EQ(sink_.completed.size(), 3u);
  EXPECT_TRUE(sink_.completed[2].reserve);
  EXPECT_FALSE(sink_.completed[2].spent);
  EXPECT_EQ(matcher_.replays(), 1u);
  EXPECT_EQ(matcher_.live(), 0u);
  EXPECT_EQ(matcher_.spent(), 2u);
}

TEST_F(ManagedMatcherTest, APublishComputedBeforeTheCompletionDoesNotRevive) {
  const std::vector<LiveSequence> stale = {Live(1, {7001, 7002}), Live(2, {7101, 7102})};
  matcher_.Publish(stale);
  KnockOn({7001, 7002});
  ASSERT_EQ(sink_.completed.size(), 1u);
  matcher_.Publish(stale);  // the worker has not heard of the completion yet
  KnockOn({7001, 7002});
  ASSERT_EQ(sink_.completed.size(), 2u);
  EXPECT_TRUE(sink_.completed[1].spent);
  EXPECT_FALSE(matcher_.IsLive(1));
  // Once the publisher has caught up, the id is forgotten; the sequence is
  // still watched.
  matcher_.Publish({Live(2, {7101, 7102})});
  matcher_.Tick(now_);
  EXPECT_EQ(matcher_.live(), 1u);
  EXPECT_TRUE(matcher_.IsSpent(1));
}

TEST_F(ManagedMatcherTest, ABurnSpendsTheSequenceAndKeepsEveryonesProgress) {
  matcher_.Publish({Live(1, {7001, 7002, 7003}), Live(2, {9001, 9002, 9003})});
  const IpAddress other = *IpAddress::Parse("203.0.113.4");
  KnockOn({7001, 7002});
  KnockOn({9001, 9002}, other);
  matcher_.Publish({Live(2, {9001, 9002, 9003})});  // 1 burnt elsewhere
  KnockOn({7003});  // half-way when the burn came: completes, as a replay
  ASSERT_EQ(sink_.completed.size(), 1u);
  EXPECT_EQ(sink_.completed[0].sequence_id, 1u);
  EXPECT_TRUE(sink_.completed[0].spent);
  KnockOn({9003}, other);  // the other knocker's progress survived the burn
  ASSERT_EQ(sink_.completed.size(), 2u);
  EXPECT_EQ(sink_.completed[1].sequence_id, 2u);
  EXPECT_FALSE(sink_.completed[1].spent);
}

TEST_F(ManagedMatcherTest, TwoKnockersOfOneSequenceOnlyTheFirstIsLive) {
  matcher_.Publish({Live(1, {7001, 7002, 7003})});
  const IpAddress second = *IpAddress::Parse("203.0.113.4");
  KnockOn({7001});
  KnockOn({7001}, second);
  KnockOn({7002});
  KnockOn({7002}, second);
  KnockOn({7003});
  KnockOn({7003}, second);
  ASSERT_EQ(sink_.completed.size(), 2u);
  EXPECT_EQ(sink_.completed[0].source, kSource);
  EXPECT_FALSE(sink_.completed[0].spent);
  EXPECT_EQ(sink_.completed[1].source, second);
  EXPECT_TRUE(sink_.completed[1].spent);
}

TEST_F(ManagedMatcherTest, ASpentReserveSequenceIsReportedAsSpent) {
  // The agent must not admit a spent reserve sequence offline: the flag
  // says so, whatever `reserve` says.
  matcher_.Publish({Live(5, {8001, 8002}, /*reserve=*/true)});
  KnockOn({8001, 8002});
  matcher_.Publish({});  // the worker dropped it from the reserve
  KnockOn({8001, 8002});
  ASSERT_EQ(sink_.completed.size(), 2u);
  EXPECT_FALSE(sink_.completed[0].spent);
  EXPECT_TRUE(sink_.completed[1].spent);
  EXPECT_TRUE(sink_.completed[1].reserve);
}

TEST_F(ManagedMatcherTest, ASequenceListedAgainAfterItsBurnIsLiveAgain) {
  matcher_.Publish({Live(1, {7001, 7002})});
  matcher_.Tick(now_);
  matcher_.Publish({});  // left out (a door the agent stopped serving, say)
  matcher_.Tick(now_);
  EXPECT_TRUE(matcher_.IsSpent(1));
  matcher_.Publish({Live(1, {7001, 7002})});
  matcher_.Tick(now_);
  EXPECT_TRUE(matcher_.IsLive(1));
  KnockOn({7001, 7002});
  ASSERT_EQ(sink_.completed.size(), 1u);
  EXPECT_FALSE(sink_.completed[0].spent);
}

TEST_F(ManagedMatcherTest, ReplayReportsPerSequenceAreCapped) {
  ReplayWatch watch;
  watch.max_reports = 2;
  ManagedMatcher matcher(Options(), sink_, 4, watch);
  matcher.Publish({Live(1, {7001, 7002})});
  for (int i = 0; i < 5; ++i) {
    for (uint16_t p : {7001, 7002}) {
      Packet packet;
      now_ += absl::Milliseconds(10);
      packet.time = now_;
      packet.source = kSource;
      packet.destination = kLocal;
      packet.protocol = Protocol::kTcp;
      packet.destination_port = p;
      packet.tcp_flags = tcp_flags::kSyn;
      matcher.OnPacket(packet);
    }
  }
  ASSERT_EQ(sink_.completed.size(), 3u);  // the live one, then 2 replays
  EXPECT_EQ(matcher.replays(), 4u);
  EXPECT_EQ(matcher.replays_unreported(), 2u);
}

TEST_F(ManagedMatcherTest, SpentSequencesAreWatchedForTheRetentionOnly) {
  matcher_.Publish({Live(1, {7001, 7002}), Live(2, {7101, 7102})});
  matcher_.Tick(now_);
  KnockOn({7001, 7002});
  const absl::Time spent_at = now_;
  matcher_.Publish({});  // 2 burnt by the controller: spent from the last Tick on
  matcher_.Tick(spent_at);
  EXPECT_EQ(matcher_.spent(), 2u);
  matcher_.Tick(spent_at + ReplayWatch().retention - absl::Seconds(1));
  EXPECT_EQ(matcher_.spent(), 2u);
  matcher_.Tick(spent_at + ReplayWatch().retention);
  EXPECT_EQ(matcher_.spent(), 0u);
  now_ = spent_at + ReplayWatch().retention;
  KnockOn({7001, 7002});
  EXPECT_EQ(sink_.completed.size(), 1u);
}

TEST_F(ManagedMatcherTest, RetentionCountsFromTheFirstTickWhenNoTimeWasKnown) {
  // Adopted by packets (a port of no sequence) before any Tick: no time is
  // known when 1 is spent.
  matcher_.Publish({Live(1, {7001, 7002})});
  KnockOn({5555});
  matcher_.Publish({});
  KnockOn({5555});
  EXPECT_TRUE(matcher_.IsSpent(1));
  matcher_.Tick(now_);
  matcher_.Tick(now_ + ReplayWatch().retention - absl::Seconds(1));
  EXPECT_TRUE(matcher_.IsSpent(1));
  matcher_.Tick(now_ + ReplayWatch().retention);
  EXPECT_FALSE(matcher_.IsSpent(1));
}

TEST_F(ManagedMatcherTest, SpentSlotsGiveWayToLiveOnesOldestFirst) {
  ManagedMatcher matcher(Options(), sink_, /*max_shards=*/1);
  std::vector<LiveSequence> live;
  for (uint64_t i = 1; i <= 64; ++i) {
    live.push_back(Live(i, {static_cast<uint16_t>(10000 + i), static_cast<uint16_t>(20000 + i)}));
  }
  matcher.Publish(live);
  matcher.Tick(now_);
  EXPECT_EQ(matcher.live(), 64u);
  // 1 and then 2 burnt: the shard is full, two of it spent.
  live.erase(live.begin());
  matcher.Publish(live);
  matcher.Tick(now_);
  live.erase(live.begin());
  matcher.Publish(live);
  matcher.Tick(now_ + absl::Seconds(1));
  EXPECT_EQ(matcher.live(), 62u);
  EXPECT_EQ(matcher.spent(), 2u);
  // A new live sequence takes the oldest spent slot.
  live.push_back(Live(100, {30001, 30002}));
  matcher.Publish(live);
  matcher.Tick(now_ + absl::Seconds(2));
  EXPECT_EQ(matcher.over_capacity(), 0u);
  EXPECT_TRUE(matcher.IsLive(100));
  EXPECT_FALSE(matcher.IsSpent(1));
  EXPECT_TRUE(matcher.IsSpent(2));
  // And the next one the last; a third finds no room: live ones stay.
  live.push_back(Live(101, {30101, 30102}));
  live.push_back(Live(102, {30201, 30202}));
  matcher.Publish(live);
  matcher.Tick(now_ + absl::Seconds(3));
  EXPECT_EQ(matcher.live(), 64u);
  EXPECT_EQ(matcher.spent(), 0u);
  EXPECT_EQ(matcher.over_capacity(), 1u);
  for (uint64_t i = 3; i <= 64; ++i) EXPECT_TRUE(matcher.IsLive(i)) << i;
}

TEST_F(ManagedMatcherTest, AShardWatchingOnlySpentSequencesIsTakenOver) {
  ManagedMatcher matcher(Options(), sink_, /*max_shards=*/1);
  LiveSequence slow = Live(1, {7001, 7002});
  slow.params.seq_timeout = absl::Seconds(60);
  matcher.Publish({slow});
  matcher.Tick(now_);
  matcher.Publish({});
  matcher.Tick(now_);
  EXPECT_TRUE(matcher.IsSpent(1));
  matcher.Publish({Live(2, {7101, 7102})});  // other parameters, no shard left
  matcher.Tick(now_);
  EXPECT_TRUE(matcher.IsLive(2));
  EXPECT_FALSE(matcher.IsSpent(1));
  EXPECT_EQ(matcher.shards(), 1u);
}

TEST_F(ManagedMatcherTest, HoldsMoreThanSixtyFourSequencesInShards) {
  std::vector<LiveSequence> live;
  for (uint64_t i = 1; i <= 200; ++i) {
    live.push_back(Live(i, {static_cast<uint16_t>(10000 + i), static_cast<uint16_t>(20000 + i)}));
  }
  matcher_.Publish(live);
  matcher_.Tick(now_);
  EXPECT_EQ(matcher_.live(), 200u);
  EXPECT_EQ(matcher_.shards(), 4u);
  KnockOn({10150, 20150});
  ASSERT_EQ(sink_.completed.size(), 1u);
  EXPECT_EQ(sink_.completed[0].sequence_id, 150u);

  // 4 shards of 64: 256 at most; the rest is reported, not recognised.
  for (uint64_t i = 201; i <= 300; ++i) {
    live.push_back(Live(i, {static_cast<uint16_t>(10000 + i), static_cast<uint16_t>(20000 + i)}));
  }
  matcher_.Publish(live);
  matcher_.Tick(now_);
  EXPECT_EQ(matcher_.live(), 256u);
  EXPECT_EQ(matcher_.over_capacity(), 299u - 256u);
}

// Bug 128 (the managed knock-to-open bench stopped at sequence 129): one
// operator knocking sequences of shards 0 and 1 in turn, whose first knock
// happens to be the first knock of a sequence in shard 2, was tracked there
// and every later knock counted as wrong for shard 2: banned as a scanner
// in it, its knocks of shard 2's sequences were then ignored.
TEST_F(ManagedMatcherTest, KnockingSequencesOfOtherShardsIsNotScanning) {
  std::vector<LiveSequence> live;
  for (uint64_t i = 1; i <= 150; ++i) {
    live.push_back(Live(i, {static_cast<uint16_t>(10000 + i), static_cast<uint16_t>(20000 + i),
                            static_cast<uint16_t>(30000 + i), static_cast<uint16_t>(40000 + i)}));
  }
  live[129].knocks[0] = live[0].knocks[0];  // sequence 130 (shard 2) starts like sequence 1 (shard 0)
  matcher_.Publish(live);
  matcher_.Tick(now_);
  ASSERT_EQ(matcher_.shards(), 3u);
  for (uint64_t id : {1, 65, 2, 66, 3, 67, 4, 68, 130}) {
    std::vector<uint16_t> ports;
    for (const Knock& k : live[id - 1].knocks) ports.push_back(k.port);
    KnockOn(ports);
    ASSERT_EQ(sink_.completed.size(), matcher_.spent()) << "sequence " << id;
    EXPECT_EQ(sink_.completed.back().sequence_id, id);
  }
  EXPECT_TRUE(sink_.scanners.empty());
  EXPECT_EQ(matcher_.counters().scanners, 0u);
}

TEST_F(ManagedMatcherTest, AScannerIsStillFlagged) {
  std::vector<LiveSequence> live;
  for (uint64_t i = 1; i <= 100; ++i) {
    live.push_back(Live(i, {static_cast<uint16_t>(10000 + i), static_cast<uint16_t>(20000 + i)}));
  }
  matcher_.Publish(live);
  // A first knock of a sequence in each shard, then a sweep of other ports.
  std::vector<uint16_t> sweep = {10001, 10065};
  for (uint16_t p = 50000; p < 50040; ++p) sweep.push_back(p);
  KnockOn(sweep);
  ASSERT_FALSE(sink_.scanners.empty());
  EXPECT_EQ(sink_.scanners[0].source, kSource);
  KnockOn({20001, 20065});  // ignored: banned in both shards
  EXPECT_TRUE(sink_.completed.empty());
}

TEST_F(ManagedMatcherTest, DifferentTimeoutsGoToDifferentShards) {
  LiveSequence slow = Live(1, {7001, 7002});
  slow.params.seq_timeout = absl::Seconds(60);
  LiveSequence fast = Live(2, {7101, 7102});
  fast.params.seq_timeout = absl::Milliseconds(100);
  matcher_.Publish({slow, fast});
  matcher_.Tick(now_);
  EXPECT_EQ(matcher_.shards(), 2u);
  KnockOn({7101});
  now_ += absl::Seconds(1);
  KnockOn({7102});  // too late for the fast door
  EXPECT_TRUE(sink_.completed.empty());
  KnockOn({7001});
  now_ += absl::Seconds(1);
  KnockOn({7002});
  ASSERT_EQ(sink_.completed.size(), 1u);
  EXPECT_EQ(sink_.completed[0].sequence_id, 1u);
}

TEST_F(ManagedMatcherTest, PublishFromAnotherThread) {
  std::thread worker([&] { matcher_.Publish({Live(1, {7001, 7002})}); });
  worker.join();
  KnockOn({7001, 7002});
  EXPECT_EQ(sink_.completed.size(), 1u);
}

}  // namespace
}  // namespace sesame
