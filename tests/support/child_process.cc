#include "tests/support/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace sesame::testing {

void DieWithParent(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
}

absl::StatusOr<pid_t> SpawnWithLog(const std::vector<std::string>& argv, const std::string& log_file,
                                   bool truncate_log) {
  if (argv.empty()) return absl::InvalidArgumentError("SpawnWithLog: no command");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int log_fd =
      open(log_file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (truncate_log ? O_TRUNC : O_APPEND), 0644);
  if (log_fd < 0) return absl::InternalError(absl::StrCat("open ", log_file));
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    close(log_fd);
    return absl::InternalError("open /dev/null");
  }
  sigset_t no_signals;
  sigemptyset(&no_signals);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    DieWithParent(parent);
    dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    close_range(3, ~0U, 0);
    sigprocmask(SIG_SETMASK, &no_signals, nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(log_fd);
  close(null_fd);
  if (pid < 0) return absl::InternalError("fork");
  return pid;
}

}  // namespace sesame::testing
