#include "controller/sequences/sequence_issuer.h"

#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;

class SequenceIssuerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteStoreOptions options;
    options.state_dir = dir_.path();
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    Door door;
    door.name = "ssh";
    door.policy.sequence_length = 3;
    door.policy.port_first = 30000;
    door.policy.port_last = 30019;  // 20 ports: 6840 sequences of 3 distinct knocks
    door.policy.avoid_ports = {30005};
    ASSERT_TRUE(store_->PutDoor(door, {}).ok());
  }

  IssueRequest Request(size_t count) {
    IssueRequest r;
    r.door = "ssh";
    r.count = count;
    r.issued_to = "alice";
    r.actor = "admin:alice";
    return r;
  }

  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
  SequenceGenerator generator_;
};

TEST_F(SequenceIssuerTest, IssuesFreshSequencesAndAuditsWithoutKnocks) {
  absl::StatusOr<std::vector<Sequence>> issued = IssueSequences(*store_, generator_, Request(5), RealClock::Instance());
  ASSERT_TRUE(issued.ok()) << issued.status();
  ASSERT_EQ(issued->size(), 5u);
  for (const Sequence& q : *issued) {
    EXPECT_EQ(q.door, "ssh");
    EXPECT_EQ(q.issued_to, "alice");
    EXPECT_EQ(q.knocks.size(), 3u);
    for (const Knock& k : q.knocks) EXPECT_NE(k.port, 30005);
  }
  absl::StatusOr<std::vector<AuditRecord>> audit = store_->ReadAudit(0, 10);
  ASSERT_EQ(audit->size(), 1u);
  const AuditEntry& e = (*audit)[0].entry;
  EXPECT_EQ(e.what, "sequences.issued");
  EXPECT_EQ(e.who, "admin:alice");
  EXPECT_EQ(e.details.at("count"), "5");
  EXPECT_EQ(e.details.at("sequences"), absl::StrCat(1, ",", 2, ",", 3, ",", 4, ",", 5));
  for (const auto& [key, value] : e.details) {
    for (const Sequence& q : *issued) EXPECT_THAT(value, ::testing::Not(HasSubstr(KnocksToText(q.knocks))));
  }
}

TEST_F(SequenceIssuerTest, ConcurrentIssuersNeverClash) {
  constexpr int kIssuers = 6, kEach = 30;
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < kIssuers; ++t) {
    threads.emplace_back([&] {
      SequenceGenerator generator;
      for (int i = 0; i < kEach / 5; ++i) {
        if (!IssueSequences(*store_, generator, Request(5), RealClock::Instance()).ok()) ++errors;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(errors, 0);
  SequenceFilter unused;
  unused.unused_only = true;
  absl::StatusOr<std::vector<Sequence>> all = store_->ListSequences(unused);
  ASSERT_EQ(all->size(), static_cast<size_t>(kIssuers * kEach));
  std::set<std::string> texts;
  for (const Sequence& q : *all) texts.insert(KnocksToText(q.knocks));
  EXPECT_EQ(texts.size(), all->size());
}

// With an IssueCache the unused sequences are read once, not per issue; it
// must still see what other issuers (another controller, one without the
// cache) and consumptions wrote meanwhile. 3,200 of the policy's 6,840
// sequences: a stale index would draw duplicates, which the store refuses.
TEST_F(SequenceIssuerTest, ACachedIndexFollowsWhatOthersWrite) {
  IssueCache cache;
  SequenceGenerator other;
  for (int round = 0; round < 80; ++round) {
    ASSERT_TRUE(IssueSequences(*store_, generator_, Request(20), RealClock::Instance(), &cache).ok()) << round;
    ASSERT_TRUE(IssueSequences(*store_, other, Request(20), RealClock::Instance()).ok()) << round;
  }
  SequenceFilter unused;
  unused.unused_only = true;
  absl::StatusOr<std::vector<Sequence>> all = store_->ListSequences(unused);
  ASSERT_EQ(all->size(), 3200u);
  std::set<std::string> texts;
  for (const Sequence& q : *all) texts.insert(KnocksToText(q.knocks));
  EXPECT_EQ(texts.size(), all->size());
}

TEST_F(SequenceIssuerTest, BadRequests) {
  IssueRequest r = Request(0);
  EXPECT_TRUE(absl::IsInvalidArgument(IssueSequences(*store_, generator_, r, RealClock::Instance()).status()));
  r = Request(kMaxIssueCount + 1);
  EXPECT_TRUE(absl::IsInvalidArgument(IssueSequences(*store_, generator_, r, RealClock::Instance()).status()));
  r = Request(1);
  r.door = "nope";
  EXPECT_TRUE(absl::IsNotFound(IssueSequences(*store_, generator_, r, RealClock::Instance()).status()));
  r = Request(1);
  r.reserve_agent = "bad agent";
  EXPECT_TRUE(absl::IsInvalidArgument(IssueSequences(*store_, generator_, r, RealClock::Instance()).status()));
}

TEST_F(SequenceIssuerTest, ReserveSequences) {
  IssueRequest r = Request(3);
  r.reserve_agent = "b1";
  absl::StatusOr<std::vector<Sequence>> issued = IssueSequences(*store_, generator_, r, RealClock::Instance());
  ASSERT_TRUE(issued.ok());
  for (const Sequence& q : *issued) EXPECT_EQ(q.reserve_agent, "b1");
  EXPECT_EQ(store_->ReadAudit(0, 1)->front().entry.details.at("reserve_agent"), "b1");
}

}  // namespace
}  // namespace sesame::controller
