// Runs commands as child processes: posix_spawn (vfork + execve), never a
// shell. Bounded: at most max_children run at once (the rest wait in a queue,
// also bounded), and a child that outlives time_limit gets SIGTERM, then SIGKILL.
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
  // After SIGTERM, how long the process group gets before SIGKILL.
  absl::Duration kill_grace = absl::Seconds(2);
};

struct ProcessResult {
  int exit_code = -1;      // -1 when killed by a signal or exec failed
  int signal = 0;          // the signal that ended it, if any
  bool timed_out = false;  // killed because it outlived the time limit
  std::string output;      // stdout+stderr, first 64 KiB; for a child that
                           // could not be started, why
};

class ProcessRunner {
 public:
  explicit ProcessRunner(ProcessRunnerOptions options);
  // Stops accepting, drops what still waits in the queue (their `done` runs
  // with "not started"), waits for running children up to their time limit
  // (then they are killed), and joins the runner's thread. Must not be
  // called from a `done` callback.
  ~ProcessRunner();
  ProcessRunner(const ProcessRunner&) = delete;
  ProcessRunner& operator=(const ProcessRunner&) = delete;

  // Starts argv[0] (an absolute path, or looked up in PATH) in the
  // background, or queues it while max_children are running. `done` runs on
  // the runner's thread when the child has ended. `label` names it in logs.
  // An error (argv[0] not found, queue full, runner shutting down) means
  // nothing was started and `done` will not run; OK means `done` runs
  // exactly once — also for a queued child that could not be executed or
  // that was dropped at shutdown (exit_code -1, output says why).
  // The child gets stdin from /dev/null, stdout+stderr into a pipe, no other
  // descriptor, default signal dispositions, an empty signal mask and its
  // own process group (a time-limit kill reaches its grandchildren).
  absl::Status Start(std::vector<std::string> argv, std::string label,
                     std::function<void(const ProcessResult&)> done = nullptr);

  // Runs argv now (outside the max_children budget, which is for start/stop
  // commands) and waits for it, up to the time limit. For tools that
  // backends drive: iptables, ufw. A non-zero exit is a result, not an error
  // (`iptables -C` answers with it), so it is only logged at debug level.
  absl::StatusOr<ProcessResult> RunAndWait(const std::vector<std::string>& argv);

  // Blocks until nothing runs or waits (and every `done` has returned), or
  // until `timeout` passes. Returns whether it became idle.
  bool WaitIdle(absl::Duration timeout);

  int running() const;
  size_t queued() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sesame
