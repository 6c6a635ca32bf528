// The packet tools' building blocks, on static bytes and temp files: frames
// (layout and checksums), knock lists, addresses, and the pcap writer.
#include <pcap/pcap.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <random>
#include <string>

#include "absl/time/time.h"
#include "bench/tools/frame_sink.h"
#include "bench/tools/knock_factory.h"
#include "bench/tools/knock_frame.h"
#include "bench/tools/source_addresses.h"
#include "gtest/gtest.h"

namespace sesame::bench {
namespace {

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

// One's-complement sum over data plus a pseudo-header; 0xffff when the
// checksum inside is right.
uint16_t Verify(const uint8_t* l4, size_t size, const IpAddress& source, const IpAddress& destination,
                uint8_t protocol) {
  uint32_t sum = 0;
  auto add = [&sum](const uint8_t* p, size_t n) {
    for (size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
    if (n % 2) sum += p[n - 1] << 8;
  };
  add(source.bytes(), source.size());
  add(destination.bytes(), destination.size());
  sum += protocol + static_cast<uint32_t>(size);
  add(l4, size);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

KnockFrameSpec Spec(const char* source, const char* destination, Protocol protocol) {
  KnockFrameSpec spec;
  spec.source_mac = *MacAddress::Parse("02:00:00:00:00:02");
  spec.destination_mac = *MacAddress::Parse("02:5e:5a:00:00:01");
  spec.source = Ip(source);
  spec.destination = Ip(destination);
  spec.protocol = protocol;
  spec.source_port = 40001;
  spec.destination_port = 7000;
  spec.tcp_sequence = 0x01020304;
  return spec;
}

TEST(KnockFrame, Ipv4TcpSynHasRightLayoutAndChecksums) {
  std::array<uint8_t, kMaxKnockFrameSize> frame{};
  auto size = BuildKnockFrame(Spec("198.19.201.1", "198.19.250.1", Protocol::kTcp), frame);
  ASSERT_TRUE(size.ok()) << size.status();
  ASSERT_EQ(*size, 14u + 20 + 20);
  EXPECT_EQ(frame[0], 0x02);
  EXPECT_EQ(frame[5], 0x01);
  EXPECT_EQ(frame[12], 0x08);
  EXPECT_EQ(frame[13], 0x00);
  const uint8_t* ip = frame.data() + 14;
  EXPECT_EQ(ip[0], 0x45);
  EXPECT_EQ(ip[9], 6);
  EXPECT_EQ(ip[12], 198);
  EXPECT_EQ(ip[15], 1);
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += (ip[i] << 8) | ip[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  EXPECT_EQ(sum, 0xffff) << "IPv4 header checksum";
  const uint8_t* tcp = ip + 20;
  EXPECT_EQ((tcp[2] << 8) | tcp[3], 7000);
  EXPECT_EQ(tcp[13], tcp_flags::kSyn);
  EXPECT_EQ(Verify(tcp, 20, Ip("198.19.201.1"), Ip("198.19.250.1"), 6), 0xffff);
}

TEST(KnockFrame, Ipv6UdpHasRightLayoutAndChecksum) {
  std::array<uint8_t, kMaxKnockFrameSize> frame{};
  auto size = BuildKnockFrame(Spec("2001:db8::99", "2001:db8::1", Protocol::kUdp), frame);
  ASSERT_TRUE(size.ok()) << size.status();
  ASSERT_EQ(*size, 14u + 40 + 8);
  EXPECT_EQ(frame[12], 0x86);
  EXPECT_EQ(frame[13], 0xdd);
  const uint8_t* ip = frame.data() + 14;
  EXPECT_EQ(ip[0] >> 4, 6);
  EXPECT_EQ(ip[6], 17);
  EXPECT_EQ((ip[4] << 8) | ip[5], 8);
  const uint8_t* udp = ip + 40;
  EXPECT_EQ((udp[4] << 8) | udp[5], 8);
  EXPECT_NE((udp[6] << 8) | udp[7], 0) << "UDP over IPv6 must carry a checksum";
  EXPECT_EQ(Verify(udp, 8, Ip("2001:db8::99"), Ip("2001:db8::1"), 17), 0xffff);
}

TEST(KnockFrame, RejectsMixedFamilies) {
  std::array<uint8_t, kMaxKnockFrameSize> frame{};
  EXPECT_FALSE(BuildKnockFrame(Spec("10.0.0.1", "2001:db8::1", Protocol::kTcp), frame).ok());
}

TEST(KnockList, ParsesKnockdSyntax) {
  auto knocks = ParseKnockList("7000, 8000:udp,9000:TCP");
  ASSERT_TRUE(knocks.ok()) << knocks.status();
  ASSERT_EQ(knocks->size(), 3u);
  EXPECT_EQ((*knocks)[0], (Knock{7000, Protocol::kTcp}));
  EXPECT_EQ((*knocks)[1], (Knock{8000, Protocol::kUdp}));
  EXPECT_EQ((*knocks)[2], (Knock{9000, Protocol::kTcp}));
}

TEST(KnockList, RejectsBadItems) {
  for (const char* bad : {"", "0", "65536", "70000:sctp", "7000:", "x", "7000,,8000", "-1"}) {
    EXPECT_FALSE(ParseKnockList(bad).ok()) << bad;
  }
}

TEST(TcpFlags, ParsesNames) {
  EXPECT_EQ(*ParseTcpFlags("syn"), tcp_flags::kSyn);
  EXPECT_EQ(*ParseTcpFlags("SYN,ack"), tcp_flags::kSyn | tcp_flags::kAck);
  EXPECT_FALSE(ParseTcpFlags("syn,ece").ok());
}

TEST(MacAddress, ParsesAndPrints) {
  auto mac = MacAddress::Parse("02:5e:5A:00:00:ff");
  ASSERT_TRUE(mac.has_value());
  EXPECT_EQ(mac->ToString(), "02:5e:5a:00:00:ff");
  EXPECT_FALSE(MacAddress::Parse("02:5e:5a:00:00").has_value());
  EXPECT_FALSE(MacAddress::Parse("02:5e:5a:00:00:fg").has_value());
  EXPECT_FALSE(MacAddress::Parse("2:5e:5a:00:00:01").has_value());
}

TEST(SourceAddresses, OffsetCarriesAcrossBytes) {
  EXPECT_EQ(OffsetAddress(Ip("10.0.0.255"), 1).ToString(), "10.0.1.0");
  EXPECT_EQ(OffsetAddress(Ip("198.18.0.0"), 99999).ToString(), "198.19.134.159");
  EXPECT_EQ(OffsetAddress(Ip("2001:db8::ffff"), 1).ToString(), "2001:db8::1:0");
  EXPECT_EQ(OffsetAddress(Ip("255.255.255.255"), 1).ToString(), "0.0.0.0");
}

TEST(SourceAddresses, PrefixParsesAndContains) {
  auto prefix = AddressPrefix::Parse("198.18.0.0/15");
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_TRUE(prefix->Contains(Ip("198.19.255.255")));
  EXPECT_FALSE(prefix->Contains(Ip("198.20.0.0")));
  EXPECT_FALSE(prefix->Contains(Ip("2001:db8::1")));
  for (const char* bad : {"100.64.0.0", "100.64.0.1/10", "10.0.0.0/33", "10.0.0.0/", "nope/8"}) {
    EXPECT_FALSE(AddressPrefix::Parse(bad).ok()) << bad;
  }
}

TEST(SourceAddresses, RandomStaysInsideThePrefix) {
  std::mt19937_64 random(7);
  for (const char* text : {"198.18.0.0/16", "2001:db8:5e5a::/48", "10.1.2.3/32"}) {
    auto prefix = AddressPrefix::Parse(text);
    ASSERT_TRUE(prefix.ok()) << text;
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(prefix->Contains(prefix->Random(random))) << text;
  }
}

std::string TempPath(const char* name) {
  return std::string(testing::TempDir()) + "/" + name + "." + std::to_string(getpid());
}

TEST(PcapFileSink, WritesFramesWithTheirOffsetsThenRenames) {
  const std::string path = TempPath("knocks.pcap");
  const absl::Time start = absl::FromUnixSeconds(1700000000);
  auto sink = PcapFileSink::Open(path, start);
  ASSERT_TRUE(sink.ok()) << sink.status();
  KnockFactory factory(KnockTemplate{.source_mac = *MacAddress::Parse("02:00:00:00:00:02"),
                                     .destination_mac = *MacAddress::Parse("02:00:00:00:00:01"),
                                     .destination = Ip("198.19.250.1")});
  auto first = factory.Make(Ip("198.19.201.1"), Knock{7000, Protocol::kTcp});
  ASSERT_TRUE(first.ok());
  const std::vector<uint8_t> first_bytes(first->begin(), first->end());
  ASSERT_TRUE((*sink)->Emit(*first, absl::ZeroDuration()).ok());
  auto second = factory.Make(Ip("198.19.201.1"), Knock{8000, Protocol::kUdp});
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE((*sink)->Emit(*second, absl::Milliseconds(1500)).ok());
  EXPECT_NE(access(path.c_str(), F_OK), 0) << "visible before Finish";
  ASSERT_TRUE((*sink)->Finish().ok());
  EXPECT_EQ((*sink)->stats().frames, 2u);

  char error[PCAP_ERRBUF_SIZE];
  pcap_t* pcap = pcap_open_offline(path.c_str(), error);
  ASSERT_NE(pcap, nullptr) << error;
  EXPECT_EQ(pcap_datalink(pcap), DLT_EN10MB);
  pcap_pkthdr* header;
  const u_char* data;
  ASSERT_EQ(pcap_next_ex(pcap, &header, &data), 1);
  EXPECT_EQ(header->ts.tv_sec, 1700000000);
  EXPECT_EQ(std::vector<uint8_t>(data, data + header->caplen), first_bytes);
  ASSERT_EQ(pcap_next_ex(pcap, &header, &data), 1);
  EXPECT_EQ(header->ts.tv_sec, 1700000001);
  EXPECT_EQ(header->ts.tv_usec, 500000);
  EXPECT_EQ(header->caplen, 14u + 20 + 8);
  EXPECT_EQ(pcap_next_ex(pcap, &header, &data), PCAP_ERROR_BREAK);
  pcap_close(pcap);
  std::remove(path.c_str());
}

TEST(PcapFileSink, UnfinishedRunLeavesNoFile) {
  const std::string path = TempPath("abandoned.pcap");
  {
    auto sink = PcapFileSink::Open(path, absl::Now());
    ASSERT_TRUE(sink.ok());
    std::array<uint8_t, 60> frame{};
    ASSERT_TRUE((*sink)->Emit(frame, absl::ZeroDuration()).ok());
  }
  EXPECT_NE(access(path.c_str(), F_OK), 0);
  EXPECT_NE(access((path + ".partial").c_str(), F_OK), 0);
}

TEST(PcapFileSink, UnwritableDirectoryIsAnError) {
  EXPECT_FALSE(PcapFileSink::Open("/nonexistent-dir/x.pcap", absl::Now()).ok());
}

}  // namespace
}  // namespace sesame::bench
