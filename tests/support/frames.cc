#include "tests/support/frames.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/ip_address.h"

namespace sesame::testing {
namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "frames: %s\n", what.c_str());
  std::abort();
}

void Put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void Put32(std::vector<uint8_t>& out, uint32_t v) {
  Put16(out, static_cast<uint16_t>(v >> 16));
  Put16(out, static_cast<uint16_t>(v));
}
void Set16(std::vector<uint8_t>& out, size_t at, uint16_t v) {
  out[at] = static_cast<uint8_t>(v >> 8);
  out[at + 1] = static_cast<uint8_t>(v);
}
void Append(std::vector<uint8_t>& out, const uint8_t* p, size_t n) { out.insert(out.end(), p, p + n); }

IpAddress ParseOrDie(const std::string& text) {
  std::optional<IpAddress> a = IpAddress::Parse(text);
  if (!a) Fail(absl::StrCat("bad address '", text, "'"));
  return *a;
}

// The Internet checksum of `sum`'s running 32-bit total plus `data`.
uint32_t SumWords(uint32_t sum, const uint8_t* data, size_t n) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (n % 2) sum += static_cast<uint32_t>(data[n - 1] << 8);
  return sum;
}
uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// TCP or UDP header plus payload, checksum over the pseudo-header.
std::vector<uint8_t> TransportSegment(const FrameSpec& spec, const IpAddress& src, const IpAddress& dst) {
  std::vector<uint8_t> l4;
  if (spec.ip_protocol == kIpProtoTcp) {
    if (spec.tcp_options_length % 4 != 0 || spec.tcp_options_length > 40) Fail("bad tcp_options_length");
    Put16(l4, spec.source_port);
    Put16(l4, spec.destination_port);
    Put32(l4, 1);  // sequence
    Put32(l4, (spec.tcp_flags & 0x10) ? 1 : 0);
    l4.push_back(static_cast<uint8_t>((5 + spec.tcp_options_length / 4) << 4));
    l4.push_back(spec.tcp_flags);
    Put16(l4, 64240);  // window
    Put16(l4, 0);      // checksum
    Put16(l4, 0);      // urgent pointer
    for (size_t i = 0; i < spec.tcp_options_length; ++i) l4.push_back(1);  // NOP
  } else if (spec.ip_protocol == kIpProtoUdp) {
    Put16(l4, spec.source_port);
    Put16(l4, spec.destination_port);
    Put16(l4, static_cast<uint16_t>(8 + spec.payload.size()));
    Put16(l4, 0);
  }
  const size_t checksum_at = spec.ip_protocol == kIpProtoTcp ? 16 : 6;
  const bool has_checksum = spec.ip_protocol == kIpProtoTcp || spec.ip_protocol == kIpProtoUdp;
  Append(l4, spec.payload.data(), spec.payload.size());
  if (has_checksum) {
    uint32_t sum = SumWords(0, src.bytes(), src.size());
    sum = SumWords(sum, dst.bytes(), dst.size());
    sum += spec.ip_protocol;
    sum += static_cast<uint32_t>(l4.size());
    sum = SumWords(sum, l4.data(), l4.size());
    uint16_t checksum = Fold(sum);
    if (checksum == 0 && spec.ip_protocol == kIpProtoUdp) checksum = 0xFFFF;
    Set16(l4, checksum_at, checksum);
  }
  return l4;
}

std::vector<uint8_t> Ipv6ExtensionHeader(const Ipv6Extension& ext, uint8_t next) {
  std::vector<uint8_t> h;
  h.push_back(next);
  switch (ext.type) {
    case kIpProtoFragment:
      h.push_back(0);
      Put16(h, static_cast<uint16_t>(ext.fragment_offset << 3 | (ext.more_fragments ? 1 : 0)));
      Put32(h, 0x5e5a3e00);  // identification
      return h;
    case kIpProtoAh:
      if (ext.length < 12 || ext.length % 4 != 0) Fail("AH length must be a multiple of 4, at least 12");
      h.push_back(static_cast<uint8_t>(ext.length / 4 - 2));
      Put16(h, 0);     // reserved
      Put32(h, 0x100);  // SPI
      Put32(h, 1);     // sequence
      h.resize(ext.length, 0);  // ICV
      return h;
    case kIpProtoRouting:
      if (ext.length < 8 || ext.length % 8 != 0) Fail("routing header length must be a multiple of 8");
      h.push_back(static_cast<uint8_t>(ext.length / 8 - 1));
      h.push_back(253);  // an experimental type (RFC 4727): any length is well formed
      h.push_back(0);  // segments left: we are the final destination
      h.resize(ext.length, 0);
      return h;
    case kIpProtoHopByHop:
    case kIpProtoDestinationOptions: {
      if (ext.length < 8 || ext.length % 8 != 0) Fail("options header length must be a multiple of 8");
      h.push_back(static_cast<uint8_t>(ext.length / 8 - 1));
      // Fill with PadN options (type 1), each at most 2 + 255 bytes.
      size_t left = ext.length - 2;
      while (left > 0) {
        const size_t chunk = std::min<size_t>(left, 257);
        const size_t data = chunk >= 2 ? chunk - 2 : 0;
        if (chunk == 1) {
          h.push_back(0);  // Pad1
        } else {
          h.push_back(1);
          h.push_back(static_cast<uint8_t>(data));
          h.resize(h.size() + data, 0);
        }
        left -= chunk;
      }
      return h;
    }
    default:
      Fail(absl::StrCat("not an extension header type: ", static_cast<int>(ext.type)));
  }
}

}  // namespace

FrameSpec TcpFrame(const std::string& source, const std::string& destination, uint16_t destination_port,
                   uint8_t flags) {
  FrameSpec spec;
  spec.source = source;
  spec.destination = destination;
  spec.ip_protocol = kIpProtoTcp;
  spec.destination_port = destination_port;
  spec.tcp_flags = flags;
  return spec;
}

FrameSpec UdpFrame(const std::string& source, const std::string& destination, uint16_t destination_port) {
  FrameSpec spec;
  spec.source = source;
  spec.destination = destination;
  spec.ip_protocol = kIpProtoUdp;
  spec.destination_port = destination_port;
  spec.tcp_flags = 0;
  return spec;
}

std::vector<uint8_t> BuildIpPacket(const FrameSpec& spec) {
  const IpAddress src = ParseOrDie(spec.source);
  const IpAddress dst = ParseOrDie(spec.destination);
  if (src.family() != dst.family()) Fail("source and destination of different families");
  const std::vector<uint8_t> l4 = TransportSegment(spec, src, dst);

  std::vector<uint8_t> ip;
  if (src.is_v4()) {
    if (!spec.ipv6_extensions.empty()) Fail("IPv6 extension headers on an IPv4 packet");
    ip.push_back(0x45);
    ip.push_back(0);
    Put16(ip, static_cast<uint16_t>(20 + l4.size()));
    Put16(ip, 0x1234);  // identification
    Put16(ip, static_cast<uint16_t>((spec.ipv4_more_fragments ? 0x2000 : 0) | (spec.ipv4_fragment_offset & 0x1FFF)));
    ip.push_back(spec.ttl);
    ip.push_back(spec.ip_protocol);
    Put16(ip, 0);
    Append(ip, src.bytes(), 4);
    Append(ip, dst.bytes(), 4);
    Set16(ip, 10, Fold(SumWords(0, ip.data(), 20)));
    Append(ip, l4.data(), l4.size());
    return ip;
  }

  std::vector<uint8_t> chain;  // extension headers, built back to front
  uint8_t next = spec.ip_protocol;
  for (auto it = spec.ipv6_extensions.rbegin(); it != spec.ipv6_extensions.rend(); ++it) {
    std::vector<uint8_t> h = Ipv6ExtensionHeader(*it, next);
    chain.insert(chain.begin(), h.begin(), h.end());
    next = it->type;
  }
  Put32(ip, 0x60000000);
  Put16(ip, static_cast<uint16_t>(chain.size() + l4.size()));
  ip.push_back(next);
  ip.push_back(spec.ttl);
  Append(ip, src.bytes(), 16);
  Append(ip, dst.bytes(), 16);
  Append(ip, chain.data(), chain.size());
  Append(ip, l4.data(), l4.size());
  return ip;
}

size_t LinkHeaderLength(const FrameSpec& spec) {
  const size_t tags = 4 * spec.vlans.size();
  switch (spec.link_type) {
    case DLT_EN10MB:
      return 14 + tags;
    case DLT_LINUX_SLL:
      return 16 + tags;
    case DLT_LINUX_SLL2:
      return 20 + tags;
    case DLT_NULL:
    case DLT_LOOP:
      return 4;
    default:
      return 0;
  }
}

std::vector<uint8_t> BuildFrame(const FrameSpec& spec) {
  const std::vector<uint8_t> ip = BuildIpPacket(spec);
  const bool v6 = (ip[0] >> 4) == 6;
  const uint16_t ethertype = v6 ? 0x86DD : 0x0800;
  const uint16_t outer_type = spec.vlans.empty() ? ethertype : spec.vlans.front().tpid;
  // What follows the outermost EtherType field: the tags, then the packet.
  std::vector<uint8_t> tagged;
  for (size_t i = 0; i < spec.vlans.size(); ++i) {
    Put16(tagged, spec.vlans[i].vid & 0x0FFF);
    Put16(tagged, i + 1 < spec.vlans.size() ? spec.vlans[i + 1].tpid : ethertype);
  }
  if (!spec.vlans.empty() && spec.link_type != DLT_EN10MB && spec.link_type != DLT_LINUX_SLL &&
      spec.link_type != DLT_LINUX_SLL2) {
    Fail("VLAN tags on a link type without them");
  }

  std::vector<uint8_t> frame;
  switch (spec.link_type) {
    case DLT_EN10MB:
      Append(frame, spec.destination_mac.data(), 6);
      Append(frame, spec.source_mac.data(), 6);
      Put16(frame, outer_type);
      break;
    case DLT_LINUX_SLL:
      Put16(frame, 0);  // PACKET_HOST
      Put16(frame, 1);  // ARPHRD_ETHER
      Put16(frame, 6);
      Append(frame, spec.source_mac.data(), 6);
      Put16(frame, 0);  // address padding to 8
      Put16(frame, outer_type);
      break;
    case DLT_LINUX_SLL2:
      Put16(frame, outer_type);
      Put16(frame, 0);  // reserved
      Put32(frame, 2);  // interface index
      Put16(frame, 1);  // ARPHRD_ETHER
      frame.push_back(0);  // PACKET_HOST
      frame.push_back(6);
      Append(frame, spec.source_mac.data(), 6);
      Put16(frame, 0);
      break;
    case DLT_NULL: {
      const uint32_t family = v6 ? 10 : 2;  // Linux values, in this (little-endian) host's order
      Append(frame, reinterpret_cast<const uint8_t*>(&family), 4);
      break;
    }
    case DLT_LOOP:
      Put32(frame, v6 ? 24 : 2);  // OpenBSD's AF_INET6, network order
      break;
    case DLT_RAW:
      break;
    case DLT_IPV4:
      if (v6) Fail("an IPv6 packet on DLT_IPV4");
      break;
    case DLT_IPV6:
      if (!v6) Fail("an IPv4 packet on DLT_IPV6");
      break;
    default:
      Fail(absl::StrCat("no builder for link type ", spec.link_type));
  }
  Append(frame, tagged.data(), tagged.size());
  Append(frame, ip.data(), ip.size());
  return frame;
}

absl::Status WritePcapFile(const std::string& path, int link_type, const std::vector<CapturedFrame>& frames) {
  pcap_t* dead = pcap_open_dead_with_tstamp_precision(link_type, 65535, PCAP_TSTAMP_PRECISION_NANO);
  if (dead == nullptr) return absl::InternalError("pcap_open_dead failed");
  pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
  if (dumper == nullptr) {
    absl::Status status = absl::InternalError(absl::StrCat(path, ": ", pcap_geterr(dead)));
    pcap_close(dead);
    return status;
  }
  for (const CapturedFrame& f : frames) {
    pcap_pkthdr header{};
    const int64_t ns = absl::ToUnixNanos(f.time);
    header.ts.tv_sec = ns / 1000000000;
    header.ts.tv_usec = ns % 1000000000;  // nanoseconds: the file says so
    header.caplen = header.len = static_cast<bpf_u_int32>(f.bytes.size());
    pcap_dump(reinterpret_cast<u_char*>(dumper), &header, f.bytes.data());
  }
  const bool flushed = pcap_dump_flush(dumper) == 0;
  pcap_dump_close(dumper);
  pcap_close(dead);
  if (!flushed) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

absl::StatusOr<CaptureFile> ReadPcapFile(const std::string& path) {
  char error[PCAP_ERRBUF_SIZE] = "";
  pcap_t* pcap = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, error);
  if (pcap == nullptr) return absl::NotFoundError(absl::StrCat(path, ": ", error));
  CaptureFile file;
  file.link_type = pcap_datalink(pcap);
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  int status;
  while ((status = pcap_next_ex(pcap, &header, &data)) == 1) {
    // With nanosecond precision asked for, tv_usec holds nanoseconds.
    const absl::Time time = absl::FromUnixSeconds(header->ts.tv_sec) + absl::Nanoseconds(header->ts.tv_usec);
    file.frames.push_back({time, std::vector<uint8_t>(data, data + header->caplen)});
  }
  const std::string why = status == PCAP_ERROR ? pcap_geterr(pcap) : "";
  pcap_close(pcap);
  if (status == PCAP_ERROR) return absl::DataLossError(absl::StrCat(path, ": ", why));
  return file;
}

}  // namespace sesame::testing
