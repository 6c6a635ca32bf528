// A firewall backend opens and closes access for one address. One backend
// object serves one door; several doors may share the thing it edits (one
// hosts.allow include file, one nftables table), so implementations keep
// per-grant state and never remove what another door still needs.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/ip_address.h"
#include "common/knock.h"

namespace sesame {

struct Grant {
  std::string door;
  IpAddress address;
  std::vector<Knock> ports;  // what the grant opens
  absl::Time opened;
  absl::Time expires = absl::InfiniteFuture();  // when Close is due
  friend bool operator==(const Grant&, const Grant&) = default;
};

class FirewallBackend {
 public:
  virtual ~FirewallBackend() = default;
  virtual std::string_view name() const = 0;
  // Creates what the backend needs (table, chain, include line). Idempotent;
  // called at start and after a reload.
  virtual absl::Status Prepare() { return absl::OkStatus(); }
  // Opens access. Applying the same grant twice changes nothing.
  virtual absl::Status Open(const Grant& grant) = 0;
  // Removes exactly what Open added; closing what is not open is not an error.
  virtual absl::Status Close(const Grant& grant) = 0;
  // Whether a live grant is applied again after an agent restart or reload.
  // True where Open is idempotent; false for knockd-style commands, which
  // may not be (`iptables -A` twice adds two rules that one stop command
  // will not both remove): their grants are only closed on time.
  virtual bool reapply_after_restart() const { return true; }
};

}  // namespace sesame
