// Crafted frames for tests and benchmarks: Ethernet (with VLAN tags), Linux
// cooked v1/v2, raw IP and BSD loopback around an IPv4 or IPv6 packet (with
// IPv6 extension headers) carrying TCP, UDP or any other protocol. Checksums
// are filled in, so a frame can also be injected on a real interface.
//
//   FrameSpec spec = TcpFrame("192.0.2.10", "192.0.2.1", 7000);
//   spec.vlans = {{0x88A8, 100}, {0x8100, 200}};
//   std::vector<uint8_t> bytes = BuildFrame(spec);
#pragma once

#include <pcap/dlt.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sesame::testing {

inline constexpr uint8_t kIpProtoHopByHop = 0;
inline constexpr uint8_t kIpProtoIcmp = 1;
inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr uint8_t kIpProtoUdp = 17;
inline constexpr uint8_t kIpProtoRouting = 43;
inline constexpr uint8_t kIpProtoFragment = 44;
inline constexpr uint8_t kIpProtoEsp = 50;
inline constexpr uint8_t kIpProtoAh = 51;
inline constexpr uint8_t kIpProtoIcmpv6 = 58;
inline constexpr uint8_t kIpProtoNoNextHeader = 59;
inline constexpr uint8_t kIpProtoDestinationOptions = 60;

struct VlanTag {
  uint16_t tpid = 0x8100;  // 0x8100 802.1Q, 0x88A8 802.1ad
  uint16_t vid = 1;
};

struct Ipv6Extension {
  uint8_t type = kIpProtoDestinationOptions;  // hop-by-hop, routing, fragment, AH, destination options
  // Whole header in bytes: a multiple of 8 (AH: a multiple of 4, at least 12).
  // Ignored for the fragment header, which is always 8.
  size_t length = 8;
  uint16_t fragment_offset = 0;  // fragment header: 8-octet units
  bool more_fragments = false;
};

struct FrameSpec {
  int link_type = DLT_EN10MB;  // EN10MB, LINUX_SLL, LINUX_SLL2, RAW, IPV4, IPV6, NULL, LOOP
  std::vector<VlanTag> vlans;  // outermost first; Ethernet and cooked only
  std::array<uint8_t, 6> source_mac = {0x02, 0, 0, 0, 0, 0x02};
  std::array<uint8_t, 6> destination_mac = {0x02, 0, 0, 0, 0, 0x01};

  // Both of the same family; the family picks IPv4 or IPv6.
  std::string source = "192.0.2.10";
  std::string destination = "192.0.2.1";
  uint8_t ip_protocol = kIpProtoTcp;  // TCP or UDP get a header; anything else carries `payload` only
  uint8_t ttl = 64;

  uint16_t source_port = 40000;
  uint16_t destination_port = 7000;
  uint8_t tcp_flags = 0x02;        // SYN
  size_t tcp_options_length = 0;   // a multiple of 4, up to 40
  std::vector<uint8_t> payload;    // after the TCP/UDP header

  uint16_t ipv4_fragment_offset = 0;  // 8-octet units
  bool ipv4_more_fragments = false;
  std::vector<Ipv6Extension> ipv6_extensions;  // in order, between the IPv6 header and the L4 header
};

FrameSpec TcpFrame(const std::string& source, const std::string& destination, uint16_t destination_port,
                   uint8_t flags = 0x02);
FrameSpec UdpFrame(const std::string& source, const std::string& destination, uint16_t destination_port);

// The frame as `spec.link_type` carries it. Aborts on a spec that cannot be
// built (bad address text, mixed families): that is a bug in the test.
std::vector<uint8_t> BuildFrame(const FrameSpec& spec);
// The IP packet alone: what follows the link-layer header and VLAN tags.
std::vector<uint8_t> BuildIpPacket(const FrameSpec& spec);
// Bytes before the IP header in BuildFrame(spec).
size_t LinkHeaderLength(const FrameSpec& spec);

struct CapturedFrame {
  absl::Time time;
  std::vector<uint8_t> bytes;
};
// Writes a pcap file (nanosecond timestamps) through libpcap's pcap_dump.
absl::Status WritePcapFile(const std::string& path, int link_type, const std::vector<CapturedFrame>& frames);

// A capture file's frames, read through libpcap (any precision; times kept
// to the nanosecond), to combine files that tools wrote.
struct CaptureFile {
  int link_type = DLT_EN10MB;
  std::vector<CapturedFrame> frames;
};
absl::StatusOr<CaptureFile> ReadPcapFile(const std::string& path);

}  // namespace sesame::testing
