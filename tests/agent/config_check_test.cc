// --check-config on configurations that name files no agent can use: each
// is an error at the key that names the file (CONFIG:LINE), and none may
// crash, hang or read without bound (issue 15: One_Time_Sequences =
// /dev/zero aborted with std::bad_alloc).
#include "agent/config_check.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/config/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A file of `size` bytes that occupies no disk (a hole).
void MakeSparseFile(const std::string& path, off_t size) {
  WriteFile(path, "");
  ASSERT_EQ(truncate(path.c_str(), size), 0);
}

class ConfigCheckTest : public ::testing::Test {
 protected:
  // A door whose one-time file is `path`; One_Time_Sequences is on line 5.
  std::string OneTimeConfig(const std::string& path) {
    const std::string conf = dir_.File("k.conf");
    WriteFile(conf, absl::StrCat("[options]\n",
                                 "  StateDir = ", dir_.path(), "\n",
                                 "\n",
                                 "[openSSH]\n",
                                 "  one_time_sequences = ", path, "\n",
                                 "  start_command = /bin/true %IP%\n"));
    return conf;
  }
  // The error --check-config gives for `conf` ("OK" when it passes).
  std::string ErrorOf(const std::string& conf) {
    const absl::Status s = CheckConfigFile(conf);
    return s.ok() ? "OK" : std::string(s.message());
  }

  testing::TempDir dir_;
};

TEST_F(ConfigCheckTest, AGoodOneTimeFilePasses) {
  WriteFile(dir_.File("otp"), " 7000,8000,9000\n");
  EXPECT_EQ(ErrorOf(OneTimeConfig(dir_.File("otp"))), "OK");
}

TEST_F(ConfigCheckTest, OneTimeSequencesOnDevZeroIsAnErrorAtItsLine) {
  const std::string conf = OneTimeConfig("/dev/zero");
  EXPECT_EQ(ErrorOf(conf),
            absl::StrCat(conf, ":5: One_Time_Sequences: /dev/zero is not a regular file (a character device)"));
}

TEST_F(ConfigCheckTest, OneTimeSequencesOnADirectoryIsAnErrorAtItsLine) {
  const std::string conf = OneTimeConfig(dir_.path());
  EXPECT_EQ(ErrorOf(conf),
            absl::StrCat(conf, ":5: One_Time_Sequences: ", dir_.path(), " is not a regular file (a directory)"));
}

TEST_F(ConfigCheckTest, OneTimeSequencesOnAFifoIsAnErrorAtItsLineAndDoesNotWaitForAWriter) {
  const std::string fifo = dir_.File("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string conf = OneTimeConfig(fifo);
  EXPECT_EQ(ErrorOf(conf), absl::StrCat(conf, ":5: One_Time_Sequences: ", fifo, " is not a regular file (a FIFO)"));
}

TEST_F(ConfigCheckTest, AOneTimeFileOverTheLimitIsAnErrorThatGivesTheLimit) {
  const std::string big = dir_.File("big");
  MakeSparseFile(big, static_cast<off_t>(kMaxOneTimeFileBytes) + 1);
  const std::string conf = OneTimeConfig(big);
  EXPECT_EQ(ErrorOf(conf), absl::StrCat(conf, ":5: One_Time_Sequences: ", big, " is larger than the limit of ",
                                        kMaxOneTimeFileBytes, " bytes (", kMaxOneTimeFileBytes + 1, " bytes)"));
}

TEST_F(ConfigCheckTest, AMissingOneTimeFileIsAnErrorAtItsLine) {
  const std::string conf = OneTimeConfig(dir_.File("none"));
  EXPECT_THAT(ErrorOf(conf), StartsWith(absl::StrCat(conf, ":5: One_Time_Sequences: ")));
  EXPECT_THAT(ErrorOf(conf), HasSubstr(dir_.File("none")));
}

TEST_F(ConfigCheckTest, TheConfigurationItselfMustBeASmallRegularFile) {
  EXPECT_EQ(ErrorOf("/dev/zero"), "cannot read configuration: /dev/zero is not a regular file (a character device)");
  EXPECT_THAT(ErrorOf(dir_.path()), HasSubstr("is not a regular file (a directory)"));
  const std::string big = dir_.File("big.conf");
  MakeSparseFile(big, static_cast<off_t>(kMaxConfigFileBytes) + 1);
  EXPECT_THAT(ErrorOf(big), HasSubstr(absl::StrCat("larger than the limit of ", kMaxConfigFileBytes, " bytes")));
}

TEST_F(ConfigCheckTest, ACertificateOnDevZeroIsAnErrorAtItsKey) {
  WriteFile(dir_.File("ca.crt"), "-----BEGIN CERTIFICATE-----\n");
  WriteFile(dir_.File("agent.key"), "-----BEGIN PRIVATE KEY-----\n");
  const std::string conf = dir_.File("managed.conf");
  WriteFile(conf, absl::StrCat("[options]\n",
                               "  StateDir = ", dir_.path(), "\n",
                               "  Controller = ctl.example.net:7443\n",
                               "  CaCert = ", dir_.File("ca.crt"), "\n",
                               "  Cert = /dev/zero\n",
                               "  Key = ", dir_.File("agent.key"), "\n"));
  EXPECT_EQ(ErrorOf(conf), absl::StrCat(conf, ":5: Cert: /dev/zero is not a regular file (a character device)"));
}

TEST_F(ConfigCheckTest, AKeyFileOverTheLimitIsAnErrorAtItsKey) {
  WriteFile(dir_.File("ca.crt"), "-----BEGIN CERTIFICATE-----\n");
  WriteFile(dir_.File("agent.crt"), "-----BEGIN CERTIFICATE-----\n");
  MakeSparseFile(dir_.File("agent.key"), static_cast<off_t>(kMaxTlsFileBytes) + 1);
  const std::string conf = dir_.File("managed.conf");
  WriteFile(conf, absl::StrCat("[options]\n",
                               "  Controller = ctl.example.net:7443\n",
                               "  CaCert = ", dir_.File("ca.crt"), "\n",
                               "  Cert = ", dir_.File("agent.crt"), "\n",
                               "  Key = ", dir_.File("agent.key"), "\n"));
  EXPECT_THAT(ErrorOf(conf), StartsWith(absl::StrCat(conf, ":5: Key: ")));
  EXPECT_THAT(ErrorOf(conf), HasSubstr(absl::StrCat("larger than the limit of ", kMaxTlsFileBytes, " bytes")));
}

TEST_F(ConfigCheckTest, AHostsAllowTableThatIsADirectoryIsAnErrorAtItsKey) {
  const std::string conf = dir_.File("k.conf");
  WriteFile(conf, absl::StrCat("[options]\n",
                               "  StateDir = ", dir_.path(), "\n",
                               "[openSSH]\n",
                               "  sequence = 7000,8000,9000\n",
                               "  backend = hosts_allow\n",
                               "  HostsAllow_Table = ", dir_.path(), "\n"));
  EXPECT_EQ(ErrorOf(conf),
            absl::StrCat(conf, ":6: HostsAllow_Table: ", dir_.path(), " is not a regular file (a directory)"));
}

TEST_F(ConfigCheckTest, AnInlineHostsAllowOnAFifoIsAnErrorAtItsKey) {
  const std::string fifo = dir_.File("hosts.allow");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string conf = dir_.File("k.conf");
  WriteFile(conf, absl::StrCat("[openSSH]\n",
                               "  sequence = 7000,8000,9000\n",
                               "  backend = hosts_allow\n",
                               "  HostsAllow_Form = inline\n",
                               "  HostsAllow_File = ", fifo, "\n"));
  EXPECT_EQ(ErrorOf(conf), absl::StrCat(conf, ":5: HostsAllow_File: ", fifo, " is not a regular file (a FIFO)"));
}

TEST_F(ConfigCheckTest, HostsAllowFilesThatDoNotExistYetPass) {
  const std::string conf = dir_.File("k.conf");
  WriteFile(conf, absl::StrCat("[options]\n",
                               "  StateDir = ", dir_.path(), "\n",
                               "[openSSH]\n",
                               "  sequence = 7000,8000,9000\n",
                               "  backend = hosts_allow\n",
                               "  HostsAllow_Table = ", dir_.File("etc-hosts.allow"), "\n"));
  EXPECT_EQ(ErrorOf(conf), "OK");
}

}  // namespace
}  // namespace sesame
