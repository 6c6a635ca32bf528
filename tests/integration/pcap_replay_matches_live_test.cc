// Issue 15, part 4: `--pcap` replay equals the live capture. One capture
// file is sent with tcpreplay from a client namespace to a live sesame-agent
// capturing on the bastion namespace's veth, and replayed with --pcap; the
// doors that opened, for which sources, and the sources reported as
// scanners must be the same.
//
// The file holds what a capture filter passing only the sequences' ports
// would have dropped, so the comparison means something: a forged sweep that
// walks through a door's ascending ports (and is detected by its wrong
// ports), and knocks with stray ports between them (one is forgiven in
// compat mode, two reset). Each case is decided by those packets.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/frames.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_network.h"

namespace sesame {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using testing::TestNetwork;
using testing::WaitFor;

const std::string kAgent = SESAME_BINARY_DIR "/agent/sesame-agent";

// Doors: one all-TCP and ascending, as a sweep walks it; one UDP.
std::string Config(const std::string& reset_mode) {
  std::string text;
  if (reset_mode == "strict") text = "[options]\n  ResetMode = strict\n";
  absl::StrAppend(&text,
                  "[ssh]\n  sequence = 7000,8000,9000\n  seq_timeout = 5\n  backend = nftables\n  cmd_timeout = 60\n"
                  "[web]\n  sequence = 7500:udp,8500:udp\n  seq_timeout = 5\n  backend = nftables\n"
                  "  cmd_timeout = 60\n");
  return text;
}

// The sources of the capture (each a case) and their knocks.
constexpr char kSweeper[] = "203.0.113.7";     // forged sweep, then 2 s later a correct knock
constexpr char kOneStray[] = "203.0.113.20";   // ssh with one stray port between knocks
constexpr char kTwoStrays[] = "203.0.113.21";  // ssh with two stray ports between knocks
constexpr char kUdpKnocker[] = "203.0.113.22";
constexpr char kV6Knocker[] = "2001:db8:5e5a::7";
constexpr char kLast[] = "203.0.113.30";    // the file's last knock: the live agent has seen everything
constexpr char kWarmUp[] = "203.0.113.99";  // before the file: the live capture is running

// "door address" of each opening, sorted (a door opening twice counts twice).
using Openings = std::vector<std::string>;

Openings Expected(const std::string& reset_mode) {
  Openings out = {absl::StrCat("ssh ", kSweeper), absl::StrCat("ssh ", kV6Knocker), absl::StrCat("ssh ", kLast),
                  absl::StrCat("web ", kUdpKnocker)};
  if (reset_mode == "compat") out.push_back(absl::StrCat("ssh ", kOneStray));  // one stray is forgiven
  std::sort(out.begin(), out.end());
  return out;
}

std::array<uint8_t, 6> ParseMac(absl::string_view text) {
  std::array<uint8_t, 6> mac{};
  const std::vector<std::string> parts = absl::StrSplit(absl::StripAsciiWhitespace(text), ':');
  if (parts.size() != 6) return mac;
  for (size_t i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(std::stoul(parts[i], nullptr, 16));
  return mac;
}

// Builds the capture: frames from the client to the bastion's MAC and
// addresses, in time order.
class CaptureBuilder {
 public:
  CaptureBuilder(std::array<uint8_t, 6> bastion_mac, absl::Time t0) : mac_(bastion_mac), t0_(t0) {}

  void Tcp(const std::string& source, uint16_t port, absl::Duration at) {
    Add(testing::TcpFrame(source, DestinationFor(source), port), at);
  }
  void Udp(const std::string& source, uint16_t port, absl::Duration at) {
    Add(testing::UdpFrame(source, DestinationFor(source), port), at);
  }
  // Knocks "PORT[:udp]" 10 ms apart from `at`; returns the time after them.
  absl::Duration Knocks(const std::string& source, const std::vector<std::string>& knocks, absl::Duration at) {
    for (const std::string& k : knocks) {
      const bool udp = absl::EndsWith(k, ":udp");
      const uint16_t port = static_cast<uint16_t>(std::stoi(k));
      udp ? Udp(source, port, at) : Tcp(source, port, at);
      at += absl::Milliseconds(10);
    }
    return at;
  }

  std::vector<testing::CapturedFrame> Frames() {
    std::stable_sort(frames_.begin(), frames_.end(), [](const auto& a, const auto& b) { return a.time < b.time; });
    return frames_;
  }

 private:
  static std::string DestinationFor(const std::string& source) {
    return source.find(':') != std::string::npos ? TestNetwork::kGatewayV6 : TestNetwork::kGatewayV4;
  }
  void Add(testing::FrameSpec spec, absl::Duration at) {
    spec.destination_mac = mac_;
    spec.source_mac = {0x02, 0x5e, 0x5a, 0, 0, 0x07};
    spec.source_port = static_cast<uint16_t>(40000 + frames_.size() % 20000);
    frames_.push_back({t0_ + at, testing::BuildFrame(spec)});
  }

  std::array<uint8_t, 6> mac_;
  absl::Time t0_;
  std::vector<testing::CapturedFrame> frames_;
};

// Lines "ADDRESS: knocks like a scanner" of a log: the addresses, sorted.
std::vector<std::string> Scanners(const std::string& log) {
  std::set<std::string> out;
  static const std::regex kLine(R"(([0-9a-f.:]+): knocks like a scanner)");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), kLine); it != std::sregex_iterator(); ++it) {
    out.insert((*it)[1]);
  }
  return {out.begin(), out.end()};
}

class PcapReplayMatchesLiveTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(net_.status().ok()) << net_.status();
    ASSERT_EQ(access(kAgent.c_str(), X_OK), 0) << kAgent << " (build target sesame-agent)";
    ASSERT_TRUE(testing::HaveTool("tcpreplay"));
    ASSERT_TRUE(WriteFileAtomically(dir_.File("knockd.conf"), Config(GetParam())).ok());
    const testing::CommandResult mac =
        net_.Exec(net_.gateway(), {"cat", absl::StrCat("/sys/class/net/", TestNetwork::kGatewayIf, "/address")});
    ASSERT_EQ(mac.exit_code, 0) << mac.output;
    bastion_mac_ = ParseMac(mac.output);
  }

  std::string AgentLog() const {
    absl::StatusOr<std::string> text = ReadFileToString(dir_.File("agent.log"));
    return text.ok() ? *text : "";
  }

  // The live agent's openings so far ("ADDRESS: DOOR: OPEN SESAME" lines),
  // leaving out `skip`.
  Openings LiveOpenings(const std::string& skip) const {
    Openings out;
    const std::string log = AgentLog();
    static const std::regex kLine(R"(([0-9a-f.:]+): ([A-Za-z0-9_]+): OPEN SESAME)");
    for (auto it = std::sregex_iterator(log.begin(), log.end(), kLine); it != std::sregex_iterator(); ++it) {
      if ((*it)[1] != skip) out.push_back(absl::StrCat((*it)[2].str(), " ", (*it)[1].str()));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  void Tcpreplay(const std::string& file) {
    const testing::CommandResult r = net_.Exec(net_.client(), {"tcpreplay", "-q", "-i", "sxcl0", dir_.File(file)});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  // Declared first, destroyed last: the daemons the network runs (writing
  // into dir_) are stopped before dir_ is removed.
  testing::TempDir dir_;
  TestNetwork net_{"sxp"};
  std::array<uint8_t, 6> bastion_mac_{};
};

TEST_P(PcapReplayMatchesLiveTest, TheSameDoorsOpenForTheSameSources) {
  const absl::Time t0 = absl::FromUnixSeconds(1'750'000'000);
  CaptureBuilder capture(bastion_mac_, t0);
  // A TCP sweep of 6990..9010 at 2,000 ports/s forged with kSweeper's
  // address: it passes 7000, 8000 and 9000 in order (a filter of the
  // sequences' ports would let it through ssh), and it is a scanner.
  absl::Duration at;
  for (uint16_t port = 6990; port <= 9010; ++port) {
    capture.Tcp(kSweeper, port, at);
    at += absl::Microseconds(500);
  }
  // kSweeper's own correct knock, 2 s after the sweep: it opens.
  const absl::Duration last = capture.Knocks(kSweeper, {"7000", "8000", "9000"}, at + absl::Seconds(2));
  // Meanwhile, during the sweep:
  capture.Knocks(kOneStray, {"7000", "7777", "8000", "9000"}, absl::Milliseconds(200));
  capture.Knocks(kTwoStrays, {"7000", "7777", "7778", "8000", "9000"}, absl::Milliseconds(300));
  capture.Knocks(kUdpKnocker, {"7500:udp", "8500:udp"}, absl::Milliseconds(400));
  capture.Knocks(kV6Knocker, {"7000", "8000", "9000"}, absl::Milliseconds(500));
  capture.Knocks(kLast, {"7000", "8000", "9000"}, last + absl::Milliseconds(200));
  const std::vector<testing::CapturedFrame> frames = capture.Frames();
  ASSERT_TRUE(testing::WritePcapFile(dir_.File("knocks.pcap"), DLT_EN10MB, frames).ok());
  CaptureBuilder warm_up(bastion_mac_, t0);
  warm_up.Knocks(kWarmUp, {"7500:udp", "8500:udp"}, absl::ZeroDuration());
  ASSERT_TRUE(testing::WritePcapFile(dir_.File("warmup.pcap"), DLT_EN10MB, warm_up.Frames()).ok());

  // Replayed.
  const testing::CommandResult replay =
      testing::RunCommand({kAgent, "-c", dir_.File("knockd.conf"), "--pcap", dir_.File("knocks.pcap")});
  ASSERT_EQ(replay.exit_code, 0) << replay.output;
  ASSERT_THAT(replay.output, HasSubstr(absl::StrCat("\"frames\": ", frames.size())));
  Openings replayed;
  const size_t opened_at = replay.output.find("\"opened\": [");
  const size_t closed_at = replay.output.find("\"closed\": [");
  ASSERT_TRUE(opened_at != std::string::npos && closed_at > opened_at) << replay.output;
  const std::string opened = replay.output.substr(opened_at, closed_at - opened_at);
  static const std::regex kOpened(R"re(\{"door": "([^"]+)", "address": "([^"]+)")re");
  for (auto it = std::sregex_iterator(opened.begin(), opened.end(), kOpened); it != std::sregex_iterator(); ++it) {
    replayed.push_back(absl::StrCat((*it)[1].str(), " ", (*it)[2].str()));
  }
  std::sort(replayed.begin(), replayed.end());
  EXPECT_THAT(replayed, ElementsAreArray(Expected(GetParam()))) << replay.output;

  // Live: the agent captures on the bastion's veth; tcpreplay sends the file
  // (at its own pace) into the client's end.
  const pid_t agent = net_.Spawn(net_.gateway(),
                                 {kAgent, "-i", TestNetwork::kGatewayIf, "-c", dir_.File("knockd.conf"), "--state-dir",
                                  dir_.File("state"), "-p", dir_.File("agent.pid")},
                                 dir_.File("agent.log"));
  ASSERT_TRUE(
      WaitFor([&] { return AgentLog().find("sesame-agent started") != std::string::npos || !net_.Alive(agent); }));
  ASSERT_TRUE(net_.Alive(agent)) << AgentLog();
  // The capture is running once a knock gets through: knock until one does
  // (a bounded number of times).
  bool warm = false;
  for (int attempt = 0; attempt < 20 && !warm; ++attempt) {
    Tcpreplay("warmup.pcap");
    warm = WaitFor([&] { return AgentLog().find(absl::StrCat(kWarmUp, ": web: OPEN SESAME")) != std::string::npos; },
                   absl::Seconds(2));
  }
  ASSERT_TRUE(warm) << AgentLog();
  Tcpreplay("knocks.pcap");
  // The file's last knock opened: the agent has judged every frame before it.
  ASSERT_TRUE(WaitFor([&] { return AgentLog().find(absl::StrCat(kLast, ": ssh: OPEN SESAME")) != std::string::npos; }))
      << AgentLog();
  net_.Stop(agent, SIGTERM);
  const Openings live = LiveOpenings(kWarmUp);
  EXPECT_THAT(live, ElementsAreArray(replayed)) << "live:\n" << AgentLog() << "\nreplayed:\n" << replay.output;

  // The sweep is reported as a scanner, and only the sweep, both ways.
  EXPECT_THAT(Scanners(replay.output), ElementsAreArray({std::string(kSweeper)})) << replay.output;
  EXPECT_THAT(Scanners(AgentLog()), ElementsAreArray({std::string(kSweeper)})) << AgentLog();
}

INSTANTIATE_TEST_SUITE_P(ResetModes, PcapReplayMatchesLiveTest, ::testing::Values("compat", "strict"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace sesame
