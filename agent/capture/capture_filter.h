// The kernel-side capture filter: which frames libpcap hands to the decoder.
//
// The filter only has to keep out what can never matter; the matcher decides
// everything else. So it may let through more than needed (nearby ports,
// IPv6 packets with extension headers, fragments), never less:
//
// - strict reset mode on any door: every TCP and UDP packet, since any
//   knock-shaped packet can reset a source's progress;
// - compat mode: TCP/UDP packets to a port of some door's sequence. Fixed
//   sequences come from the configuration; one-time sequences change as they
//   are used, so the caller passes the knocks of the ones currently valid and
//   rebuilds the filter whenever that set changes (knockd regenerates its
//   filter the same way). A caller that does not track them gets every
//   TCP/UDP packet instead;
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

#include <optional>
#include <string>
#include <vector>

#include "agent/config/config.h"
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

// The scope `config` needs (see the top of this file). `one_time_knocks`:
// the knocks of the one-time sequences valid now, or std::nullopt when the
// caller does not track them (then any door with one-time sequences means
// everything).
CaptureScope ScopeForConfig(const AgentConfig& config, const std::optional<std::vector<Knock>>& one_time_knocks);

// libpcap filter text for `scope` on a capture of DLT_* `link_type`
// (`vlan` clauses only for DLT_EN10MB). Deterministic: the same scope gives
// the same text, whatever the order of its knocks.
std::string CaptureFilterText(const CaptureScope& scope, int link_type);

}  // namespace sesame
