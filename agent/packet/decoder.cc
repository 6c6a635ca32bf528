#include "agent/packet/decoder.h"

#include <pcap/dlt.h>

#include <algorithm>

namespace sesame {
namespace {

using Bytes = std::span<const uint8_t>;

// Callers check the length first; these only assemble bytes.
inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86DD;
constexpr uint16_t kEtherTypeVlan = 0x8100;      // 802.1Q
constexpr uint16_t kEtherTypeQinQ = 0x88A8;      // 802.1ad service tag
constexpr uint16_t kEtherTypeQinQLegacy = 0x9100;

constexpr size_t kEthernetHeader = 14;
constexpr size_t kSllHeader = 16;   // protocol at offset 14
constexpr size_t kSll2Header = 20;  // protocol at offset 0
constexpr size_t kLoopbackHeader = 4;
constexpr size_t kVlanTag = 4;
constexpr size_t kIpv4MinHeader = 20;
constexpr size_t kIpv6Header = 40;
constexpr size_t kTcpMinHeader = 20;
constexpr size_t kUdpHeader = 8;

constexpr uint8_t kIpProtoHopByHop = 0;
constexpr uint8_t kIpProtoTcp = 6;
constexpr uint8_t kIpProtoUdp = 17;
constexpr uint8_t kIpProtoRouting = 43;
constexpr uint8_t kIpProtoFragment = 44;
constexpr uint8_t kIpProtoAh = 51;
constexpr uint8_t kIpProtoDestinationOptions = 60;

// The transport header: `l4` is what was captured of it, `declared` how long
// the IP header says it is (never less than l4.size()). In a first fragment
// the declared length is the fragment's, and the UDP length field speaks of
// the whole datagram, so it is not compared.
DecodeResult DecodeTransport(uint8_t protocol, Bytes l4, size_t declared, bool first_fragment, Packet* out) {
  if (protocol == kIpProtoTcp) {
    if (declared < kTcpMinHeader) {
      return first_fragment ? DecodeResult::kIgnoredFragment : DecodeResult::kMalformedTcp;
    }
    if (l4.size() < kTcpMinHeader) return DecodeResult::kMalformedTruncated;
    const size_t header_length = static_cast<size_t>(l4[12] >> 4) * 4;
    if (header_length < kTcpMinHeader) return DecodeResult::kMalformedTcp;
    if (header_length > declared) {
      return first_fragment ? DecodeResult::kIgnoredFragment : DecodeResult::kMalformedTcp;
    }
    out->protocol = Protocol::kTcp;
    out->source_port = Be16(&l4[0]);
    out->destination_port = Be16(&l4[2]);
    out->tcp_flags = l4[13];
    return DecodeResult::kOk;
  }
  // UDP
  if (declared < kUdpHeader) {
    return first_fragment ? DecodeResult::kIgnoredFragment : DecodeResult::kMalformedUdp;
  }
  if (l4.size() < kUdpHeader) return DecodeResult::kMalformedTruncated;
  if (!first_fragment) {
    const size_t length = Be16(&l4[4]);
    // Zero is a jumbogram's (RFC 2675), only possible past 64 KiB.
    const bool jumbo = length == 0 && declared > 0xFFFF;
    if (!jumbo && (length < kUdpHeader || length > declared)) return DecodeResult::kMalformedUdp;
  }
  out->protocol = Protocol::kUdp;
  out->source_port = Be16(&l4[0]);
  out->destination_port = Be16(&l4[2]);
  out->tcp_flags = 0;
  return DecodeResult::kOk;
}

DecodeResult DecodeIpv4(Bytes ip, Packet* out) {
  if (ip.size() < kIpv4MinHeader) return DecodeResult::kMalformedTruncated;
  if (ip[0] >> 4 != 4) return DecodeResult::kMalformedIp;
  const size_t header_length = size_t{ip[0] & 0x0Fu} * 4;
  if (header_length < kIpv4MinHeader) return DecodeResult::kMalformedIp;
  if (ip.size() < header_length) return DecodeResult::kMalformedTruncated;
  size_t total_length = Be16(&ip[2]);
  if (total_length == 0) {
    total_length = ip.size();  // a GRO / BIG TCP super-packet
  } else if (total_length < header_length) {
    return DecodeResult::kMalformedIp;
  }

  const uint8_t protocol = ip[9];
  if (protocol != kIpProtoTcp && protocol != kIpProtoUdp) return DecodeResult::kIgnoredNotTcpOrUdp;
  const uint16_t fragment = Be16(&ip[6]);
  if ((fragment & 0x1FFF) != 0) return DecodeResult::kIgnoredFragment;
  const bool first_fragment = (fragment & 0x2000) != 0;  // more fragments follow

  out->source = IpAddress::V4(&ip[12]);
  out->destination = IpAddress::V4(&ip[16]);
  const size_t end = std::min(total_length, ip.size());
  return DecodeTransport(protocol, ip.subspan(header_length, end - header_length), total_length - header_length,
                         first_fragment, out);
}

DecodeResult DecodeIpv6(Bytes ip, Packet* out) {
  if (ip.size() < kIpv6Header) return DecodeResult::kMalformedTruncated;
  if (ip[0] >> 4 != 6) return DecodeResult::kMalformedIp;
  const size_t captured = ip.size() - kIpv6Header;
  size_t declared = Be16(&ip[4]);
  if (declared == 0) declared = captured;  // jumbogram or GRO / BIG TCP super-packet
  Bytes rest = ip.subspan(kIpv6Header, std::min(declared, captured));
  uint8_t next = ip[6];
  bool first_fragment = false;

  for (int headers = 0;; ++headers) {
    if (next == kIpProtoTcp || next == kIpProtoUdp) {
      out->source = IpAddress::V6(&ip[8]);
      out->destination = IpAddress::V6(&ip[24]);
      return DecodeTransport(next, rest, declared, first_fragment, out);
    }
    if (next != kIpProtoHopByHop && next != kIpProtoRouting && next != kIpProtoDestinationOptions &&
        next != kIpProtoFragment && next != kIpProtoAh) {
      return DecodeResult::kIgnoredNotTcpOrUdp;  // ESP, no next header, ICMPv6, ...
    }
    if (headers == kMaxIpv6ExtensionHeaders) return DecodeResult::kIgnoredTooManyHeaders;
    // Every extension header starts with (next header, length). A header
    // that runs past the declared payload is inconsistent, except in a first
    // fragment, whose chain may continue in the next one.
    const auto check = [&](size_t length) {
      if (length > declared) return first_fragment ? DecodeResult::kIgnoredFragment : DecodeResult::kMalformedIp;
      if (length > rest.size()) return DecodeResult::kMalformedTruncated;
      return DecodeResult::kOk;
    };
    if (const DecodeResult r = check(2); r != DecodeResult::kOk) return r;
    size_t length;
    if (next == kIpProtoFragment) {
      length = 8;
    } else if (next == kIpProtoAh) {
      length = (size_t{rest[1]} + 2) * 4;  // 4-octet units, minus 2
    } else {
      length = (size_t{rest[1]} + 1) * 8;  // 8-octet units, not counting the first
    }
    if (const DecodeResult r = check(length); r != DecodeResult::kOk) return r;
    if (next == kIpProtoFragment) {
      const uint16_t offset_and_flags = Be16(&rest[2]);
      if ((offset_and_flags & 0xFFF8) != 0) return DecodeResult::kIgnoredFragment;
      if ((offset_and_flags & 0x0001) != 0) first_fragment = true;
    }
    next = rest[0];
    rest = rest.subspan(length);
    declared -= length;
  }
}

// Raw IP: the version nibble says which.
DecodeResult DecodeRawIp(Bytes ip, Packet* out) {
  if (ip.empty()) return DecodeResult::kMalformedTruncated;
  switch (ip[0] >> 4) {
    case 4:
      return DecodeIpv4(ip, out);
    case 6:
      return DecodeIpv6(ip, out);
    default:
      return DecodeResult::kMalformedIp;
  }
}

bool IsVlanTpid(uint16_t type) {
  return type == kEtherTypeVlan || type == kEtherTypeQinQ || type == kEtherTypeQinQLegacy;
}

// `payload` follows an EtherType field holding `type`; VLAN tags are walked.
DecodeResult DecodeEtherType(uint16_t type, Bytes payload, Packet* out) {
  for (int tags = 0; IsVlanTpid(type); ++tags) {
    if (tags == kMaxVlanTags) return DecodeResult::kIgnoredTooManyHeaders;
    if (payload.size() < kVlanTag) return DecodeResult::kMalformedTruncated;
    type = Be16(&payload[2]);  // after the 2-byte TCI
    payload = payload.subspan(kVlanTag);
  }
  switch (type) {
    case kEtherTypeIpv4:
      return DecodeIpv4(payload, out);
    case kEtherTypeIpv6:
      return DecodeIpv6(payload, out);
    default:
      return DecodeResult::kIgnoredNotIp;  // includes 802.3 length fields
  }
}

// BSD loopback address families: AF_INET is 2 everywhere, AF_INET6 is 10
// (Linux), 24 (NetBSD, OpenBSD), 28 (FreeBSD) or 30 (macOS).
DecodeResult DecodeLoopbackFamily(uint32_t family, Bytes payload, Packet* out) {
  switch (family) {
    case 2:
      return DecodeIpv4(payload, out);
    case 10:
    case 24:
    case 28:
    case 30:
      return DecodeIpv6(payload, out);
    default:
      return DecodeResult::kIgnoredNotIp;
  }
}

}  // namespace

const char* DecodeResultName(DecodeResult r) {
  switch (r) {
    case DecodeResult::kOk:
      return "ok";
    case DecodeResult::kIgnoredLinkType:
      return "unsupported link type";
    case DecodeResult::kIgnoredNotIp:
      return "not IP";
    case DecodeResult::kIgnoredNotTcpOrUdp:
      return "not TCP or UDP";
    case DecodeResult::kIgnoredFragment:
      return "fragment";
    case DecodeResult::kIgnoredTooManyHeaders:
      return "too many VLAN tags or extension headers";
    case DecodeResult::kMalformedTruncated:
      return "truncated";
    case DecodeResult::kMalformedIp:
      return "malformed IP header";
    case DecodeResult::kMalformedTcp:
      return "malformed TCP header";
    case DecodeResult::kMalformedUdp:
      return "malformed UDP header";
  }
  return "?";
}

bool IsSupportedLinkType(int link_type) {
  switch (link_type) {
    case DLT_EN10MB:
    case DLT_LINUX_SLL:
    case DLT_LINUX_SLL2:
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6:
    case DLT_NULL:
    case DLT_LOOP:
      return true;
    default:
      return false;
  }
}

DecodeResult DecodeFrame(int link_type, std::span<const uint8_t> frame, absl::Time time, Packet* out) {
  out->time = time;
  switch (link_type) {
    case DLT_EN10MB:
      if (frame.size() < kEthernetHeader) return DecodeResult::kMalformedTruncated;
      return DecodeEtherType(Be16(&frame[12]), frame.subspan(kEthernetHeader), out);
    case DLT_LINUX_SLL:
      if (frame.size() < kSllHeader) return DecodeResult::kMalformedTruncated;
      return DecodeEtherType(Be16(&frame[14]), frame.subspan(kSllHeader), out);
    case DLT_LINUX_SLL2:
      if (frame.size() < kSll2Header) return DecodeResult::kMalformedTruncated;
      return DecodeEtherType(Be16(&frame[0]), frame.subspan(kSll2Header), out);
    case DLT_RAW:
      return DecodeRawIp(frame, out);
    case DLT_IPV4:
      return DecodeIpv4(frame, out);
    case DLT_IPV6:
      return DecodeIpv6(frame, out);
    case DLT_NULL: {
      if (frame.size() < kLoopbackHeader) return DecodeResult::kMalformedTruncated;
      // Host order of the machine that captured: read little-endian, and
      // swap when that leaves the (always small) family in the high half.
      uint32_t family = uint32_t{frame[0]} | uint32_t{frame[1]} << 8 | uint32_t{frame[2]} << 16 |
                        uint32_t{frame[3]} << 24;
      if ((family & 0xFFFF0000u) != 0) family = __builtin_bswap32(family);
      return DecodeLoopbackFamily(family, frame.subspan(kLoopbackHeader), out);
    }
    case DLT_LOOP:
      if (frame.size() < kLoopbackHeader) return DecodeResult::kMalformedTruncated;
      return DecodeLoopbackFamily(Be32(&frame[0]), frame.subspan(kLoopbackHeader), out);
    default:
      return DecodeResult::kIgnoredLinkType;
  }
}

}  // namespace sesame
