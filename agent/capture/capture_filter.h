// The kernel-side capture filter: which frames libpcap hands to the decoder.
//
// The filter only has to keep out what can never matter; the matcher decides
// everything else. So it may let through more than needed (nearby ports,
// IPv6 packets with extension headers, fragments), never less. What it lets
// through is a CaptureScope:
//
// - every TCP and UDP packet: what sesame-agent always asks for, live and
//   when replaying a capture file (so both see the same packets). Scanner
//   detection and the reset rules judge knocks to ports of no sequence: a
//   filter that passed only the sequences' ports (as knockd's does) would
//   let a sequential sweep walk through every ascending door unseen;
// - or only TCP/UDP packets to given ports (a capability of the capture
//   source, for tools and tests);
// - always: IPv6 packets whose first next header is an extension header
//   (hop-by-hop, routing, fragment, AH, destination options): libpcap's
//   `tcp`/`udp` do not walk the chain, the decoder does;
// - Ethernet: the same again behind one and two VLAN tags (`vlan and ...`).
//   On a live Linux capture the kernel has already taken the outer tag off
//   when the filter runs, and libpcap's `vlan` knows it; in capture files the
//   tags are in the frame. Cooked (`any`) captures have no `vlan` in
//   libpcap's language; their outer tag is likewise gone before the filter.
//
// Port lists are kept small enough to compile fast and fit the kernel's
// 4096-instruction limit: past kMaxFilterRangesPerProtocol ranges per
// protocol, the closest ranges are merged (a few more ports get through).
#pragma once

#include <string>
#include <vector>

#include "common/knock.h"

namespace sesame {

inline constexpr int kMaxFilterRangesPerProtocol = 32;

// What the kernel must let through.
struct CaptureScope {
  // Every TCP and UDP packet. When set, `knocks` is not looked at.
  bool all_tcp_udp = true;
  // Otherwise packets to these ports (by protocol). Empty: no TCP/UDP at all.
  std::vector<Knock> knocks;

  static CaptureScope Everything() { return CaptureScope{}; }
  static CaptureScope Only(std::vector<Knock> knocks) { return CaptureScope{false, std::move(knocks)}; }
  friend bool operator==(const CaptureScope&, const CaptureScope&) = default;
};

// libpcap filter text for `scope` on a capture of DLT_* `link_type`
// (`vlan` clauses only for DLT_EN10MB). Deterministic: the same scope gives
// the same text, whatever the order of its knocks.
std::string CaptureFilterText(const CaptureScope& scope, int link_type);

}  // namespace sesame
