// The ufw backend with the real ufw, made hermetic: in this test's private
// mount and network namespaces, /etc/ufw, /lib/ufw and /etc/default/ufw are
// private copies of the package's files (ufw writes its rules to /etc/ufw
// and its lock to /lib/ufw with TESTSTATE set, instead of /run/ufw.lock),
// the copied /etc/default/ufw loads no kernel module and applies no sysctl,
// and ufw is enabled in there only.
#include "agent/grants/backends/ufw_backend.h"

#include <stdlib.h>
#include <sys/mount.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/namespace_sandbox.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::sesame::testing::RunCommand;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

Grant GrantFor(const std::string& door, const char* address) {
  Grant g;
  g.door = door;
  g.address = *IpAddress::Parse(address);
  return g;
}

class UfwTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HaveTool("ufw")) GTEST_SKIP() << "ufw is not installed";
    // The lock goes to ufw's state directory (our copy), not /run.
    setenv("TESTSTATE", "1", 1);
    ASSERT_EQ(RunCommand({"nft", "flush", "ruleset"}).exit_code, 0);
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"/etc/ufw", "etc-ufw"},
                                   {"/lib/ufw", "lib-ufw"}}) {
      const testing::CommandResult copy = RunCommand({"cp", "-a", from, tmp_.File(to)});
      ASSERT_EQ(copy.exit_code, 0) << copy.output;
    }
    absl::StatusOr<std::string> defaults = ReadFileToString("/etc/default/ufw");
    ASSERT_TRUE(defaults.ok()) << defaults.status();
    ASSERT_TRUE(WriteFileAtomically(tmp_.File("no-sysctl.conf"), "").ok());
    ASSERT_TRUE(WriteFileAtomically(tmp_.File("default-ufw"),
                                    absl::StrCat(*defaults, "\nIPT_SYSCTL=", tmp_.File("no-sysctl.conf"),
                                                 "\nIPT_MODULES=\"\"\n"))
                    .ok());
    for (const auto& [from, to] : {std::pair<std::string, std::string>{tmp_.File("etc-ufw"), "/etc/ufw"},
                                   {tmp_.File("lib-ufw"), "/lib/ufw"},
                                   {tmp_.File("default-ufw"), "/etc/default/ufw"}}) {
      const absl::Status bound = testing::BindMount(from, to);
      ASSERT_TRUE(bound.ok()) << bound;
      mounted_.push_back(to);
    }
    // Start from no user rule at all, whatever the host's copy holds.
    ASSERT_TRUE(CopyPackageFile("user.rules") && CopyPackageFile("user6.rules"));
    const testing::CommandResult enable = RunCommand({"ufw", "--force", "enable"});
    ASSERT_EQ(enable.exit_code, 0) << "ufw cannot be enabled in the test's namespaces: " << enable.output;
    rules_ = std::make_shared<UfwRules>(runner_);
  }

  void TearDown() override {
    for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
  }

  // The package's pristine user rules (no rule yet).
  static bool CopyPackageFile(const std::string& name) {
    absl::StatusOr<std::string> text = ReadFileToString("/usr/share/ufw/iptables/" + name);
    return text.ok() && WriteFileAtomically("/etc/ufw/" + name, *text, 0640).ok();
  }

  // `ufw show added`, one rule per element.
  static std::vector<std::string> Added() {
    const testing::CommandResult r = RunCommand({"ufw", "show", "added"});
    std::vector<std::string> rules;
    for (absl::string_view line : absl::StrSplit(r.output, '\n', absl::SkipEmpty())) {
      if (absl::StartsWith(line, "ufw ")) rules.emplace_back(line);
    }
    return rules;
  }

  // What ufw put into the kernel for its user rules.
  static std::vector<std::string> Kernel(const std::string& tool, const std::string& chain) {
    const testing::CommandResult r = RunCommand({tool, "-w", "10", "-S", chain});
    std::vector<std::string> rules;
    for (absl::string_view line : absl::StrSplit(r.output, '\n', absl::SkipEmpty())) {
      if (absl::StartsWith(line, "-A ")) rules.emplace_back(line);
    }
    return rules;
  }

  testing::TempDir tmp_;
  std::vector<std::string> mounted_;
  ProcessRunner runner_{ProcessRunnerOptions{}};
  std::shared_ptr<UfwRules> rules_;
};

TEST_F(UfwTest, OpenTwiceAddsOneRuleAndCloseRemovesIt) {
  UfwBackend door("openSSH", {{22, Protocol::kTcp}}, rules_);
  ASSERT_TRUE(door.Prepare().ok()) << door.Prepare();
  const Grant v4 = GrantFor("openSSH", "192.0.2.7");
  const Grant v6 = GrantFor("openSSH", "2001:db8::7");
  ASSERT_TRUE(door.Open(v4).ok()) << door.Open(v4);
  ASSERT_TRUE(door.Open(v4).ok());
  ASSERT_TRUE(door.Open(v6).ok());
  EXPECT_THAT(Added(), ElementsAre("ufw allow from 192.0.2.7 to any port 22 proto tcp comment 'sesame door=openSSH'",
                                   "ufw allow from 2001:db8::7 to any port 22 proto tcp comment 'sesame "
                                   "door=openSSH'"));
  EXPECT_THAT(Kernel("iptables", "ufw-user-input"),
              ElementsAre("-A ufw-user-input -s 192.0.2.7/32 -p tcp -m tcp --dport 22 -j ACCEPT"));
  EXPECT_THAT(Kernel("ip6tables", "ufw6-user-input"),
              ElementsAre("-A ufw6-user-input -s 2001:db8::7/128 -p tcp -m tcp --dport 22 -j ACCEPT"));

  ASSERT_TRUE(door.Close(v4).ok());
  ASSERT_TRUE(door.Close(v4).ok());  // closing what is not open is fine
  ASSERT_TRUE(door.Close(v6).ok());
  EXPECT_THAT(Added(), IsEmpty());
  EXPECT_THAT(Kernel("iptables", "ufw-user-input"), IsEmpty());
  EXPECT_THAT(Kernel("ip6tables", "ufw6-user-input"), IsEmpty());
}

TEST_F(UfwTest, ARuleTwoDoorsGrantStaysUntilBothClose) {
  UfwBackend a("a", {{22, Protocol::kTcp}}, rules_);
  UfwBackend b("b", {{22, Protocol::kTcp}, {53, Protocol::kUdp}}, rules_);
  ASSERT_TRUE(a.Open(GrantFor("a", "192.0.2.7")).ok());
  ASSERT_TRUE(b.Open(GrantFor("b", "192.0.2.7")).ok());
  EXPECT_THAT(Added(), ElementsAre("ufw allow from 192.0.2.7 to any port 22 proto tcp comment 'sesame door=a'",
                                   "ufw allow from 192.0.2.7 to any port 53 proto udp comment 'sesame door=b'"));
  ASSERT_TRUE(a.Close(GrantFor("a", "192.0.2.7")).ok());
  EXPECT_THAT(Added(), ElementsAre("ufw allow from 192.0.2.7 to any port 22 proto tcp comment 'sesame door=a'",
                                   "ufw allow from 192.0.2.7 to any port 53 proto udp comment 'sesame door=b'"));
  ASSERT_TRUE(b.Close(GrantFor("b", "192.0.2.7")).ok());
  EXPECT_THAT(Added(), IsEmpty());
}

TEST_F(UfwTest, PrepareRemovesRulesAnEarlierRunLeftAndNothingElse) {
  {
    auto earlier = std::make_shared<UfwRules>(runner_);
    UfwBackend door("openSSH", {{22, Protocol::kTcp}}, earlier);
    ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.66")).ok());
  }  // the agent dies with the grant open
  ASSERT_EQ(RunCommand({"ufw", "allow", "80/tcp"}).exit_code, 0);
  ASSERT_EQ(RunCommand({"ufw", "allow", "from", "10.0.0.1", "comment", "admin"}).exit_code, 0);
  UfwBackend door("openSSH", {{22, Protocol::kTcp}}, rules_);
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());  // live: re-opened
  ASSERT_TRUE(door.Prepare().ok());
  EXPECT_THAT(Added(), UnorderedElementsAre("ufw allow 80/tcp", "ufw allow from 10.0.0.1 comment 'admin'",
                                            "ufw allow from 192.0.2.7 to any port 22 proto tcp comment 'sesame "
                                            "door=openSSH'"));
}

TEST_F(UfwTest, UfwFailureIsAClearError) {
  auto rules = std::make_shared<UfwRules>(runner_, "false");
  UfwBackend door("openSSH", {{22, Protocol::kTcp}}, rules);
  const absl::Status s = door.Open(GrantFor("openSSH", "192.0.2.7"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("false allow from 192.0.2.7"));
}

}  // namespace
}  // namespace sesame
