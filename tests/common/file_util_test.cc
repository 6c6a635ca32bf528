#include "common/file_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(ReadSmallRegularFileTest, ReadsARegularFileUpToTheLimitInclusive) {
  testing::TempDir dir;
  const std::string path = dir.File("f");
  WriteFile(path, "0123456789");
  struct stat st {};
  absl::StatusOr<std::string> text = ReadSmallRegularFile(path, 10, &st);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "0123456789");
  EXPECT_EQ(st.st_size, 10);
  EXPECT_TRUE(CheckSmallRegularFile(path, 10).ok());
}

TEST(ReadSmallRegularFileTest, AnEmptyFileIsEmpty) {
  testing::TempDir dir;
  WriteFile(dir.File("f"), "");
  absl::StatusOr<std::string> text = ReadSmallRegularFile(dir.File("f"), 0);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "");
}

TEST(ReadSmallRegularFileTest, AFileOverTheLimitIsRefusedWithTheLimit) {
  testing::TempDir dir;
  const std::string path = dir.File("big");
  WriteFile(path, std::string(11, 'x'));
  for (const absl::Status& s : {ReadSmallRegularFile(path, 10).status(), CheckSmallRegularFile(path, 10)}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
    EXPECT_THAT(s.message(), HasSubstr(path));
    EXPECT_THAT(s.message(), HasSubstr("limit of 10 bytes"));
    EXPECT_THAT(s.message(), HasSubstr("11 bytes"));
  }
}

TEST(ReadSmallRegularFileTest, AMissingFileIsNotFound) {
  testing::TempDir dir;
  const absl::Status s = ReadSmallRegularFile(dir.File("none"), 10).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr(dir.File("none")));
  EXPECT_EQ(CheckSmallRegularFile(dir.File("none"), 10).code(), absl::StatusCode::kNotFound);
}

TEST(ReadSmallRegularFileTest, ACharacterDeviceIsNotReadAtAll) {
  // /dev/zero never ends: reading it whole is what exhausted memory.
  for (const absl::Status& s :
       {ReadSmallRegularFile("/dev/zero", 1 << 20).status(), CheckSmallRegularFile("/dev/zero", 1 << 20)}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_EQ(s.message(), "/dev/zero is not a regular file (a character device)");
  }
}

TEST(ReadSmallRegularFileTest, ADirectoryIsRefused) {
  testing::TempDir dir;
  const absl::Status s = ReadSmallRegularFile(dir.path(), 1 << 20).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("is not a regular file (a directory)"));
}

TEST(ReadSmallRegularFileTest, AFifoWithoutWriterIsRefusedWithoutBlocking) {
  testing::TempDir dir;
  const std::string fifo = dir.File("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // A blocking open would wait here for a writer that never comes.
  const absl::Status s = ReadSmallRegularFile(fifo, 1 << 20).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("is not a regular file (a FIFO)"));
}

TEST(ReadSmallRegularFileTest, ASymlinkToARegularFileIsFollowed) {
  testing::TempDir dir;
  WriteFile(dir.File("target"), "abc");
  ASSERT_EQ(symlink(dir.File("target").c_str(), dir.File("link").c_str()), 0);
  absl::StatusOr<std::string> text = ReadSmallRegularFile(dir.File("link"), 3);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "abc");
}

TEST(ReadSmallRegularFileTest, AnUnreadableFileSaysSo) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  testing::TempDir dir;
  WriteFile(dir.File("secret"), "x");
  ASSERT_EQ(chmod(dir.File("secret").c_str(), 0), 0);
  const absl::Status s = ReadSmallRegularFile(dir.File("secret"), 10).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(s.message(), HasSubstr("cannot open"));
}

}  // namespace
}  // namespace sesame
