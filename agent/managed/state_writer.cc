#include "agent/managed/state_writer.h"

#include <utility>

#include "common/file_util.h"

namespace sesame {

StateWriter::StateWriter(std::string path, Done done)
    : path_(std::move(path)), done_(std::move(done)), thread_([this] { Run(); }) {}

StateWriter::~StateWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void StateWriter::Submit(std::string bytes, uint64_t generation) {
  absl::MutexLock lock(&mu_);
  waiting_.emplace(std::move(bytes), generation);
  submitted_ = generation;
}

absl::Status StateWriter::Flush() {
  absl::MutexLock lock(&mu_);
  const uint64_t target = submitted_;
  auto written = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return written_ >= target; };
  mu_.Await(absl::Condition(&written));
  return last_;
}

void StateWriter::Run() {
  for (;;) {
    std::pair<std::string, uint64_t> next;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](StateWriter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return w->waiting_.has_value() || w->stopping_; },
          this));
      if (!waiting_.has_value()) return;  // stopping, nothing left to write
      next = std::move(*waiting_);
      waiting_.reset();
    }
    const absl::Status status = WriteFileAtomically(path_, next.first, 0600);
    {
      absl::MutexLock lock(&mu_);
      written_ = next.second;
      last_ = status;
    }
    done_(next.second, status);
  }
}

}  // namespace sesame
