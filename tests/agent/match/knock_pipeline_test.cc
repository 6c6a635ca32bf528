#include "agent/match/knock_pipeline.h"

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/file_util.h"
#include "common/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

class RecordingSink final : public GrantSink {
 public:
  void Open(Grant grant) override { grants.push_back(std::move(grant)); }
  std::vector<Grant> grants;
};

const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

Packet Syn(const char* source, uint16_t port, absl::Duration at) {
  Packet p;
  p.time = kStart + at;
  p.source = *IpAddress::Parse(source);
  p.destination = *IpAddress::Parse(p.source.is_v4() ? "198.18.0.1" : "2001:db8::1");
  p.protocol = Protocol::kTcp;
  p.source_port = 40000;
  p.destination_port = port;
  p.tcp_flags = tcp_flags::kSyn;
  return p;
}

class KnockPipelineTest : public ::testing::Test {
 protected:
  std::unique_ptr<KnockPipeline> Make(const std::string& text, PipelineOptions options = {}) {
    auto config = ParseConfig(text, "test.conf");
    EXPECT_TRUE(config.ok()) << config.status();
    auto pipeline = KnockPipeline::Create(*config, options, sink_);
    EXPECT_TRUE(pipeline.ok()) << pipeline.status();
    return std::move(*pipeline);
  }
  void Knock(KnockPipeline& p, const char* source, std::vector<uint16_t> ports, absl::Duration at) {
    for (uint16_t port : ports) p.OnPacket(Syn(source, port, at));
  }

  testing::TempDir dir_;
  RecordingSink sink_;
};

TEST_F(KnockPipelineTest, CompletedSequenceBecomesAGrantWithCmdTimeout) {
  auto p = Make(R"(
[openclose]
  sequence = 7000,8000,9000
  cmd_timeout = 15
  start_command = /bin/true %IP%
  stop_command = /bin/true %IP%
)");
  Knock(*p, "198.18.0.9", {7000, 8000, 9000}, absl::Seconds(1));
  ASSERT_EQ(sink_.grants.size(), 1u);
  const Grant& g = sink_.grants[0];
  EXPECT_EQ(g.door, "openclose");
  EXPECT_EQ(g.address.ToString(), "198.18.0.9");
  EXPECT_EQ(g.opened, kStart + absl::Seconds(1));
  EXPECT_EQ(g.expires, kStart + absl::Seconds(16));
  EXPECT_EQ(p->opened(), 1u);
}

TEST_F(KnockPipelineTest, ACommandDoorWithoutStopCommandNeverCloses) {
  auto p = Make("[open]\nsequence = 7000\ncommand = /bin/true %IP%\n");
  Knock(*p, "198.18.0.9", {7000}, absl::ZeroDuration());
  ASSERT_EQ(sink_.grants.size(), 1u);
  EXPECT_EQ(sink_.grants[0].expires, absl::InfiniteFuture());
}

TEST_F(KnockPipelineTest, IPv6UsesTheSixCommandsAndOnlyIPv4CanBeForced) {
  auto p = Make("[v4only]\nsequence = 7000\ncommand = /bin/true %IP%\ncommand_6 = \n");
  Knock(*p, "2001:db8::9", {7000}, absl::ZeroDuration());
  EXPECT_TRUE(sink_.grants.empty()) << "an empty command_6 means IPv6 does nothing";

  RecordingSink other;
  auto config = ParseConfig("[both]\nsequence = 7000\ncommand = /bin/true %IP%\n", "t.conf");
  ASSERT_TRUE(config.ok());
  PipelineOptions only_v4;
  only_v4.only_ipv4 = true;
  auto q = KnockPipeline::Create(*config, only_v4, other);
  ASSERT_TRUE(q.ok());
  (*q)->OnPacket(Syn("2001:db8::9", 7000, absl::ZeroDuration()));
  EXPECT_TRUE(other.grants.empty());
  (*q)->OnPacket(Syn("198.18.0.9", 7000, absl::ZeroDuration()));
  EXPECT_EQ(other.grants.size(), 1u);
}

TEST_F(KnockPipelineTest, OneTimeSequencesAreUsedOnceThenTheNextOneCounts) {
  const std::string file = dir_.File("otp");
  ASSERT_TRUE(WriteFileAtomically(file, " 1001,1002\n 2001,2002\n", 0600).ok());
  auto p = Make("[otp]\none_time_sequences = " + file + "\ncommand = /bin/true %IP%\n");
  Knock(*p, "198.18.0.9", {1001, 1002}, absl::Seconds(1));
  ASSERT_EQ(sink_.grants.size(), 1u);
  EXPECT_EQ(*ReadFileToString(file), "#1001,1002\n 2001,2002\n");
  Knock(*p, "198.18.0.10", {1001, 1002}, absl::Seconds(2));
  EXPECT_EQ(sink_.grants.size(), 1u) << "a used sequence must not open again";
  Knock(*p, "198.18.0.10", {2001, 2002}, absl::Seconds(3));
  EXPECT_EQ(sink_.grants.size(), 2u);
  // Exhausted: the door is closed, and nothing crashes.
  EXPECT_FALSE(p->matcher().door(0).enabled);
  Knock(*p, "198.18.0.11", {2001, 2002}, absl::Seconds(4));
  EXPECT_EQ(sink_.grants.size(), 2u);
  // New lines appended by the operator open it again at the next tick.
  {
    std::ofstream out(file, std::ios::app);
    out << " 3001,3002\n";
  }
  p->Tick(kStart + absl::Seconds(10));
  ASSERT_TRUE(p->matcher().door(0).enabled);
  Knock(*p, "198.18.0.11", {3001, 3002}, absl::Seconds(11));
  EXPECT_EQ(sink_.grants.size(), 3u);
}

TEST_F(KnockPipelineTest, ThirtyInterleavedClientsAllGetIn) {
  auto p = Make("[ssh]\nsequence = 7000,8000,9000\ncommand = /bin/true %IP%\n");
  for (uint16_t port : {7000, 8000, 9000}) {
    for (int c = 1; c <= 30; ++c) {
      p->OnPacket(Syn(("198.18.1." + std::to_string(c)).c_str(), port, absl::Milliseconds(c)));
    }
  }
  EXPECT_EQ(sink_.grants.size(), 30u);
}

// A thousand spoofed scanners: the log says so in a few lines (the first
// scanner alone, at once; the others in one summary at the window's end; the
// same for the marks ending), not a thousand.
TEST_F(KnockPipelineTest, AFloodOfScannersWritesAFewLogLines) {
  std::vector<std::string> lines;
  LogOptions log;
  log.to_stderr = false;
  log.observer = [&](LogLevel, std::string_view line) { lines.emplace_back(line); };
  ASSERT_TRUE(ConfigureLogging(log).ok());
  auto p = Make("[options]\nScanReportWindow = 60s\n[ssh]\nsequence = 7000,8000,9000\ncommand = /bin/true %IP%\n");
  for (int s = 0; s < 1000; ++s) {
    const std::string source = "198.19." + std::to_string(s / 250) + "." + std::to_string(s % 250 + 1);
    const absl::Duration at = absl::Milliseconds(10 * s);
    p->OnPacket(Syn(source.c_str(), 7000, at));  // tracked from its first knock
    // 40 distinct wrong ports: flagged in every run (the matcher's sketch of
    // distinct ports is keyed at random; 14 ports could share bits).
    for (uint16_t port = 20001; port <= 20040; ++port) p->OnPacket(Syn(source.c_str(), port, at));
  }
  ASSERT_EQ(p->matcher().counters().scanners, 1000u);
  p->Tick(kStart + absl::Seconds(59));
  p->Tick(kStart + absl::Seconds(61));
  // The marks end (ScanBan, 5 minutes): the same again.
  p->Tick(kStart + absl::Seconds(400));
  p->Tick(kStart + absl::Seconds(461));
  ASSERT_TRUE(ConfigureLogging(LogOptions()).ok());

  std::vector<std::string> scanner_lines;
  for (const std::string& line : lines) {
    if (absl::StrContains(line, "scanner")) scanner_lines.push_back(line);
  }
  ASSERT_EQ(scanner_lines.size(), 4u) << ::testing::PrintToString(scanner_lines);
  EXPECT_EQ(scanner_lines[0], "198.19.0.1: knocks like a scanner (many distinct wrong ports); reported once while it goes on");
  EXPECT_TRUE(absl::StartsWith(scanner_lines[1], "scanners in the last 1m: 999 more sources flagged, 0 marks ended, "))
      << scanner_lines[1];
  EXPECT_TRUE(absl::StrContains(scanner_lines[1], "; e.g. 198.19.0.2, 198.19.0.3")) << scanner_lines[1];
  // Expire walks the table in its own order: any one of them comes first.
  EXPECT_TRUE(absl::StrContains(scanner_lines[2], ": scanning stopped")) << scanner_lines[2];
  EXPECT_TRUE(absl::StartsWith(scanner_lines[3], "scanners in the last 1m: 0 more sources flagged, 999 marks ended"))
      << scanner_lines[3];
  EXPECT_LE(lines.size(), 6u) << ::testing::PrintToString(lines);
}

}  // namespace
}  // namespace sesame
