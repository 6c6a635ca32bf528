// Builds every door's firewall backend from the configuration, with one
// object per shared resource: one include-file writer per include file, one
// inline editor per hosts.allow, one nftables table per table name, one
// iptables chain per chain name, one ufw rule book. Doors that share a
// resource then share its reference counts, so closing one door's grant
// never removes what another door still grants.
//
// Usage (agent start and every reload):
//
//   ASSIGN_OR_RETURN(std::unique_ptr<BackendSet> backends,
//                    BackendSet::Create(config, runner));
//   RETURN_IF_ERROR(backends->PrepareAll());
//   book.SetBackends([set = backends.get()](const std::string& door) {
//     return set->ForDoor(door);
//   });
//   book.Reconcile();  // re-applies live grants: Prepare resets some backends
//                      // (hosts_allow, iptables, ufw) to what this set grants
//
// A new set starts with no grant (the include file, the inline lines and the
// iptables/ufw rules of the previous set are reset by PrepareAll, nftables
// elements stay), so the grants that are live must be re-opened right after
// PrepareAll, as GrantBook::Reconcile does.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/config/config.h"
#include "agent/grants/backends/iptables_backend.h"
#include "agent/grants/firewall.h"
#include "agent/grants/process_runner.h"
#include "common/clock.h"

namespace sesame {

struct BackendToolPaths {
  IptablesTools iptables;
  std::string ufw = "ufw";
};

// The file a hosts_allow door edits or writes: HostsAllow_File, else
// <StateDir>/hosts.allow (include form) or /etc/hosts.allow (inline form).
std::string HostsAllowFileOf(const AgentConfig& config, const DoorConfig& door);

class BackendSet {
 public:
  // Fails, naming the door and its line, on a configuration no backend can
  // serve: two doors sharing an include file with different services or
  // tables, a file used both as include file and inline table, a relative
  // path, a command that does not split, a duplicate door name.
  // `runner` and `clock` must outlive the set.
  static absl::StatusOr<std::unique_ptr<BackendSet>> Create(const AgentConfig& config, ProcessRunner& runner,
                                                            const Clock& clock = RealClock::Instance(),
                                                            BackendToolPaths tools = {});
  BackendSet(const BackendSet&) = delete;
  BackendSet& operator=(const BackendSet&) = delete;

  // nullptr for a door the configuration does not have.
  FirewallBackend* ForDoor(const std::string& door) const;
  // Prepares every shared resource once (and every command door). Tries
  // them all; the error lists every failure.
  absl::Status PrepareAll();

  size_t size() const { return backends_.size(); }

 private:
  BackendSet() = default;

  std::map<std::string, std::unique_ptr<FirewallBackend>> backends_;  // by door
  // One backend per shared resource, each command door: what PrepareAll runs.
  std::vector<std::pair<std::string, FirewallBackend*>> to_prepare_;  // (what, backend)
};

}  // namespace sesame
