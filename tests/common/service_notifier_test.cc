// ServiceNotifier speaks sd_notify's protocol to a datagram socket named by
// $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace), takes the
// watchdog interval from $WATCHDOG_USEC when $WATCHDOG_PID is unset or ours,
// and removes the three variables from the environment.
#include "common/service_notifier.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

// A datagram socket bound at `name` (a path, or "@name").
class Listener {
 public:
  explicit Listener(const std::string& name) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, name.data(), name.size());
    if (name[0] == '@') a.sun_path[0] = '\0';
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), offsetof(sockaddr_un, sun_path) + name.size()), 0)
        << std::strerror(errno);
  }
  ~Listener() { close(fd_); }

  // The next datagram, if one is waiting (they are sent before this reads).
  std::optional<std::string> Next() {
    char buffer[4096];
    const ssize_t n = recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    return std::string(buffer, static_cast<size_t>(n));
  }

 private:
  int fd_ = -1;
};

class ServiceNotifierTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) unsetenv(name);
  }
  testing::TempDir dir_;
};

TEST_F(ServiceNotifierTest, ReadyStatusWatchdogAndStoppingReachTheSocket) {
  const std::string path = dir_.File("notify");
  Listener listener(path);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  setenv("WATCHDOG_USEC", "2000000", 1);
  ServiceNotifier n = ServiceNotifier::FromEnvironment();
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);  // commands the daemon runs do not inherit it
  EXPECT_EQ(std::getenv("WATCHDOG_USEC"), nullptr);
  ASSERT_TRUE(n.enabled());
  EXPECT_EQ(n.watchdog_interval(), absl::Seconds(2));

  n.Ready("capturing on eth0");
  EXPECT_EQ(listener.Next(), "READY=1\nSTATUS=capturing on eth0");
  n.Ready("again");  // READY=1 once; later calls only say the status
  EXPECT_EQ(listener.Next(), "STATUS=again");

  const absl::Time t = absl::FromUnixSeconds(1000);
  n.PingWatchdog(t);
  EXPECT_EQ(listener.Next(), "WATCHDOG=1");
  n.PingWatchdog(t + absl::Milliseconds(999));  // within half the interval: nothing
  EXPECT_EQ(listener.Next(), std::nullopt);
  n.PingWatchdog(t + absl::Seconds(1));
  EXPECT_EQ(listener.Next(), "WATCHDOG=1");

  n.Stopping();
  EXPECT_EQ(listener.Next(), "STOPPING=1");
}

TEST_F(ServiceNotifierTest, AnAbstractSocketIsReached) {
  const std::string name = absl::StrCat("@sesame-notify-test-", getpid());
  Listener listener(name);
  setenv("NOTIFY_SOCKET", name.c_str(), 1);
  ServiceNotifier n = ServiceNotifier::FromEnvironment();
  n.Ready("up");
  EXPECT_EQ(listener.Next(), "READY=1\nSTATUS=up");
  EXPECT_EQ(n.watchdog_interval(), absl::ZeroDuration());
  n.PingWatchdog(absl::Now());  // no watchdog asked for: nothing sent
  EXPECT_EQ(listener.Next(), std::nullopt);
}

TEST_F(ServiceNotifierTest, AWatchdogOfAnotherProcessIsNotOurs) {
  const std::string path = dir_.File("notify");
  Listener listener(path);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  setenv("WATCHDOG_USEC", "1000000", 1);
  setenv("WATCHDOG_PID", absl::StrCat(getpid() + 1).c_str(), 1);
  ServiceNotifier n = ServiceNotifier::FromEnvironment();
  EXPECT_EQ(n.watchdog_interval(), absl::ZeroDuration());
  EXPECT_EQ(std::getenv("WATCHDOG_PID"), nullptr);
}

TEST_F(ServiceNotifierTest, OutsideSystemdNothingIsSent) {
  ServiceNotifier n = ServiceNotifier::FromEnvironment();
  EXPECT_FALSE(n.enabled());
  n.Ready("up");  // no socket: a no-op, no error
  n.PingWatchdog(absl::Now());
  setenv("NOTIFY_SOCKET", "relative/path", 1);  // neither a path nor abstract: ignored
  EXPECT_FALSE(ServiceNotifier::FromEnvironment().enabled());
}

TEST_F(ServiceNotifierTest, AMissingSocketIsNotFatal) {
  setenv("NOTIFY_SOCKET", dir_.File("gone").c_str(), 1);
  ServiceNotifier n = ServiceNotifier::FromEnvironment();
  n.Ready("up");  // logged once, the daemon goes on
  n.Stopping();
  SUCCEED();
}

}  // namespace
}  // namespace sesame
