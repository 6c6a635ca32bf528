#include "agent/grants/process_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/log.h"

extern char** environ;

namespace sesame {
namespace {

constexpr size_t kMaxOutput = 64 * 1024;
// Without a pidfd (kernel < 5.3) exits are noticed by polling this often.
constexpr absl::Duration kFallbackPoll = absl::Milliseconds(10);
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

absl::Status ErrnoStatus(int err, const std::string& what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(err)));
}

// A word as a shell would need it quoted, so the log line reads unambiguously.
std::string QuoteWord(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                              "_./:=,@%+-") == std::string::npos) {
    return word;
  }
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') out += "'\\''";
    else out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string CommandForLog(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& w : argv) {
    if (!out.empty()) out.push_back(' ');
    out += QuoteWord(w);
  }
  return out;
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// argv[0] as an absolute path: taken as is, or a bare name looked up in PATH
// (relative PATH entries are skipped: the daemon's working directory is
// nobody's choice). A relative path with a slash is refused for that reason.
absl::StatusOr<std::string> ResolveExecutable(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("empty command name");
  if (name.find('/') != std::string::npos) {
    if (name[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("command ", name, " must be an absolute path or a bare name looked up in PATH"));
    }
    if (!IsExecutableFile(name)) return absl::NotFoundError(absl::StrCat("no executable file ", name));
    return name;
  }
  const char* env_path = std::getenv("PATH");
  const std::string path = env_path != nullptr && *env_path != '\0' ? env_path : kDefaultPath;
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    if (dir.empty() || dir[0] != '/') continue;
    std::string candidate = absl::StrCat(dir, "/", name);
    if (IsExecutableFile(candidate)) return candidate;
  }
  return absl::NotFoundError(absl::StrCat("command ", name, " not found in PATH (", path, ")"));
}

std::string FirstLine(const std::string& text) {
  const size_t start = text.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return "";
  const size_t end = text.find('\n', start);
  std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return line;
}

// One started child: its pid (also its process group), a pidfd to poll for
// its exit, the read end of its output pipe, and its time limit.
class Child {
 public:
  Child(pid_t pid, int pidfd, int out_fd, absl::Time deadline)
      : pid_(pid), pidfd_(pidfd), out_fd_(out_fd), deadline_(deadline) {}
  ~Child() {
    if (pidfd_ >= 0) close(pidfd_);
    CloseOutput();
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_; }
  int out_fd() const { return out_fd_; }

  // When the runner must next act on this child on its own (no fd event).
  absl::Time NextDeadline() const {
    absl::Time next = absl::InfiniteFuture();
    if (!term_sent_) next = deadline_;
    else if (!kill_sent_) next = kill_at_;
    if (pidfd_ < 0) next = std::min(next, absl::Now() + kFallbackPoll);
    return next;
  }

  // Reads what the pipe holds without blocking; keeps the first 64 KiB.
  void ReadOutput() {
    char buf[4096];
    while (out_fd_ >= 0) {
      const ssize_t n = read(out_fd_, buf, sizeof buf);
      if (n > 0) {
        const size_t room = kMaxOutput - std::min(kMaxOutput, output_.size());
        output_.append(buf, std::min(room, static_cast<size_t>(n)));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      CloseOutput();  // EOF or a read error
    }
  }

  // Whether the child has exited; it stays a zombie (its pid and process
  // group reserved) until Reap().
  bool HasExited() {
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      // ECHILD: someone else reaped it (or SIGCHLD is ignored); it is gone.
      lost_ = errno == ECHILD;
      return lost_;
    }
    return info.si_pid == pid_;
  }

  // SIGTERM to the whole group at the time limit, SIGKILL after the grace.
  void EnforceTimeLimit(absl::Time now, absl::Duration grace, const std::string& label, absl::Duration limit) {
    if (!term_sent_ && now >= deadline_) {
      LogWarning(absl::StrCat(label, ": command outlived its time limit of ", absl::FormatDuration(limit),
                              ", terminating its process group"));
      kill(-pid_, SIGTERM);
      term_sent_ = true;
      kill_at_ = now + grace;
    } else if (term_sent_ && !kill_sent_ && now >= kill_at_) {
      LogWarning(absl::StrCat(label, ": command ignored SIGTERM, killing its process group"));
      kill(-pid_, SIGKILL);
      kill_sent_ = true;
    }
  }

  // Collects the exit status of an exited child and its remaining output.
  ProcessResult Reap() {
    // A timed-out command's group is swept while the zombie leader still
    // holds the group id, so no unrelated process can be hit.
    if (term_sent_) kill(-pid_, SIGKILL);
    ProcessResult result;
    result.timed_out = term_sent_;
    int status = 0;
    if (!lost_) {
      pid_t r;
      do {
        r = waitpid(pid_, &status, 0);
      } while (r < 0 && errno == EINTR);
      if (r == pid_) {
        if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
      }
    }
    // Grandchildren may keep the pipe open: take what is there, then stop.
    ReadOutput();
    CloseOutput();
    result.output = std::move(output_);
    if (lost_ && result.output.empty()) result.output = "exit status lost (child reaped elsewhere)";
    return result;
  }

 private:
  void CloseOutput() {
    if (out_fd_ >= 0) close(out_fd_);
    out_fd_ = -1;
  }

  const pid_t pid_;
  const int pidfd_;
  int out_fd_;
  const absl::Time deadline_;
  absl::Time kill_at_ = absl::InfiniteFuture();
  bool term_sent_ = false;
  bool kill_sent_ = false;
  bool lost_ = false;
  std::string output_;
};

// posix_spawn (glibc: clone(CLONE_VFORK), safe in a threaded process) with
// stdin from /dev/null, stdout and stderr into a new pipe, every other
// descriptor closed, default signal dispositions, an empty mask and a new
// process group.
absl::StatusOr<std::unique_ptr<Child>> SpawnChild(const std::string& path, const std::vector<std::string>& argv,
                                                  absl::Duration time_limit) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "cannot create output pipe");

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // dup2 first: should the pipe have landed on fd 0 (a daemon that closed
  // its stdin), opening /dev/null there must come after.
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  // Every bit, not sigfillset(): glibc's sigfillset leaves out its internal
  // signals (32, 33), and posix_spawn then hands them to the child ignored,
  // which an exec does not undo.
  std::memset(&all, 0xff, sizeof all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  pid_t pid = -1;
  const int err = posix_spawn(&pid, path.c_str(), &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(pipe_fds[1]);
  if (err != 0) {
    close(pipe_fds[0]);
    return ErrnoStatus(err, absl::StrCat("cannot execute ", path));
  }
  fcntl(pipe_fds[0], F_SETFL, fcntl(pipe_fds[0], F_GETFL) | O_NONBLOCK);
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));  // always close-on-exec
  return std::make_unique<Child>(pid, pidfd, pipe_fds[0], absl::Now() + time_limit);
}

std::string DescribeEnd(const ProcessResult& r, absl::Duration limit) {
  if (r.timed_out) return absl::StrCat("timed out after ", absl::FormatDuration(limit), ", killed");
  if (r.signal != 0) return absl::StrCat("killed by signal ", r.signal);
  return absl::StrCat("exit ", r.exit_code);
}

void LogEnd(const std::string& label, const ProcessResult& r, absl::Duration limit, absl::Duration took) {
  if (r.exit_code == 0 && r.signal == 0 && !r.timed_out) {
    LogInfo(absl::StrCat(label, ": command finished (exit 0, ", absl::FormatDuration(absl::Trunc(took, absl::Microseconds(1))), ")"));
    return;
  }
  std::string msg = absl::StrCat(label, ": command failed (", DescribeEnd(r, limit), ")");
  const std::string line = FirstLine(r.output);
  if (!line.empty()) absl::StrAppend(&msg, ": ", line);
  LogWarning(msg);
}

}  // namespace

class ProcessRunner::Impl {
 public:
  explicit Impl(ProcessRunnerOptions options) : options_(std::move(options)) {
    options_.max_children = std::max(1, options_.max_children);
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) {
      // Nothing can run without it; this is a start-up failure, not a state
      // to limp along in.
      LogError(absl::StrCat("process runner: eventfd: ", std::strerror(errno)));
      std::abort();
    }
    reaper_ = std::thread([this] { ReaperLoop(); });
  }

  ~Impl() {
    std::deque<Job> dropped;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      dropped.swap(queue_);
    }
    if (!dropped.empty()) {
      LogWarning(absl::StrCat("process runner: shutting down, ", dropped.size(), " queued command(s) not started"));
    }
    for (Job& job : dropped) {
      ProcessResult r;
      r.output = "not started: the process runner is shutting down";
      Finish(job, r);
    }
    {
      // Running children end on their own or at their time limit, which
      // the reaper enforces.
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](size_t* in_flight) { return *in_flight == 0; }, &in_flight_));
      quit_ = true;
    }
    Wake();
    reaper_.join();
    close(wake_fd_);
  }

  absl::Status Start(std::vector<std::string> argv, std::string label,
                     std::function<void(const ProcessResult&)> done) {
    if (argv.empty()) return absl::InvalidArgumentError("empty command");
    absl::StatusOr<std::string> path = ResolveExecutable(argv[0]);
    if (!path.ok()) {
      LogWarning(absl::StrCat(label, ": cannot run command: ", path.status().message()));
      return path.status();
    }
    Job job{std::move(argv), *std::move(path), std::move(label), std::move(done)};
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return absl::FailedPreconditionError("process runner is shutting down");
      if (slots_ >= options_.max_children) {
        if (queue_.size() >= options_.max_queued) {
          LogWarning(absl::StrCat(job.label, ": command refused: ", options_.max_children, " running and ",
                                  queue_.size(), " queued"));
          return absl::ResourceExhaustedError(
              absl::StrCat("too many commands waiting (", queue_.size(), " queued)"));
        }
        LogDebug(absl::StrCat(job.label, ": command queued (", options_.max_children, " running)"));
        queue_.push_back(std::move(job));
        ++in_flight_;
        return absl::OkStatus();
      }
      ++slots_;
      ++in_flight_;
    }
    absl::Status started = Launch(job);
    if (!started.ok()) {
      {
        absl::MutexLock lock(&mu_);
        --slots_;
        --in_flight_;
      }
      Wake();  // a slot came free: a job queued meanwhile may start
    }
    return started;
  }

  absl::StatusOr<ProcessResult> RunAndWait(const std::vector<std::string>& argv) {
    if (argv.empty()) return absl::InvalidArgumentError("empty command");
    const std::string label = argv[0].substr(argv[0].rfind('/') + 1);
    absl::StatusOr<std::string> path = ResolveExecutable(argv[0]);
    if (!path.ok()) return path.status();
    LogDebug(absl::StrCat(label, ": running command: ", CommandForLog(argv)));
    const absl::Time started = absl::Now();
    absl::StatusOr<std::unique_ptr<Child>> spawned = SpawnChild(*path, argv, options_.time_limit);
    if (!spawned.ok()) {
      LogWarning(absl::StrCat(label, ": ", spawned.status().message()));
      return spawned.status();
    }
    Child& child = **spawned;
    for (;;) {
      child.ReadOutput();
      if (child.HasExited()) break;
      const absl::Time now = absl::Now();
      child.EnforceTimeLimit(now, options_.kill_grace, label, options_.time_limit);
      pollfd fds[2];
      nfds_t n = 0;
      if (child.pidfd() >= 0) fds[n++] = {child.pidfd(), POLLIN, 0};
      if (child.out_fd() >= 0) fds[n++] = {child.out_fd(), POLLIN, 0};
      poll(fds, n, PollTimeoutMs(child.NextDeadline(), absl::Now()));
    }
    ProcessResult result = child.Reap();
    if (result.timed_out || result.signal != 0) {
      LogEnd(label, result, options_.time_limit, absl::Now() - started);
    } else {
      LogDebug(absl::StrCat(label, ": command ended (", DescribeEnd(result, options_.time_limit), ")"));
    }
    return result;
  }

  bool WaitIdle(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(
        absl::Condition(+[](size_t* in_flight) { return *in_flight == 0; }, &in_flight_), timeout);
  }

  int running() const {
    absl::MutexLock lock(&mu_);
    return slots_;
  }

  size_t queued() const {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

 private:
  struct Job {
    std::vector<std::string> argv;
    std::string path;  // argv[0] resolved
    std::string label;
    std::function<void(const ProcessResult&)> done;
  };

  struct Running {
    Job job;
    std::unique_ptr<Child> child;
    absl::Time started;
  };

  static int PollTimeoutMs(absl::Time next, absl::Time now) {
    if (next == absl::InfiniteFuture()) return -1;
    if (next <= now) return 0;
    const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(next - now, absl::Milliseconds(1)));
    return static_cast<int>(std::min<int64_t>(ms, 60'000));
  }

  void Wake() {
    const uint64_t one = 1;
    ssize_t n;
    do {
      n = write(wake_fd_, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
  }

  // Spawns a job whose slot is already counted; on success the reaper owns it.
  absl::Status Launch(Job& job) {
    LogInfo(absl::StrCat(job.label, ": running command: ", CommandForLog(job.argv)));
    const absl::Time started = absl::Now();
    absl::StatusOr<std::unique_ptr<Child>> child = SpawnChild(job.path, job.argv, options_.time_limit);
    if (!child.ok()) {
      LogWarning(absl::StrCat(job.label, ": ", child.status().message()));
      return child.status();
    }
    {
      absl::MutexLock lock(&mu_);
      running_.push_back(Running{std::move(job), *std::move(child), started});
    }
    Wake();
    return absl::OkStatus();
  }

  // Runs `done` (outside the lock) and retires the job.
  void Finish(Job& job, const ProcessResult& result) {
    if (job.done) job.done(result);
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }

  void StartQueued() {
    for (;;) {
      Job job;
      {
        absl::MutexLock lock(&mu_);
        if (queue_.empty() || slots_ >= options_.max_children) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        ++slots_;
      }
      absl::Status started = Launch(job);
      if (!started.ok()) {
        {
          absl::MutexLock lock(&mu_);
          --slots_;
        }
        ProcessResult r;
        r.output = std::string(started.message());
        Finish(job, r);
      }
    }
  }

  void ReaperLoop() {
    std::vector<pollfd> fds;
    for (;;) {
      int timeout_ms;
      {
        absl::MutexLock lock(&mu_);
        if (quit_ && running_.empty()) return;
        fds.clear();
        fds.push_back({wake_fd_, POLLIN, 0});
        absl::Time next = absl::InfiniteFuture();
        for (const Running& r : running_) {
          if (r.child->pidfd() >= 0) fds.push_back({r.child->pidfd(), POLLIN, 0});
          if (r.child->out_fd() >= 0) fds.push_back({r.child->out_fd(), POLLIN, 0});
          next = std::min(next, r.child->NextDeadline());
        }
        timeout_ms = PollTimeoutMs(next, absl::Now());
      }
      if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
        LogError(absl::StrCat("process runner: poll: ", std::strerror(errno)));
        absl::SleepFor(kFallbackPoll);
      }
      uint64_t ignored;
      while (read(wake_fd_, &ignored, sizeof ignored) > 0) {
      }

      std::vector<std::pair<Job, ProcessResult>> finished;
      {
        absl::MutexLock lock(&mu_);
        const absl::Time now = absl::Now();
        for (auto it = running_.begin(); it != running_.end();) {
          Child& child = *it->child;
          child.ReadOutput();
          if (!child.HasExited()) {
            child.EnforceTimeLimit(now, options_.kill_grace, it->job.label, options_.time_limit);
            ++it;
            continue;
          }
          ProcessResult result = child.Reap();
          LogEnd(it->job.label, result, options_.time_limit, now - it->started);
          finished.emplace_back(std::move(it->job), std::move(result));
          it = running_.erase(it);
          --slots_;
        }
      }
      StartQueued();
      for (auto& [job, result] : finished) Finish(job, result);
    }
  }

  ProcessRunnerOptions options_;
  int wake_fd_ = -1;
  std::thread reaper_;

  mutable absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  std::list<Running> running_ ABSL_GUARDED_BY(mu_);
  int slots_ ABSL_GUARDED_BY(mu_) = 0;         // children running or being spawned
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // accepted jobs whose `done` has not returned
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool quit_ ABSL_GUARDED_BY(mu_) = false;
};

ProcessRunner::ProcessRunner(ProcessRunnerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
ProcessRunner::~ProcessRunner() = default;

absl::Status ProcessRunner::Start(std::vector<std::string> argv, std::string label,
                                  std::function<void(const ProcessResult&)> done) {
  return impl_->Start(std::move(argv), std::move(label), std::move(done));
}

absl::StatusOr<ProcessResult> ProcessRunner::RunAndWait(const std::vector<std::string>& argv) {
  return impl_->RunAndWait(argv);
}

bool ProcessRunner::WaitIdle(absl::Duration timeout) { return impl_->WaitIdle(timeout); }
int ProcessRunner::running() const { return impl_->running(); }
size_t ProcessRunner::queued() const { return impl_->queued(); }

}  // namespace sesame
