#include "agent/grants/grant_manager.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

// A firewall that remembers what is open, and can be told to fail.
class RecordingBackend final : public FirewallBackend {
 public:
  std::string_view name() const override { return "recording"; }
  absl::Status Open(const Grant& g) override {
    ++open_calls;
    if (fail_open) return absl::UnavailableError("refused");
    open[g.address.ToString()] = g.expires;
    return absl::OkStatus();
  }
  absl::Status Close(const Grant& g) override {
    ++close_calls;
    if (fail_close) return absl::UnavailableError("refused");
    open.erase(g.address.ToString());
    return absl::OkStatus();
  }
  std::map<std::string, absl::Time> open;
  int open_calls = 0;
  int close_calls = 0;
  bool reapply_after_restart() const override { return reapply; }
  bool fail_open = false;
  bool fail_close = false;
  bool reapply = true;
};

class GrantBookTest : public ::testing::Test {
 protected:
  std::unique_ptr<GrantBook> MakeBook() {
    auto store = GrantStore::Open(dir_.File("grants"));
    EXPECT_TRUE(store.ok()) << store.status();
    return std::make_unique<GrantBook>(std::move(*store), Lookup(), clock_);
  }
  BackendLookup Lookup() {
    return [this](const std::string& door) -> FirewallBackend* { return door == "ssh" ? &backend_ : nullptr; };
  }
  Grant MakeGrant(const char* address, absl::Duration ttl) {
    Grant g;
    g.door = "ssh";
    g.address = *IpAddress::Parse(address);
    g.ports = {{22, Protocol::kTcp}};
    g.opened = clock_.Now();
    g.expires = clock_.Now() + ttl;
    return g;
  }

  testing::TempDir dir_;
  ManualClock clock_{absl::FromUnixSeconds(1'700'000'000)};
  RecordingBackend backend_;
};

TEST_F(GrantBookTest, OpensAndClosesOnTime) {
  auto book = MakeBook();
  book->Open(MakeGrant("198.18.0.5", absl::Seconds(10)));
  EXPECT_EQ(backend_.open.count("198.18.0.5"), 1u);
  EXPECT_EQ(book->NextDue(), clock_.Now() + absl::Seconds(10));
  clock_.Advance(absl::Seconds(9));
  book->CloseDue();
  EXPECT_EQ(backend_.open.count("198.18.0.5"), 1u);
  clock_.Advance(absl::Seconds(1));
  book->CloseDue();
  EXPECT_TRUE(backend_.open.empty());
  EXPECT_EQ(book->store().size(), 0u);
  EXPECT_EQ(book->stats().opened, 1u);
  EXPECT_EQ(book->stats().closed, 1u);
}

TEST_F(GrantBookTest, ASecondKnockExtendsInsteadOfStacking) {
  auto book = MakeBook();
  book->Open(MakeGrant("198.18.0.5", absl::Seconds(10)));
  clock_.Advance(absl::Seconds(5));
  book->Open(MakeGrant("198.18.0.5", absl::Seconds(10)));
  EXPECT_EQ(book->store().size(), 1u);
  clock_.Advance(absl::Seconds(6));  // past the first expiry, before the second
  book->CloseDue();
  EXPECT_EQ(backend_.open.count("198.18.0.5"), 1u);
  clock_.Advance(absl::Seconds(4));
  book->CloseDue();
  EXPECT_TRUE(backend_.open.empty());
}

TEST_F(GrantBookTest, GrantsSurviveARestartAndExpireOnTime) {
  {
    auto book = MakeBook();
    book->Open(MakeGrant("198.18.0.5", absl::Seconds(10)));
    book->Open(MakeGrant("2001:db8::7", absl::Seconds(100)));
  }  // the agent dies: nothing is closed
  backend_.open.clear();  // and say the firewall lost its state (a reboot)
  clock_.Advance(absl::Seconds(50));
  auto book = MakeBook();
  book->Reconcile();
  // The expired one was closed, the live one re-applied with its old expiry.
  EXPECT_EQ(backend_.open.count("198.18.0.5"), 0u);
  ASSERT_EQ(backend_.open.count("2001:db8::7"), 1u);
  EXPECT_EQ(backend_.open["2001:db8::7"], absl::FromUnixSeconds(1'700'000'100));
  EXPECT_EQ(book->store().size(), 1u);
  clock_.Advance(absl::Seconds(50));
  book->CloseDue();
  EXPECT_TRUE(backend_.open.empty());
}

TEST_F(GrantBookTest, ACommandStyleGrantIsNotStartedTwiceAfterARestart) {
  {
    auto book = MakeBook();
    book->Open(MakeGrant("198.18.0.5", absl::Seconds(100)));
  }
  backend_.reapply = false;
  auto book = MakeBook();
  book->Reconcile();
  EXPECT_EQ(backend_.open_calls, 1) << "the start command ran again";
  clock_.Advance(absl::Seconds(100));
  book->CloseDue();
  EXPECT_EQ(backend_.close_calls, 1) << "but the stop command still runs on time";
}

TEST_F(GrantBookTest, GrantsOfARemovedDoorAreForgotten) {
  {
    auto book = MakeBook();
    Grant g = MakeGrant("198.18.0.5", absl::Seconds(100));
    book->Open(g);
    g.door = "gone";
    book->SetBackends([this](const std::string&) -> FirewallBackend* { return &backend_; });
    book->Open(g);
    EXPECT_EQ(book->store().size(), 2u);
  }
  auto book = MakeBook();  // "gone" has no backend any more
  book->Reconcile();
  EXPECT_EQ(book->store().size(), 1u);
}

TEST_F(GrantBookTest, AFailedOpenIsNotRecorded) {
  auto book = MakeBook();
  backend_.fail_open = true;
  book->Open(MakeGrant("198.18.0.5", absl::Seconds(10)));
  EXPECT_EQ(book->store().size(), 0u);
  EXPECT_EQ(book->stats().failures, 1u);
}

TEST_F(GrantBookTest, AFailedCloseIsRetriedLaterNotInALoop) {
  auto book = MakeBook();
  book->Open(MakeGrant("198.18.0.5", absl::Seconds(10)));
  backend_.fail_close = true;
  clock_.Advance(absl::Seconds(10));
  book->CloseDue();
  EXPECT_EQ(book->store().size(), 1u);
  // Not due again at once: the worker would spin.
  EXPECT_GT(book->NextDue(), clock_.Now());
  backend_.fail_close = false;
  clock_.Advance(absl::Seconds(5));
  book->CloseDue();
  EXPECT_EQ(book->store().size(), 0u);
}

TEST_F(GrantBookTest, AGrantWithoutExpiryIsAppliedButNotRemembered) {
  auto book = MakeBook();
  Grant g = MakeGrant("198.18.0.5", absl::Seconds(1));
  g.expires = absl::InfiniteFuture();
  book->Open(g);
  EXPECT_EQ(backend_.open_calls, 1);
  EXPECT_EQ(book->store().size(), 0u);
}

TEST(GrantWorkerTest, AppliesOnItsOwnThreadAndDrains) {
  testing::TempDir dir;
  RecordingBackend backend;
  auto store = GrantStore::Open(dir.File("grants"));
  ASSERT_TRUE(store.ok());
  GrantWorker worker(std::make_unique<GrantBook>(
      std::move(*store), [&](const std::string&) -> FirewallBackend* { return &backend; }, RealClock::Instance()));
  for (int i = 1; i <= 20; ++i) {
    Grant g;
    g.door = "ssh";
    g.address = IpAddress::V4(0xC6120000u + i);
    g.opened = absl::Now();
    g.expires = absl::Now() + absl::Hours(1);
    worker.Open(g);
  }
  worker.Drain();
  EXPECT_EQ(backend.open.size(), 20u);
  EXPECT_EQ(worker.stats().open_now, 20u);
}

}  // namespace
}  // namespace sesame
