// Daemons and helpers that tests start: one way to fork and exec them so
// that none outlives its test.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sesame::testing {

// Runs argv (argv[0] a path, or a name looked up in PATH) with stdin from
// /dev/null and stdout and stderr appended to log_file (truncated first
// with truncate_log). The child dies (SIGKILL) with the test process, even
// when that is killed before its destructors run (a ctest timeout, a
// crash); it inherits no descriptor of the test but those three, and an
// empty signal mask (the forking thread's would be inherited). Safe to call
// from a threaded test: between fork and exec only async-signal-safe calls.
absl::StatusOr<pid_t> SpawnWithLog(const std::vector<std::string>& argv, const std::string& log_file,
                                   bool truncate_log = false);

// For a test's own forked child that does not exec: it dies with the test
// process. Call first thing in the child, with the parent's pid read
// before fork.
void DieWithParent(pid_t parent);

}  // namespace sesame::testing
