// A few threads that run blocking work (store calls wait for an fsync) so
// that gRPC's callback threads never block inside a reaction.
#pragma once

#include <cstddef>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace sesame::controller {

class WorkQueue {
 public:
  explicit WorkQueue(size_t threads);
  // Runs what was posted, then joins.
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Runs work on one of the threads, in posting order as far as one thread
  // goes. Work posted after destruction began is dropped.
  void Post(absl::AnyInvocable<void() &&> work);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace sesame::controller
