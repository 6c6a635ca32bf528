#include "controller/store/group_commit.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace sesame::controller {
namespace {

// Records the transaction calls; can be told to fail a commit.
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
    return absl::OkStatus();
  }
  absl::Status Commit() override {
    absl::MutexLock lock(&mu_);
    if (fail_next_commit_) {
      fail_next_commit_ = false;
      return absl::UnavailableError("disk full");
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

}  // namespace
}  // namespace sesame::controller
