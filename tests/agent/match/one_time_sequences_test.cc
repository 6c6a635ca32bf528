#include "agent/match/one_time_sequences.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr Knock Tcp(uint16_t port) { return Knock{port, Protocol::kTcp}; }
constexpr Knock Udp(uint16_t port) { return Knock{port, Protocol::kUdp}; }

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Replaces the file by rename, as an editor or a deployment tool does.
void ReplaceFile(const std::string& path, const std::string& content) {
  WriteFile(path + ".new", content);
  ASSERT_EQ(rename((path + ".new").c_str(), path.c_str()), 0);
}

void AppendToFile(const std::string& path, const std::string& content) {
  const int fd = open(path.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  close(fd);
}

class OneTimeSequencesTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  const std::string path_ = dir_.File("smtp_sequences");
};

TEST_F(OneTimeSequencesTest, CurrentIsTheFirstUnusedLine) {
  WriteFile(path_, "# knock sequences for smtp\n#1111,2222\n\n   \n 3333,4444:udp\n5555\n\t# indented comment\n");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(seqs->path(), path_);
  EXPECT_THAT(seqs->current(), ElementsAre(Tcp(3333), Udp(4444)));
  EXPECT_FALSE(seqs->exhausted());
  EXPECT_EQ(seqs->remaining(), 2u);
  EXPECT_THAT(seqs->warnings(), IsEmpty());
}

// Byte for byte what knockd 0.8 writes (checked against Debian's knockd
// binary): the first byte of the used line becomes '#', nothing moves.
TEST_F(OneTimeSequencesTest, ConsumeOverwritesTheFirstByteLikeKnockd) {
  WriteFile(path_, " 1111,2222\n3333,4444:udp\n# comment\n");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();

  ASSERT_TRUE(seqs->Consume({Tcp(1111), Tcp(2222)}).ok());
  EXPECT_EQ(ReadFile(path_), "#1111,2222\n3333,4444:udp\n# comment\n");
  EXPECT_THAT(seqs->current(), ElementsAre(Tcp(3333), Udp(4444)));
  EXPECT_EQ(seqs->remaining(), 1u);

  // Without a leading space the first digit is lost, as knockd's manual warns.
  ASSERT_TRUE(seqs->Consume({Tcp(3333), Udp(4444)}).ok());
  EXPECT_EQ(ReadFile(path_), "#1111,2222\n#333,4444:udp\n# comment\n");
  EXPECT_TRUE(seqs->exhausted());
}

TEST_F(OneTimeSequencesTest, ConsumeKeepsCrlfAndAMissingFinalNewline) {
  WriteFile(path_, "1,2\r\n 3,4\r\n5");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  ASSERT_TRUE(seqs->Consume({Tcp(1), Tcp(2)}).ok());
  ASSERT_TRUE(seqs->Consume({Tcp(3), Tcp(4)}).ok());
  EXPECT_THAT(seqs->current(), ElementsAre(Tcp(5)));
  ASSERT_TRUE(seqs->Consume({Tcp(5)}).ok());
  EXPECT_EQ(ReadFile(path_), "#,2\r\n#3,4\r\n#");
}

TEST_F(OneTimeSequencesTest, ExhaustionIsANormalState) {
  WriteFile(path_, " 7000,8000\n");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  ASSERT_TRUE(seqs->Consume({Tcp(7000), Tcp(8000)}).ok());
  EXPECT_TRUE(seqs->exhausted());
  EXPECT_THAT(seqs->current(), IsEmpty());
  EXPECT_EQ(seqs->remaining(), 0u);

  // knockd 0.8 aborts with a double free here; sesame says "not found".
  const absl::Status again = seqs->Consume({Tcp(7000), Tcp(8000)});
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound) << again;
  EXPECT_EQ(ReadFile(path_), "#7000,8000\n");
  auto unchanged = seqs->ReloadIfChanged();
  ASSERT_TRUE(unchanged.ok()) << unchanged.status();
  EXPECT_FALSE(*unchanged);

  // Loading a used-up or empty file is fine too.
  auto used_up = OneTimeSequences::Load(path_);
  ASSERT_TRUE(used_up.ok()) << used_up.status();
  EXPECT_TRUE(used_up->exhausted());
  WriteFile(path_, "");
  auto empty = OneTimeSequences::Load(path_);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->exhausted());
}

TEST_F(OneTimeSequencesTest, ConsumeOfAnUnknownSequenceChangesNothing) {
  const std::string content = " 1,2\n 3,4\n";
  WriteFile(path_, content);
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  const absl::Status status = seqs->Consume({Tcp(9), Tcp(9)});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()), HasSubstr("9:tcp,9:tcp"));
  EXPECT_EQ(ReadFile(path_), content);
  EXPECT_EQ(seqs->Consume({}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seqs->remaining(), 2u);
}

TEST_F(OneTimeSequencesTest, ADuplicatedSequenceIsConsumedOnceAtATime) {
  WriteFile(path_, " 1,2\n 1,2\n");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  ASSERT_TRUE(seqs->Consume({Tcp(1), Tcp(2)}).ok());
  EXPECT_EQ(ReadFile(path_), "#1,2\n 1,2\n");
  EXPECT_EQ(seqs->remaining(), 1u);
}

TEST_F(OneTimeSequencesTest, ReloadWhenTheFileIsReplaced) {
  WriteFile(path_, " 1,2\n");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  auto unchanged = seqs->ReloadIfChanged();
  ASSERT_TRUE(unchanged.ok());
  EXPECT_FALSE(*unchanged);

  ReplaceFile(path_, "#1,2\n 5,6:udp\n 7,8\n");
  auto changed = seqs->ReloadIfChanged();
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_THAT(seqs->current(), ElementsAre(Tcp(5), Udp(6)));
  EXPECT_EQ(seqs->remaining(), 2u);
  auto again = seqs->ReloadIfChanged();
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
}

TEST_F(OneTimeSequencesTest, ReloadWhenSequencesAreAppendedToAnExhaustedFile) {
  WriteFile(path_, "#1,2\n");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_TRUE(seqs->exhausted());
  AppendToFile(path_, " 3,4\n");
  auto changed = seqs->ReloadIfChanged();
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_THAT(seqs->current(), ElementsAre(Tcp(3), Tcp(4)));
}

TEST_F(OneTimeSequencesTest, ConsumeWorksOnTheFileAsItIsNowAndLosesNoEdit) {
  WriteFile(path_, " 1,2\n 3,4\n");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  // An operator edits the file; the agent has not reloaded yet.
  ReplaceFile(path_, "# rotated by ops\n 1,2\n 3,4\n 9,9\n");
  ASSERT_TRUE(seqs->Consume({Tcp(1), Tcp(2)}).ok());
  EXPECT_EQ(ReadFile(path_), "# rotated by ops\n#1,2\n 3,4\n 9,9\n");
  EXPECT_EQ(seqs->remaining(), 2u);

  // A sequence the operator removed is no longer accepted.
  ReplaceFile(path_, "# rotated by ops\n#1,2\n 9,9\n");
  EXPECT_EQ(seqs->Consume({Tcp(3), Tcp(4)}).code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(seqs->current(), ElementsAre(Tcp(9), Tcp(9)));
}

TEST_F(OneTimeSequencesTest, ConsumeKeepsTheModeAndLeavesNoTemporary) {
  WriteFile(path_, " 1\n 2\n");
  ASSERT_EQ(chmod(path_.c_str(), 0640), 0);
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  struct stat before;
  ASSERT_EQ(stat(path_.c_str(), &before), 0);
  ASSERT_TRUE(seqs->Consume({Tcp(1)}).ok());
  struct stat after;
  ASSERT_EQ(stat(path_.c_str(), &after), 0);
  EXPECT_EQ(after.st_mode & 07777, 0640u);
  EXPECT_NE(after.st_ino, before.st_ino);  // replaced, not rewritten in place
  // Only the file itself is left in the directory.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  // Our own write does not count as a change.
  auto changed = seqs->ReloadIfChanged();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
}

TEST_F(OneTimeSequencesTest, ConsumeFollowsASymlink) {
  const std::string target = dir_.File("real");
  WriteFile(target, " 1\n 2\n");
  ASSERT_EQ(symlink(target.c_str(), path_.c_str()), 0);
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  ASSERT_TRUE(seqs->Consume({Tcp(1)}).ok());
  struct stat st;
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(ReadFile(target), "#1\n 2\n");
}

TEST_F(OneTimeSequencesTest, AMissingFileFailsAndEmptiesTheState) {
  auto missing = OneTimeSequences::Load(dir_.File("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(dir_.File("nope")));

  WriteFile(path_, " 1,2\n");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  ASSERT_EQ(unlink(path_.c_str()), 0);
  auto gone = seqs->ReloadIfChanged();
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(seqs->exhausted());  // no stale sequence is accepted
  EXPECT_FALSE(seqs->Consume({Tcp(1), Tcp(2)}).ok());

  WriteFile(path_, " 1,2\n");
  auto back = seqs->ReloadIfChanged();
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back);
  EXPECT_THAT(seqs->current(), ElementsAre(Tcp(1), Tcp(2)));
}

TEST_F(OneTimeSequencesTest, MalformedLinesAreSkippedWithAWarningWhenLenient) {
  WriteFile(path_, "#used\n 1,0\n 2:icmp\n 3,4\n");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_THAT(seqs->current(), ElementsAre(Tcp(3), Tcp(4)));
  EXPECT_EQ(seqs->remaining(), 1u);
  EXPECT_THAT(seqs->warnings(),
              ElementsAre(path_ + ":2: port 0 is out of range (1-65535); each line holds one sequence "
                                  "such as 7000,8000:udp,9000, or starts with # when used or a comment",
                          path_ + ":3: unknown protocol \"icmp\" in \"2:icmp\"; expected tcp or udp; each line "
                                  "holds one sequence such as 7000,8000:udp,9000, or starts with # when used or a "
                                  "comment"));
  // Consuming the current line leaves the malformed lines as they are.
  ASSERT_TRUE(seqs->Consume({Tcp(3), Tcp(4)}).ok());
  EXPECT_EQ(ReadFile(path_), "#used\n 1,0\n 2:icmp\n#3,4\n");
}

TEST_F(OneTimeSequencesTest, WarningsAreLoggedOncePerVersionOfTheFile) {
  int logged = 0;
  LogOptions options;
  options.to_stderr = false;
  options.observer = [&](LogLevel level, std::string_view) { logged += level == LogLevel::kWarning; };
  ASSERT_TRUE(ConfigureLogging(options).ok());
  WriteFile(path_, " bad\n 1\n 2\n");
  auto seqs = OneTimeSequences::Load(path_);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(logged, 1);
  ASSERT_TRUE(seqs->Consume({Tcp(1)}).ok());  // re-reads the same version
  EXPECT_EQ(logged, 1);
  ReplaceFile(path_, " bad\n 2\n bad too\n");
  ASSERT_TRUE(seqs->ReloadIfChanged().ok());
  EXPECT_EQ(logged, 3);
  ASSERT_TRUE(ConfigureLogging(LogOptions()).ok());
}

TEST_F(OneTimeSequencesTest, MalformedLinesAreErrorsWhenStrict) {
  WriteFile(path_, "#used\n 1,2\n 70000\n");
  auto strict = OneTimeSequences::Load(path_, OneTimeSequences::Mode::kStrict);
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.status().message(), path_ + ":3: port 70000 is out of range (1-65535); each line holds one "
                                               "sequence such as 7000,8000:udp,9000, or starts with # when used or "
                                               "a comment");
  EXPECT_EQ(OneTimeSequences::Check(path_).message(), strict.status().message());

  WriteFile(path_, std::string(" 1,2\n 3\0004\n", 10));
  EXPECT_THAT(std::string(OneTimeSequences::Check(path_).message()),
              HasSubstr(path_ + ":2: line contains a NUL byte"));

  // A strict reader that meets a malformed edit at runtime drops to empty.
  WriteFile(path_, " 1,2\n");
  auto seqs = OneTimeSequences::Load(path_, OneTimeSequences::Mode::kStrict);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  ReplaceFile(path_, " 1,2\n x\n");
  EXPECT_FALSE(seqs->ReloadIfChanged().ok());
  EXPECT_TRUE(seqs->exhausted());
}

TEST_F(OneTimeSequencesTest, CheckAcceptsAGoodFileAndRefusesADirectory) {
  WriteFile(path_, "#1\n 2,3:udp\n");
  EXPECT_TRUE(OneTimeSequences::Check(path_).ok());
  WriteFile(path_, "#all used\n");
  EXPECT_TRUE(OneTimeSequences::Check(path_).ok());  // exhausted is not a configuration error
  EXPECT_FALSE(OneTimeSequences::Check(dir_.path()).ok());
  EXPECT_EQ(OneTimeSequences::Check(dir_.File("missing")).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sesame
