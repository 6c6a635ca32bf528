// sesamectl against a real controller over mutual TLS: commands, output,
// offline audit verification and the exit codes.
#include "controller/cli/sesamectl.h"

#include <cstdlib>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "controller/controller_config.h"
#include "controller/controller_daemon.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
  int code;
  std::string out, err;
};

class SesamectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status pki = testing::MakeTestPki(
        pki_.path(), {{"ctl", "controller", {"localhost"}, {"127.0.0.1"}},
                      {"alice", "admin"},
                      {"b1", "agent"},});
    ASSERT_TRUE(pki.ok()) << pki;
    const std::string conf = absl::StrCat(
        "[controller]\nListen = 127.0.0.1:0\nStateDir = ", state_.path(), "\n[tls]\nCA_Cert = ", pki_.File("ca.crt"),
        "\nCert = ", pki_.File("ctl.crt"), "\nKey = ", pki_.File("ctl.key"),
        "\n[door ssh]\nSequence_Length = 3\nPort_Range = 20000-30000\nGrant_Ports = 22\n");
    absl::StatusOr<ControllerConfig> config = ParseControllerConfig(conf, "test.conf");
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<std::unique_ptr<ControllerDaemon>> daemon = ControllerDaemon::Start(*config);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
  }

  Result Ctl(std::vector<std::string> args, const std::string& who = "alice", int port = 0,
             const std::string& timeout = "20s", const std::string& ca = "") {
    std::vector<std::string> argv = {"sesamectl",
                                     "--controller",
                                     absl::StrCat("127.0.0.1:", port == 0 ? daemon_->port() : port),
                                     "--ca-cert",
                                     ca.empty() ? pki_.File("ca.crt") : ca,
                                     "--cert",
                                     pki_.File(who + ".crt"),
                                     "--key",
                                     pki_.File(who + ".key"),
                                     "--timeout",
                                     timeout};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<const char*> raw;
    for (const std::string& a : argv) raw.push_back(a.c_str());
    std::ostringstream out, err;
    const int code = RunSesamectl(static_cast<int>(raw.size()), raw.data(), out, err);
    return {code, out.str(), err.str()};
  }

  testing::TempDir pki_, state_;
  std::unique_ptr<ControllerDaemon> daemon_;
};

TEST_F(SesamectlTest, HealthDoorsAndStats) {
  Result r = Ctl({"health"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  r = Ctl({"doors", "list"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ssh"));
  EXPECT_THAT(r.out, HasSubstr("20000-30000"));
  r = Ctl({"-o", "json", "stats"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"revision\""));
}

TEST_F(SesamectlTest, SequencesAreShownOnce) {
  Result r = Ctl({"sequences", "issue", "--door", "ssh", "--count", "2", "--for", "bob"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sequence 1 (door ssh): "));
  EXPECT_THAT(r.out, HasSubstr("knock HOST "));  // no agent advertised a host yet
  // The knocks of sequence 1, e.g. "20514:tcp 27003:tcp 21998:tcp".
  const std::string first_line = std::vector<std::string>(absl::StrSplit(r.out, '\n'))[0];
  const std::string knocks = first_line.substr(first_line.find(": ") + 2);
  r = Ctl({"sequences", "list"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("issued"));
  EXPECT_THAT(r.out, HasSubstr("bob"));
  EXPECT_THAT(r.out, Not(HasSubstr(knocks)));
  r = Ctl({"-o", "json", "sequences", "list", "--state", "burnt"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("\"id\"")));
}

TEST_F(SesamectlTest, GrantsOpenListRevoke) {
  // An agent must be known before a grant can target it.
  Result r = Ctl({"grants", "open", "--agent", "b1", "--ip", "192.0.2.7", "--door", "ssh"});
  EXPECT_EQ(r.code, kExitNotFound) << r.err;
  r = Ctl({"grants", "open", "--fleet", "--ip", "192.0.2.7", "--door", "ssh", "--ttl", "10m"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("192.0.2.7"));
  EXPECT_THAT(r.out, HasSubstr("fleet"));
  r = Ctl({"grants", "list"});
  EXPECT_THAT(r.out, HasSubstr("admin:alice"));
  r = Ctl({"grants", "revoke", "--ip", "192.0.2.7"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("revoked 1"));
  r = Ctl({"grants", "revoke", "--ip", "192.0.2.7"});
  EXPECT_THAT(r.out, HasSubstr("nothing to revoke"));
  r = Ctl({"grants", "open", "--fleet", "--ip", "nope", "--door", "ssh"});
  EXPECT_EQ(r.code, kExitUsage) << r.err;
}

TEST_F(SesamectlTest, AuditExportVerifiesOfflineAndTamperingIsCaught) {
  ASSERT_EQ(Ctl({"sequences", "issue", "--door", "ssh", "--count", "3"}).code, kExitOk);
  Result r = Ctl({"audit", "tail", "-n", "5"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sequences.issued"));
  const std::string exported = state_.File("export.txt");
  ASSERT_EQ(Ctl({"audit", "export", "--out", exported}).code, kExitOk);
  r = Ctl({"audit", "pubkey"});
  ASSERT_EQ(r.code, kExitOk);
  const std::string pub = state_.File("audit.pub");
  ASSERT_TRUE(WriteFileAtomically(pub, r.out, 0644).ok());

  // Offline: no controller address works here.
  r = Ctl({"audit", "verify", "--file", exported, "--pubkey", pub}, "alice", /*port=*/1);
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("OK: "));

  std::string text = *ReadFileToString(exported);
  const size_t at = text.find("sequences.issued");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 9, "sequencez");
  ASSERT_TRUE(WriteFileAtomically(exported, text, 0644).ok());
  r = Ctl({"audit", "verify", "--file", exported, "--pubkey", pub});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("does NOT verify"));
  EXPECT_THAT(r.err, HasSubstr("altered"));

  r = Ctl({"audit", "verify"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
}

TEST_F(SesamectlTest, ExitCodes) {
  EXPECT_EQ(Ctl({"agents", "list"}, "b1").code, kExitRefused);  // an agent's certificate
  EXPECT_EQ(Ctl({"agents", "show", "nope"}).code, kExitNotFound);
  EXPECT_EQ(Ctl({"sequences", "issue"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"frobnicate"}).code, kExitUsage);
  Result r = Ctl({"health"}, "alice", /*port=*/1, "2s");
  EXPECT_EQ(r.code, kExitUnreachable) << r.err;
  // A controller whose certificate this client does not trust: the TLS
  // handshake fails on our side, and sesamectl says it is a certificate
  // matter, not an unreachable controller.
  testing::TempDir other;
  ASSERT_TRUE(testing::MakeTestPki(other.path(), {{"x", "admin"}}).ok());
  r = Ctl({"health"}, "alice", 0, "5s", other.File("ca.crt"));
  EXPECT_EQ(r.code, kExitRefused) << r.err;
  EXPECT_THAT(r.err, HasSubstr("TLS handshake"));
}

}  // namespace
}  // namespace sesame::controller
