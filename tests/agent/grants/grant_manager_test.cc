#include "agent/grants/grant_manager.h"

#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

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

TEST_F(GrantBookTest, ABatchIsWrittenOnceAndEveryGrantIsOpenBeforeIt) {
  auto book = MakeBook();
  const uint64_t writes_before = book->store().writes();
  for (int i = 1; i <= 50; ++i) {
    book->OpenInBatch(MakeGrant(absl::StrCat("198.18.0.", i).c_str(), absl::Seconds(10)));
  }
  EXPECT_EQ(backend_.open.size(), 50u) << "the firewall does not wait for the record";
  EXPECT_EQ(book->store().writes(), writes_before) << "nothing written yet";
  EXPECT_TRUE(book->store().dirty());
  book->CommitBatch();
  EXPECT_EQ(book->store().writes(), writes_before + 1);
  EXPECT_EQ(book->stats().record_writes, writes_before + 1);
  // What a restart reads back: all 50.
  auto reopened = GrantStore::Open(dir_.File("grants"));
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->size(), 50u);
}

TEST_F(GrantBookTest, ClosingManyDueGrantsWritesTheFileOnce) {
  auto book = MakeBook();
  for (int i = 1; i <= 20; ++i) {
    book->OpenInBatch(MakeGrant(absl::StrCat("198.18.0.", i).c_str(), absl::Seconds(10)));
  }
  book->CommitBatch();
  const uint64_t writes = book->store().writes();
  clock_.Advance(absl::Seconds(10));
  book->CloseDue();
  EXPECT_TRUE(backend_.open.empty());
  EXPECT_EQ(book->store().writes(), writes + 1);
}

TEST_F(GrantBookTest, TellsWhichSourcesItHoldsAndExtendsWithoutTellingAgain) {
  auto book = MakeBook();
  std::vector<std::string> told;
  book->set_on_held_changed([&](const std::string& door, const IpAddress& address, bool held) {
    told.push_back(absl::StrCat(door, " ", address.ToString(), held ? " held" : " released"));
  });
  book->Open(MakeGrant("198.18.0.5", absl::Seconds(10)));
  book->Open(MakeGrant("198.18.0.5", absl::Seconds(20)));  // an extension
  EXPECT_TRUE(book->Holds("ssh", *IpAddress::Parse("198.18.0.5")));
  clock_.Advance(absl::Seconds(20));
  book->CloseDue();
  EXPECT_FALSE(book->Holds("ssh", *IpAddress::Parse("198.18.0.5")));
  EXPECT_THAT(told, ::testing::ElementsAre("ssh 198.18.0.5 held", "ssh 198.18.0.5 released"));
}

TEST_F(GrantBookTest, AtTheLimitTheFullestDoorGivesUpTheGrantThatExpiresFirst) {
  RecordingBackend other;
  auto store = GrantStore::Open(dir_.File("grants"));
  ASSERT_TRUE(store.ok());
  GrantBook book(std::move(*store),
                 [&](const std::string& door) -> FirewallBackend* { return door == "ssh" ? &backend_ : &other; },
                 clock_);
  book.set_max_open(4);
  book.Open(MakeGrant("198.18.0.1", absl::Seconds(30)));
  book.Open(MakeGrant("198.18.0.2", absl::Seconds(10)));  // expires first
  book.Open(MakeGrant("198.18.0.3", absl::Seconds(20)));
  Grant b = MakeGrant("203.0.113.1", absl::Seconds(5));
  b.door = "b";
  book.Open(b);
  EXPECT_EQ(book.store().size(), 4u);
  // A fifth source, of the small door: the flooded door pays.
  b.address = *IpAddress::Parse("203.0.113.2");
  book.Open(b);
  EXPECT_EQ(book.store().size(), 4u);
  EXPECT_EQ(book.stats().evicted, 1u);
  EXPECT_EQ(backend_.open.count("198.18.0.2"), 0u) << "closed early";
  EXPECT_EQ(backend_.open.size(), 2u);
  EXPECT_EQ(other.open.size(), 2u);
  // An extension needs no room.
  book.Open(MakeGrant("198.18.0.1", absl::Seconds(60)));
  EXPECT_EQ(book.stats().evicted, 1u);
}

TEST_F(GrantBookTest, AtTheLimitAGrantIsRefusedWhenNothingCanBeClosed) {
  auto book = MakeBook();
  book->set_max_open(1);
  book->Open(MakeGrant("198.18.0.1", absl::Seconds(30)));
  backend_.fail_close = true;
  book->Open(MakeGrant("198.18.0.2", absl::Seconds(30)));
  EXPECT_EQ(book->store().size(), 1u);
  EXPECT_EQ(backend_.open.count("198.18.0.2"), 0u);
  EXPECT_EQ(book->stats().failures, 2u);  // the close and the refusal
}

TEST_F(GrantBookTest, AFailedWriteKeepsGrantsOpenClosesThemOnTimeAndIsRetried) {
  const std::string sub = dir_.File("state");
  ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
  auto store = GrantStore::Open(sub + "/grants");
  ASSERT_TRUE(store.ok());
  GrantBook book(std::move(*store), Lookup(), clock_);
  std::filesystem::remove_all(sub);  // the disk goes away
  book.Open(MakeGrant("198.18.0.5", absl::Seconds(30)));
  book.Open(MakeGrant("198.18.0.6", absl::Seconds(10)));
  EXPECT_EQ(backend_.open.size(), 2u);
  EXPECT_EQ(book.store().size(), 2u) << "held in memory, closed on time by this process";
  EXPECT_TRUE(book.store().dirty());
  EXPECT_LE(book.NextDue(), clock_.Now() + absl::Seconds(5)) << "a retry is due";
  ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);  // it comes back
  clock_.Advance(absl::Seconds(5));
  book.CloseDue();
  EXPECT_FALSE(book.store().dirty());
  auto reread = GrantStore::Open(sub + "/grants");
  ASSERT_TRUE(reread.ok());
  EXPECT_EQ((*reread)->size(), 2u);
  clock_.Advance(absl::Seconds(5));
  book.CloseDue();
  EXPECT_EQ(backend_.open.count("198.18.0.6"), 0u);
}

// A firewall whose Open, for one door, waits until the test lets it go: the
// worker is then busy with one grant while the test fills its queue.
class GatedBackend final : public FirewallBackend {
 public:
  std::string_view name() const override { return "gated"; }
  absl::Status Open(const Grant& g) override {
    absl::MutexLock lock(&mu_);
    ++entered_;
    mu_.Await(absl::Condition(+[](bool* open) { return *open; }, &gate_open_));
    order_.push_back(absl::StrCat(g.door, "/", g.address.ToString()));
    open_.insert(absl::StrCat(g.door, "/", g.address.ToString()));
    return absl::OkStatus();
  }
  absl::Status Close(const Grant& g) override {
    absl::MutexLock lock(&mu_);
    closes_.push_back(absl::StrCat(g.door, "/", g.address.ToString()));
    open_.erase(absl::StrCat(g.door, "/", g.address.ToString()));
    return absl::OkStatus();
  }
  void Shut() {
    absl::MutexLock lock(&mu_);
    gate_open_ = false;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    gate_open_ = true;
  }
  // Blocks until `n` Open calls have started.
  void AwaitEntered(int n) {
    absl::MutexLock lock(&mu_);
    awaited_ = n;
    mu_.Await(absl::Condition(this, &GatedBackend::EnoughEntered));
  }
  std::vector<std::string> order() {
    absl::MutexLock lock(&mu_);
    return order_;
  }
  std::vector<std::string> closes() {
    absl::MutexLock lock(&mu_);
    return closes_;
  }
  bool IsOpen(const std::string& what) {
    absl::MutexLock lock(&mu_);
    return open_.count(what) > 0;
  }

 private:
  bool EnoughEntered() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return entered_ >= awaited_; }

  absl::Mutex mu_;
  bool gate_open_ ABSL_GUARDED_BY(mu_) = true;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
  int awaited_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> closes_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> open_ ABSL_GUARDED_BY(mu_);
};

class GrantWorkerFloodTest : public ::testing::Test {
 protected:
  std::unique_ptr<GrantWorker> MakeWorker(size_t max_pending) {
    auto store = GrantStore::Open(dir_.File("grants"));
    EXPECT_TRUE(store.ok()) << store.status();
    return std::make_unique<GrantWorker>(
        std::make_unique<GrantBook>(
            std::move(*store), [this](const std::string&) -> FirewallBackend* { return &backend_; },
            RealClock::Instance()),
        max_pending);
  }
  static Grant Completion(const char* door, uint32_t host) {
    Grant g;
    g.door = door;
    g.address = IpAddress::V4(0x0a000000u + host);
    g.ports = {{22, Protocol::kTcp}};
    g.opened = absl::Now();
    g.expires = absl::Now() + absl::Hours(1);
    return g;
  }

  testing::TempDir dir_;
  GatedBackend backend_;
};

TEST_F(GrantWorkerFloodTest, ARealKnockerOfAnotherDoorIsServedWithinOneTurnOfTheFlood) {
  auto worker = MakeWorker(GrantWorker::kDefaultMaxPending);
  backend_.Shut();
  worker->Open(Completion("a", 1));
  backend_.AwaitEntered(1);  // the worker is inside a/10.0.0.1
  for (uint32_t i = 2; i <= 2000; ++i) worker->Open(Completion("a", i));
  worker->Open(Completion("b", 7));
  backend_.Release();
  worker->Drain();
  const std::vector<std::string> order = backend_.order();
  ASSERT_GE(order.size(), 3u);
  EXPECT_EQ(order[0], "a/10.0.0.1");
  EXPECT_EQ(order[1], "b/10.0.0.7") << "the knocker of b waits for one grant of a, not for 2,000";
}

TEST_F(GrantWorkerFloodTest, TheQueueIsBoundedAndCountsWhatItDrops) {
  auto worker = MakeWorker(100);
  backend_.Shut();
  worker->Open(Completion("a", 1));
  backend_.AwaitEntered(1);
  for (uint32_t i = 2; i <= 1001; ++i) worker->Open(Completion("a", i));
  GrantStats s = worker->stats();
  EXPECT_EQ(s.pending, 100u);
  EXPECT_EQ(s.pending_limit, 100u);
  EXPECT_EQ(s.dropped, 900u);
  // A knocker of another door still gets in, in place of the oldest of a.
  worker->Open(Completion("b", 7));
  s = worker->stats();
  EXPECT_EQ(s.pending, 100u);
  EXPECT_EQ(s.dropped, 901u);
  backend_.Release();
  worker->Drain();
  EXPECT_TRUE(backend_.IsOpen("b/10.0.0.7"));
  EXPECT_TRUE(backend_.IsOpen("a/" + Completion("a", 1001).address.ToString())) << "the newest were kept";
  EXPECT_FALSE(backend_.IsOpen("a/10.0.0.2")) << "the oldest waiting were dropped";
  EXPECT_EQ(worker->stats().open_now, 1u + 100u);
}

TEST_F(GrantWorkerFloodTest, ASourceAlreadyGrantedIsExtendedNotQueuedAgain) {
  auto worker = MakeWorker(4);
  worker->Open(Completion("a", 1));
  worker->Drain();
  ASSERT_EQ(worker->stats().open_now, 1u);
  backend_.Shut();
  worker->Open(Completion("a", 99));
  backend_.AwaitEntered(2);  // busy with a/99
  // The open source knocks again and again: one entry, extended in place.
  for (int i = 0; i < 50; ++i) worker->Open(Completion("a", 1));
  GrantStats s = worker->stats();
  EXPECT_EQ(s.pending, 1u);
  EXPECT_EQ(s.coalesced, 49u);
  // A full queue of new sources: the open source's completion gives way and
  // takes no new source's room.
  for (uint32_t i = 2; i <= 4; ++i) worker->Open(Completion("a", i));
  worker->Open(Completion("a", 5));
  s = worker->stats();
  EXPECT_EQ(s.pending, 4u);
  EXPECT_EQ(s.dropped, 1u);
  EXPECT_EQ(s.dropped_extensions, 1u);
  worker->Open(Completion("a", 1));  // and when full, an extension is the one dropped
  EXPECT_EQ(worker->stats().dropped_extensions, 2u);
  backend_.Release();
  worker->Drain();
  for (uint32_t i = 2; i <= 5; ++i) EXPECT_TRUE(backend_.IsOpen(absl::StrCat("a/10.0.0.", i)));
  EXPECT_TRUE(backend_.IsOpen("a/10.0.0.1")) << "still open until its first expiry";
}

TEST_F(GrantWorkerFloodTest, ARevocationGoesAheadOfTheFloodAfterTheCompletionItFollows) {
  auto worker = MakeWorker(GrantWorker::kDefaultMaxPending);
  backend_.Shut();
  worker->Open(Completion("a", 1));
  backend_.AwaitEntered(1);
  for (uint32_t i = 2; i <= 100; ++i) worker->Open(Completion("a", i));
  worker->Revoke("a", Completion("a", 50).address);
  backend_.Release();
  worker->Drain();
  EXPECT_FALSE(backend_.IsOpen("a/10.0.0.50"));
  const std::vector<std::string> order = backend_.order();
  ASSERT_GE(order.size(), 2u);
  EXPECT_EQ(order[1], "a/10.0.0.50") << "applied, then revoked, before the rest";
  EXPECT_THAT(backend_.closes(), ::testing::ElementsAre("a/10.0.0.50"));
  EXPECT_EQ(order.size(), 100u);
  // A completion after the revocation opens again.
  worker->Open(Completion("a", 50));
  worker->Drain();
  EXPECT_TRUE(backend_.IsOpen("a/10.0.0.50"));
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
