// The standard gRPC health service answers SERVING only while the store is
// usable. Here the database file is deleted under the running controller
// (SQLite would go on committing into a file that is gone at the next
// start): NOT_SERVING, sesame_controller_up 0; put back, SERVING again.
// The full-disk case is in controller_health_netns_test.cc.
#include <unistd.h>

#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "controller/cli/sesamectl.h"
#include "controller/controller_config.h"
#include "controller/controller_daemon.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(30);

class ControllerHealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status pki = testing::MakeTestPki(
        pki_.path(), {{"ctl", "controller", {"localhost"}, {"127.0.0.1"}}, {"alice", "admin"}});
    ASSERT_TRUE(pki.ok()) << pki;
    const std::string conf = absl::StrCat(
        "[controller]\nListen = 127.0.0.1:0\nStateDir = ", state_.path(), "\n[tls]\nCA_Cert = ", pki_.File("ca.crt"),
        "\nCert = ", pki_.File("ctl.crt"), "\nKey = ", pki_.File("ctl.key"), "\n[metrics]\nFile = ", Prom(),
        "\nInterval = 1s\n[door ssh]\nSequence_Length = 3\nPort_Range = 20000-30000\nGrant_Ports = 22\n");
    absl::StatusOr<ControllerConfig> config = ParseControllerConfig(conf, "test.conf");
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<std::unique_ptr<ControllerDaemon>> daemon = ControllerDaemon::Start(*config);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
  }

  std::string Prom() const { return state_.File("controller.prom"); }
  std::string Db() const { return state_.File("controller.db"); }

  // sesamectl's exit code and output.
  std::pair<int, std::string> Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {"sesamectl", "--controller", absl::StrCat("127.0.0.1:", daemon_->port()),
                                     "--ca-cert", pki_.File("ca.crt"), "--cert", pki_.File("alice.crt"),
                                     "--key", pki_.File("alice.key"), "--timeout", "20s"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<const char*> raw;
    for (const std::string& a : argv) raw.push_back(a.c_str());
    std::ostringstream out, err;
    const int code = RunSesamectl(static_cast<int>(raw.size()), raw.data(), out, err);
    return {code, out.str() + err.str()};
  }

  // Ticks until the metrics file says `line` (the file is rewritten once
  // its 1 s interval has passed).
  bool FileSays(const std::string& line) {
    const absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      daemon_->Tick();
      if (absl::StrContains(ReadFileToString(Prom()).value_or(""), line)) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  testing::TempDir pki_, state_;
  std::unique_ptr<ControllerDaemon> daemon_;
};

TEST_F(ControllerHealthTest, ADeletedDatabaseFileIsNotServingUntilItIsBack) {
  EXPECT_TRUE(daemon_->CheckStore().ok());
  EXPECT_EQ(Ctl({"health"}), std::make_pair(kExitOk, std::string("SERVING\n")));
  ASSERT_TRUE(FileSays("\nsesame_controller_up 1\n"));

  ASSERT_EQ(link(Db().c_str(), state_.File("kept.db").c_str()), 0);
  ASSERT_EQ(unlink(Db().c_str()), 0);
  daemon_->Tick();
  const absl::Status why = daemon_->CheckStore();
  EXPECT_TRUE(absl::IsUnavailable(why)) << why;
  EXPECT_THAT(why.message(), HasSubstr("controller.db was removed or replaced"));
  EXPECT_EQ(Ctl({"health"}), std::make_pair(kExitFailure, std::string("NOT_SERVING\n")));
  EXPECT_TRUE(FileSays("\nsesame_controller_up 0\n"));
  auto [code, stats] = Ctl({"stats"});
  EXPECT_EQ(code, kExitOk) << stats;
  EXPECT_THAT(stats, ::testing::ContainsRegex("sesame_controller_up +0\n"));

  // The same file back in place: usable again.
  ASSERT_EQ(rename(state_.File("kept.db").c_str(), Db().c_str()), 0);
  daemon_->Tick();
  EXPECT_TRUE(daemon_->CheckStore().ok());
  EXPECT_EQ(Ctl({"health"}), std::make_pair(kExitOk, std::string("SERVING\n")));
  EXPECT_TRUE(FileSays("\nsesame_controller_up 1\n"));
}

TEST_F(ControllerHealthTest, AReplacedDatabaseFileIsNotServing) {
  // A copy put in its place (a restore over a running controller) is not
  // the file the store writes to.
  const absl::StatusOr<std::string> bytes = ReadFileToString(Db());
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_TRUE(WriteFileAtomically(Db(), *bytes, 0600).ok());
  daemon_->Tick();
  EXPECT_TRUE(absl::IsUnavailable(daemon_->CheckStore()));
  EXPECT_EQ(Ctl({"health"}).second, "NOT_SERVING\n");
}

}  // namespace
}  // namespace sesame::controller
