// The real sesame-agent binary in managed mode, in a private network
// namespace: it dials a fake controller on loopback over mutual TLS,
// captures knocks on `lo`, reports them, applies the controller's grant
// through the hosts_allow backend, closes it on revocation, audits a
// standalone door beside the managed one, and sends its counters.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/agent/managed/managed_test_support.h"
#include "tests/support/child_process.h"
#include "tests/support/eventually.h"
#include "tests/support/namespace_sandbox.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using namespace managed_testing;  // NOLINT: test support
using testing::Eventually;

const std::string kAgent = SESAME_BINARY_DIR "/agent/sesame-agent";

class ManagedDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kAgent.c_str(), X_OK), 0) << kAgent << " is not built";
    pki_ = MakePki(pki_dir_.path());
    server_.Start();
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  void StartAgent(const std::string& config) {
    ASSERT_TRUE(WriteFileAtomically(dir_.File("agent.conf"), config).ok());
    const std::string log = dir_.File("agent.log");
    std::vector<std::string> args = {kAgent, "-c", dir_.File("agent.conf"), "--state-dir", dir_.File("state"),
                                     "-i", "lo"};
    absl::StatusOr<pid_t> pid = testing::SpawnWithLog(args, log, /*truncate_log=*/true);
    ASSERT_TRUE(pid.ok()) << pid.status();
    pid_ = *pid;
    ASSERT_TRUE(Eventually([&] { return absl::StrContains(Log(), "sesame-agent started") || Exited(); })) << Log();
    ASSERT_FALSE(Exited()) << Log();
  }
  bool Exited() {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }
  std::string Config(const std::string& more) const {
    return absl::StrCat("[options]\n"
                          "  Interface = lo\n"
                          "  Controller = 127.0.0.1:", server_.port(), "\n",
                          "  CaCert = ", pki_.Path("ca.crt"), "\n",
                          "  Cert = ", pki_.Path("bastion1.crt"), "\n",
                          "  Key = ", pki_.Path("bastion1.key"), "\n",
                          "  AgentName = bastion1\n"
                          "  BackoffMin = 50ms\n"
                          "  BackoffMax = 500ms\n"
                          "[ssh]\n"
                          "  Managed = yes\n"
                          "  Backend = hosts_allow\n"
                          "  HostsAllow_Table = ", dir_.File("hosts.allow"), "\n",
                          "  HostsAllow_File = ", dir_.File("allowed"), "\n",
                          "[local]\n"
                          "  Sequence = 47101:udp,47102:udp\n"
                          "  Backend = hosts_allow\n"
                          "  Cmd_Timeout = 60\n"
                          "  HostsAllow_Table = ", dir_.File("hosts.allow.local"), "\n",
                          "  HostsAllow_File = ", dir_.File("allowed.local"), "\n", more);
  }
  std::string Log() const { return ReadFileToString(dir_.File("agent.log")).value_or(""); }
  std::string File(const std::string& name) const { return ReadFileToString(dir_.File(name)).value_or(""); }

  testing::TempDir pki_dir_;
  testing::TempDir dir_;
  Pki pki_;
  FakeController controller_;
  TestServer server_{controller_, pki_};
  pid_t pid_ = -1;
};

TEST_F(ManagedDaemonTest, KnockReportGrantRevokeAndAStandaloneDoorBeside) {
  controller_.set_snapshot(SnapshotAt(10, {Seq(1, {47001, 47002, 47003}, false, v1::PROTOCOL_UDP)}));
  StartAgent(Config(""));
  ASSERT_TRUE(controller_.WaitFor(HasAck(10))) << Log();

  // A managed knock: reported, won, opened by the backend, result reported.
  for (uint16_t port : {47001, 47002, 47003}) SendUdp(port);
  ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kGrantResult, 1))) << Log();
  auto r = controller_.received();
  const auto knocks = Of(r, v1::AgentMessage::kKnockMatched);
  ASSERT_EQ(knocks.size(), 1u);
  EXPECT_EQ(knocks[0].knock_matched().sequence_id(), 1u);
  EXPECT_EQ(knocks[0].knock_matched().source(), "127.0.0.1");
  EXPECT_TRUE(Of(r, v1::AgentMessage::kGrantResult)[0].grant_result().applied()) << Log();
  EXPECT_TRUE(absl::StrContains(File("allowed"), "127.0.0.1")) << File("allowed");
  EXPECT_TRUE(absl::StrContains(File("hosts.allow"), dir_.File("allowed"))) << File("hosts.allow");

  // The standalone door beside it: opened here, audited there.
  SendUdp(47101);
  SendUdp(47102);
  ASSERT_TRUE(controller_.WaitFor([](const auto& r) {
    for (const auto& m : r) {
      if (m.has_audit() && m.audit().what() == "grant.applied") return true;
    }
    return false;
  })) << Log();
  EXPECT_TRUE(absl::StrContains(File("allowed.local"), "127.0.0.1"));
  r = controller_.received();
  const auto audits = Of(r, v1::AgentMessage::kAudit);
  ASSERT_GE(audits.size(), 2u);
  EXPECT_EQ(audits[0].audit().what(), "knock.opened");
  EXPECT_EQ(audits[0].audit().details().at("door"), "local");
  EXPECT_EQ(audits[0].audit().details().at("standalone"), "true");

  // Revoked with its sessions killed: closed now, then what was ended is
  // audited (nothing was connected; session_killer_netns_test ends real
  // connections).
  v1::Delta revoke;
  revoke.set_revision(11);
  revoke.mutable_revoke()->set_grant_id(1001);
  revoke.mutable_revoke()->set_kill_sessions(true);
  ASSERT_TRUE(controller_.SendDelta(revoke));
  ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kRevokeApplied, 1))) << Log();
  EXPECT_FALSE(absl::StrContains(File("allowed"), "127.0.0.1")) << File("allowed");
  EXPECT_TRUE(absl::StrContains(File("allowed.local"), "127.0.0.1"));
  ASSERT_TRUE(controller_.WaitFor([](const auto& r) {
    for (const auto& m : r) {
      if (m.has_audit() && m.audit().what() == "grant.sessions_killed") return true;
    }
    return false;
  })) << Log();
  for (const auto& m : Of(controller_.received(), v1::AgentMessage::kAudit)) {
    if (m.audit().what() != "grant.sessions_killed") continue;
    EXPECT_EQ(m.audit().details().at("address"), "127.0.0.1");
    EXPECT_EQ(m.audit().details().at("sockets"), "0");
    EXPECT_FALSE(m.audit().details().contains("error")) << m.audit().details().at("error");
  }

  // A reload adds a standalone door; managed doors keep working through it.
  ASSERT_TRUE(WriteFileAtomically(dir_.File("agent.conf"),
                                  Config(absl::StrCat("[local2]\n  Sequence = 47201:udp,47202:udp\n"
                                                      "  Backend = hosts_allow\n  HostsAllow_Table = ",
                                                      dir_.File("hosts.allow.local2"), "\n  HostsAllow_File = ",
                                                      dir_.File("allowed.local2"), "\n")))
                  .ok());
  kill(pid_, SIGHUP);
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(Log(), "reloaded: "); })) << Log();
  SendUdp(47201);
  SendUdp(47202);
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(File("allowed.local2"), "127.0.0.1"); })) << Log();
  v1::Delta add;
  add.set_revision(12);
  *add.mutable_sequence_added() = Seq(2, {47011, 47012, 47013}, false, v1::PROTOCOL_UDP);
  ASSERT_TRUE(controller_.SendDelta(add));
  ASSERT_TRUE(controller_.WaitFor(HasAck(12))) << Log();
  for (uint16_t port : {47011, 47012, 47013}) SendUdp(port);
  ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kGrantResult, 2))) << Log();
  EXPECT_TRUE(absl::StrContains(File("allowed"), "127.0.0.1")) << File("allowed");

  // SIGUSR1 logs the managed side's statistics too.
  kill(pid_, SIGUSR1);
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(Log(), "stats managed: online=yes revision=12"); })) << Log();

  // Heartbeats carry the daemon's counters.
  ASSERT_TRUE(controller_.WaitFor([](const auto& r) {
    for (const auto& m : r) {
      if (!m.has_heartbeat()) continue;
      for (const auto& metric : m.heartbeat().metrics()) {
        if (metric.name() == "sesame_agent_sequences_matched_total" && metric.value() >= 4) return true;
      }
    }
    return false;
  })) << Log();

  kill(pid_, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << Log();
  if (getenv("SESAME_SHOW_AGENT_LOG") != nullptr) std::fprintf(stderr, "%s", Log().c_str());
}

TEST_F(ManagedDaemonTest, BadCertificatesStopTheStartWithAClearMessage) {
  ASSERT_TRUE(WriteFileAtomically(dir_.File("agent.conf"),
                                  absl::StrCat("[options]\nController = 127.0.0.1:", server_.port(),
                                               "\nCaCert = ", pki_.Path("ca.crt"), "\nCert = ", pki_.Path("bastion1.crt"),
                                               "\nKey = ", pki_.Path("bastion1.key"), "\nAgentName = bastion7\n"))
                  .ok());
  const auto result = sesame::testing::RunCommand(
      {kAgent, "-c", dir_.File("agent.conf"), "--state-dir", dir_.File("state"), "-i", "lo"});
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_TRUE(absl::StrContains(result.output, "AgentName is \"bastion7\" but the certificate")) << result.output;
}

}  // namespace
}  // namespace sesame
