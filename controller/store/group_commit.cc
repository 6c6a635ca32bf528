#include "controller/store/group_commit.h"

#include <algorithm>

#include "absl/synchronization/notification.h"

namespace sesame::controller {

struct GroupCommitter::Pending {
  Operation op;
  absl::Status status;
  absl::Notification done;
};

GroupCommitter::GroupCommitter(BatchTransaction& transaction, size_t max_batch)
    : transaction_(transaction), max_batch_(std::max<size_t>(1, max_batch)) {
  writer_ = std::thread([this] { WriterLoop(); });
}

GroupCommitter::~GroupCommitter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  writer_.join();
}

absl::Status GroupCommitter::Run(Operation op) {
  Pending pending;
  pending.op = std::move(op);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the store is closing");
    queue_.push_back(&pending);
  }
  pending.done.WaitForNotification();
  return pending.status;
}

GroupCommitStats GroupCommitter::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

size_t GroupCommitter::queue_depth() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void GroupCommitter::WriterLoop() {
  std::deque<Pending*> batch;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](GroupCommitter* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return !self->queue_.empty() || self->stopping_;
          },
          this));
      if (queue_.empty()) return;  // stopping, nothing left
      const size_t n = std::min(queue_.size(), max_batch_);
      batch.assign(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    RunBatch(batch);
    {
      absl::MutexLock lock(&mu_);
      ++stats_.batches;
      stats_.operations += batch.size();
      stats_.max_batch = std::max<uint64_t>(stats_.max_batch, batch.size());
    }
    for (Pending* p : batch) p->done.Notify();  // p may be gone after this
    batch.clear();
  }
}

void GroupCommitter::RunBatch(std::deque<Pending*>& batch) {
  auto fail_all = [&](const absl::Status& status) {
    for (Pending* p : batch) {
      if (p->status.ok()) p->status = status;
    }
  };
  absl::Status status = transaction_.Begin();
  if (!status.ok()) {
    fail_all(status);
    return;
  }
  for (Pending* p : batch) {
    status = transaction_.BeginOperation();
    if (status.ok()) {
      p->status = p->op();
      status = transaction_.EndOperation(p->status.ok());
    }
    if (!status.ok()) {
      transaction_.Rollback();
      // Operations that had succeeded, and those not run, fail with the batch.
      fail_all(status);
      return;
    }
  }
  status = transaction_.Commit();
  if (!status.ok()) {
    transaction_.Rollback();
    fail_all(status);
  }
}

}  // namespace sesame::controller
