// The controller's state directory on a small tmpfs (private mount
// namespace) that fills up: health NOT_SERVING while the disk is full,
// SERVING again once space is freed.
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
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

// Writes zeros to `path` until the filesystem is full (bounded by its size).
void FillUp(const std::string& path, size_t at_most) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const std::string block(64 * 1024, '\0');
  size_t written = 0;
  while (written < at_most) {
    const ssize_t n = write(fd, block.data(), block.size());
    if (n <= 0) break;  // ENOSPC
    written += static_cast<size_t>(n);
  }
  close(fd);
  ASSERT_LT(written, at_most) << "the filesystem never filled up";
}

TEST(ControllerHealthNetnsTest, AFullDiskIsNotServingUntilSpaceIsFreed) {
  testing::TempDir pki, mount_point;
  ASSERT_EQ(mount("tmpfs", mount_point.path().c_str(), "tmpfs", 0, "size=16m,mode=0700"), 0) << std::strerror(errno);
  const std::string state = mount_point.File("state");
  const absl::Status made = testing::MakeTestPki(
      pki.path(), {{"ctl", "controller", {"localhost"}, {"127.0.0.1"}}, {"alice", "admin"}});
  ASSERT_TRUE(made.ok()) << made;
  absl::StatusOr<ControllerConfig> config = ParseControllerConfig(
      absl::StrCat("[controller]\nListen = 127.0.0.1:0\nStateDir = ", state, "\n[tls]\nCA_Cert = ", pki.File("ca.crt"),
                   "\nCert = ", pki.File("ctl.crt"), "\nKey = ", pki.File("ctl.key"),
                   "\n[door ssh]\nSequence_Length = 3\nPort_Range = 20000-30000\nGrant_Ports = 22\n"),
      "test.conf");
  ASSERT_TRUE(config.ok()) << config.status();
  {
    absl::StatusOr<std::unique_ptr<ControllerDaemon>> daemon = ControllerDaemon::Start(*config);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    ControllerDaemon& d = **daemon;
    auto health = [&] {
      std::vector<std::string> argv = {"sesamectl", "--controller", absl::StrCat("127.0.0.1:", d.port()),
                                       "--ca-cert", pki.File("ca.crt"), "--cert", pki.File("alice.crt"),
                                       "--key", pki.File("alice.key"), "--timeout", "20s", "health"};
      std::vector<const char*> raw;
      for (const std::string& a : argv) raw.push_back(a.c_str());
      std::ostringstream out, err;
      RunSesamectl(static_cast<int>(raw.size()), raw.data(), out, err);
      return out.str();
    };
    EXPECT_TRUE(d.CheckStore().ok());
    EXPECT_EQ(health(), "SERVING\n");

    FillUp(mount_point.File("filler"), 32 << 20);
    d.Tick();
    const absl::Status why = d.CheckStore();
    EXPECT_TRUE(absl::IsUnavailable(why)) << why;
    EXPECT_THAT(why.message(), HasSubstr("bytes free"));
    EXPECT_EQ(health(), "NOT_SERVING\n");

    ASSERT_EQ(unlink(mount_point.File("filler").c_str()), 0);
    d.Tick();
    EXPECT_TRUE(d.CheckStore().ok());
    EXPECT_EQ(health(), "SERVING\n");
  }
  EXPECT_EQ(umount(mount_point.path().c_str()), 0) << std::strerror(errno);
}

}  // namespace
}  // namespace sesame::controller
