#include "agent/grants/process_runner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Generous: the machine may be loaded; nothing here asserts how fast.
constexpr absl::Duration kPatience = absl::Seconds(60);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteExecutable(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  chmod(path.c_str(), 0755);
}

// Whether `pid` no longer runs (gone, or a zombie nobody has reaped yet).
bool ProcessGone(pid_t pid) {
  const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (stat.empty()) return true;
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

bool WaitUntilGone(pid_t pid) {
  const absl::Time deadline = absl::Now() + kPatience;
  while (!ProcessGone(pid)) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// Collects the results of Start()ed children.
class Results {
 public:
  std::function<void(const ProcessResult&)> Callback(std::string name) {
    return [this, name](const ProcessResult& r) {
      absl::MutexLock lock(&mu_);
      results_.emplace_back(name, r);
      threads_.insert(std::this_thread::get_id());
    };
  }
  std::vector<std::pair<std::string, ProcessResult>> Get() {
    absl::MutexLock lock(&mu_);
    return results_;
  }
  std::optional<ProcessResult> Find(const std::string& name) {
    absl::MutexLock lock(&mu_);
    for (auto& [n, r] : results_) {
      if (n == name) return r;
    }
    return std::nullopt;
  }
  std::set<std::thread::id> Threads() {
    absl::MutexLock lock(&mu_);
    return threads_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<std::string, ProcessResult>> results_ ABSL_GUARDED_BY(mu_);
  std::set<std::thread::id> threads_ ABSL_GUARDED_BY(mu_);
};

TEST(ProcessRunnerTest, ArgvReachesTheChildUnchanged) {
  ProcessRunner runner({});
  // printf prints each argument verbatim between <>; a shell would have
  // expanded, split or executed several of these.
  const std::vector<std::string> words = {"a b", "'single'", "\"double\"", "$(id)", "`id`", ";", "|", "&&",
                                          "*", "$HOME", "back\\slash", "", "tab\there", "new\nline"};
  std::vector<std::string> argv = {"printf", "<%s>\\n"};  // bare name: found in PATH
  argv.insert(argv.end(), words.begin(), words.end());
  absl::StatusOr<ProcessResult> r = runner.RunAndWait(argv);
  ASSERT_TRUE(r.ok()) << r.status();
  std::string expected;
  for (const std::string& w : words) absl::StrAppend(&expected, "<", w, ">\n");
  EXPECT_EQ(r->output, expected);
  EXPECT_EQ(r->exit_code, 0);
}

TEST(ProcessRunnerTest, NoShellOnTheStartPathEither) {
  testing::TempDir dir;
  ProcessRunner runner({});
  Results results;
  // /bin/echo writes its arguments; if a shell were involved, `; touch X`
  // would create X.
  const std::string canary = dir.File("canary");
  ASSERT_TRUE(runner.Start({"/bin/echo", "$(id)", ";", "touch", canary}, "t", results.Callback("echo")).ok());
  ASSERT_TRUE(runner.WaitIdle(kPatience));
  std::optional<ProcessResult> r = results.Find("echo");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output, absl::StrCat("$(id) ; touch ", canary, "\n"));
  EXPECT_NE(access(canary.c_str(), F_OK), 0);
}

TEST(ProcessRunnerTest, RunAndWaitReportsExitCodeAndOutput) {
  ProcessRunner runner({});
  absl::StatusOr<ProcessResult> r = runner.RunAndWait({"/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->signal, 0);
  EXPECT_FALSE(r->timed_out);
  EXPECT_THAT(r->output, HasSubstr("to-stdout\n"));
  EXPECT_THAT(r->output, HasSubstr("to-stderr\n"));

  r = runner.RunAndWait({"/bin/sh", "-c", "kill -9 $$"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_EQ(r->signal, SIGKILL);
  EXPECT_FALSE(r->timed_out);
}

TEST(ProcessRunnerTest, OutputIsCappedAndTheChildIsNotBlocked) {
  ProcessRunner runner({});
  // 1 MiB of output: far more than the pipe holds and than is kept.
  absl::StatusOr<ProcessResult> r = runner.RunAndWait({"/usr/bin/head", "-c", "1048576", "/dev/zero"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output.size(), 64u * 1024u);
}

TEST(ProcessRunnerTest, RefusesWhatItCannotRun) {
  ProcessRunner runner({});
  Results results;
  EXPECT_EQ(runner.Start({}, "t").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(runner.Start({"sesame-no-such-command"}, "t", results.Callback("x")).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(runner.Start({"/nonexistent/bin/true"}, "t", results.Callback("x")).code(), absl::StatusCode::kNotFound);
  // Relative to what? The daemon's working directory is nobody's choice.
  EXPECT_EQ(runner.Start({"bin/true"}, "t", results.Callback("x")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(runner.RunAndWait({"sesame-no-such-command"}).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(runner.WaitIdle(kPatience));
  EXPECT_TRUE(results.Get().empty()) << "done must not run for a Start that failed";
}

TEST(ProcessRunnerTest, DoneRunsOnceOnTheRunnersThread) {
  ProcessRunner runner({});
  Results results;
  ASSERT_TRUE(runner.Start({"/bin/sh", "-c", "echo hi; exit 7"}, "t", results.Callback("a")).ok());
  ASSERT_TRUE(runner.Start({"/bin/true"}, "t", results.Callback("b")).ok());
  ASSERT_TRUE(runner.WaitIdle(kPatience));
  auto all = results.Get();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(results.Find("a")->exit_code, 7);
  EXPECT_EQ(results.Find("a")->output, "hi\n");
  EXPECT_EQ(results.Find("b")->exit_code, 0);
  const auto threads = results.Threads();
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_NE(*threads.begin(), std::this_thread::get_id());
  EXPECT_EQ(runner.running(), 0);
  EXPECT_EQ(runner.queued(), 0u);
}

TEST(ProcessRunnerTest, NeverMoreThanMaxChildrenAlive) {
  testing::TempDir dir;
  ASSERT_EQ(mkdir(dir.File("alive").c_str(), 0755), 0);
  ProcessRunnerOptions options;
  options.max_children = 4;
  ProcessRunner runner(options);
  Results results;
  // Each child marks itself alive, counts the marks (its own included), and
  // unmarks itself before it exits. A mark only exists while its child
  // lives, so a count never exceeds the number of children alive at once.
  const std::string script = absl::StrCat(
      "d=", dir.path(), "; : > $d/alive/$$; set -- $d/alive/*; echo $# >> $d/counts; sleep 0.02; rm $d/alive/$$");
  constexpr int kChildren = 50;
  int max_running_seen = 0;
  for (int i = 0; i < kChildren; ++i) {
    ASSERT_TRUE(runner.Start({"/bin/sh", "-c", script}, absl::StrCat("c", i), results.Callback("c")).ok());
    max_running_seen = std::max(max_running_seen, runner.running());
  }
  const absl::Time deadline = absl::Now() + kPatience;
  while (!runner.WaitIdle(absl::Milliseconds(5)) && absl::Now() < deadline) {
    max_running_seen = std::max(max_running_seen, runner.running());
  }
  ASSERT_TRUE(runner.WaitIdle(absl::ZeroDuration()));
  EXPECT_LE(max_running_seen, 4);

  const auto all = results.Get();
  ASSERT_EQ(all.size(), static_cast<size_t>(kChildren));
  for (const auto& [name, r] : all) EXPECT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> counts = absl::StrSplit(ReadFile(dir.File("counts")), '\n', absl::SkipEmpty());
  ASSERT_EQ(counts.size(), static_cast<size_t>(kChildren));
  int max_alive = 0;
  for (const std::string& c : counts) {
    int n = 0;
    ASSERT_TRUE(absl::SimpleAtoi(c, &n)) << c;
    max_alive = std::max(max_alive, n);
  }
  EXPECT_GE(max_alive, 1);
  EXPECT_LE(max_alive, 4);
}

// A child that runs until the test creates `release`.
std::vector<std::string> Blocker(const std::string& release) {
  return {"/bin/sh", "-c", absl::StrCat("while [ ! -e ", release, " ]; do sleep 0.01; done")};
}

TEST(ProcessRunnerTest, QueueIsBoundedAndDrainsInOrder) {
  testing::TempDir dir;
  ProcessRunnerOptions options;
  options.max_children = 1;
  options.max_queued = 2;
  ProcessRunner runner(options);
  Results results;
  const std::string release = dir.File("release");
  ASSERT_TRUE(runner.Start(Blocker(release), "blocker", results.Callback("blocker")).ok());
  const std::string log = dir.File("order");
  ASSERT_TRUE(runner.Start({"/bin/sh", "-c", absl::StrCat("echo 1 >> ", log)}, "q1", results.Callback("q1")).ok());
  ASSERT_TRUE(runner.Start({"/bin/sh", "-c", absl::StrCat("echo 2 >> ", log)}, "q2", results.Callback("q2")).ok());
  EXPECT_EQ(runner.running(), 1);
  EXPECT_EQ(runner.queued(), 2u);
  absl::Status refused = runner.Start({"/bin/true"}, "q3", results.Callback("q3"));
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_FALSE(runner.WaitIdle(absl::Milliseconds(50)));  // the blocker holds everything

  std::ofstream(release).put('x');
  ASSERT_TRUE(runner.WaitIdle(kPatience));
  EXPECT_EQ(ReadFile(log), "1\n2\n");
  EXPECT_EQ(results.Get().size(), 3u);
  EXPECT_FALSE(results.Find("q3").has_value());
}

TEST(ProcessRunnerTest, QueuedCommandThatCannotExecuteReportsThroughDone) {
  testing::TempDir dir;
  ProcessRunnerOptions options;
  options.max_children = 1;
  ProcessRunner runner(options);
  Results results;
  const std::string release = dir.File("release");
  const std::string script = dir.File("vanishing");
  WriteExecutable(script, "#!/bin/sh\nexit 0\n");
  ASSERT_TRUE(runner.Start(Blocker(release), "blocker", results.Callback("blocker")).ok());
  ASSERT_TRUE(runner.Start({script}, "vanishing", results.Callback("vanishing")).ok());  // queued: found now
  ASSERT_EQ(unlink(script.c_str()), 0);                                                  // gone by its turn
  std::ofstream(release).put('x');
  ASSERT_TRUE(runner.WaitIdle(kPatience));
  std::optional<ProcessResult> r = results.Find("vanishing");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_THAT(r->output, HasSubstr("cannot execute"));
}

// Runs `sh -c SCRIPT` where SCRIPT leaves a grandchild (its pid in a file)
// and hangs; returns the result and the grandchild's pid. Retried a few
// times in case the time limit struck before the grandchild existed (a very
// loaded machine).
std::pair<ProcessResult, pid_t> RunHangingFamily(const std::string& script_template, testing::TempDir& dir) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    const std::string pid_file = dir.File(absl::StrCat("grandchild", attempt));
    ProcessRunnerOptions options;
    options.time_limit = absl::Milliseconds(200 * (attempt + 1));
    options.kill_grace = absl::Milliseconds(200);
    ProcessRunner runner(options);
    Results results;
    std::string script = script_template;
    script.replace(script.find("PIDFILE"), 7, pid_file);
    EXPECT_TRUE(runner.Start({"/bin/sh", "-c", script}, "hang", results.Callback("hang")).ok());
    EXPECT_TRUE(runner.WaitIdle(kPatience));
    std::optional<ProcessResult> r = results.Find("hang");
    if (!r.has_value()) return {};
    pid_t pid = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(pid_file)), &pid) && pid > 0) return {*r, pid};
  }
  ADD_FAILURE() << "the grandchild never started";
  return {};
}

TEST(ProcessRunnerTest, TimeLimitKillsTheWholeProcessGroup) {
  testing::TempDir dir;
  auto [result, grandchild] = RunHangingFamily("sleep 1000 & echo $! > PIDFILE; wait", dir);
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(result.timed_out);
  EXPECT_EQ(result.exit_code, -1);
  EXPECT_NE(result.signal, 0);
  EXPECT_TRUE(WaitUntilGone(grandchild)) << "grandchild " << grandchild << " survived";
}

TEST(ProcessRunnerTest, SigkillFollowsAnIgnoredSigterm) {
  testing::TempDir dir;
  // An ignored signal stays ignored across exec, so the sleep ignores
  // SIGTERM as well.
  auto [result, grandchild] = RunHangingFamily("trap '' TERM; sleep 1000 & echo $! > PIDFILE; wait", dir);
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(result.timed_out);
  EXPECT_EQ(result.signal, SIGKILL);
  EXPECT_TRUE(WaitUntilGone(grandchild)) << "grandchild " << grandchild << " survived";
}

TEST(ProcessRunnerTest, RunAndWaitHonoursTheTimeLimit) {
  ProcessRunnerOptions options;
  options.time_limit = absl::Milliseconds(200);
  ProcessRunner runner(options);
  absl::StatusOr<ProcessResult> r = runner.RunAndWait({"/bin/sleep", "1000"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->signal, SIGTERM);
}

TEST(ProcessRunnerTest, ChildSeesOnlyStdioWithStdinFromDevNull) {
  testing::TempDir dir;
  // Descriptors the daemon holds without close-on-exec: they must not reach
  // a child all the same.
  const std::string canary = dir.File("leak-canary");
  const int leaky_file = open(canary.c_str(), O_CREAT | O_RDWR, 0600);
  const int leaky_socket = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(leaky_file, 0);
  ASSERT_GE(leaky_socket, 0);

  ProcessRunner runner({});
  Results results;
  const std::string release = dir.File("release");
  // A sibling holding its own pipe while the lister runs.
  ASSERT_TRUE(runner.Start(Blocker(release), "sibling", results.Callback("sibling")).ok());
  // ls opens the directory it lists: that is the one descriptor beyond 0-2.
  ASSERT_TRUE(runner.Start({"/bin/ls", "-l", "/proc/self/fd/"}, "ls", results.Callback("ls")).ok());
  absl::StatusOr<ProcessResult> sync = runner.RunAndWait({"/bin/ls", "/proc/self/fd/"});
  std::ofstream(release).put('x');
  ASSERT_TRUE(runner.WaitIdle(kPatience));
  close(leaky_file);
  close(leaky_socket);

  ASSERT_TRUE(sync.ok()) << sync.status();
  EXPECT_EQ(sync->output, "0\n1\n2\n3\n");
  std::optional<ProcessResult> listed = results.Find("ls");
  ASSERT_TRUE(listed.has_value());
  EXPECT_THAT(listed->output, HasSubstr(" 0 -> /dev/null"));
  EXPECT_THAT(listed->output, Not(HasSubstr("leak-canary")));
  EXPECT_THAT(listed->output, Not(HasSubstr("socket:")));
  EXPECT_THAT(listed->output, Not(HasSubstr(" 4 -> ")));
  EXPECT_THAT(listed->output, Not(HasSubstr(" 5 -> ")));
}

TEST(ProcessRunnerTest, ChildGetsDefaultSignalsAndItsOwnProcessGroup) {
  // Ignore one signal process-wide and block another in this thread; the
  // runner spawns from the calling thread, so both would leak without care.
  struct sigaction ignore {}, previous {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGUSR1, &ignore, &previous), 0);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old_mask), 0);

  ProcessRunner runner({});
  absl::StatusOr<ProcessResult> status = runner.RunAndWait({"/bin/cat", "/proc/self/status"});
  absl::StatusOr<ProcessResult> stat = runner.RunAndWait({"/bin/cat", "/proc/self/stat"});
  Results results;
  ASSERT_TRUE(runner.Start({"/bin/cat", "/proc/self/status"}, "t", results.Callback("status")).ok());
  ASSERT_TRUE(runner.WaitIdle(kPatience));

  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGUSR1, &previous, nullptr);

  ASSERT_TRUE(status.ok());
  EXPECT_THAT(status->output, HasSubstr("SigBlk:\t0000000000000000\n"));
  EXPECT_THAT(status->output, HasSubstr("SigIgn:\t0000000000000000\n"));
  ASSERT_TRUE(results.Find("status").has_value());
  EXPECT_THAT(results.Find("status")->output, HasSubstr("SigBlk:\t0000000000000000\n"));
  EXPECT_THAT(results.Find("status")->output, HasSubstr("SigIgn:\t0000000000000000\n"));

  // /proc/self/stat: "pid (comm) state ppid pgrp ...": the child leads its group.
  ASSERT_TRUE(stat.ok());
  const size_t paren = stat->output.rfind(')');
  ASSERT_NE(paren, std::string::npos);
  std::vector<std::string> fields = absl::StrSplit(stat->output.substr(paren + 2), ' ');
  ASSERT_GE(fields.size(), 3u);
  EXPECT_EQ(fields[2], stat->output.substr(0, stat->output.find(' ')));
  EXPECT_NE(fields[2], absl::StrCat(getpgrp()));
}

TEST(ProcessRunnerTest, DestructorDropsTheQueueAndEndsRunningChildren) {
  testing::TempDir dir;
  Results results;
  {
    ProcessRunnerOptions options;
    options.max_children = 1;
    options.time_limit = absl::Milliseconds(200);
    options.kill_grace = absl::Milliseconds(200);
    ProcessRunner runner(options);
    ASSERT_TRUE(runner.Start({"/bin/sleep", "1000"}, "sleeper", results.Callback("sleeper")).ok());
    ASSERT_TRUE(runner.Start({"/bin/touch", dir.File("never")}, "queued", results.Callback("queued")).ok());
  }
  std::optional<ProcessResult> sleeper = results.Find("sleeper");
  ASSERT_TRUE(sleeper.has_value());
  EXPECT_TRUE(sleeper->timed_out);
  std::optional<ProcessResult> queued = results.Find("queued");
  ASSERT_TRUE(queued.has_value());
  EXPECT_EQ(queued->exit_code, -1);
  EXPECT_THAT(queued->output, HasSubstr("not started"));
  EXPECT_NE(access(dir.File("never").c_str(), F_OK), 0);
}

TEST(ProcessRunnerTest, DoneMayStartAnotherCommand) {
  ProcessRunner runner({});
  Results results;
  std::atomic<bool> chained{false};
  ASSERT_TRUE(runner
                  .Start({"/bin/true"}, "first",
                         [&](const ProcessResult&) {
                           chained = runner.Start({"/bin/echo", "second"}, "second", results.Callback("second")).ok();
                         })
                  .ok());
  const absl::Time deadline = absl::Now() + kPatience;
  while (!results.Find("second").has_value() && absl::Now() < deadline) runner.WaitIdle(absl::Milliseconds(10));
  EXPECT_TRUE(chained);
  ASSERT_TRUE(results.Find("second").has_value());
  EXPECT_EQ(results.Find("second")->output, "second\n");
}

}  // namespace
}  // namespace sesame
