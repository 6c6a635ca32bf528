// ManagedMatcher: many live sequences per door in shards of 64, adopted from
// another thread before the next packet, disabled at once when completed.
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
  EXPECT_FALSE(matcher_.IsLive(1));
  // Spent: the same knocks again complete nothing, even from elsewhere.
  KnockOn({7001, 7002, 7003}, *IpAddress::Parse("2001:db8::9"));
  EXPECT_EQ(sink_.completed.size(), 1u);
  KnockOn({8001, 8002});
  ASSERT_EQ(sink_.completed.size(), 2u);
  EXPECT_TRUE(sink_.completed[1].reserve);
}

TEST_F(ManagedMatcherTest, APublishComputedBeforeTheCompletionDoesNotRevive) {
  const std::vector<LiveSequence> stale = {Live(1, {7001, 7002}), Live(2, {7101, 7102})};
  matcher_.Publish(stale);
  KnockOn({7001, 7002});
  ASSERT_EQ(sink_.completed.size(), 1u);
  matcher_.Publish(stale);  // the worker has not heard of the completion yet
  KnockOn({7001, 7002});
  EXPECT_EQ(sink_.completed.size(), 1u);
  // Once the publisher has caught up, the id is forgotten.
  matcher_.Publish({Live(2, {7101, 7102})});
  matcher_.Tick(now_);
  EXPECT_EQ(matcher_.live(), 1u);
}

TEST_F(ManagedMatcherTest, BurnDropsOnlyThatSequencesProgress) {
  matcher_.Publish({Live(1, {7001, 7002, 7003}), Live(2, {9001, 9002, 9003})});
  const IpAddress other = *IpAddress::Parse("203.0.113.4");
  KnockOn({7001, 7002});
  KnockOn({9001, 9002}, other);
  matcher_.Publish({Live(2, {9001, 9002, 9003})});  // 1 burnt elsewhere
  KnockOn({7003});
  EXPECT_TRUE(sink_.completed.empty());
  KnockOn({9003}, other);  // the other knocker's progress survived the burn
  ASSERT_EQ(sink_.completed.size(), 1u);
  EXPECT_EQ(sink_.completed[0].sequence_id, 2u);
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

TEST_F(ManagedMatcherTest, CaptureFilterInputs) {
  LiveSequence compat = Live(1, {7001, 7002});
  compat.params.reset_mode = ResetMode::kCompat;
  matcher_.Publish({compat});
  matcher_.Tick(now_);
  EXPECT_FALSE(matcher_.AnyStrict());
  EXPECT_EQ(matcher_.CurrentKnocks().size(), 2u);
  const uint64_t generation = matcher_.generation();
  matcher_.Publish({compat, Live(2, {7101})});
  matcher_.Tick(now_);
  EXPECT_TRUE(matcher_.AnyStrict());
  EXPECT_GT(matcher_.generation(), generation);
}

TEST_F(ManagedMatcherTest, PublishFromAnotherThread) {
  std::thread worker([&] { matcher_.Publish({Live(1, {7001, 7002})}); });
  worker.join();
  KnockOn({7001, 7002});
  EXPECT_EQ(sink_.completed.size(), 1u);
}

}  // namespace
}  // namespace sesame
