#include "agent/packet/decoder.h"

#include <pcap/dlt.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/frames.h"

namespace sesame {
namespace {

using testing::BuildFrame;
using testing::FrameSpec;
using testing::Ipv6Extension;
using testing::TcpFrame;
using testing::UdpFrame;

const absl::Time kTime = absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(123456789);

// Decodes from a heap copy of exactly `n` bytes, so that the address
// sanitizer flags any read past the captured length.
DecodeResult DecodePrefix(int link_type, const std::vector<uint8_t>& bytes, size_t n, Packet* out) {
  auto copy = std::make_unique<uint8_t[]>(n == 0 ? 1 : n);
  if (n > 0) std::memcpy(copy.get(), bytes.data(), n);
  return DecodeFrame(link_type, std::span<const uint8_t>(copy.get(), n), kTime, out);
}
DecodeResult Decode(int link_type, const std::vector<uint8_t>& bytes, Packet* out) {
  return DecodePrefix(link_type, bytes, bytes.size(), out);
}
DecodeResult Decode(const FrameSpec& spec, Packet* out) { return Decode(spec.link_type, BuildFrame(spec), out); }
DecodeResult Decode(const FrameSpec& spec) {
  Packet p;
  return Decode(spec, &p);
}

IpAddress Ip(const char* text) { return IpAddress::Parse(text).value(); }

// ---- Static frames, one per link type (checksums zero: never verified). ----

// Ethernet, IPv4, TCP SYN 192.0.2.10:40000 -> 192.0.2.1:7000.
const std::vector<uint8_t> kEthernetIpv4TcpSyn = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00,  // Ethernet
    0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00,              // IPv4 (DF)
    0xc0, 0x00, 0x02, 0x0a, 0xc0, 0x00, 0x02, 0x01,                                      //
    0x9c, 0x40, 0x1b, 0x58, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,              // TCP
    0x50, 0x02, 0xfa, 0xf0, 0x00, 0x00, 0x00, 0x00,                                      //
};

// Ethernet, 802.1Q VLAN 100, IPv4, UDP 192.0.2.10:40000 -> 192.0.2.1:8000,
// padded to Ethernet's 60-byte minimum.
const std::vector<uint8_t> kEthernetVlanIpv4Udp = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x81, 0x00,  // Ethernet
    0x00, 0x64, 0x08, 0x00,                                                              // VLAN 100
    0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00,              // IPv4
    0xc0, 0x00, 0x02, 0x0a, 0xc0, 0x00, 0x02, 0x01,                                      //
    0x9c, 0x40, 0x1f, 0x40, 0x00, 0x08, 0x00, 0x00,                                      // UDP
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // padding
};

// Linux cooked v1, IPv4, UDP 198.51.100.7:5353 -> 192.0.2.1:8000.
const std::vector<uint8_t> kSllIpv4Udp = {
    0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x08, 0x00,  // SLL
    0x45, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00,                          // IPv4
    0xc6, 0x33, 0x64, 0x07, 0xc0, 0x00, 0x02, 0x01,                                                  //
    0x14, 0xe9, 0x1f, 0x40, 0x00, 0x08, 0x00, 0x00,                                                  // UDP
};

// Linux cooked v2, IPv6, TCP SYN 2001:db8::10:50000 -> 2001:db8::1:9000.
const std::vector<uint8_t> kSll2Ipv6TcpSyn = {
    0x86, 0xdd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x06,  // SLL2
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,                          //
    0x60, 0x00, 0x00, 0x00, 0x00, 0x14, 0x06, 0x40,                          // IPv6
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0xc3, 0x50, 0x23, 0x28, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  // TCP
    0x50, 0x02, 0xfa, 0xf0, 0x00, 0x00, 0x00, 0x00,                          //
};

// Raw IPv4, TCP SYN+ECE+CWR 10.0.0.2:1234 -> 10.0.0.1:22.
const std::vector<uint8_t> kRawIpv4Tcp = {
    0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x00, 0x00, 0x40, 0x06, 0x00, 0x00,  // IPv4
    0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x01,                          //
    0x04, 0xd2, 0x00, 0x16, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  // TCP
    0x50, 0xc2, 0xfa, 0xf0, 0x00, 0x00, 0x00, 0x00,                          //
};

// Raw IPv6, UDP ::1:53000 -> ::1:7000.
const std::vector<uint8_t> kRawIpv6Udp = {
    0x60, 0x00, 0x00, 0x00, 0x00, 0x08, 0x11, 0x40,  // IPv6
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0xcf, 0x08, 0x1b, 0x58, 0x00, 0x08, 0x00, 0x00,  // UDP
};

std::vector<uint8_t> Concat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(DecoderTest, EthernetIpv4TcpSyn) {
  Packet p;
  ASSERT_EQ(Decode(DLT_EN10MB, kEthernetIpv4TcpSyn, &p), DecodeResult::kOk);
  EXPECT_EQ(p.time, kTime);
  EXPECT_EQ(p.source, Ip("192.0.2.10"));
  EXPECT_EQ(p.destination, Ip("192.0.2.1"));
  EXPECT_EQ(p.protocol, Protocol::kTcp);
  EXPECT_EQ(p.source_port, 40000);
  EXPECT_EQ(p.destination_port, 7000);
  EXPECT_EQ(p.tcp_flags, tcp_flags::kSyn);
}

TEST(DecoderTest, EthernetVlanIpv4UdpWithPadding) {
  Packet p;
  ASSERT_EQ(Decode(DLT_EN10MB, kEthernetVlanIpv4Udp, &p), DecodeResult::kOk);
  EXPECT_EQ(p.protocol, Protocol::kUdp);
  EXPECT_EQ(p.source, Ip("192.0.2.10"));
  EXPECT_EQ(p.destination_port, 8000);
  EXPECT_EQ(p.tcp_flags, 0);
}

TEST(DecoderTest, LinuxCookedV1) {
  Packet p;
  ASSERT_EQ(Decode(DLT_LINUX_SLL, kSllIpv4Udp, &p), DecodeResult::kOk);
  EXPECT_EQ(p.source, Ip("198.51.100.7"));
  EXPECT_EQ(p.destination, Ip("192.0.2.1"));
  EXPECT_EQ(p.protocol, Protocol::kUdp);
  EXPECT_EQ(p.source_port, 5353);
  EXPECT_EQ(p.destination_port, 8000);
}

TEST(DecoderTest, LinuxCookedV2) {
  Packet p;
  ASSERT_EQ(Decode(DLT_LINUX_SLL2, kSll2Ipv6TcpSyn, &p), DecodeResult::kOk);
  EXPECT_EQ(p.source, Ip("2001:db8::10"));
  EXPECT_EQ(p.destination, Ip("2001:db8::1"));
  EXPECT_EQ(p.protocol, Protocol::kTcp);
  EXPECT_EQ(p.source_port, 50000);
  EXPECT_EQ(p.destination_port, 9000);
  EXPECT_EQ(p.tcp_flags, tcp_flags::kSyn);
}

TEST(DecoderTest, RawIp) {
  Packet p;
  ASSERT_EQ(Decode(DLT_RAW, kRawIpv4Tcp, &p), DecodeResult::kOk);
  EXPECT_EQ(p.source, Ip("10.0.0.2"));
  EXPECT_EQ(p.destination_port, 22);
  EXPECT_EQ(p.tcp_flags, tcp_flags::kSyn | 0x40 | 0x80);  // ECE and CWR kept
  ASSERT_EQ(Decode(DLT_IPV4, kRawIpv4Tcp, &p), DecodeResult::kOk);
  EXPECT_EQ(p.source_port, 1234);

  ASSERT_EQ(Decode(DLT_RAW, kRawIpv6Udp, &p), DecodeResult::kOk);
  EXPECT_EQ(p.source, Ip("::1"));
  EXPECT_EQ(p.source_port, 53000);
  EXPECT_EQ(p.destination_port, 7000);
  ASSERT_EQ(Decode(DLT_IPV6, kRawIpv6Udp, &p), DecodeResult::kOk);

  // The explicit link types insist on their version.
  EXPECT_EQ(Decode(DLT_IPV4, kRawIpv6Udp, &p), DecodeResult::kMalformedIp);
  EXPECT_EQ(Decode(DLT_IPV6, kRawIpv4Tcp, &p), DecodeResult::kMalformedIp);
  std::vector<uint8_t> v5 = kRawIpv4Tcp;
  v5[0] = 0x55;
  EXPECT_EQ(Decode(DLT_RAW, v5, &p), DecodeResult::kMalformedIp);
}

TEST(DecoderTest, BsdLoopbackInBothByteOrders) {
  Packet p;
  // DLT_NULL: the capturing host's order.
  EXPECT_EQ(Decode(DLT_NULL, Concat({2, 0, 0, 0}, kRawIpv4Tcp), &p), DecodeResult::kOk);
  EXPECT_EQ(Decode(DLT_NULL, Concat({0, 0, 0, 2}, kRawIpv4Tcp), &p), DecodeResult::kOk);
  for (uint8_t family : {10, 24, 28, 30}) {
    EXPECT_EQ(Decode(DLT_NULL, Concat({family, 0, 0, 0}, kRawIpv6Udp), &p), DecodeResult::kOk) << int{family};
    EXPECT_EQ(Decode(DLT_NULL, Concat({0, 0, 0, family}, kRawIpv6Udp), &p), DecodeResult::kOk) << int{family};
    EXPECT_EQ(Decode(DLT_LOOP, Concat({0, 0, 0, family}, kRawIpv6Udp), &p), DecodeResult::kOk) << int{family};
  }
  EXPECT_EQ(p.destination_port, 7000);
  // DLT_LOOP: network order only.
  EXPECT_EQ(Decode(DLT_LOOP, Concat({0, 0, 0, 2}, kRawIpv4Tcp), &p), DecodeResult::kOk);
  EXPECT_EQ(p.destination_port, 22);
  EXPECT_EQ(Decode(DLT_LOOP, Concat({2, 0, 0, 0}, kRawIpv4Tcp), &p), DecodeResult::kIgnoredNotIp);
  EXPECT_EQ(Decode(DLT_NULL, Concat({7, 0, 0, 0}, kRawIpv4Tcp), &p), DecodeResult::kIgnoredNotIp);
  // A family that disagrees with the packet's version.
  EXPECT_EQ(Decode(DLT_NULL, Concat({2, 0, 0, 0}, kRawIpv6Udp), &p), DecodeResult::kMalformedIp);
}

TEST(DecoderTest, BuilderFramesOnEveryLinkType) {
  for (int dlt : {DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_RAW, DLT_NULL, DLT_LOOP, DLT_IPV4, DLT_IPV6}) {
    for (const char* family : {"v4", "v6"}) {
      const bool v6 = family[1] == '6';
      if ((dlt == DLT_IPV4 && v6) || (dlt == DLT_IPV6 && !v6)) continue;
      FrameSpec spec = v6 ? UdpFrame("2001:db8::7", "2001:db8::1", 7001) : TcpFrame("203.0.113.5", "192.0.2.1", 7002);
      spec.link_type = dlt;
      Packet p;
      ASSERT_EQ(Decode(spec, &p), DecodeResult::kOk) << dlt << " " << family;
      EXPECT_EQ(p.source, Ip(spec.source.c_str()));
      EXPECT_EQ(p.destination, Ip(spec.destination.c_str()));
      EXPECT_EQ(p.destination_port, spec.destination_port);
      EXPECT_EQ(p.source_port, 40000);
    }
  }
}

TEST(DecoderTest, VlanTagsOfEveryKindUpToTheBound) {
  for (int dlt : {DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2}) {
    FrameSpec spec = TcpFrame("2001:db8::7", "2001:db8::1", 7000);
    spec.link_type = dlt;
    spec.vlans = {{0x88A8, 10}, {0x8100, 20}};  // 802.1ad QinQ
    Packet p;
    ASSERT_EQ(Decode(spec, &p), DecodeResult::kOk) << dlt;
    EXPECT_EQ(p.destination_port, 7000);
    spec.vlans = {{0x9100, 10}, {0x8100, 20}, {0x8100, 30}, {0x8100, 40}};
    EXPECT_EQ(Decode(spec), DecodeResult::kOk) << dlt;
    spec.vlans.push_back({0x8100, 50});
    EXPECT_EQ(Decode(spec), DecodeResult::kIgnoredTooManyHeaders) << dlt;
  }
}

TEST(DecoderTest, NotIpIsIgnored) {
  Packet p;
  std::vector<uint8_t> arp = kEthernetIpv4TcpSyn;
  arp[12] = 0x08, arp[13] = 0x06;
  EXPECT_EQ(Decode(DLT_EN10MB, arp, &p), DecodeResult::kIgnoredNotIp);
  std::vector<uint8_t> llc = kEthernetIpv4TcpSyn;  // 802.3: a length, not an EtherType
  llc[12] = 0x00, llc[13] = 0x2e;
  EXPECT_EQ(Decode(DLT_EN10MB, llc, &p), DecodeResult::kIgnoredNotIp);
  std::vector<uint8_t> sll = kSllIpv4Udp;
  sll[14] = 0x00, sll[15] = 0x04;  // LINUX_SLL_P_802_2
  EXPECT_EQ(Decode(DLT_LINUX_SLL, sll, &p), DecodeResult::kIgnoredNotIp);
  EXPECT_EQ(Decode(DLT_IEEE802_11, kEthernetIpv4TcpSyn, &p), DecodeResult::kIgnoredLinkType);
  EXPECT_FALSE(IsSupportedLinkType(DLT_IEEE802_11));
  EXPECT_TRUE(IsSupportedLinkType(DLT_LINUX_SLL2));
}

TEST(DecoderTest, OtherProtocolsAreIgnored) {
  FrameSpec icmp = TcpFrame("192.0.2.10", "192.0.2.1", 0);
  icmp.ip_protocol = testing::kIpProtoIcmp;
  icmp.payload = {8, 0, 0, 0, 0, 1, 0, 1};
  EXPECT_EQ(Decode(icmp), DecodeResult::kIgnoredNotTcpOrUdp);
  FrameSpec icmp6 = TcpFrame("2001:db8::7", "2001:db8::1", 0);
  icmp6.ip_protocol = testing::kIpProtoIcmpv6;
  icmp6.payload = {128, 0, 0, 0, 0, 1, 0, 1};
  EXPECT_EQ(Decode(icmp6), DecodeResult::kIgnoredNotTcpOrUdp);
  FrameSpec esp = icmp6;
  esp.ip_protocol = testing::kIpProtoEsp;
  esp.ipv6_extensions = {{testing::kIpProtoDestinationOptions, 8}};
  EXPECT_EQ(Decode(esp), DecodeResult::kIgnoredNotTcpOrUdp);
  FrameSpec none = icmp6;
  none.ip_protocol = testing::kIpProtoNoNextHeader;
  none.payload.clear();
  none.ipv6_extensions = {{testing::kIpProtoHopByHop, 8}};
  EXPECT_EQ(Decode(none), DecodeResult::kIgnoredNotTcpOrUdp);
}

TEST(DecoderTest, Ipv4Fragments) {
  FrameSpec spec = UdpFrame("192.0.2.10", "192.0.2.1", 7000);
  spec.payload.assign(100, 0xab);
  spec.ipv4_more_fragments = true;  // first fragment: header inside, decoded
  Packet p;
  ASSERT_EQ(Decode(spec, &p), DecodeResult::kOk);
  EXPECT_EQ(p.destination_port, 7000);
  spec.ipv4_fragment_offset = 14;  // later fragments carry no header
  EXPECT_EQ(Decode(spec), DecodeResult::kIgnoredFragment);
  spec.ipv4_more_fragments = false;  // the last one
  EXPECT_EQ(Decode(spec), DecodeResult::kIgnoredFragment);

  // A first fragment cut inside the TCP header (RFC 1858's tiny fragment).
  FrameSpec tiny = TcpFrame("192.0.2.10", "192.0.2.1", 7000);
  tiny.ipv4_more_fragments = true;
  std::vector<uint8_t> bytes = BuildFrame(tiny);
  bytes[14 + 3] = 20 + 8;  // total length: 8 bytes of TCP header
  EXPECT_EQ(Decode(DLT_EN10MB, bytes, &p), DecodeResult::kIgnoredFragment);
  // The same length without "more fragments" is simply inconsistent.
  bytes[14 + 6] = 0;
  EXPECT_EQ(Decode(DLT_EN10MB, bytes, &p), DecodeResult::kMalformedTcp);
}

TEST(DecoderTest, Ipv6EachExtensionHeaderKind) {
  const std::vector<Ipv6Extension> kinds = {
      {testing::kIpProtoHopByHop, 8},
      {testing::kIpProtoHopByHop, 512},
      {testing::kIpProtoRouting, 24},
      {testing::kIpProtoDestinationOptions, 16},
      {testing::kIpProtoFragment},  // atomic fragment
      {testing::kIpProtoAh, 12},
      {testing::kIpProtoAh, 24},  // AH counts 4-octet units: 24 bytes is length 4
  };
  for (const Ipv6Extension& ext : kinds) {
    for (bool tcp : {true, false}) {
      FrameSpec spec = tcp ? TcpFrame("2001:db8::7", "2001:db8::1", 7000, tcp_flags::kSyn | tcp_flags::kAck)
                           : UdpFrame("2001:db8::7", "2001:db8::1", 7000);
      spec.ipv6_extensions = {ext};
      Packet p;
      ASSERT_EQ(Decode(spec, &p), DecodeResult::kOk) << int{ext.type} << " " << ext.length;
      EXPECT_EQ(p.protocol, tcp ? Protocol::kTcp : Protocol::kUdp);
      EXPECT_EQ(p.destination_port, 7000);
      EXPECT_EQ(p.source, Ip("2001:db8::7"));
      EXPECT_EQ(p.tcp_flags, tcp ? (tcp_flags::kSyn | tcp_flags::kAck) : 0);
    }
  }
}

TEST(DecoderTest, Ipv6ExtensionHeaderChainAndItsBound) {
  FrameSpec spec = TcpFrame("2001:db8::7", "2001:db8::1", 7000);
  spec.ipv6_extensions = {{testing::kIpProtoHopByHop, 8},  {testing::kIpProtoDestinationOptions, 8},
                          {testing::kIpProtoRouting, 8},   {testing::kIpProtoFragment},
                          {testing::kIpProtoAh, 16},       {testing::kIpProtoDestinationOptions, 8}};
  Packet p;
  ASSERT_EQ(Decode(spec, &p), DecodeResult::kOk);
  EXPECT_EQ(p.destination_port, 7000);

  spec.ipv6_extensions.assign(kMaxIpv6ExtensionHeaders, {testing::kIpProtoDestinationOptions, 8});
  EXPECT_EQ(Decode(spec), DecodeResult::kOk);
  spec.ipv6_extensions.push_back({testing::kIpProtoDestinationOptions, 8});
  EXPECT_EQ(Decode(spec), DecodeResult::kIgnoredTooManyHeaders);
}

TEST(DecoderTest, Ipv6Fragments) {
  FrameSpec spec = UdpFrame("2001:db8::7", "2001:db8::1", 7000);
  spec.payload.assign(64, 1);
  spec.ipv6_extensions = {{testing::kIpProtoFragment, 8, 0, true}};
  Packet p;
  ASSERT_EQ(Decode(spec, &p), DecodeResult::kOk);  // first fragment
  spec.ipv6_extensions = {{testing::kIpProtoFragment, 8, 9, true}};
  EXPECT_EQ(Decode(spec), DecodeResult::kIgnoredFragment);
  spec.ipv6_extensions = {{testing::kIpProtoFragment, 8, 9, false}};
  EXPECT_EQ(Decode(spec), DecodeResult::kIgnoredFragment);

  // A first fragment whose header chain continues in the next fragment.
  spec.ipv6_extensions = {{testing::kIpProtoFragment, 8, 0, true}, {testing::kIpProtoDestinationOptions, 64}};
  spec.payload.clear();
  std::vector<uint8_t> bytes = BuildFrame(spec);
  bytes[14 + 5] = 8 + 16;  // payload length: the fragment header and 16 bytes of options
  EXPECT_EQ(Decode(DLT_EN10MB, bytes, &p), DecodeResult::kIgnoredFragment);
}

TEST(DecoderTest, LengthsLongerThanCapturedAreFineWhenHeadersAreThere) {
  // As if snaplen cut the payload: the total length speaks of more bytes.
  FrameSpec spec = TcpFrame("192.0.2.10", "192.0.2.1", 7000);
  spec.payload.assign(1000, 0);
  std::vector<uint8_t> bytes = BuildFrame(spec);
  Packet p;
  EXPECT_EQ(DecodePrefix(DLT_EN10MB, bytes, 14 + 20 + 20, &p), DecodeResult::kOk);
  EXPECT_EQ(DecodePrefix(DLT_EN10MB, bytes, 14 + 20 + 19, &p), DecodeResult::kMalformedTruncated);

  FrameSpec v6 = UdpFrame("2001:db8::7", "2001:db8::1", 7000);
  v6.payload.assign(1000, 0);
  v6.ipv6_extensions = {{testing::kIpProtoDestinationOptions, 16}};
  bytes = BuildFrame(v6);
  EXPECT_EQ(DecodePrefix(DLT_EN10MB, bytes, 14 + 40 + 16 + 8, &p), DecodeResult::kOk);
  EXPECT_EQ(DecodePrefix(DLT_EN10MB, bytes, 14 + 40 + 16 + 7, &p), DecodeResult::kMalformedTruncated);
  EXPECT_EQ(DecodePrefix(DLT_EN10MB, bytes, 14 + 40 + 15, &p), DecodeResult::kMalformedTruncated);
}

TEST(DecoderTest, ZeroLengthMeansASuperPacket) {
  std::vector<uint8_t> v4 = kRawIpv4Tcp;
  v4[2] = v4[3] = 0;
  Packet p;
  EXPECT_EQ(Decode(DLT_RAW, v4, &p), DecodeResult::kOk);
  std::vector<uint8_t> v6 = kRawIpv6Udp;
  v6[4] = v6[5] = 0;
  EXPECT_EQ(Decode(DLT_RAW, v6, &p), DecodeResult::kOk);
}

TEST(DecoderTest, InconsistentHeadersAreMalformed) {
  Packet p;
  auto with = [](std::vector<uint8_t> bytes, size_t at, uint8_t value) {
    bytes[at] = value;
    return bytes;
  };
  // IPv4: header length below 5 words, past the packet, total length below it.
  EXPECT_EQ(Decode(DLT_RAW, with(kRawIpv4Tcp, 0, 0x44), &p), DecodeResult::kMalformedIp);
  EXPECT_EQ(Decode(DLT_RAW, with(kRawIpv4Tcp, 0, 0x4f), &p), DecodeResult::kMalformedTruncated);
  EXPECT_EQ(Decode(DLT_RAW, with(kRawIpv4Tcp, 3, 19), &p), DecodeResult::kMalformedIp);
  // Ethernet says IPv4, the packet says 6.
  EXPECT_EQ(Decode(DLT_EN10MB, with(kEthernetIpv4TcpSyn, 14, 0x65), &p), DecodeResult::kMalformedIp);
  // TCP: data offset below 5, or past the segment.
  EXPECT_EQ(Decode(DLT_RAW, with(kRawIpv4Tcp, 32, 0x40), &p), DecodeResult::kMalformedTcp);
  EXPECT_EQ(Decode(DLT_RAW, with(kRawIpv4Tcp, 32, 0x60), &p), DecodeResult::kMalformedTcp);
  // A segment shorter than a TCP header.
  EXPECT_EQ(Decode(DLT_RAW, with(kRawIpv4Tcp, 3, 20 + 12), &p), DecodeResult::kMalformedTcp);
  // UDP: length below 8, past the datagram.
  EXPECT_EQ(Decode(DLT_RAW, with(kRawIpv6Udp, 40 + 5, 7), &p), DecodeResult::kMalformedUdp);
  EXPECT_EQ(Decode(DLT_RAW, with(kRawIpv6Udp, 40 + 5, 9), &p), DecodeResult::kMalformedUdp);
  EXPECT_EQ(Decode(DLT_RAW, with(kRawIpv6Udp, 5, 4), &p), DecodeResult::kMalformedUdp);
  // An extension header that runs past the payload length.
  FrameSpec spec = TcpFrame("2001:db8::7", "2001:db8::1", 7000);
  spec.ipv6_extensions = {{testing::kIpProtoDestinationOptions, 16}};
  std::vector<uint8_t> bytes = BuildFrame(spec);
  bytes[14 + 40 + 1] = 200;
  EXPECT_EQ(Decode(DLT_EN10MB, bytes, &p), DecodeResult::kMalformedIp);
}

// Every strict prefix of a frame without payload lacks a needed byte, so it
// must be malformed; run under the address sanitizer this also proves no
// read past the end.
TEST(DecoderTest, EveryTruncationIsRejected) {
  std::vector<FrameSpec> specs;
  for (int dlt : {DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_RAW, DLT_NULL, DLT_LOOP}) {
    FrameSpec tcp4 = TcpFrame("192.0.2.10", "192.0.2.1", 7000);
    FrameSpec udp6 = UdpFrame("2001:db8::7", "2001:db8::1", 7000);
    tcp4.link_type = udp6.link_type = dlt;
    tcp4.tcp_options_length = 12;
    specs.push_back(tcp4);
    udp6.ipv6_extensions = {{testing::kIpProtoHopByHop, 8},
                            {testing::kIpProtoRouting, 16},
                            {testing::kIpProtoFragment},
                            {testing::kIpProtoAh, 12},
                            {testing::kIpProtoDestinationOptions, 8}};
    specs.push_back(udp6);
    if (dlt == DLT_EN10MB || dlt == DLT_LINUX_SLL || dlt == DLT_LINUX_SLL2) {
      tcp4.vlans = udp6.vlans = {{0x88A8, 1}, {0x8100, 2}};
      specs.push_back(tcp4);
      specs.push_back(udp6);
    }
  }
  for (const FrameSpec& spec : specs) {
    const std::vector<uint8_t> bytes = BuildFrame(spec);
    // TCP options are not needed: the last of them may go.
    const size_t needed = bytes.size() - (spec.ip_protocol == testing::kIpProtoTcp ? spec.tcp_options_length : 0);
    Packet p;
    ASSERT_EQ(Decode(spec.link_type, bytes, &p), DecodeResult::kOk);
    for (size_t n = 0; n < needed; ++n) {
      const DecodeResult r = DecodePrefix(spec.link_type, bytes, n, &p);
      EXPECT_TRUE(IsMalformed(r)) << "link " << spec.link_type << " prefix " << n << ": " << DecodeResultName(r);
    }
  }
}

// A cheap in-tree fuzz: random byte flips of valid frames on every link type
// (fuzz/decoder_fuzz.cc goes much further). Any result is fine; reading out
// of bounds is what the sanitizer build would catch.
TEST(DecoderTest, RandomMutationsNeverCrash) {
  std::mt19937 rng(42);
  const std::vector<std::pair<int, std::vector<uint8_t>>> seeds = {
      {DLT_EN10MB, kEthernetIpv4TcpSyn}, {DLT_EN10MB, kEthernetVlanIpv4Udp}, {DLT_LINUX_SLL, kSllIpv4Udp},
      {DLT_LINUX_SLL2, kSll2Ipv6TcpSyn}, {DLT_RAW, kRawIpv4Tcp},             {DLT_RAW, kRawIpv6Udp},
  };
  int ok = 0;
  for (int i = 0; i < 20000; ++i) {
    const auto& [dlt, seed] = seeds[i % seeds.size()];
    std::vector<uint8_t> bytes = seed;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
    const size_t n = rng() % (bytes.size() + 1);
    Packet p;
    if (DecodePrefix(dlt, bytes, n, &p) == DecodeResult::kOk) ++ok;
  }
  EXPECT_GT(ok, 0);
}

TEST(DecoderTest, ResultNamesAndClasses) {
  EXPECT_STREQ(DecodeResultName(DecodeResult::kOk), "ok");
  EXPECT_FALSE(IsIgnored(DecodeResult::kOk));
  EXPECT_FALSE(IsMalformed(DecodeResult::kOk));
  for (DecodeResult r : {DecodeResult::kIgnoredLinkType, DecodeResult::kIgnoredNotIp,
                         DecodeResult::kIgnoredNotTcpOrUdp, DecodeResult::kIgnoredFragment,
                         DecodeResult::kIgnoredTooManyHeaders}) {
    EXPECT_TRUE(IsIgnored(r));
    EXPECT_FALSE(IsMalformed(r));
    EXPECT_STRNE(DecodeResultName(r), "?");
  }
  for (DecodeResult r : {DecodeResult::kMalformedTruncated, DecodeResult::kMalformedIp,
                         DecodeResult::kMalformedTcp, DecodeResult::kMalformedUdp}) {
    EXPECT_TRUE(IsMalformed(r));
    EXPECT_FALSE(IsIgnored(r));
    EXPECT_STRNE(DecodeResultName(r), "?");
  }
}

}  // namespace
}  // namespace sesame
