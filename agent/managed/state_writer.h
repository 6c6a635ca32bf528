// Writes the managed agent's state file on a thread of its own, so that a
// save costs the worker only the serialization, never the write and its
// fsyncs (tens of milliseconds at 100,000 sequences, in the middle of the
// knocks it is answering).
//
// Writes are atomic (WriteFileAtomically) and happen in submission order; a
// submission that finds an older one still waiting replaces it: only the
// newest state matters. `done(generation, status)` runs on the writer's
// thread after each write, for the generation written.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace sesame {

class StateWriter {
 public:
  using Done = std::function<void(uint64_t generation, const absl::Status& status)>;

  StateWriter(std::string path, Done done);
  ~StateWriter();  // writes what is waiting, then stops
  StateWriter(const StateWriter&) = delete;
  StateWriter& operator=(const StateWriter&) = delete;

  // `generation` grows with every submission.
  void Submit(std::string bytes, uint64_t generation);
  // Waits until everything submitted so far is written; the status of the
  // last write.
  absl::Status Flush();

 private:
  void Run();

  const std::string path_;
  const Done done_;
  absl::Mutex mu_;
  std::optional<std::pair<std::string, uint64_t>> waiting_ ABSL_GUARDED_BY(mu_);
  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sesame
