#include "agent/capture/capture_filter.h"

#include <pcap/pcap.h>

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/frames.h"

namespace sesame {
namespace {

using testing::BuildFrame;
using testing::FrameSpec;
using testing::TcpFrame;
using testing::UdpFrame;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kBpfMaxInstructions = 4096;  // the kernel's BPF_MAXINSNS

// A filter compiled by libpcap for one link type, run by libpcap's own
// interpreter: what the kernel would decide.
class CompiledFilter {
 public:
  CompiledFilter(const std::string& text, int link_type) : pcap_(pcap_open_dead(link_type, 65535)) {
    compiled_ = pcap_compile(pcap_, &program_, text.c_str(), 1, PCAP_NETMASK_UNKNOWN) == 0;
    if (!compiled_) error_ = pcap_geterr(pcap_);
  }
  ~CompiledFilter() {
    if (compiled_) pcap_freecode(&program_);
    pcap_close(pcap_);
  }
  bool compiled() const { return compiled_; }
  const std::string& error() const { return error_; }
  unsigned instructions() const { return program_.bf_len; }
  bool Passes(const std::vector<uint8_t>& frame) const {
    pcap_pkthdr header{};
    header.caplen = header.len = static_cast<bpf_u_int32>(frame.size());
    return pcap_offline_filter(&program_, &header, frame.data()) != 0;
  }
  bool Passes(const FrameSpec& spec) const { return Passes(BuildFrame(spec)); }

 private:
  pcap_t* pcap_;
  bpf_program program_{};
  bool compiled_ = false;
  std::string error_;
};

const int kLinkTypes[] = {DLT_EN10MB, DLT_LINUX_SLL2, DLT_RAW};

FrameSpec On(int link_type, FrameSpec spec, std::vector<testing::VlanTag> vlans = {}) {
  spec.link_type = link_type;
  spec.vlans = std::move(vlans);
  return spec;
}

// The tag stacks a frame may carry on `link_type` in a capture file.
std::vector<std::vector<testing::VlanTag>> TagStacks(int link_type) {
  if (link_type != DLT_EN10MB) return {{}};
  return {{}, {{0x8100, 100}}, {{0x88A8, 10}, {0x8100, 20}}};
}

constexpr Knock Tcp(uint16_t port) { return {port, Protocol::kTcp}; }
constexpr Knock Udp(uint16_t port) { return {port, Protocol::kUdp}; }

TEST(CaptureFilterTextTest, ReadsAsExpected) {
  const CaptureScope scope = CaptureScope::Only({Udp(8000), Tcp(7002), Tcp(7000), Tcp(7001), Tcp(9000)});
  EXPECT_EQ(CaptureFilterText(scope, DLT_RAW),
            "(tcp and (dst portrange 7000-7002 or dst port 9000)) or (udp and (dst port 8000)) or "
            "ip6 proto 0 or ip6 proto 43 or ip6 proto 44 or ip6 proto 51 or ip6 proto 60");
  EXPECT_EQ(CaptureFilterText(CaptureScope::Everything(), DLT_LINUX_SLL2),
            "tcp or udp or ip6 proto 0 or ip6 proto 43 or ip6 proto 44 or ip6 proto 51 or ip6 proto 60");
  EXPECT_THAT(CaptureFilterText(scope, DLT_EN10MB), HasSubstr(" or (vlan and ("));
  EXPECT_THAT(CaptureFilterText(scope, DLT_LINUX_SLL), Not(HasSubstr("vlan")));
  // The order of the knocks does not matter.
  EXPECT_EQ(CaptureFilterText(scope, DLT_EN10MB),
            CaptureFilterText(CaptureScope::Only({Tcp(9000), Tcp(7001), Udp(8000), Tcp(7000), Tcp(7002)}), DLT_EN10MB));
}

TEST(CaptureFilterTest, EverythingPassesEveryTcpAndUdpPacketAndNothingElse) {
  for (int dlt : kLinkTypes) {
    CompiledFilter filter(CaptureFilterText(CaptureScope::Everything(), dlt), dlt);
    ASSERT_TRUE(filter.compiled()) << dlt << ": " << filter.error();
    for (const auto& tags : TagStacks(dlt)) {
      SCOPED_TRACE(::testing::Message() << "link " << dlt << ", " << tags.size() << " tags");
      EXPECT_TRUE(filter.Passes(On(dlt, TcpFrame("192.0.2.10", "192.0.2.1", 1), tags)));
      EXPECT_TRUE(filter.Passes(On(dlt, TcpFrame("192.0.2.10", "192.0.2.1", 443, tcp_flags::kAck), tags)));
      EXPECT_TRUE(filter.Passes(On(dlt, UdpFrame("192.0.2.10", "192.0.2.1", 53), tags)));
      EXPECT_TRUE(filter.Passes(On(dlt, TcpFrame("2001:db8::7", "2001:db8::1", 22), tags)));
      EXPECT_TRUE(filter.Passes(On(dlt, UdpFrame("2001:db8::7", "2001:db8::1", 65535), tags)));
      FrameSpec icmp = On(dlt, TcpFrame("192.0.2.10", "192.0.2.1", 0), tags);
      icmp.ip_protocol = testing::kIpProtoIcmp;
      icmp.payload = {8, 0, 0, 0, 0, 0, 0, 0};
      EXPECT_FALSE(filter.Passes(icmp));
      FrameSpec icmp6 = On(dlt, TcpFrame("2001:db8::7", "2001:db8::1", 0), tags);
      icmp6.ip_protocol = testing::kIpProtoIcmpv6;
      icmp6.payload = {128, 0, 0, 0, 0, 0, 0, 0};
      EXPECT_FALSE(filter.Passes(icmp6));
    }
  }
}

TEST(CaptureFilterTest, KnocksPassOnlyToTheirPortsAndProtocols) {
  const CaptureScope scope = CaptureScope::Only({Tcp(7000), Udp(8000), Tcp(9000), Tcp(9001)});
  for (int dlt : kLinkTypes) {
    CompiledFilter filter(CaptureFilterText(scope, dlt), dlt);
    ASSERT_TRUE(filter.compiled()) << dlt << ": " << filter.error();
    for (const auto& tags : TagStacks(dlt)) {
      for (const auto& [src, dst] : {std::pair{"192.0.2.10", "192.0.2.1"}, std::pair{"2001:db8::7", "2001:db8::1"}}) {
        SCOPED_TRACE(::testing::Message() << "link " << dlt << ", " << tags.size() << " tags, " << src);
        EXPECT_TRUE(filter.Passes(On(dlt, TcpFrame(src, dst, 7000), tags)));
        EXPECT_TRUE(filter.Passes(On(dlt, UdpFrame(src, dst, 8000), tags)));
        EXPECT_TRUE(filter.Passes(On(dlt, TcpFrame(src, dst, 9001, tcp_flags::kSyn | tcp_flags::kAck), tags)));
        EXPECT_FALSE(filter.Passes(On(dlt, UdpFrame(src, dst, 7000), tags)));  // wrong protocol
        EXPECT_FALSE(filter.Passes(On(dlt, TcpFrame(src, dst, 8000), tags)));
        EXPECT_FALSE(filter.Passes(On(dlt, TcpFrame(src, dst, 7001), tags)));  // other ports
        EXPECT_FALSE(filter.Passes(On(dlt, TcpFrame(src, dst, 22), tags)));
        FrameSpec from_port = On(dlt, TcpFrame(src, dst, 22), tags);  // a knock port as the source
        from_port.source_port = 7000;
        EXPECT_FALSE(filter.Passes(from_port));
      }
    }
  }
}

TEST(CaptureFilterTest, Ipv6ExtensionHeadersReachTheDecoder) {
  const CaptureScope scope = CaptureScope::Only({Tcp(7000)});
  for (int dlt : kLinkTypes) {
    CompiledFilter filter(CaptureFilterText(scope, dlt), dlt);
    ASSERT_TRUE(filter.compiled()) << filter.error();
    for (const auto& tags : TagStacks(dlt)) {
      for (uint8_t type : {testing::kIpProtoHopByHop, testing::kIpProtoRouting, testing::kIpProtoFragment,
                           testing::kIpProtoAh, testing::kIpProtoDestinationOptions}) {
        FrameSpec spec = On(dlt, TcpFrame("2001:db8::7", "2001:db8::1", 7000), tags);
        spec.ipv6_extensions = {{type, type == testing::kIpProtoAh ? 12u : 8u}};
        EXPECT_TRUE(filter.Passes(spec)) << "link " << dlt << " header " << int{type} << " tags " << tags.size();
      }
    }
  }
}

TEST(CaptureFilterTest, Ipv4FirstFragmentsPassLaterOnesDoNot) {
  CompiledFilter filter(CaptureFilterText(CaptureScope::Only({Udp(8000)}), DLT_EN10MB), DLT_EN10MB);
  ASSERT_TRUE(filter.compiled()) << filter.error();
  FrameSpec spec = UdpFrame("192.0.2.10", "192.0.2.1", 8000);
  spec.payload.assign(64, 0);
  spec.ipv4_more_fragments = true;
  EXPECT_TRUE(filter.Passes(spec));
  spec.ipv4_fragment_offset = 9;
  EXPECT_FALSE(filter.Passes(spec));
}

TEST(CaptureFilterTest, NoKnocksLetsOnlyExtensionHeaderPacketsThrough) {
  for (int dlt : kLinkTypes) {
    CompiledFilter filter(CaptureFilterText(CaptureScope::Only({}), dlt), dlt);
    ASSERT_TRUE(filter.compiled()) << filter.error();
    EXPECT_FALSE(filter.Passes(On(dlt, TcpFrame("192.0.2.10", "192.0.2.1", 7000))));
  }
}

// A fleet's worth of one-time sequences: thousands of random ports. The
// filter must stay small, compile, and still let every knock through.
TEST(CaptureFilterTest, ManyPortsAreMergedIntoFewRanges) {
  std::mt19937 rng(7);
  std::vector<Knock> knocks;
  for (int i = 0; i < 64 * 32; ++i) {
    knocks.push_back({static_cast<uint16_t>(1024 + rng() % 64000), (rng() & 1) ? Protocol::kTcp : Protocol::kUdp});
  }
  const CaptureScope scope = CaptureScope::Only(knocks);
  for (int dlt : kLinkTypes) {
    const std::string text = CaptureFilterText(scope, dlt);
    size_t terms = 0;
    for (size_t at = text.find("dst port"); at != std::string::npos; at = text.find("dst port", at + 1)) ++terms;
    const size_t copies = dlt == DLT_EN10MB ? 3 : 1;
    EXPECT_LE(terms, copies * 2 * kMaxFilterRangesPerProtocol);
    CompiledFilter filter(text, dlt);
    ASSERT_TRUE(filter.compiled()) << filter.error();
    EXPECT_LT(filter.instructions(), static_cast<unsigned>(kBpfMaxInstructions));
    for (const Knock& k : knocks) {
      FrameSpec spec = k.protocol == Protocol::kTcp ? TcpFrame("192.0.2.10", "192.0.2.1", k.port)
                                                    : UdpFrame("192.0.2.10", "192.0.2.1", k.port);
      ASSERT_TRUE(filter.Passes(On(dlt, spec))) << KnockToString(k);
    }
  }
}

}  // namespace
}  // namespace sesame
