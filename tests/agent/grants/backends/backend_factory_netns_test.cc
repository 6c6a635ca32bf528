// BackendSet: which backend each door gets, which resources doors share,
// what configurations it refuses, and PrepareAll. A netns test because it
// builds real nftables tables.
#include "agent/grants/backends/backend_factory.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/namespace_sandbox.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::sesame::testing::RunCommand;
using ::testing::AllOf;
using ::testing::HasSubstr;

DoorConfig Door(const std::string& name, BackendKind kind, int line) {
  DoorConfig d;
  d.name = name;
  d.line = line;
  d.sequence = {{7000, Protocol::kTcp}};
  d.backend = kind;
  return d;
}

Grant GrantFor(const std::string& door, const char* address) {
  Grant g;
  g.door = door;
  g.address = *IpAddress::Parse(address);
  return g;
}

class BackendSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(RunCommand({"nft", "flush", "ruleset"}).exit_code, 0);
    config_.path = "/etc/knockd.conf";
    config_.options.state_dir = tmp_.File("state");
    table_ = tmp_.File("hosts.allow");
  }

  DoorConfig IncludeDoor(const std::string& name, int line) {
    DoorConfig d = Door(name, BackendKind::kHostsAllow, line);
    d.hosts_allow_table = table_;
    return d;
  }

  std::string Read(const std::string& path) {
    absl::StatusOr<std::string> text = ReadFileToString(path);
    return text.ok() ? *text : text.status().ToString();
  }

  testing::TempDir tmp_;
  std::string table_;
  AgentConfig config_;
  ProcessRunner runner_{ProcessRunnerOptions{}};
};

TEST_F(BackendSetTest, EachDoorGetsItsKindOfBackend) {
  DoorConfig command = Door("cmd", BackendKind::kCommand, 1);
  command.start_command = "/bin/true %IP%";
  config_.doors.push_back(command);
  config_.doors.push_back(IncludeDoor("include", 5));
  DoorConfig inline_door = Door("inline", BackendKind::kHostsAllow, 10);
  inline_door.hosts_allow_form = HostsAllowForm::kInline;
  inline_door.hosts_allow_file = tmp_.File("inline.allow");
  config_.doors.push_back(inline_door);
  config_.doors.push_back(Door("nft", BackendKind::kNftables, 15));
  config_.doors.push_back(Door("ipt", BackendKind::kIptables, 20));
  config_.doors.push_back(Door("ufw", BackendKind::kUfw, 25));
  absl::StatusOr<std::unique_ptr<BackendSet>> set = BackendSet::Create(config_, runner_);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ((*set)->size(), 6u);
  EXPECT_EQ((*set)->ForDoor("cmd")->name(), "command");
  EXPECT_EQ((*set)->ForDoor("include")->name(), "hosts_allow");
  EXPECT_EQ((*set)->ForDoor("inline")->name(), "hosts_allow");
  EXPECT_EQ((*set)->ForDoor("nft")->name(), "nftables");
  EXPECT_EQ((*set)->ForDoor("ipt")->name(), "iptables");
  EXPECT_EQ((*set)->ForDoor("ufw")->name(), "ufw");
  EXPECT_EQ((*set)->ForDoor("nope"), nullptr);
}

TEST_F(BackendSetTest, DoorsSharingAnIncludeFileShareItsReferenceCounts) {
  config_.doors.push_back(IncludeDoor("a", 1));
  config_.doors.push_back(IncludeDoor("b", 5));
  absl::StatusOr<std::unique_ptr<BackendSet>> set = BackendSet::Create(config_, runner_);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_TRUE((*set)->PrepareAll().ok());
  // The default include file is in the state directory.
  const std::string include = tmp_.File("state/hosts.allow");
  EXPECT_EQ(Read(table_), absl::StrCat("sshd: ", include, "\n"));
  FirewallBackend* a = (*set)->ForDoor("a");
  FirewallBackend* b = (*set)->ForDoor("b");
  ASSERT_TRUE(a->Open(GrantFor("a", "192.0.2.7")).ok());
  ASSERT_TRUE(b->Open(GrantFor("b", "192.0.2.7")).ok());
  ASSERT_TRUE(a->Close(GrantFor("a", "192.0.2.7")).ok());
  EXPECT_EQ(Read(include), "192.0.2.7\n");
  ASSERT_TRUE(b->Close(GrantFor("b", "192.0.2.7")).ok());
  EXPECT_EQ(Read(include), "");
}

TEST_F(BackendSetTest, DoorsOfOneTableShareItsChain) {
  DoorConfig a = Door("a", BackendKind::kNftables, 1);
  DoorConfig b = Door("b", BackendKind::kNftables, 5);
  b.ports = {{2222, Protocol::kTcp}};
  DoorConfig c = Door("c", BackendKind::kNftables, 9);
  c.nft_table = "other";
  config_.doors = {a, b, c};
  absl::StatusOr<std::unique_ptr<BackendSet>> set = BackendSet::Create(config_, runner_);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_TRUE((*set)->PrepareAll().ok()) << (*set)->PrepareAll();
  const testing::CommandResult sesame = RunCommand({"nft", "list", "table", "inet", "sesame"});
  EXPECT_THAT(sesame.output, AllOf(HasSubstr("set a_v4"), HasSubstr("set b_v6"), HasSubstr("tcp dport 22 drop"),
                                   HasSubstr("tcp dport 2222 drop")));
  const testing::CommandResult other = RunCommand({"nft", "list", "table", "inet", "other"});
  EXPECT_THAT(other.output, HasSubstr("set c_v4"));
  ASSERT_TRUE((*set)->ForDoor("b")->Open(GrantFor("b", "192.0.2.7")).ok());
  EXPECT_THAT(RunCommand({"nft", "list", "set", "inet", "sesame", "b_v4"}).output, HasSubstr("192.0.2.7"));
}

TEST_F(BackendSetTest, RefusesAnIncludeFileSharedWithAnotherService) {
  config_.doors.push_back(IncludeDoor("ssh", 3));
  DoorConfig ftp = IncludeDoor("ftp", 9);
  ftp.hosts_allow_service = "vsftpd";
  config_.doors.push_back(ftp);
  const absl::StatusOr<std::unique_ptr<BackendSet>> set = BackendSet::Create(config_, runner_);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(std::string(set.status().message()),
              AllOf(HasSubstr("/etc/knockd.conf:9: door [ftp]"), HasSubstr("door [ssh] (line 3)")));
}

TEST_F(BackendSetTest, RefusesAFileUsedBothAsIncludeFileAndInlineTable) {
  DoorConfig include = IncludeDoor("a", 1);
  include.hosts_allow_file = tmp_.File("shared");
  DoorConfig inline_door = Door("b", BackendKind::kHostsAllow, 5);
  inline_door.hosts_allow_form = HostsAllowForm::kInline;
  inline_door.hosts_allow_file = tmp_.File("shared");
  config_.doors = {include, inline_door};
  const absl::StatusOr<std::unique_ptr<BackendSet>> set = BackendSet::Create(config_, runner_);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(std::string(set.status().message()), HasSubstr("both as an include file and as a hosts.allow table"));
}

TEST_F(BackendSetTest, RefusesBadPathsServicesAndCommands) {
  DoorConfig relative = IncludeDoor("a", 1);
  relative.hosts_allow_file = "state/hosts.allow";
  config_.doors = {relative};
  EXPECT_FALSE(BackendSet::Create(config_, runner_).ok());

  DoorConfig blank = IncludeDoor("a", 1);
  blank.hosts_allow_file = "/var/lib/my dir/hosts.allow";
  config_.doors = {blank};
  EXPECT_FALSE(BackendSet::Create(config_, runner_).ok());

  DoorConfig service = IncludeDoor("a", 1);
  service.hosts_allow_service = "sshd: ALL";
  config_.doors = {service};
  EXPECT_FALSE(BackendSet::Create(config_, runner_).ok());

  DoorConfig command = Door("c", BackendKind::kCommand, 4);
  command.start_command = "/bin/echo 'unterminated";
  config_.doors = {command};
  EXPECT_FALSE(BackendSet::Create(config_, runner_).ok());

  config_.doors = {Door("twice", BackendKind::kNftables, 1), Door("twice", BackendKind::kNftables, 2)};
  const absl::StatusOr<std::unique_ptr<BackendSet>> set = BackendSet::Create(config_, runner_);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(std::string(set.status().message()), HasSubstr(":2: door [twice]"));
}

TEST_F(BackendSetTest, PrepareAllTriesEverythingAndReportsEveryFailure) {
  DoorConfig ipt = Door("ipt", BackendKind::kIptables, 1);
  DoorConfig include = IncludeDoor("include", 5);
  include.hosts_allow_table = tmp_.File("no/such/dir/hosts.allow");
  DoorConfig nft = Door("nft", BackendKind::kNftables, 9);
  config_.doors = {ipt, include, nft};
  BackendToolPaths tools;
  tools.iptables = IptablesTools{"false", "false"};
  absl::StatusOr<std::unique_ptr<BackendSet>> set = BackendSet::Create(config_, runner_, RealClock::Instance(), tools);
  ASSERT_TRUE(set.ok()) << set.status();
  const absl::Status s = (*set)->PrepareAll();
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()),
              AllOf(HasSubstr("iptables chain SESAME"), HasSubstr("no/such/dir/hosts.allow")));
  // The nftables door was prepared all the same.
  EXPECT_EQ(RunCommand({"nft", "list", "set", "inet", "sesame", "nft_v4"}).exit_code, 0);
}

}  // namespace
}  // namespace sesame
