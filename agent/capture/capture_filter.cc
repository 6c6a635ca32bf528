#include "agent/capture/capture_filter.h"

#include <pcap/dlt.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sesame {
namespace {

// IPv6 packets whose first next header is one the decoder walks.
constexpr char kIpv6ExtensionHeaders[] =
    "ip6 proto 0 or ip6 proto 43 or ip6 proto 44 or ip6 proto 51 or ip6 proto 60";

struct PortRange {
  uint32_t first;
  uint32_t last;
};

// Sorted, disjoint ranges covering `ports`, merged across the smallest gaps
// until at most kMaxFilterRangesPerProtocol remain.
std::vector<PortRange> CoveringRanges(std::vector<uint16_t> ports) {
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  std::vector<PortRange> ranges;
  for (uint16_t p : ports) {
    if (!ranges.empty() && ranges.back().last + 1 == p) {
      ranges.back().last = p;
    } else {
      ranges.push_back({p, p});
    }
  }
  while (ranges.size() > static_cast<size_t>(kMaxFilterRangesPerProtocol)) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < ranges.size(); ++i) {
      if (ranges[i + 1].first - ranges[i].last < ranges[best + 1].first - ranges[best].last) best = i;
    }
    ranges[best].last = ranges[best + 1].last;
    ranges.erase(ranges.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  return ranges;
}

std::string ProtocolClause(const char* protocol, const std::vector<Knock>& knocks, Protocol which) {
  std::vector<uint16_t> ports;
  for (const Knock& k : knocks) {
    if (k.protocol == which) ports.push_back(k.port);
  }
  if (ports.empty()) return "";
  std::vector<std::string> terms;
  for (const PortRange& r : CoveringRanges(std::move(ports))) {
    terms.push_back(r.first == r.last ? absl::StrCat("dst port ", r.first)
                                      : absl::StrCat("dst portrange ", r.first, "-", r.last));
  }
  return absl::StrCat(protocol, " and (", absl::StrJoin(terms, " or "), ")");
}

// The filter for a frame whose network header is where libpcap expects it.
std::string UntaggedFilter(const CaptureScope& scope) {
  std::vector<std::string> terms;
  if (scope.all_tcp_udp) {
    terms = {"tcp", "udp"};
  } else {
    for (std::string clause : {ProtocolClause("tcp", scope.knocks, Protocol::kTcp),
                               ProtocolClause("udp", scope.knocks, Protocol::kUdp)}) {
      if (!clause.empty()) terms.push_back(absl::StrCat("(", clause, ")"));
    }
  }
  terms.push_back(kIpv6ExtensionHeaders);
  return absl::StrJoin(terms, " or ");
}

}  // namespace

std::string CaptureFilterText(const CaptureScope& scope, int link_type) {
  const std::string untagged = UntaggedFilter(scope);
  if (link_type != DLT_EN10MB) return untagged;
  // After `vlan`, libpcap reads every later field 4 bytes further on, so the
  // tagged forms come last: untagged, one tag, two tags.
  return absl::StrCat(untagged, " or (vlan and (", untagged, " or (vlan and (", untagged, "))))");
}

}  // namespace sesame
