// Issue 13's reproduction through the real binaries: knockgen writes a port
// sweep forged with an engineer's address and, 2 s after its last packet, the
// engineer's own correct knock; `sesame-agent --pcap` replays the two as one
// capture. The sweep is reported as a scanner, and the knock opens the door,
// in both reset modes: a forged sweep must not keep the address's owner out.
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/frames.h"
#include "tests/support/namespace_sandbox.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kAgent = SESAME_BINARY_DIR "/agent/sesame-agent";
const std::string kKnockgen = SESAME_BINARY_DIR "/bench/tools/knockgen";

constexpr char kEngineer[] = "203.0.113.7";
constexpr char kBastion[] = "198.51.100.1";
constexpr char kBastionMac[] = "02:00:00:00:00:02";
constexpr char kDoor[] = "7000:tcp,8000:udp,9000:tcp";

// The door of the issue; `extra` is appended to the file.
std::string DoorConf(const std::string& reset_mode, const std::string& extra = "") {
  std::string text;
  if (reset_mode == "strict") text = "[options]\n  ResetMode = strict\n";
  absl::StrAppend(&text, "[door]\n  sequence = ", kDoor, "\n  seq_timeout = 5\n  backend = nftables\n",
                  "  cmd_timeout = 30\n", extra);
  return text;
}

// The time as `--pcap`'s JSON prints it.
std::string JsonTime(absl::Time t) {
  return absl::StrCat("\"", absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone()), "\"");
}

class ForgedSweepReplayTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kAgent.c_str(), X_OK), 0) << kAgent << " (build target sesame-agent)";
    ASSERT_EQ(access(kKnockgen.c_str(), X_OK), 0) << kKnockgen << " (build target knockgen)";
  }

  // knockgen MODE ... -w DIR/FILE, addressed as in the issue.
  void Knockgen(const std::string& file, std::vector<std::string> args) {
    std::vector<std::string> argv = {kKnockgen};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"-w", dir_.File(file), "--dst", kBastion, "--dst-mac", kBastionMac});
    const testing::CommandResult r = testing::RunCommand(argv);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  void WriteSweep() {
    Knockgen("sweep.pcap", {"sweep", "--src", kEngineer, "--first", "6990", "--last", "9010", "--rate", "2000"});
  }

  // sweep.pcap, then knock.pcap moved to start 2 s after the sweep's last
  // packet, as DIR/combined.pcap. Returns the time of the last knock.
  absl::Time WriteCombined() {
    WriteSweep();
    Knockgen("knock.pcap", {"sequence", "--src", kEngineer, "--sequence", kDoor, "--gap-ms", "10"});
    absl::StatusOr<testing::CaptureFile> sweep = testing::ReadPcapFile(dir_.File("sweep.pcap"));
    absl::StatusOr<testing::CaptureFile> knock = testing::ReadPcapFile(dir_.File("knock.pcap"));
    EXPECT_TRUE(sweep.ok()) << sweep.status();
    EXPECT_TRUE(knock.ok()) << knock.status();
    if (!sweep.ok() || !knock.ok()) return absl::InfinitePast();
    EXPECT_EQ(sweep->frames.size(), 2021u);
    EXPECT_EQ(knock->frames.size(), 3u);
    if (sweep->frames.empty() || knock->frames.size() != 3) return absl::InfinitePast();

    std::vector<testing::CapturedFrame> frames = sweep->frames;
    const absl::Duration shift = sweep->frames.back().time + absl::Seconds(2) - knock->frames.front().time;
    for (testing::CapturedFrame f : knock->frames) {
      f.time += shift;
      frames.push_back(std::move(f));
    }
    const absl::Status written = testing::WritePcapFile(dir_.File("combined.pcap"), sweep->link_type, frames);
    EXPECT_TRUE(written.ok()) << written;
    return frames.back().time;
  }

  testing::CommandResult Replay(const std::string& conf, const std::string& capture) {
    EXPECT_TRUE(WriteFileAtomically(dir_.File("door.conf"), conf).ok());
    return testing::RunCommand({kAgent, "-c", dir_.File("door.conf"), "--pcap", dir_.File(capture)});
  }

  testing::TempDir dir_;
};

TEST_P(ForgedSweepReplayTest, TheKnockTwoSecondsAfterAForgedSweepOpensAndTheSweepIsReported) {
  const absl::Time last_knock = WriteCombined();
  ASSERT_FALSE(::testing::Test::HasFailure());
  const testing::CommandResult r = Replay(DoorConf(GetParam()), "combined.pcap");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(R"("frames": 2024)"));
  EXPECT_THAT(r.output, HasSubstr(R"("scanners": 1)")) << "the sweep is still detected";
  EXPECT_THAT(r.output, HasSubstr(absl::StrCat(kEngineer, ": knocks like a scanner")));
  // The door opened once, for the engineer, on the knock's last packet (not
  // during the sweep).
  EXPECT_THAT(r.output, HasSubstr(absl::StrCat(R"("opened": [{"door": "door", "address": ")", kEngineer,
                                               R"(", "time": )", JsonTime(last_knock), R"(, "expires")")))
      << r.output;
  EXPECT_THAT(r.output, HasSubstr(R"("completions": 1)"));
}

// The same sweep alone opens nothing, also through a door that it walks
// through in order (7000, 8000, 9000, all TCP): scanner detection and the
// reset rules see its wrong ports in both modes.
TEST_P(ForgedSweepReplayTest, TheSweepAloneOpensNothing) {
  WriteSweep();
  ASSERT_FALSE(::testing::Test::HasFailure());
  const testing::CommandResult r = Replay(
      DoorConf(GetParam(), "[ascending]\n  sequence = 7000,8000,9000\n  seq_timeout = 5\n  backend = nftables\n"),
      "sweep.pcap");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(R"("frames": 2021)"));
  EXPECT_THAT(r.output, HasSubstr(R"("scanners": 1)"));
  EXPECT_THAT(r.output, HasSubstr(R"("opened": [])")) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("OPEN SESAME")));
}

INSTANTIATE_TEST_SUITE_P(ResetModes, ForgedSweepReplayTest, ::testing::Values("compat", "strict"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace sesame
