// Runs commands as child processes: fork + execve, never a shell. Bounded:
// at most max_children run at once (the rest wait in a queue, also bounded),
// and a child that outlives time_limit gets SIGTERM, then SIGKILL.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sesame {

struct ProcessRunnerOptions {
  int max_children = 16;
  size_t max_queued = 1024;  // beyond this, Start() refuses
  absl::Duration time_limit = absl::Seconds(60);
};

struct ProcessResult {
  int exit_code = -1;      // -1 when killed by a signal or exec failed
  int signal = 0;          // the signal that ended it, if any
  bool timed_out = false;  // killed because it outlived the time limit
  std::string output;      // stdout+stderr, first 64 KiB (RunAndWait only)
};

class ProcessRunner {
 public:
  explicit ProcessRunner(ProcessRunnerOptions options);
  ~ProcessRunner();  // waits for running children up to their time limit
  ProcessRunner(const ProcessRunner&) = delete;
  ProcessRunner& operator=(const ProcessRunner&) = delete;

  // Starts argv[0] (an absolute path, or looked up in PATH) in the
  // background, or queues it while max_children are running. `done` runs on
  // the runner's thread when the child has ended. `label` names it in logs.
  absl::Status Start(std::vector<std::string> argv, std::string label,
                     std::function<void(const ProcessResult&)> done = nullptr);

  // Runs argv now (outside the max_children budget, which is for start/stop
  // commands) and waits for it, up to the time limit. For tools that
  // backends drive: iptables, ufw.
  absl::StatusOr<ProcessResult> RunAndWait(const std::vector<std::string>& argv);

  // Blocks until nothing runs or waits, or until `timeout` passes. Returns
  // whether it became idle.
  bool WaitIdle(absl::Duration timeout);

  int running() const;
  size_t queued() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sesame
