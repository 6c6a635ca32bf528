// The test support's real etcd cluster (tests/support/etcd_cluster.h): it
// survives its leader, a member rejoins on its data, and nothing of it is
// left once it is destroyed. Here because tests/support/ has no tests of its
// own and the etcd store's tests are its users.
#include "tests/support/etcd_cluster.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/support/eventually.h"

namespace sesame::testing {
namespace {

std::string Cmdline(const std::string& proc_entry) {
  std::ifstream in(proc_entry + "/cmdline", std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Processes whose command line names `dir` (every member's does: --data-dir).
std::vector<pid_t> ProcessesUsing(const std::string& dir) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    if (absl::StrContains(Cmdline(entry.path().string()), dir)) out.push_back(pid);
  }
  return out;
}

// A value read back through the running members ("" when the read fails).
std::string Get(const EtcdCluster& cluster, const std::string& key, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"get", key, "--print-value-only"};
  args.insert(args.end(), extra.begin(), extra.end());
  absl::StatusOr<std::string> out = cluster.Etcdctl(args);
  return out.ok() ? std::string(absl::StripTrailingAsciiWhitespace(*out)) : "";
}

TEST(EtcdClusterTest, ThreeMembersOutliveTheirLeaderAndLeaveNothingBehind) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> started = EtcdCluster::Start(3);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<EtcdCluster> cluster = *std::move(started);
  ASSERT_EQ(cluster->size(), 3);
  ASSERT_EQ(cluster->endpoints().size(), 3u);
  EXPECT_TRUE(absl::StartsWith(cluster->endpoints()[0], "https://127.0.0.1:"));
  EXPECT_TRUE(std::filesystem::exists(cluster->ca_cert()));
  EXPECT_TRUE(std::filesystem::exists(cluster->client_cert()));
  EXPECT_TRUE(std::filesystem::exists(cluster->client_key()));
  const std::string dir = cluster->dir();
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) pids.push_back(cluster->pid(i));

  absl::StatusOr<std::string> put = cluster->Etcdctl({"put", "/t/a", "1"});
  ASSERT_TRUE(put.ok()) << put.status();
  const int leader = cluster->LeaderIndex();
  ASSERT_GE(leader, 0);

  cluster->Kill(leader);
  EXPECT_FALSE(cluster->running(leader));
  EXPECT_EQ(cluster->pid(leader), -1);
  EXPECT_TRUE(kill(pids[leader], 0) != 0 && errno == ESRCH) << "the killed leader is reaped";
  cluster->Kill(leader);  // no-ops: already dead, and LeaderIndex()'s "none"
  cluster->Kill(-1);

  // The two survivors elect one of them; what was written stays, writes go on.
  ASSERT_TRUE(Eventually([&] {
    const int l = cluster->LeaderIndex();
    return l >= 0 && l != leader;
  }));
  EXPECT_TRUE(Eventually([&] { return Get(*cluster, "/t/a") == "1"; }));
  EXPECT_TRUE(Eventually([&] { return cluster->Etcdctl({"put", "/t/b", "2"}).ok(); }));

  // The old leader rejoins on its data and catches up: a serializable read
  // through it alone answers from its own copy.
  absl::Status restarted = cluster->Restart(leader);
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_TRUE(cluster->running(leader));
  EXPECT_FALSE(cluster->Restart(leader).ok()) << "a running member is not started twice";
  pids.push_back(cluster->pid(leader));
  EXPECT_TRUE(Eventually([&] {
    return Get(*cluster, "/t/b", {"--endpoints=" + cluster->endpoint(leader), "--consistency=s"}) == "2";
  }));
  EXPECT_GE(cluster->LeaderIndex(), 0);

  ASSERT_FALSE(ProcessesUsing(dir).empty()) << "the check below would see the members";
  cluster.reset();
  EXPECT_TRUE(ProcessesUsing(dir).empty());
  for (pid_t pid : pids) {
    // Reaped, so gone (unless the pid was reused, which the check above covers).
    if (kill(pid, 0) == 0) {
      EXPECT_FALSE(absl::StrContains(Cmdline("/proc/" + std::to_string(pid)), dir));
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(EtcdClusterTest, AStoppedSingleMemberComesBackWithItsData) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> started = EtcdCluster::Start(1);
  ASSERT_TRUE(started.ok()) << started.status();
  EtcdCluster& cluster = **started;
  ASSERT_TRUE(cluster.Etcdctl({"put", "/t/kept", "yes"}).ok());
  EXPECT_EQ(cluster.LeaderIndex(), 0);

  cluster.Stop(0);
  EXPECT_FALSE(cluster.running(0));
  EXPECT_EQ(cluster.LeaderIndex(), -1);
  EXPECT_FALSE(cluster.Etcdctl({"get", "/t/kept"}).ok());

  absl::Status restarted = cluster.Restart(0);
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_EQ(Get(cluster, "/t/kept"), "yes");
}

TEST(EtcdClusterTest, AMemberThatCannotStartFailsWithItsLog) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> started = EtcdCluster::Start(1);
  ASSERT_TRUE(started.ok()) << started.status();
  EtcdCluster& cluster = **started;
  cluster.Kill(0);

  // Someone else now listens on the member's client port.
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  absl::Cleanup close_fd = [fd] { close(fd); };
  const int one = 1;  // the port may be in TIME_WAIT from the member's connections
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(cluster.endpoint(0).substr(cluster.endpoint(0).rfind(':') + 1))));
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(fd, 1), 0);

  // Not a 30 s wait for health: the exit is seen, with etcd's own words.
  absl::Status restarted = cluster.Restart(0);
  EXPECT_TRUE(absl::IsUnavailable(restarted)) << restarted;
  EXPECT_TRUE(absl::StrContains(restarted.message(), "address already in use")) << restarted;
  EXPECT_FALSE(cluster.running(0));
}

}  // namespace
}  // namespace sesame::testing
