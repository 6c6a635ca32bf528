#include "controller/store/group_commit.h"

#include <algorithm>

#include "absl/synchronization/notification.h"
#include "common/status_macros.h"

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
    std::deque<Pending*> deferred;
    RunBatch(batch, deferred);
    {
      absl::MutexLock lock(&mu_);
      ++stats_.batches;
      stats_.operations += batch.size();
      stats_.max_batch = std::max<uint64_t>(stats_.max_batch, batch.size());
      // What did not fit goes first in the next batch, in its order.
      queue_.insert(queue_.begin(), deferred.begin(), deferred.end());
    }
    for (Pending* p : batch) p->done.Notify();  // p may be gone after this
    batch.clear();
  }
}

void GroupCommitter::RunBatch(std::deque<Pending*>& batch, std::deque<Pending*>& deferred) {
  // Another writer committing first costs one more attempt; a bound keeps a
  // batch from spinning forever against a store that always conflicts.
  constexpr int kMaxAttempts = 50;
  absl::Status status;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    for (Pending* p : deferred) batch.push_back(p);
    deferred.clear();
    for (Pending* p : batch) p->status = absl::OkStatus();
    status = TryBatch(batch, deferred);
    if (!absl::IsAborted(status)) break;
  }
  if (!status.ok()) {
    for (Pending* p : batch) {
      if (p->status.ok()) p->status = status;
    }
  }
}

absl::Status GroupCommitter::TryBatch(std::deque<Pending*>& batch, std::deque<Pending*>& deferred) {
  RETURN_IF_ERROR(transaction_.Begin());
  for (size_t i = 0; i < batch.size(); ++i) {
    Pending* p = batch[i];
    absl::Status status = transaction_.BeginOperation();
    if (status.ok()) {
      p->status = p->op();
      status = transaction_.EndOperation(p->status.ok());
    }
    if (absl::IsResourceExhausted(status) && i > 0) {
      // Too big for what is left of this transaction: the next batch.
      deferred.assign(batch.begin() + static_cast<std::ptrdiff_t>(i), batch.end());
      batch.resize(i);
      break;
    }
    if (absl::IsResourceExhausted(status)) {
      p->status = status;  // too big for any transaction
      continue;
    }
    if (!status.ok()) {
      transaction_.Rollback();
      return status;  // operations that had succeeded, and those not run, fail with the batch
    }
  }
  absl::Status status = transaction_.Commit();
  if (!status.ok()) transaction_.Rollback();
  return status;
}

}  // namespace sesame::controller
