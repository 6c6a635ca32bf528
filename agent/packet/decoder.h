// Decodes one captured frame into a Packet: the capture path's only parser.
//
// Every byte is read through explicit bounds checks on the captured bytes;
// nothing is cast to a header struct. The decoder never allocates and never
// throws, and any input (truncated, inconsistent, hostile) yields a result
// without reading past `caplen`.
//
// Link types (libpcap DLT_* values): DLT_EN10MB (Ethernet II, with up to
// kMaxVlanTags 802.1Q / 802.1ad / 0x9100 tags), DLT_LINUX_SLL (cooked v1),
// DLT_LINUX_SLL2 (cooked v2), DLT_RAW / DLT_IPV4 / DLT_IPV6 (raw IP),
// DLT_NULL (BSD loopback, family in the capturing host's byte order: both
// orders are accepted) and DLT_LOOP (family in network order). Cooked
// captures may also carry VLAN tags after the protocol field; they are walked
// like Ethernet's.
//
// Decisions worth knowing:
// - IPv4 / IPv6 fragments: a non-first fragment carries no transport header
//   and is kIgnoredFragment. A first fragment is decoded like any packet when
//   its whole TCP/UDP header is inside it (libpcap's `port` filters take first
//   fragments too), so a knock sent as a fragmented datagram counts once; a
//   first fragment too short to hold the transport header is ignored too.
// - IPv4 total length / IPv6 payload length: bytes past it (Ethernet padding)
//   are not looked at; a length shorter than the headers is malformed. A zero
//   length is what GRO / BIG TCP super-packets carry: the captured length is
//   used instead.
// - A length longer than what was captured is fine as long as the headers
//   the decoder needs were captured (snaplen cuts payloads, not headers).
// - IPv6 extension headers walked: hop-by-hop, routing, destination options,
//   fragment and AH (its length counts 4-octet units), at most
//   kMaxIpv6ExtensionHeaders of them. ESP, "no next header" and anything
//   else that is not TCP/UDP is kIgnoredNotTcpOrUdp.
// - Checksums are not verified (knockd does not either): a knock is what was
//   seen on the wire, and the kernel's verdict on the packet does not matter.
// - The cooked headers' packet type (outgoing, host, ...) is not looked at:
//   direction is the capture's business (pcap_setdirection).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/time/time.h"
#include "agent/packet/packet.h"

namespace sesame {

inline constexpr int kMaxVlanTags = 4;
inline constexpr int kMaxIpv6ExtensionHeaders = 8;

enum class DecodeResult : uint8_t {
  kOk = 0,
  // Ignored: well formed, but not something a knock can be.
  kIgnoredLinkType,         // a DLT_* this decoder does not know
  kIgnoredNotIp,            // ARP, LLDP, 802.3/LLC, an unknown loopback family...
  kIgnoredNotTcpOrUdp,      // ICMP, ESP, no next header...
  kIgnoredFragment,         // a non-first fragment, or a first one without the whole L4 header
  kIgnoredTooManyHeaders,   // more VLAN tags or IPv6 extension headers than the bounds
  // Malformed: truncated or inconsistent.
  kMalformedTruncated,      // a header the decoder needs was cut short
  kMalformedIp,             // bad version, header length or total length
  kMalformedTcp,            // data offset below 5 or past the segment
  kMalformedUdp,            // length field below 8 or past the datagram
};

inline bool IsIgnored(DecodeResult r) {
  return r >= DecodeResult::kIgnoredLinkType && r <= DecodeResult::kIgnoredTooManyHeaders;
}
inline bool IsMalformed(DecodeResult r) { return r >= DecodeResult::kMalformedTruncated; }
const char* DecodeResultName(DecodeResult r);

// True for the link types DecodeFrame understands.
bool IsSupportedLinkType(int link_type);

// Decodes `frame` (the captured bytes, caplen long) of link type `link_type`.
// On kOk every field of `*out` is set, `out->time` to `time`; on any other
// result `*out` holds unspecified values.
DecodeResult DecodeFrame(int link_type, std::span<const uint8_t> frame, absl::Time time, Packet* out);

}  // namespace sesame
