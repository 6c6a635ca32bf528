// The real daemons under systemd's notify protocol (Type=notify,
// WatchdogSec=), with a datagram socket of the test standing in for
// systemd: READY=1 only once the daemon does its job (the agent captures on
// its interface, which appears only later; the controller's store and
// listener are up), WATCHDOG=1 while the main loop turns and none while the
// process is stopped (what makes systemd restart a hung daemon), STOPPING=1
// at SIGTERM. In a private network namespace.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace sesame {
namespace {

const std::string kAgent = SESAME_BINARY_DIR "/agent/sesame-agent";
const std::string kController = SESAME_BINARY_DIR "/controller/sesame-controller";
constexpr absl::Duration kPatience = absl::Seconds(60);

// systemd's side of the protocol: a datagram socket the daemon is pointed at.
class FakeSystemd {
 public:
  explicit FakeSystemd(std::string path) : path_(std::move(path)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path_.data(), path_.size());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  }
  ~FakeSystemd() { close(fd_); }

  // Starts argv with NOTIFY_SOCKET and WATCHDOG_USEC set (as systemd does).
  pid_t Spawn(const std::vector<std::string>& argv, const std::string& log, absl::Duration watchdog) {
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
    setenv("WATCHDOG_USEC", absl::StrCat(absl::ToInt64Microseconds(watchdog)).c_str(), 1);
    absl::StatusOr<pid_t> pid = testing::SpawnWithLog(argv, log, /*truncate_log=*/true);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    EXPECT_TRUE(pid.ok()) << pid.status();
    return pid.ok() ? *pid : -1;
  }

  // The next message within `limit`.
  std::optional<std::string> Receive(absl::Duration limit) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(limit))) <= 0) return std::nullopt;
    char buffer[4096];
    const ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    if (n < 0) return std::nullopt;
    std::string m(buffer, static_cast<size_t>(n));
    seen_.push_back(m);
    return m;
  }
  // Reads until a message containing `text`; false after kPatience.
  bool Await(const std::string& text) {
    const absl::Time deadline = absl::Now() + kPatience;
    while (absl::Now() < deadline) {
      std::optional<std::string> m = Receive(deadline - absl::Now());
      if (m.has_value() && absl::StrContains(*m, text)) return true;
    }
    return false;
  }
  // Messages arriving within `d` (and drops them).
  std::vector<std::string> During(absl::Duration d) {
    std::vector<std::string> got;
    const absl::Time end = absl::Now() + d;
    while (absl::Now() < end) {
      if (std::optional<std::string> m = Receive(end - absl::Now())) got.push_back(*m);
    }
    return got;
  }
  std::string Seen() const { return absl::StrJoin(seen_, " | "); }

 private:
  const std::string path_;
  int fd_ = -1;
  std::vector<std::string> seen_;
};

class SystemdNotifyTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGCONT);
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    (void)std::system("ip link del sdn0 2>/dev/null");
  }

  // A stopped process sends nothing (systemd would kill it after
  // WatchdogSec); continued, its loop pings again.
  void ExpectWatchdogFollowsTheLoop(FakeSystemd& systemd, absl::Duration silence) {
    ASSERT_TRUE(systemd.Await("WATCHDOG=1")) << systemd.Seen();
    ASSERT_TRUE(systemd.Await("WATCHDOG=1")) << systemd.Seen();
    ASSERT_EQ(kill(pid_, SIGSTOP), 0);
    systemd.During(absl::Milliseconds(300));  // sent before the stop took
    const std::vector<std::string> while_stopped = systemd.During(silence);
    EXPECT_TRUE(while_stopped.empty()) << absl::StrJoin(while_stopped, " | ");
    ASSERT_EQ(kill(pid_, SIGCONT), 0);
    EXPECT_TRUE(systemd.Await("WATCHDOG=1")) << systemd.Seen();
  }

  void ExpectCleanStop(FakeSystemd& systemd, const std::string& log) {
    ASSERT_EQ(kill(pid_, SIGTERM), 0);
    EXPECT_TRUE(systemd.Await("STOPPING=1")) << systemd.Seen();
    int status = 0;
    ASSERT_EQ(waitpid(pid_, &status, 0), pid_);
    pid_ = -1;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFileToString(log).value_or("");
  }

  testing::TempDir dir_;
  pid_t pid_ = -1;
};

TEST_F(SystemdNotifyTest, TheAgentIsReadyOnlyOnceItCaptures) {
  ASSERT_EQ(access(kAgent.c_str(), X_OK), 0) << kAgent << " is not built";
  ASSERT_TRUE(WriteFileAtomically(dir_.File("agent.conf"), "[ssh]\n  sequence = 7000,8000\n  command = /bin/true\n")
                  .ok());
  FakeSystemd systemd(dir_.File("notify"));
  const std::string log = dir_.File("agent.log");
  pid_ = systemd.Spawn({kAgent, "-c", dir_.File("agent.conf"), "--state-dir", dir_.File("state"), "-i", "sdn0"}, log,
                       absl::Milliseconds(600));
  ASSERT_GT(pid_, 0);
  // sdn0 does not exist yet: the agent runs, pings, and says what it waits for.
  ASSERT_TRUE(systemd.Await("STATUS=waiting for the capture on sdn0"))
      << systemd.Seen() << "\n" << ReadFileToString(log).value_or("");
  EXPECT_FALSE(absl::StrContains(systemd.Seen(), "READY=1"));
  ASSERT_EQ(std::system("ip link add sdn0 type veth peer name sdn1 && ip link set sdn0 up && ip link set sdn1 up"),
            0);
  ASSERT_TRUE(systemd.Await("READY=1")) << systemd.Seen() << "\n" << ReadFileToString(log).value_or("");
  EXPECT_TRUE(absl::StrContains(systemd.Seen(), "READY=1\nSTATUS=capturing on sdn0, 1 door(s)")) << systemd.Seen();
  ExpectWatchdogFollowsTheLoop(systemd, absl::Milliseconds(1500));
  ExpectCleanStop(systemd, log);
}

TEST_F(SystemdNotifyTest, TheControllerIsReadyWithItsStoreAndListener) {
  ASSERT_EQ(access(kController.c_str(), X_OK), 0) << kController << " is not built";
  const std::string pki = dir_.File("pki");
  ASSERT_TRUE(MakeDirectories(pki, 0700).ok());
  ASSERT_TRUE(testing::MakeTestPki(pki, {{"ctl", "controller", {"localhost"}, {"127.0.0.1"}}}).ok());
  const std::string conf = absl::StrCat(
      "[controller]\nListen = 127.0.0.1:0\nStateDir = ", dir_.File("state"), "\n[tls]\nCA_Cert = ", pki,
      "/ca.crt\nCert = ", pki, "/ctl.crt\nKey = ", pki,
      "/ctl.key\n[door ssh]\nSequence_Length = 3\nPort_Range = 20000-30000\nGrant_Ports = 22\n");
  ASSERT_TRUE(WriteFileAtomically(dir_.File("controller.conf"), conf, 0600).ok());
  FakeSystemd systemd(dir_.File("notify"));
  const std::string log = dir_.File("controller.log");
  pid_ = systemd.Spawn({kController, "--config", dir_.File("controller.conf")}, log, absl::Seconds(1));
  ASSERT_GT(pid_, 0);
  ASSERT_TRUE(systemd.Await("READY=1")) << systemd.Seen() << "\n" << ReadFileToString(log).value_or("");
  EXPECT_TRUE(absl::StrContains(systemd.Seen(), "; SERVING")) << systemd.Seen();
  // Ready means listening: the log says so before.
  EXPECT_TRUE(absl::StrContains(ReadFileToString(log).value_or(""), "listening on 127.0.0.1:0"));
  ExpectWatchdogFollowsTheLoop(systemd, absl::Milliseconds(2500));
  ExpectCleanStop(systemd, log);
}

}  // namespace
}  // namespace sesame
