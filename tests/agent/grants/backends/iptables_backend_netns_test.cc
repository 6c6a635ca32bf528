// The iptables backend with the real iptables/ip6tables (Debian's are
// iptables-nft) in this test's private network namespace.
#include "agent/grants/backends/iptables_backend.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/namespace_sandbox.h"

namespace sesame {
namespace {

using ::sesame::testing::RunCommand;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Grant GrantFor(const std::string& door, const char* address, std::vector<Knock> ports = {}) {
  Grant g;
  g.door = door;
  g.address = *IpAddress::Parse(address);
  g.ports = std::move(ports);
  return g;
}

class IptablesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HaveTool("iptables") || !testing::HaveTool("ip6tables")) {
      GTEST_SKIP() << "iptables/ip6tables are not installed";
    }
    // Each test starts from an empty ruleset (one process may run them all).
    ASSERT_EQ(RunCommand({"nft", "flush", "ruleset"}).exit_code, 0);
    chain_ = std::make_shared<IptablesChain>("SESAME", runner_);
  }

  // The chain's rules as `iptables -S` prints them, without the -N line.
  static std::vector<std::string> Rules(const std::string& tool, const std::string& chain) {
    const testing::CommandResult r = RunCommand({tool, "-w", "10", "-S", chain});
    std::vector<std::string> rules;
    for (absl::string_view line : absl::StrSplit(r.output, '\n', absl::SkipEmpty())) {
      if (absl::StartsWith(line, "-A ")) rules.emplace_back(line);
    }
    return rules;
  }

  ProcessRunner runner_{ProcessRunnerOptions{}};
  std::shared_ptr<IptablesChain> chain_;
};

TEST_F(IptablesTest, PrepareMakesTheChainAndOneJump) {
  IptablesBackend door("openSSH", {{22, Protocol::kTcp}}, chain_);
  // An administrator's rules, which must stay as they are.
  ASSERT_EQ(RunCommand({"iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"})
                .exit_code,
            0);
  ASSERT_EQ(RunCommand({"iptables", "-P", "INPUT", "DROP"}).exit_code, 0);
  ASSERT_TRUE(door.Prepare().ok()) << door.Prepare();
  ASSERT_TRUE(door.Prepare().ok());
  EXPECT_THAT(Rules("iptables", "INPUT"),
              ElementsAre("-A INPUT -j SESAME", "-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT"));
  EXPECT_THAT(Rules("ip6tables", "INPUT"), ElementsAre("-A INPUT -j SESAME"));
  EXPECT_THAT(Rules("iptables", "SESAME"), IsEmpty());
}

TEST_F(IptablesTest, OpenTwiceAddsOnceAndCloseRemovesExactly) {
  IptablesBackend door("openSSH", {{22, Protocol::kTcp}, {53, Protocol::kUdp}}, chain_);
  ASSERT_TRUE(door.Prepare().ok());
  // Someone else's rule in sesame's chain stays.
  ASSERT_EQ(RunCommand({"iptables", "-A", "SESAME", "-s", "10.0.0.1", "-j", "ACCEPT"}).exit_code, 0);

  const Grant v4 = GrantFor("openSSH", "192.0.2.7");
  const Grant v6 = GrantFor("openSSH", "2001:db8::7");
  ASSERT_TRUE(door.Open(v4).ok()) << door.Open(v4);
  ASSERT_TRUE(door.Open(v4).ok());
  ASSERT_TRUE(door.Open(v6).ok());
  ASSERT_TRUE(door.Open(v6).ok());
  EXPECT_THAT(Rules("iptables", "SESAME"),
              ElementsAre("-A SESAME -s 10.0.0.1/32 -j ACCEPT",
                          "-A SESAME -s 192.0.2.7/32 -p tcp -m tcp --dport 22 -m comment --comment \"sesame "
                          "door=openSSH\" -j ACCEPT",
                          "-A SESAME -s 192.0.2.7/32 -p udp -m udp --dport 53 -m comment --comment \"sesame "
                          "door=openSSH\" -j ACCEPT"));
  EXPECT_THAT(Rules("ip6tables", "SESAME"),
              ElementsAre("-A SESAME -s 2001:db8::7/128 -p tcp -m tcp --dport 22 -m comment --comment \"sesame "
                          "door=openSSH\" -j ACCEPT",
                          "-A SESAME -s 2001:db8::7/128 -p udp -m udp --dport 53 -m comment --comment \"sesame "
                          "door=openSSH\" -j ACCEPT"));

  ASSERT_TRUE(door.Close(v4).ok());
  ASSERT_TRUE(door.Close(v4).ok());  // closing what is not open is fine
  ASSERT_TRUE(door.Close(v6).ok());
  EXPECT_THAT(Rules("iptables", "SESAME"), ElementsAre("-A SESAME -s 10.0.0.1/32 -j ACCEPT"));
  EXPECT_THAT(Rules("ip6tables", "SESAME"), IsEmpty());
  EXPECT_THAT(Rules("iptables", "INPUT"), ElementsAre("-A INPUT -j SESAME"));
}

TEST_F(IptablesTest, GrantPortsOverrideTheDoorsPorts) {
  IptablesBackend door("openSSH", {{22, Protocol::kTcp}}, chain_);
  ASSERT_TRUE(door.Prepare().ok());
  const Grant g = GrantFor("openSSH", "192.0.2.7", {{443, Protocol::kTcp}});
  ASSERT_TRUE(door.Open(g).ok());
  EXPECT_THAT(Rules("iptables", "SESAME"),
              ElementsAre("-A SESAME -s 192.0.2.7/32 -p tcp -m tcp --dport 443 -m comment --comment \"sesame "
                          "door=openSSH\" -j ACCEPT"));
  ASSERT_TRUE(door.Close(g).ok());
  EXPECT_THAT(Rules("iptables", "SESAME"), IsEmpty());
}

TEST_F(IptablesTest, DoorsSharingTheChainKeepTheirOwnRules) {
  IptablesBackend a("a", {{22, Protocol::kTcp}}, chain_);
  IptablesBackend b("b", {{22, Protocol::kTcp}}, chain_);
  ASSERT_TRUE(a.Prepare().ok());
  ASSERT_TRUE(a.Open(GrantFor("a", "192.0.2.7")).ok());
  ASSERT_TRUE(b.Open(GrantFor("b", "192.0.2.7")).ok());
  ASSERT_TRUE(a.Close(GrantFor("a", "192.0.2.7")).ok());
  EXPECT_THAT(Rules("iptables", "SESAME"),
              ElementsAre("-A SESAME -s 192.0.2.7/32 -p tcp -m tcp --dport 22 -m comment --comment \"sesame "
                          "door=b\" -j ACCEPT"));
}

TEST_F(IptablesTest, PrepareRemovesRulesAnEarlierRunLeft) {
  {
    auto earlier = std::make_shared<IptablesChain>("SESAME", runner_);
    IptablesBackend door("openSSH", {{22, Protocol::kTcp}}, earlier);
    ASSERT_TRUE(door.Prepare().ok());
    ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.66")).ok());
    ASSERT_TRUE(door.Open(GrantFor("openSSH", "2001:db8::66")).ok());
  }  // the agent dies with its grants open
  ASSERT_EQ(RunCommand({"iptables", "-A", "SESAME", "-s", "10.0.0.1", "-m", "comment", "--comment", "admin's \"own\"",
                        "-j", "ACCEPT"})
                .exit_code,
            0);
  IptablesBackend door("openSSH", {{22, Protocol::kTcp}}, chain_);
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());  // live: re-opened
  ASSERT_TRUE(door.Prepare().ok());
  EXPECT_THAT(Rules("iptables", "SESAME"),
              ElementsAre(R"(-A SESAME -s 10.0.0.1/32 -m comment --comment "admin\'s \"own\"" -j ACCEPT)",
                          "-A SESAME -s 192.0.2.7/32 -p tcp -m tcp --dport 22 -m comment --comment \"sesame "
                          "door=openSSH\" -j ACCEPT"));
  EXPECT_THAT(Rules("ip6tables", "SESAME"), IsEmpty());
}

TEST_F(IptablesTest, ToolFailureIsAClearError) {
  auto chain = std::make_shared<IptablesChain>("SESAME", runner_, IptablesTools{"false", "false"});
  IptablesBackend door("openSSH", {{22, Protocol::kTcp}}, chain);
  const absl::Status s = door.Prepare();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("false -w 10"));
}

TEST(SplitIptablesLineTest, UndoesQuotesAndEscapes) {
  EXPECT_THAT(SplitIptablesLine(R"(-A SESAME -m comment --comment "a \"b\" c\\d" -j ACCEPT)"),
              ElementsAre("-A", "SESAME", "-m", "comment", "--comment", "a \"b\" c\\d", "-j", "ACCEPT"));
  EXPECT_THAT(SplitIptablesLine("  -N   X  "), ElementsAre("-N", "X"));
  EXPECT_THAT(SplitIptablesLine(R"(--comment "")"), ElementsAre("--comment", ""));
}

}  // namespace
}  // namespace sesame
