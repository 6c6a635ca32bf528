#include "agent/grants/session_killer.h"

#include <linux/inet_diag.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/grants/netlink.h"

namespace sesame {
namespace {

uint16_t FromBigEndian16(std::span<const uint8_t> bytes) {
  return bytes.size() >= 2 ? static_cast<uint16_t>(bytes[0] << 8 | bytes[1]) : 0;
}

uint8_t IpProtocolOf(Protocol p) { return p == Protocol::kTcp ? IPPROTO_TCP : IPPROTO_UDP; }

bool ListsPort(std::span<const Knock> ports, uint8_t ip_protocol, uint16_t port) {
  return std::any_of(ports.begin(), ports.end(),
                     [&](const Knock& k) { return k.port == port && IpProtocolOf(k.protocol) == ip_protocol; });
}

// The 16 bytes an IPv4 peer has in a dual-stack IPv6 socket (::ffff:a.b.c.d).
std::vector<uint8_t> V4Mapped(const IpAddress& v4) {
  std::vector<uint8_t> mapped(16, 0);
  mapped[10] = mapped[11] = 0xff;
  std::memcpy(mapped.data() + 12, v4.bytes(), 4);
  return mapped;
}

// Every state of a connection with a peer: not listening, not closed, not
// TIME_WAIT (nothing left to end) and not a half-open request (no socket yet).
constexpr uint32_t kTcpConnectedStates = 1u << TCP_ESTABLISHED | 1u << TCP_SYN_SENT | 1u << TCP_SYN_RECV |
                                         1u << TCP_FIN_WAIT1 | 1u << TCP_FIN_WAIT2 | 1u << TCP_CLOSE_WAIT |
                                         1u << TCP_LAST_ACK | 1u << TCP_CLOSING;
// A UDP socket with a peer (connect()ed) is in TCP_ESTABLISHED.
constexpr uint32_t kUdpConnectedStates = 1u << TCP_ESTABLISHED;

// Destroys the sockets of one family and protocol whose peer is `peer` (4
// or 16 bytes, as the kernel reports it) and whose local port is listed.
absl::Status DestroySockets(NetlinkSocket& netlink, uint8_t family, uint8_t ip_protocol,
                            std::span<const uint8_t> peer, std::span<const Knock> ports, int& destroyed) {
  NetlinkRequest dump(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP);
  inet_diag_req_v2 query{};
  query.sdiag_family = family;
  query.sdiag_protocol = ip_protocol;
  query.idiag_states = ip_protocol == IPPROTO_TCP ? kTcpConnectedStates : kUdpConnectedStates;
  dump.Append(query);
  std::vector<inet_diag_sockid> matching;
  absl::Status status = netlink.Exchange(dump, [&](const nlmsghdr& header, std::span<const uint8_t> body) {
    inet_diag_msg m;
    if (header.nlmsg_type != SOCK_DIAG_BY_FAMILY || body.size() < sizeof m) return;
    std::memcpy(&m, body.data(), sizeof m);
    if (std::memcmp(m.id.idiag_dst, peer.data(), peer.size()) != 0) return;
    if (!ListsPort(ports, ip_protocol, ntohs(m.id.idiag_sport))) return;
    matching.push_back(m.id);
  });
  if (!status.ok()) return status;
  for (const inet_diag_sockid& id : matching) {
    NetlinkRequest destroy(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK);
    inet_diag_req_v2 which{};
    which.sdiag_family = family;
    which.sdiag_protocol = ip_protocol;
    which.idiag_states = ~0u;
    which.id = id;
    destroy.Append(which);
    absl::Status s = netlink.Exchange(destroy, [](const nlmsghdr&, std::span<const uint8_t>) {});
    if (s.ok()) {
      ++destroyed;
    } else if (!absl::IsNotFound(s)) {  // NotFound: it closed on its own meanwhile
      status.Update(std::move(s));
    }
  }
  return status;
}

absl::Status DestroyAllSockets(const IpAddress& address, std::span<const Knock> ports, int& destroyed) {
  absl::StatusOr<NetlinkSocket> netlink = NetlinkSocket::Open(NETLINK_SOCK_DIAG);
  if (!netlink.ok()) return netlink.status();
  absl::Status status;
  const std::span<const uint8_t> bytes(address.bytes(), address.size());
  const std::vector<uint8_t> mapped = address.is_v4() ? V4Mapped(address) : std::vector<uint8_t>();
  for (const uint8_t ip_protocol : {IPPROTO_TCP, IPPROTO_UDP}) {
    if (!std::any_of(ports.begin(), ports.end(), [&](const Knock& k) { return IpProtocolOf(k.protocol) == ip_protocol; })) {
      continue;
    }
    if (address.is_v4()) {
      status.Update(DestroySockets(*netlink, AF_INET, ip_protocol, bytes, ports, destroyed));
      status.Update(DestroySockets(*netlink, AF_INET6, ip_protocol, mapped, ports, destroyed));
    } else {
      status.Update(DestroySockets(*netlink, AF_INET6, ip_protocol, bytes, ports, destroyed));
    }
  }
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat("destroying sockets: ", status.message()));
  return status;
}

// One conntrack entry to delete: what identifies it, copied from the dump.
struct ConntrackEntry {
  std::vector<uint8_t> tuple;  // the whole CTA_TUPLE_ORIG attribute
  std::vector<uint8_t> zone;   // the whole CTA_ZONE attribute, if any
};

bool OriginalTupleMatches(std::span<const uint8_t> tuple, const IpAddress& address, std::span<const Knock> ports) {
  const NetlinkAttributes parts(tuple);
  const std::span<const uint8_t> source =
      NetlinkAttributes(parts.Find(CTA_TUPLE_IP)).Find(address.is_v4() ? CTA_IP_V4_SRC : CTA_IP_V6_SRC);
  if (source.size() != address.size() || std::memcmp(source.data(), address.bytes(), source.size()) != 0) {
    return false;
  }
  const NetlinkAttributes proto(parts.Find(CTA_TUPLE_PROTO));
  const std::span<const uint8_t> number = proto.Find(CTA_PROTO_NUM);
  return number.size() == 1 && ListsPort(ports, number[0], FromBigEndian16(proto.Find(CTA_PROTO_DST_PORT)));
}

absl::Status DeleteConntrackEntries(const IpAddress& address, std::span<const Knock> ports, int& deleted) {
  absl::StatusOr<NetlinkSocket> netlink = NetlinkSocket::Open(NETLINK_NETFILTER);
  if (!netlink.ok()) return netlink.status();
  const uint8_t family = address.is_v4() ? AF_INET : AF_INET6;
  nfgenmsg header{};
  header.nfgen_family = family;
  header.version = NFNETLINK_V0;
  NetlinkRequest dump(NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP);
  dump.Append(header);
  std::vector<ConntrackEntry> matching;
  absl::Status status = netlink->Exchange(dump, [&](const nlmsghdr&, std::span<const uint8_t> body) {
    if (body.size() < sizeof(nfgenmsg)) return;
    const NetlinkAttributes entry(body.subspan(NLMSG_ALIGN(sizeof(nfgenmsg))));
    const std::span<const uint8_t> tuple = entry.FindWhole(CTA_TUPLE_ORIG);
    if (tuple.empty() || !OriginalTupleMatches(tuple.subspan(NLA_HDRLEN), address, ports)) return;
    const std::span<const uint8_t> zone = entry.FindWhole(CTA_ZONE);
    matching.push_back({{tuple.begin(), tuple.end()}, {zone.begin(), zone.end()}});
  });
  // No conntrack in this kernel or namespace: no entry to delete.
  if (absl::IsUnimplemented(status) || absl::IsNotFound(status)) return absl::OkStatus();
  for (const ConntrackEntry& e : matching) {
    NetlinkRequest remove(NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK);
    remove.Append(header);
    remove.AppendBytes(e.tuple);
    remove.AppendBytes(e.zone);
    absl::Status s = netlink->Exchange(remove, [](const nlmsghdr&, std::span<const uint8_t>) {});
    if (s.ok()) {
      ++deleted;
    } else if (!absl::IsNotFound(s)) {  // NotFound: it timed out meanwhile
      status.Update(std::move(s));
    }
  }
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat("deleting conntrack entries: ", status.message()));
  return status;
}

}  // namespace

KilledSessions KillSessions(const IpAddress& address, std::span<const Knock> ports) {
  KilledSessions killed;
  if (ports.empty()) return killed;
  // Sockets first: the reset each sends still passes as part of its
  // connection; then the conntrack entries, the reset's included.
  killed.status.Update(DestroyAllSockets(address, ports, killed.sockets));
  killed.status.Update(DeleteConntrackEntries(address, ports, killed.conntrack_entries));
  return killed;
}

}  // namespace sesame
