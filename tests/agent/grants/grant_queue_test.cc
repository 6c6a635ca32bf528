#include "agent/grants/grant_queue.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sesame {
namespace {

using ::testing::ElementsAre;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

Grant G(const std::string& door, uint32_t host, absl::Duration ttl = absl::Seconds(10)) {
  Grant g;
  g.door = door;
  g.address = IpAddress::V4(0x0a000000u + host);  // 10.0.0.host
  g.ports = {{22, Protocol::kTcp}};
  g.opened = kT0;
  g.expires = kT0 + ttl;
  return g;
}

// "door/host" of everything Take() gives, in order.
std::vector<std::string> TakeAll(GrantQueue& q) {
  std::vector<std::string> out;
  while (std::optional<Grant> g = q.Take()) {
    out.push_back(absl::StrCat(g->door, "/", g->address.bytes()[3]));
  }
  return out;
}

TEST(GrantQueueTest, ACompletionForAWaitingSourceExtendsItInPlace) {
  GrantQueue q(10);
  EXPECT_EQ(q.Offer(G("a", 1, absl::Seconds(10)), false), GrantQueue::Offered::kQueued);
  EXPECT_EQ(q.Offer(G("a", 2), false), GrantQueue::Offered::kQueued);
  EXPECT_EQ(q.Offer(G("a", 1, absl::Seconds(30)), false), GrantQueue::Offered::kCoalesced);
  EXPECT_EQ(q.Offer(G("a", 1, absl::Seconds(5)), false), GrantQueue::Offered::kCoalesced);
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.stats().coalesced, 2u);
  std::optional<Grant> first = q.Take();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->address.ToString(), "10.0.0.1") << "it kept its place";
  EXPECT_EQ(first->expires, kT0 + absl::Seconds(30)) << "the later expiry wins";
}

TEST(GrantQueueTest, TheSameAddressAtTwoDoorsIsTwoEntries) {
  GrantQueue q(10);
  q.Offer(G("a", 1), false);
  q.Offer(G("b", 1), false);
  EXPECT_EQ(q.size(), 2u);
}

TEST(GrantQueueTest, DoorsAreServedInTurnWhateverTheirLines) {
  GrantQueue q(100);
  for (uint32_t i = 1; i <= 5; ++i) q.Offer(G("a", i), false);
  q.Offer(G("b", 1), false);
  for (uint32_t i = 1; i <= 2; ++i) q.Offer(G("c", i), false);
  EXPECT_THAT(TakeAll(q), ElementsAre("a/1", "b/1", "c/1", "a/2", "c/2", "a/3", "a/4", "a/5"));
}

TEST(GrantQueueTest, ADoorArrivingLaterIsServedWithinOneTurn) {
  GrantQueue q(100);
  for (uint32_t i = 1; i <= 50; ++i) q.Offer(G("a", i), false);
  ASSERT_TRUE(q.Take().has_value());  // a/1 is being applied
  ASSERT_TRUE(q.Take().has_value());  // a/2
  q.Offer(G("b", 7), false);
  std::optional<Grant> next = q.Take();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->door, "b");
}

TEST(GrantQueueTest, WhenFullTheFloodedDoorLosesItsOldest) {
  GrantQueue q(4);
  for (uint32_t i = 1; i <= 4; ++i) q.Offer(G("a", i), false);
  EXPECT_EQ(q.Offer(G("b", 9), false), GrantQueue::Offered::kDisplaced);
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(q.stats().dropped_new, 1u);
  EXPECT_THAT(TakeAll(q), ElementsAre("a/2", "b/9", "a/3", "a/4"));
}

TEST(GrantQueueTest, WhenFullANewArrivalOfTheFloodedDoorReplacesItsOldest) {
  GrantQueue q(3);
  q.Offer(G("b", 9), false);
  for (uint32_t i = 1; i <= 2; ++i) q.Offer(G("a", i), false);
  EXPECT_EQ(q.Offer(G("a", 3), false), GrantQueue::Offered::kDisplaced);
  EXPECT_EQ(q.Offer(G("a", 4), false), GrantQueue::Offered::kDisplaced);
  EXPECT_THAT(TakeAll(q), ElementsAre("a/3", "b/9", "a/4")) << "b/9 is never the one dropped";
}

TEST(GrantQueueTest, ADoorWithOneKnockerKeepsItUnderAnyFlood) {
  GrantQueue q(64);
  q.Offer(G("b", 200), false);
  for (uint32_t i = 1; i <= 10000; ++i) q.Offer(G("a", i), false);
  for (uint32_t i = 1; i <= 10000; ++i) q.Offer(G("c", i), false);
  EXPECT_EQ(q.size(), 64u);
  bool found = false;
  while (std::optional<Grant> g = q.Take()) found = found || g->door == "b";
  EXPECT_TRUE(found);
}

TEST(GrantQueueTest, AnExtensionNeverTakesTheRoomOfANewSource) {
  GrantQueue q(2);
  q.Offer(G("a", 1), false);
  q.Offer(G("a", 2), false);
  EXPECT_EQ(q.Offer(G("a", 3), /*held=*/true), GrantQueue::Offered::kDropped);
  EXPECT_EQ(q.stats().dropped_extensions, 1u);
  EXPECT_EQ(q.stats().dropped_new, 0u);
  EXPECT_THAT(TakeAll(q), ElementsAre("a/1", "a/2"));
}

TEST(GrantQueueTest, WhenFullAWaitingExtensionMakesRoomFirst) {
  GrantQueue q(3);
  q.Offer(G("b", 1), false);
  q.Offer(G("a", 1), /*held=*/true);  // a/1 holds an open grant already
  q.Offer(G("b", 2), false);
  EXPECT_EQ(q.Offer(G("b", 3), false), GrantQueue::Offered::kDisplaced);
  EXPECT_EQ(q.stats().dropped_extensions, 1u);
  EXPECT_EQ(q.stats().dropped_new, 0u);
  EXPECT_THAT(TakeAll(q), ElementsAre("b/1", "b/2", "b/3"));
}

TEST(GrantQueueTest, RemoveTakesOutAWaitingEntryWhereverItIs) {
  GrantQueue q(10);
  q.Offer(G("a", 1), false);
  q.Offer(G("a", 2, absl::Seconds(40)), true);
  std::optional<Grant> removed = q.Remove("a", G("a", 2).address);
  ASSERT_TRUE(removed.has_value());
  EXPECT_EQ(removed->expires, kT0 + absl::Seconds(40));
  EXPECT_FALSE(q.Remove("a", G("a", 2).address).has_value());
  EXPECT_FALSE(q.Remove("b", G("a", 1).address).has_value());
  EXPECT_THAT(TakeAll(q), ElementsAre("a/1"));
  EXPECT_TRUE(q.empty());
  // The cancelled extension no longer counts as one.
  q.Offer(G("a", 3), false);
  EXPECT_EQ(q.stats().pending, 1u);
}

}  // namespace
}  // namespace sesame
