// Ends the live connections of one address to a door's grant ports, for a
// revocation that must not leave a session running past it (`sesamectl
// grants revoke --kill-sessions`). Closing the door only stops new
// connections; this ends the ones already in:
// - local sockets, through sock_diag's SOCK_DESTROY (what `ss -K` does): the
//   server (sshd) sees its connection aborted and the client gets a reset;
// - conntrack entries, through ctnetlink: a stateful firewall stops taking
//   the connection's packets as established, also for a connection this host
//   only forwards.
// A connection matches when its remote address (the original source) is
// `address` and its local port and protocol (the original destination) are
// one of `ports`; other services the same address uses are left alone.
#pragma once

#include <span>

#include "absl/status/status.h"
#include "common/ip_address.h"
#include "common/knock.h"

namespace sesame {

struct KilledSessions {
  int sockets = 0;            // local sockets destroyed
  int conntrack_entries = 0;  // entries deleted
  // The first failure (each kind is still tried after another failed); ok
  // when both worked. A kernel without conntrack has nothing to delete and
  // is no failure.
  absl::Status status;
};

// Needs CAP_NET_ADMIN in the network namespace of the connections.
KilledSessions KillSessions(const IpAddress& address, std::span<const Knock> ports);

}  // namespace sesame
