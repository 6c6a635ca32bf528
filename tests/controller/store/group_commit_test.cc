#include "controller/store/group_commit.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace sesame::controller {
namespace {

// Records the transaction calls; can be told to fail a commit, to lose
// commits to another writer (Aborted), or to hold few operations.
class FakeTransaction final : public BatchTransaction {
 public:
  absl::Status Begin() override {
    absl::MutexLock lock(&mu_);
    ++begins_;
    in_batch_ = 0;
    return absl::OkStatus();
  }
  absl::Status BeginOperation() override {
    absl::MutexLock lock(&mu_);
    ++in_batch_;
    return absl::OkStatus();
  }
  absl::Status EndOperation(bool ok) override {
    absl::MutexLock lock(&mu_);
    if (!ok) ++undone_;
    if (in_batch_ > capacity_) {
      --in_batch_;
      return absl::ResourceExhaustedError("full");
    }
    return absl::OkStatus();
  }
  absl::Status Commit() override {
    absl::MutexLock lock(&mu_);
    if (fail_next_commit_) {
      fail_next_commit_ = false;
      return absl::UnavailableError("disk full");
    }
    if (aborts_left_ > 0) {
      --aborts_left_;
      return absl::AbortedError("another writer committed first");
    }
    ++commits_;
    committed_ops_ += in_batch_;
    return absl::OkStatus();
  }
  void Rollback() override {
    absl::MutexLock lock(&mu_);
    ++rollbacks_;
  }

  absl::Mutex mu_;
  int begins_ ABSL_GUARDED_BY(mu_) = 0;
  int in_batch_ ABSL_GUARDED_BY(mu_) = 0;
  int undone_ ABSL_GUARDED_BY(mu_) = 0;
  int commits_ ABSL_GUARDED_BY(mu_) = 0;
  int committed_ops_ ABSL_GUARDED_BY(mu_) = 0;
  int rollbacks_ ABSL_GUARDED_BY(mu_) = 0;
  bool fail_next_commit_ ABSL_GUARDED_BY(mu_) = false;
  int aborts_left_ ABSL_GUARDED_BY(mu_) = 0;
  int capacity_ ABSL_GUARDED_BY(mu_) = 1 << 30;  // operations one transaction holds
};

TEST(GroupCommitTest, EveryCallerIsAnsweredAfterItsBatchCommitted) {
  FakeTransaction txn;
  GroupCommitter committer(txn, 8);
  constexpr int kThreads = 16, kPerThread = 50;
  std::atomic<int> ran{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        int commits_before = 0;
        {
          absl::MutexLock lock(&txn.mu_);
          commits_before = txn.commits_;
        }
        ASSERT_TRUE(committer.Run([&] {
                               ++ran;
                               return absl::OkStatus();
                             })
                        .ok());
        absl::MutexLock lock(&txn.mu_);
        EXPECT_GT(txn.commits_, commits_before);  // a commit happened after we queued
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ran, kThreads * kPerThread);
  const GroupCommitStats stats = committer.stats();
  EXPECT_EQ(stats.operations, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LE(stats.max_batch, 8u);
  absl::MutexLock lock(&txn.mu_);
  EXPECT_EQ(txn.committed_ops_, kThreads * kPerThread);
  EXPECT_EQ(static_cast<uint64_t>(txn.commits_), stats.batches);
}

TEST(GroupCommitTest, QueuedOperationsShareABatch) {
  FakeTransaction txn;
  GroupCommitter committer(txn, 100);
  // Hold the writer inside a first operation while others queue up.
  absl::Notification entered, release;
  std::thread first([&] {
    EXPECT_TRUE(committer
                    .Run([&] {
                      entered.Notify();
                      release.WaitForNotification();
                      return absl::OkStatus();
                    })
                    .ok());
  });
  entered.WaitForNotification();
  constexpr int kWaiting = 10;
  std::vector<std::thread> others;
  for (int i = 0; i < kWaiting; ++i) {
    others.emplace_back([&] {
      EXPECT_TRUE(committer.Run([] { return absl::OkStatus(); }).ok());
    });
  }
  // Wait (bounded) until all of them are queued, then let the writer go:
  // they all go into the next transaction.
  for (int i = 0; i < 30000 && committer.queue_depth() < kWaiting; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(committer.queue_depth(), static_cast<size_t>(kWaiting));
  release.Notify();
  first.join();
  for (std::thread& t : others) t.join();
  EXPECT_EQ(committer.stats().batches, 2u);
  EXPECT_EQ(committer.stats().max_batch, static_cast<uint64_t>(kWaiting));
  EXPECT_EQ(committer.stats().operations, 1u + kWaiting);
}

TEST(GroupCommitTest, AFailingOperationFailsAlone) {
  FakeTransaction txn;
  GroupCommitter committer(txn, 16);
  EXPECT_TRUE(absl::IsAlreadyExists(committer.Run([] { return absl::AlreadyExistsError("clash"); })));
  EXPECT_TRUE(committer.Run([] { return absl::OkStatus(); }).ok());
  absl::MutexLock lock(&txn.mu_);
  EXPECT_EQ(txn.undone_, 1);
  EXPECT_EQ(txn.rollbacks_, 0);
}

TEST(GroupCommitTest, AFailedCommitFailsTheBatchAndTheNextOneWorks) {
  FakeTransaction txn;
  GroupCommitter committer(txn, 16);
  {
    absl::MutexLock lock(&txn.mu_);
    txn.fail_next_commit_ = true;
  }
  absl::Status failed = committer.Run([] { return absl::OkStatus(); });
  EXPECT_TRUE(absl::IsUnavailable(failed)) << failed;
  EXPECT_TRUE(committer.Run([] { return absl::OkStatus(); }).ok());
  absl::MutexLock lock(&txn.mu_);
  EXPECT_EQ(txn.rollbacks_, 1);
  EXPECT_EQ(txn.commits_, 1);
}

TEST(GroupCommitTest, ABatchThatLostToAnotherWriterRunsAgain) {
  FakeTransaction txn;
  GroupCommitter committer(txn, 16);
  {
    absl::MutexLock lock(&txn.mu_);
    txn.aborts_left_ = 2;
  }
  int runs = 0;
  EXPECT_TRUE(committer.Run([&] {
    ++runs;
    return absl::OkStatus();
  }).ok());
  EXPECT_EQ(runs, 3);  // decided again against the newer state each time
  absl::MutexLock lock(&txn.mu_);
  EXPECT_EQ(txn.rollbacks_, 2);
  EXPECT_EQ(txn.commits_, 1);
}

TEST(GroupCommitTest, OperationsThatDoNotFitWaitForTheNextBatch) {
  FakeTransaction txn;
  {
    absl::MutexLock lock(&txn.mu_);
    txn.capacity_ = 2;
  }
  absl::Notification release;
  absl::Notification blocked;
  GroupCommitter committer(txn, 16);
  // Hold the writer so that five operations queue up behind it.
  std::thread holder([&] {
    EXPECT_TRUE(committer.Run([&] {
      blocked.Notify();
      release.WaitForNotification();
      return absl::OkStatus();
    }).ok());
  });
  blocked.WaitForNotification();
  std::atomic<int> ok{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 5; ++i) {
    callers.emplace_back([&] {
      if (committer.Run([] { return absl::OkStatus(); }).ok()) ++ok;
    });
  }
  while (committer.queue_depth() < 5) absl::SleepFor(absl::Milliseconds(1));
  release.Notify();
  holder.join();
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(ok, 5);
  absl::MutexLock lock(&txn.mu_);
  EXPECT_EQ(txn.committed_ops_, 6);
  EXPECT_EQ(txn.commits_, 4);  // the holder alone, then 2 + 2 + 1
}

}  // namespace
}  // namespace sesame::controller
