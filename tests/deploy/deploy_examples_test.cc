// The configuration examples shipped in deploy/examples/ (and the default
// /etc/sesame/agent.conf of the package) pass the agent's own
// --check-config logic, and say what they claim to say. The managed agent's
// example is parsed (its certificates are not there to check); the
// controller's, whose format does not exist yet, is only checked for its
// DRAFT header.
//
// The examples keep their state under /var/lib/sesame-agent; the test copies
// each one with that directory replaced by a temporary one holding the
// one-time files, so that the one-time checks (file readable, directory
// writable) run for real.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_replace.h"
#include "agent/config/config.h"
#include "agent/config_check.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kExamples = std::string(SESAME_SOURCE_DIR) + "/deploy/examples/";
const std::string kPackagedStateDir = "/var/lib/sesame-agent";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

// The example with its state directory moved into `dir`, and the one-time
// files it names created there (empty, as the package creates them).
std::string Relocated(const std::string& example, const testing::TempDir& dir) {
  const std::string text = ReadFile(kExamples + example);
  EXPECT_FALSE(text.empty()) << "missing example " << example;
  const std::string relocated = absl::StrReplaceAll(text, {{kPackagedStateDir, dir.path()}});
  const std::string path = dir.File(example);
  WriteFile(path, relocated);
  absl::StatusOr<AgentConfig> config = ParseConfig(relocated, path);
  if (config.ok()) {
    for (const DoorConfig& door : config->doors) {
      if (!door.one_time_sequences.empty()) WriteFile(door.one_time_sequences, " 4101,4202:udp,4303\n");
    }
  }
  return path;
}

class StandaloneExampleTest : public ::testing::TestWithParam<const char*> {};

TEST_P(StandaloneExampleTest, PassesCheckConfig) {
  testing::TempDir dir;
  const std::string path = Relocated(GetParam(), dir);
  const absl::Status status = CheckConfigFile(path);
  EXPECT_TRUE(status.ok()) << GetParam() << ": " << status;
}

std::string ParamName(const ::testing::TestParamInfo<const char*>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Examples, StandaloneExampleTest,
                         ::testing::Values("knockd-standalone.conf", "agent-nftables.conf", "agent.conf"), ParamName);

class AgentExampleTest : public ::testing::TestWithParam<const char*> {};

TEST_P(AgentExampleTest, KeepsStateUnderThePackagedStateDir) {
  // The systemd unit makes /var/lib/sesame-agent writable and nothing else
  // of the agent's: an example that writes elsewhere fails under it.
  absl::StatusOr<AgentConfig> config = ParseConfig(ReadFile(kExamples + GetParam()), GetParam());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->options.state_dir, kPackagedStateDir);
  EXPECT_TRUE(config->options.log_file.empty()) << "logs go to the journal";
  for (const DoorConfig& door : config->doors) {
    if (!door.one_time_sequences.empty()) {
      EXPECT_THAT(door.one_time_sequences, StartsWith(kPackagedStateDir + "/")) << door.name;
    }
    if (door.backend == BackendKind::kHostsAllow) {
      EXPECT_EQ(door.hosts_allow_form, HostsAllowForm::kInclude) << door.name << ": the inline form needs root";
    }
    EXPECT_NE(door.backend, BackendKind::kUfw) << door.name << ": ufw needs root";
  }
}

INSTANTIATE_TEST_SUITE_P(Examples, AgentExampleTest,
                         ::testing::Values("knockd-standalone.conf", "agent-nftables.conf", "agent.conf",
                                           "agent-managed.conf"),
                         ParamName);

TEST(ManagedExampleTest, IsAManagedAgentWithAStandaloneDoorBeside) {
  absl::StatusOr<AgentConfig> config = ParseConfig(ReadFile(kExamples + "agent-managed.conf"), "agent-managed.conf");
  ASSERT_TRUE(config.ok()) << config.status();
  const ManagedOptions& managed = config->options.managed;
  EXPECT_TRUE(managed.enabled());
  EXPECT_EQ(managed.controllers.size(), 2u);
  EXPECT_EQ(managed.ca_cert, "/etc/sesame/tls/ca.crt");
  EXPECT_EQ(managed.cert, "/etc/sesame/tls/agent.crt");
  EXPECT_EQ(managed.key, "/etc/sesame/tls/agent.key");
  EXPECT_EQ(config->options.reset_mode, ResetMode::kStrict);
  ASSERT_EQ(config->doors.size(), 2u);
  EXPECT_TRUE(config->doors[0].managed);
  EXPECT_EQ(config->doors[0].backend, BackendKind::kHostsAllow);
  EXPECT_FALSE(config->doors[1].managed);
  EXPECT_FALSE(config->doors[1].one_time_sequences.empty());
}

TEST(KnockdStandaloneExampleTest, HasTheClassicDoorThroughHostsAllowAndAOneTimeDoor) {
  absl::StatusOr<AgentConfig> config = ParseConfig(ReadFile(kExamples + "knockd-standalone.conf"), "example");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->doors.size(), 2u);
  const DoorConfig& open_ssh = config->doors[0];
  EXPECT_EQ(open_ssh.name, "openSSH");
  ASSERT_EQ(open_ssh.sequence.size(), 3u);
  EXPECT_EQ(open_ssh.sequence[0].port, 7000);
  EXPECT_EQ(open_ssh.sequence[1].port, 8000);
  EXPECT_EQ(open_ssh.sequence[2].port, 9000);
  EXPECT_EQ(open_ssh.backend, BackendKind::kHostsAllow);
  EXPECT_EQ(open_ssh.hosts_allow_file, kPackagedStateDir + "/hosts.allow");
  EXPECT_EQ(open_ssh.hosts_allow_service, "sshd");
  EXPECT_EQ(open_ssh.cmd_timeout, absl::Seconds(10));
  const DoorConfig& one_time = config->doors[1];
  EXPECT_FALSE(one_time.one_time_sequences.empty());
  EXPECT_EQ(one_time.backend, BackendKind::kHostsAllow);
}

TEST(PackagedAgentConfTest, AdmitsNobodyAsInstalled) {
  // No fixed sequence: the shipped conffile opens nothing until the operator
  // fills its one-time file.
  absl::StatusOr<AgentConfig> config = ParseConfig(ReadFile(kExamples + "agent.conf"), "agent.conf");
  ASSERT_TRUE(config.ok()) << config.status();
  for (const DoorConfig& door : config->doors) {
    EXPECT_TRUE(door.sequence.empty()) << door.name;
    EXPECT_FALSE(door.one_time_sequences.empty()) << door.name;
    EXPECT_NE(door.backend, BackendKind::kNftables) << "the nftables chain drops port 22 for everyone not granted";
  }
}

TEST(ConfigErrorTest, NamesFileAndLine) {
  // What an operator sees when the example is edited wrongly.
  testing::TempDir dir;
  const std::string path = dir.File("bad.conf");
  WriteFile(path, "[openSSH]\n  sequence = 7000,8000,9000\n  backend = hosts_alow\n");
  const absl::Status status = CheckConfigFile(path);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("bad.conf:3"));
}

}  // namespace
}  // namespace sesame
