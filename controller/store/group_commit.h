// Group commit: many callers' writes share one transaction, so one fsync
// makes a whole batch durable. Callers block in Run() until the batch that
// holds their operation has committed (or failed); nobody is answered before
// their write is durable.
//
// One writer thread takes everything queued (up to max_batch), opens a
// transaction, runs each operation inside its own savepoint (a failing
// operation is rolled back alone and gets its own error), commits, and wakes
// the callers. While it commits, new operations queue up for the next batch,
// so batches grow exactly as fast as callers arrive: there is no timer and
// a lone caller waits for one commit only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace sesame::controller {

// The transaction primitives of the database behind a GroupCommitter. All
// calls happen on the writer thread.
class BatchTransaction {
 public:
  virtual ~BatchTransaction() = default;
  virtual absl::Status Begin() = 0;
  virtual absl::Status BeginOperation() = 0;
  // ok: keep the operation's changes; otherwise undo them (and only them).
  // ResourceExhausted: the operation was undone because it does not fit in
  // this transaction (a database with a bound on a transaction's size); it
  // and the operations after it wait for the next batch, or, first in its
  // batch, fail with that error. Any other error dooms the whole batch.
  virtual absl::Status EndOperation(bool ok) = 0;
  // Makes the batch durable. Aborted: another writer committed first and
  // nothing of this batch was kept; the batch is rolled back and all of its
  // operations run again (optimistic concurrency between processes).
  virtual absl::Status Commit() = 0;
  // Undoes the whole batch after a failure.
  virtual void Rollback() = 0;
};

struct GroupCommitStats {
  uint64_t batches = 0;     // transactions committed
  uint64_t operations = 0;  // operations in them
  uint64_t max_batch = 0;   // largest batch seen
};

class GroupCommitter {
 public:
  // Runs on the writer thread inside the open transaction. It must not call
  // Run() (that would wait for itself).
  using Operation = absl::AnyInvocable<absl::Status()>;

  GroupCommitter(BatchTransaction& transaction, size_t max_batch);
  // Finishes what is queued, then stops the writer thread.
  ~GroupCommitter();
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Runs op in the next batch and returns once that batch is durable: op's
  // own error if it failed, the batch's error if the commit failed, OK
  // otherwise.
  absl::Status Run(Operation op);

  GroupCommitStats stats() const;
  // Operations waiting for the next batch (not counting the one running).
  size_t queue_depth() const;

 private:
  struct Pending;
  void WriterLoop();
  // Runs and commits batch; the operations that did not fit are moved to
  // deferred.
  void RunBatch(std::deque<Pending*>& batch, std::deque<Pending*>& deferred);
  // One attempt; Aborted when it must be run again.
  absl::Status TryBatch(std::deque<Pending*>& batch, std::deque<Pending*>& deferred);

  BatchTransaction& transaction_;
  const size_t max_batch_;
  mutable absl::Mutex mu_;
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  GroupCommitStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread writer_;
};

}  // namespace sesame::controller
