// The standalone agent end to end: the real sesame-agent binary guarding a
// bastion namespace, Debian's `knock` client in a client namespace, a
// default-deny nftables ruleset in front of a listening TCP service.
#include <signal.h>
#include <sys/stat.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/frames.h"
#include "tests/support/knockd_conf_samples.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_network.h"

namespace sesame {
namespace {

using testing::TestNetwork;
using testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kAgent = SESAME_BINARY_DIR "/agent/sesame-agent";

// The administrator's own default-deny input chain; it lets through what
// sesame's chain marked as granted (see nftables_backend.h).
constexpr char kDefaultDeny[] = R"(
table inet host {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iif lo accept
    meta l4proto { icmp, ipv6-icmp } accept
    meta mark & 0x5e5a0000 == 0x5e5a0000 accept
    tcp dport 2222 ip saddr @allowed accept
  }
  set allowed { type ipv4_addr; flags timeout; }
}
)";

class AgentIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(net_.status().ok()) << net_.status();
    ASSERT_EQ(access(kAgent.c_str(), X_OK), 0) << kAgent;
    ASSERT_TRUE(WriteFileAtomically(dir_.File("deny.nft"), kDefaultDeny).ok());
    const auto r = net_.Exec(net_.gateway(), {"nft", "-f", dir_.File("deny.nft")});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    net_.StartListener(22, dir_.File("listener22.log"));
    net_.StartListener(2222, dir_.File("listener2222.log"));
    // The listener is up when the gateway can reach itself.
    ASSERT_TRUE(WaitFor([&] {
      return net_.Exec(net_.gateway(), {"python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 22), 2)"})
                 .exit_code == 0;
    }));
  }

  void WriteConfig(const std::string& text) { ASSERT_TRUE(WriteFileAtomically(dir_.File("knockd.conf"), text).ok()); }

  // private_etc: the agent (and every command it runs) sees that directory
  // as /etc, in a mount namespace of its own.
  pid_t StartAgent(std::vector<std::string> extra = {}, const std::string& private_etc = "") {
    std::vector<std::string> argv = {kAgent, "-i", TestNetwork::kGatewayIf, "-c", dir_.File("knockd.conf"),
                                     "--state-dir", dir_.File("state"), "-p", dir_.File("agent.pid")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (!private_etc.empty()) {
      argv.insert(argv.begin(), {"unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 "mount --bind \"$0\" /etc && exec \"$@\"", private_etc});
    }
    const size_t starts = Count("sesame-agent started");
    const pid_t pid = net_.Spawn(net_.gateway(), argv, dir_.File("agent.log"));
    EXPECT_TRUE(WaitFor([&] { return Count("sesame-agent started") > starts || !net_.Alive(pid); }));
    EXPECT_TRUE(net_.Alive(pid)) << Log();
    return pid;
  }

  std::string Log() const {
    auto text = ReadFileToString(dir_.File("agent.log"));
    return text.ok() ? *text : "";
  }
  size_t Count(const std::string& needle) const {
    const std::string log = Log();
    size_t n = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  }

  void Knock(std::vector<std::string> args) {
    args.insert(args.begin(), "knock");
    const auto r = net_.Exec(net_.client(), args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  // Declared first, destroyed last: the daemons the network runs (writing
  // into dir_) are stopped before dir_ is removed.
  testing::TempDir dir_;
  TestNetwork net_{"sxa"};
};

TEST_F(AgentIntegrationTest, NftablesDoorOpensForTheKnockAndClosesAfterCmdTimeout) {
  WriteConfig(R"(
[options]
  Interface = eth0
[openSSH]
  sequence    = 7000,8000:udp,9000
  seq_timeout = 10
  backend     = nftables
  ports       = 22
  cmd_timeout = 4
)");
  StartAgent();
  EXPECT_FALSE(net_.CanConnect(TestNetwork::kGatewayV4, 22)) << "the door must be shut before the knock";
  Knock({TestNetwork::kGatewayV4, "7000", "8000:udp", "9000"});
  EXPECT_TRUE(WaitFor([&] { return net_.CanConnect(TestNetwork::kGatewayV4, 22); })) << Log();
  EXPECT_THAT(Log(), HasSubstr("198.18.0.2: openSSH: OPEN SESAME"));
  // IPv6 is another source: still shut for it.
  EXPECT_FALSE(net_.CanConnect(TestNetwork::kGatewayV6, 22));
  EXPECT_TRUE(WaitFor([&] { return !net_.CanConnect(TestNetwork::kGatewayV4, 22); })) << "closed after cmd_timeout";

  Knock({"-6", TestNetwork::kGatewayV6, "7000", "8000:udp", "9000"});
  EXPECT_TRUE(WaitFor([&] { return net_.CanConnect(TestNetwork::kGatewayV6, 22); })) << Log();
}

TEST_F(AgentIntegrationTest, KnockdStyleCommandsRunWithoutAShell) {
  // knockd's classic pair, commands adding to the administrator's own set.
  WriteConfig(R"(
[openUDP]
  sequence      = 7100:udp,7200:udp,7300:udp
  start_command = /usr/sbin/nft add element inet host allowed { %IP% }
  stop_command  = /usr/sbin/nft delete element inet host allowed { %IP% }
  cmd_timeout   = 3
)");
  StartAgent();
  EXPECT_FALSE(net_.CanConnect(TestNetwork::kGatewayV4, 2222));
  Knock({"-u", TestNetwork::kGatewayV4, "7100", "7200", "7300"});
  EXPECT_TRUE(WaitFor([&] { return net_.CanConnect(TestNetwork::kGatewayV4, 2222); })) << Log();
  EXPECT_TRUE(WaitFor([&] { return !net_.CanConnect(TestNetwork::kGatewayV4, 2222); })) << Log();
}

// TCP Wrappers' verdict for `address`, from Debian's tcpdmatch reading the
// hosts.allow / hosts.deny in `dir` (-d: no /etc involved).
std::string TcpdVerdict(const std::string& dir, const std::string& address) {
  const auto r = testing::RunCommand({"sh", "-c", "cd \"$0\" && tcpdmatch -d sshd \"$1\"", dir, address});
  if (absl::StrContains(r.output, "access:   granted")) return "granted";
  if (absl::StrContains(r.output, "access:   denied")) return "denied";
  return "tcpdmatch said: " + r.output;
}

using testing::kDebianKnockdConf;
using testing::kTcpWrappersKnockdConf;

TEST_F(AgentIntegrationTest, TheTcpWrappersKnockdConfRunsUnchanged) {
  ASSERT_TRUE(testing::HaveTool("tcpdmatch"));
  WriteConfig(kTcpWrappersKnockdConf);
  const auto check = testing::RunCommand({kAgent, "--check-config", dir_.File("knockd.conf")});
  ASSERT_EQ(check.exit_code, 0) << check.output;
  EXPECT_THAT(check.output, HasSubstr("knockd.conf:1: notice: door [openSSH]: Start_Command runs through /bin/sh -c"));
  EXPECT_THAT(check.output, HasSubstr("Backend = hosts_allow"));
  EXPECT_THAT(check.output, Not(HasSubstr("closeSSH"))) << "the Perl line needs no shell";
  // The agent and its commands see a copy of /etc: this machine's is never
  // touched. TCP Wrappers there deny sshd to everyone not allowed.
  const std::string etc = dir_.File("etc");
  ASSERT_EQ(testing::RunCommand({"cp", "-a", "/etc", etc}).exit_code, 0);
  ASSERT_TRUE(WriteFileAtomically(etc + "/hosts.allow", "# the administrator's own\nsshd: 192.0.2.77\n").ok());
  ASSERT_TRUE(WriteFileAtomically(etc + "/hosts.deny", "sshd: ALL\n").ok());
  StartAgent({}, etc);
  EXPECT_EQ(TcpdVerdict(etc, TestNetwork::kClientV4), "denied");

  Knock({TestNetwork::kGatewayV4, "7000", "8000", "9000"});
  EXPECT_TRUE(WaitFor([&] { return TcpdVerdict(etc, TestNetwork::kClientV4) == "granted"; })) << Log();
  EXPECT_EQ(*ReadFileToString(etc + "/hosts.allow"),
            absl::StrCat("# the administrator's own\nsshd: 192.0.2.77\nSSHD: ", TestNetwork::kClientV4, "\n"));
  EXPECT_EQ(TcpdVerdict(etc, "198.18.0.99"), "denied") << "only the knocker";

  Knock({TestNetwork::kGatewayV4, "9000", "8000", "7000"});
  EXPECT_TRUE(WaitFor([&] { return TcpdVerdict(etc, TestNetwork::kClientV4) == "denied"; })) << Log();
  EXPECT_EQ(*ReadFileToString(etc + "/hosts.allow"), "# the administrator's own\nsshd: 192.0.2.77\n");
  EXPECT_TRUE(ReadFileToString(etc + "/hosts.allow.bak").ok()) << "perl -i.bak kept its backup";
}

TEST_F(AgentIntegrationTest, DebiansDefaultKnockdConfRunsUnchanged) {
  // knockd's setting: iptables drops what no rule accepts; the doors' rules
  // accept the knocker. (No nftables default deny of the fixture here.)
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {"nft", "delete", "table", "inet", "host"},
           {"iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
           {"iptables", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT"},
           {"iptables", "-P", "INPUT", "DROP"}}) {
    const auto r = net_.Exec(net_.gateway(), argv);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  WriteConfig(kDebianKnockdConf);
  const auto check = testing::RunCommand({kAgent, "--check-config", dir_.File("knockd.conf")});
  ASSERT_EQ(check.exit_code, 0) << check.output;
  EXPECT_THAT(check.output, Not(HasSubstr("notice"))) << "no shell needed";
  StartAgent();
  EXPECT_FALSE(net_.CanConnect(TestNetwork::kGatewayV4, 22));
  Knock({TestNetwork::kGatewayV4, "7000", "8000", "9000"});
  EXPECT_TRUE(WaitFor([&] { return net_.CanConnect(TestNetwork::kGatewayV4, 22); })) << Log();
  Knock({TestNetwork::kGatewayV4, "9000", "8000", "7000"});
  EXPECT_TRUE(WaitFor([&] { return !net_.CanConnect(TestNetwork::kGatewayV4, 22); })) << Log();
  const auto rules = net_.Exec(net_.gateway(), {"iptables", "-S", "INPUT"});
  EXPECT_THAT(rules.output, Not(HasSubstr("--dport 22"))) << rules.output;
}

TEST_F(AgentIntegrationTest, HostsAllowIncludeFileGrantsUntilCmdTimeout) {
  ASSERT_TRUE(testing::HaveTool("tcpdmatch"));
  const std::string tcpd = dir_.File("tcpd");
  ASSERT_EQ(mkdir(tcpd.c_str(), 0755), 0);
  ASSERT_TRUE(WriteFileAtomically(tcpd + "/hosts.allow", "# the administrator's own line stays\nsshd: 192.0.2.77\n").ok());
  ASSERT_TRUE(WriteFileAtomically(tcpd + "/hosts.deny", "ALL: ALL\n").ok());
  WriteConfig(absl::StrCat(R"(
[openSSH]
  sequence         = 7000,8000,9000
  backend          = hosts_allow
  hostsallow_table = )", tcpd, R"(/hosts.allow
  hostsallow_file  = )", tcpd, R"(/granted
  cmd_timeout      = 4
)"));
  EXPECT_EQ(TcpdVerdict(tcpd, TestNetwork::kClientV4), "denied");
  StartAgent();
  EXPECT_EQ(TcpdVerdict(tcpd, TestNetwork::kClientV4), "denied");
  Knock({TestNetwork::kGatewayV4, "7000", "8000", "9000"});
  EXPECT_TRUE(WaitFor([&] { return TcpdVerdict(tcpd, TestNetwork::kClientV4) == "granted"; })) << Log();
  EXPECT_EQ(TcpdVerdict(tcpd, "198.18.0.99"), "denied") << "only the knocker";
  EXPECT_TRUE(WaitFor([&] { return TcpdVerdict(tcpd, TestNetwork::kClientV4) == "denied"; })) << Log();
  // One include line was added, nothing else touched.
  EXPECT_EQ(*ReadFileToString(tcpd + "/hosts.allow"),
            absl::StrCat("# the administrator's own line stays\nsshd: 192.0.2.77\nsshd: ", tcpd, "/granted\n"));
}

TEST_F(AgentIntegrationTest, ReversedOrderDoesNotOpenAndStrayPortsAreIgnoredInCompatMode) {
  WriteConfig("[ssh]\nsequence = 7000,8000,9000\nbackend = nftables\ncmd_timeout = 30\n");
  StartAgent();
  Knock({TestNetwork::kGatewayV4, "9000", "8000", "7000"});
  Knock({TestNetwork::kGatewayV4, "7000", "8000", "8500", "9000"});  // compat: 8500 is no door port, ignored...
  // ...so that one opens, exactly as knockd would; the reversed one did not.
  EXPECT_TRUE(WaitFor([&] { return Count("OPEN SESAME") == 1; })) << Log();
}

TEST_F(AgentIntegrationTest, GrantsSurviveSigkillAndStillCloseOnTime) {
  WriteConfig(R"(
[openclose]
  sequence      = 7000,8000,9000
  start_command = /usr/sbin/nft add element inet host allowed { %IP% }
  stop_command  = /usr/sbin/nft delete element inet host allowed { %IP% }
  cmd_timeout   = 6
)");
  pid_t agent = StartAgent();
  Knock({TestNetwork::kGatewayV4, "7000", "8000", "9000"});
  ASSERT_TRUE(WaitFor([&] { return net_.CanConnect(TestNetwork::kGatewayV4, 2222); })) << Log();
  net_.Stop(agent, SIGKILL);
  StartAgent();
  EXPECT_THAT(Log(), HasSubstr("1 grant(s) carried over"));
  // The restarted agent runs the stop command when the time comes.
  EXPECT_TRUE(WaitFor([&] { return !net_.CanConnect(TestNetwork::kGatewayV4, 2222); })) << Log();
}

TEST_F(AgentIntegrationTest, ReloadRefusesABadConfigAndAppliesAGoodOne) {
  WriteConfig("[ssh]\nsequence = 7000,8000\nbackend = nftables\ncmd_timeout = 30\n");
  const pid_t agent = StartAgent();
  WriteConfig("[ssh]\nsequence = 7000,80000\n");  // port out of range
  kill(agent, SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return Count("reload refused") == 1; })) << Log();
  EXPECT_THAT(Log(), HasSubstr("knockd.conf:2:"));
  Knock({TestNetwork::kGatewayV4, "7000", "8000"});
  ASSERT_TRUE(WaitFor([&] { return Count("OPEN SESAME") == 1; })) << "the old config still runs\n" << Log();

  WriteConfig("[ssh]\nsequence = 7500,8500\nbackend = nftables\ncmd_timeout = 30\n");
  kill(agent, SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return Count("reloaded:") == 1; })) << Log();
  Knock({"-6", TestNetwork::kGatewayV6, "7000", "8000"});
  Knock({"-6", TestNetwork::kGatewayV6, "7500", "8500"});
  EXPECT_TRUE(WaitFor([&] { return Count("OPEN SESAME") == 2; })) << Log();
  EXPECT_THAT(Log(), HasSubstr("fd5e:5a3e::2: ssh: OPEN SESAME"));
}

TEST_F(AgentIntegrationTest, AnInterfaceThatGoesDownAndComesBackIsReopened) {
  WriteConfig("[ssh]\nsequence = 7000,8000\nbackend = nftables\ncmd_timeout = 30\n");
  const pid_t agent = StartAgent();
  ASSERT_EQ(net_.Exec(net_.gateway(), {"ip", "link", "set", TestNetwork::kGatewayIf, "down"}).exit_code, 0);
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_EQ(net_.Exec(net_.gateway(), {"ip", "link", "set", TestNetwork::kGatewayIf, "up"}).exit_code, 0);
  // Knock until it gets through: the link needs a moment to carry traffic.
  EXPECT_TRUE(WaitFor(
      [&] {
        net_.Exec(net_.client(), {"knock", TestNetwork::kGatewayV4, "7000", "8000"});
        return Count("OPEN SESAME") >= 1;
      },
      absl::Seconds(40)))
      << Log();
  EXPECT_TRUE(net_.Alive(agent));
}

TEST_F(AgentIntegrationTest, CheckConfigSaysWhereTheErrorIs) {
  WriteConfig("[options]\n  UseSyslog\n[ssh]\n  sequence = 7000,8000\n  command = /bin/true %IP%\n");
  auto ok = testing::RunCommand({kAgent, "--check-config", dir_.File("knockd.conf")});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  WriteConfig("[ssh]\n  sequence = 7000,8000\n  tcpflags = syn,bogus\n  command = /bin/true\n");
  auto bad = testing::RunCommand({kAgent, "--check-config", dir_.File("knockd.conf")});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr(dir_.File("knockd.conf") + ":3:"));
}

TEST_F(AgentIntegrationTest, PcapReplayReportsWhatOpenedAndClosedAndChangesNothing) {
  WriteConfig("[ssh]\nsequence = 7000,8000:udp\ncmd_timeout = 5\nbackend = nftables\n");
  std::vector<testing::CapturedFrame> frames;
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  auto add = [&](testing::FrameSpec spec, absl::Duration at) { frames.push_back({t0 + at, testing::BuildFrame(spec)}); };
  add(testing::TcpFrame("192.0.2.10", "192.0.2.1", 7000), absl::Seconds(0));
  add(testing::UdpFrame("192.0.2.10", "192.0.2.1", 8000), absl::Seconds(1));
  add(testing::TcpFrame("192.0.2.11", "192.0.2.1", 7000), absl::Seconds(2));  // never finishes
  add(testing::TcpFrame("192.0.2.99", "192.0.2.1", 7000), absl::Seconds(20));  // moves the clock
  ASSERT_TRUE(testing::WritePcapFile(dir_.File("knocks.pcap"), DLT_EN10MB, frames).ok());
  auto r = testing::RunCommand({kAgent, "-c", dir_.File("knockd.conf"), "--pcap", dir_.File("knocks.pcap")});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(R"("door": "ssh", "address": "192.0.2.10", "time": "2023-11-14T22:13:21.000000Z")"));
  EXPECT_THAT(r.output, HasSubstr(R"("closed": [{"door": "ssh", "address": "192.0.2.10", "time": "2023-11-14T22:13:26.000000Z"}])"));
  EXPECT_THAT(r.output, HasSubstr(R"("frames": 4)"));
  // Nothing was touched: no table was created on this host's namespace.
  EXPECT_EQ(testing::RunCommand({"nft", "list", "table", "inet", "sesame"}).exit_code, 1);
}

}  // namespace
}  // namespace sesame
