// The real sesame-agent binary writes MetricsFile (Prometheus text format)
// every MetricsInterval, standalone and managed, in a private network
// namespace capturing on `lo`: knocks, matches and grants show up in it; in
// managed mode also the controller link, spool and reserve; the last values
// are written at shutdown.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/agent/managed/managed_test_support.h"
#include "tests/support/child_process.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using namespace managed_testing;  // NOLINT: test support
using testing::Eventually;

const std::string kAgent = SESAME_BINARY_DIR "/agent/sesame-agent";

// Every line is a HELP, a TYPE (counter or gauge) or a sample of a family
// whose TYPE came before it, each family once.
void ExpectWellFormed(const std::string& text) {
  ASSERT_FALSE(text.empty());
  ASSERT_EQ(text.back(), '\n');
  std::set<std::string> typed, helped;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size() - 1), '\n')) {
    std::vector<std::string> words = absl::StrSplit(line, ' ');
    if (absl::StartsWith(line, "# HELP ")) {
      ASSERT_GE(words.size(), 4u) << line;
      EXPECT_TRUE(helped.insert(words[2]).second) << "two HELP lines for " << words[2];
    } else if (absl::StartsWith(line, "# TYPE ")) {
      ASSERT_EQ(words.size(), 4u) << line;
      EXPECT_TRUE(words[3] == "counter" || words[3] == "gauge") << line;
      EXPECT_TRUE(typed.insert(words[2]).second) << "two TYPE lines for " << words[2];
      if (words[3] == "counter") {
        EXPECT_TRUE(absl::EndsWith(words[2], "_total")) << line;
      }
    } else {
      ASSERT_EQ(words.size(), 2u) << line;
      const std::string name = words[0].substr(0, words[0].find('{'));
      EXPECT_TRUE(typed.count(name)) << "sample before its TYPE: " << line;
      double value = 0;
      EXPECT_TRUE(absl::SimpleAtod(words[1], &value)) << line;
    }
  }
}

class MetricsFileTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  void StartAgent(const std::string& config) {
    ASSERT_EQ(access(kAgent.c_str(), X_OK), 0) << kAgent << " is not built";
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
  void Stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    ASSERT_EQ(waitpid(pid_, &status, 0), pid_);
    pid_ = -1;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << Log();
  }
  std::string Log() const { return ReadFileToString(dir_.File("agent.log")).value_or(""); }
  std::string Prom() const { return ReadFileToString(dir_.File("prom/sesame_agent.prom")).value_or(""); }
  // Waits until the metrics file has every one of `lines`.
  bool PromSays(const std::vector<std::string>& lines) {
    return Eventually([&] {
      const std::string text = Prom();
      for (const std::string& l : lines) {
        if (!absl::StrContains(text, absl::StrCat("\n", l, "\n"))) return false;
      }
      return true;
    });
  }
  std::string MetricsOptions() const {
    return absl::StrCat("  MetricsFile = ", dir_.File("prom/sesame_agent.prom"), "\n  MetricsInterval = 1s\n");
  }

  testing::TempDir dir_;
  pid_t pid_ = -1;
};

TEST_F(MetricsFileTest, StandaloneKnocksMatchesAndGrantsAreWrittenAndTheLastValuesStay) {
  ASSERT_TRUE(MakeDirectories(dir_.File("prom"), 0755).ok());
  StartAgent(absl::StrCat("[options]\n  Interface = lo\n", MetricsOptions(),
                          "[door]\n  Sequence = 47301:udp,47302:udp,47303:udp\n  Backend = hosts_allow\n"
                          "  Cmd_Timeout = 60\n  HostsAllow_Table = ",
                          dir_.File("hosts.allow"), "\n  HostsAllow_File = ", dir_.File("allowed"), "\n"));
  ASSERT_TRUE(PromSays({"sesame_agent_managed 0", "sesame_agent_grants_open 0"})) << Prom() << Log();
  ExpectWellFormed(Prom());

  for (uint16_t port : {47301, 47302, 47303}) SendUdp(port);
  ASSERT_TRUE(PromSays({"sesame_agent_sequences_matched_total 1", "sesame_agent_knocks_seen_total 3",
                        "sesame_agent_grants_open 1", "sesame_agent_grants_opened_total 1",
                        "sesame_agent_capture_drops_total 0", "sesame_agent_captures_down 0"}))
      << Prom() << Log();
  ExpectWellFormed(Prom());
  EXPECT_TRUE(absl::StrContains(Prom(), "# TYPE sesame_agent_knocks_seen_total counter\n")) << Prom();
  EXPECT_TRUE(absl::StrContains(Prom(), "# TYPE sesame_agent_grants_open gauge\n")) << Prom();
  EXPECT_FALSE(absl::StrContains(Prom(), "sesame_agent_spool_depth")) << "managed-only metrics standalone";

  Stop();
  // The file stays with the last values; no temporary is left beside it.
  EXPECT_TRUE(absl::StrContains(Prom(), "\nsesame_agent_sequences_matched_total 1\n")) << Prom();
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_.File("prom"))) {
    ++files;
    EXPECT_EQ(e.path().filename(), "sesame_agent.prom");
  }
  EXPECT_EQ(files, 1u);
}

TEST_F(MetricsFileTest, AMissingDirectoryIsAWarningNotAStop) {
  StartAgent(absl::StrCat("[options]\n  Interface = lo\n", MetricsOptions(),
                          "[door]\n  Sequence = 47311:udp,47312:udp\n  Backend = hosts_allow\n  HostsAllow_Table = ",
                          dir_.File("hosts.allow"), "\n  HostsAllow_File = ", dir_.File("allowed"), "\n"));
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(Log(), "metrics file: "); })) << Log();
  // Said once, not every interval; written once the directory exists.
  ASSERT_TRUE(MakeDirectories(dir_.File("prom"), 0755).ok());
  ASSERT_TRUE(PromSays({"sesame_agent_managed 0"})) << Log();
  // Logged just after the file is renamed into place: wait for it.
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(Log(), "written again"); })) << Log();
  const std::string log = Log();
  size_t warnings = 0;
  for (size_t at = log.find("(retrying quietly)"); at != std::string::npos; at = log.find("(retrying quietly)", at + 1)) {
    ++warnings;
  }
  EXPECT_EQ(warnings, 1u) << log;
  Stop();
}

TEST_F(MetricsFileTest, ManagedAddsTheLinkSpoolAndReserveAndHeartbeatsCarryTheSameNames) {
  ASSERT_TRUE(MakeDirectories(dir_.File("prom"), 0755).ok());
  testing::TempDir pki_dir;
  const Pki pki = MakePki(pki_dir.path());
  FakeController controller;
  TestServer server(controller, pki);
  server.Start();
  controller.set_snapshot(SnapshotAt(10, {Seq(1, {47321, 47322, 47323}, false, v1::PROTOCOL_UDP),
                                          Seq(2, {47331, 47332, 47333}, true, v1::PROTOCOL_UDP)}));
  StartAgent(absl::StrCat("[options]\n  Interface = lo\n", MetricsOptions(), "  Controller = 127.0.0.1:",
                          server.port(), "\n  CaCert = ", pki.Path("ca.crt"), "\n  Cert = ", pki.Path("bastion1.crt"),
                          "\n  Key = ", pki.Path("bastion1.key"),
                          "\n  BackoffMin = 50ms\n  BackoffMax = 500ms\n  ReserveSize = 4\n"
                          "[ssh]\n  Managed = yes\n  Backend = hosts_allow\n  HostsAllow_Table = ",
                          dir_.File("hosts.allow"), "\n  HostsAllow_File = ", dir_.File("allowed"), "\n"));
  ASSERT_TRUE(controller.WaitFor(HasAck(10))) << Log();

  for (uint16_t port : {47321, 47322, 47323}) SendUdp(port);
  ASSERT_TRUE(controller.WaitFor(Count(v1::AgentMessage::kGrantResult, 1))) << Log();
  ASSERT_TRUE(PromSays({"sesame_agent_managed 1", "sesame_agent_controller_connected 1", "sesame_agent_revision 10",
                        "sesame_agent_reserve_left 1", "sesame_agent_reserve_wanted 4",
                        "sesame_agent_knocks_reported_total 1", "sesame_agent_sequences_matched_total 1",
                        "sesame_agent_sessions_total 1", "sesame_agent_spool_depth 0", "sesame_agent_grants_open 1"}))
      << Prom() << Log();
  ExpectWellFormed(Prom());

  // A heartbeat carries what the file has (the daemon's and the managed side's).
  ASSERT_TRUE(controller.WaitFor([](const auto& r) {
    for (const auto& m : r) {
      if (!m.has_heartbeat()) continue;
      std::set<std::string> names;
      for (const auto& metric : m.heartbeat().metrics()) names.insert(metric.name());
      if (names.count("sesame_agent_capture_drops_total") && names.count("sesame_agent_spool_depth") &&
          names.count("sesame_agent_knocks_seen_total") && names.count("sesame_agent_controller_connected")) {
        return true;
      }
    }
    return false;
  })) << Log();

  // The controller goes away: the file says so.
  server.Stop();
  ASSERT_TRUE(PromSays({"sesame_agent_controller_connected 0"})) << Prom() << Log();
  Stop();
}

}  // namespace
}  // namespace sesame
