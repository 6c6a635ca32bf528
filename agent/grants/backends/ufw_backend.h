// ufw backend: one ufw rule per (address, port) of a grant,
//
//   ufw allow from 192.0.2.7 to any port 22 proto tcp comment 'sesame door=openSSH'
//   ufw --force delete allow from 192.0.2.7 to any port 22 proto tcp
//
// run through ProcessRunner::RunAndWait (no shell). ufw appends the rule to
// its user rules, so an administrator's own earlier "deny 22" would win;
// with ufw's usual default-deny incoming policy nothing more is needed.
//
// ufw knows a rule by (action, source, port, protocol) and not by comment:
// re-adding it is skipped ("Skipping adding existing rule"), adding it with
// another comment only updates the comment, and one delete removes it for
// everyone. So the rules are reference-counted per (address, port, protocol)
// across doors: the first door to grant adds the rule (its comment names
// that door) and the last one to close deletes it. A rule this process
// holds already costs nothing (ufw takes about half a second per command);
// one it does not know (after a restart) is added anyway, ufw skips it.
//
// Prepare() warns when ufw is not active (rules then wait in ufw's files)
// and deletes sesame rules (comment "sesame door=...", found through
// `ufw show added`) that this process does not grant: what an earlier run
// left behind. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/grants/firewall.h"
#include "agent/grants/process_runner.h"
#include "common/ip_address.h"
#include "common/knock.h"

namespace sesame {

// ufw's rules as far as sesame is concerned; one object per agent.
class UfwRules {
 public:
  explicit UfwRules(ProcessRunner& runner, std::string ufw = "ufw");
  UfwRules(const UfwRules&) = delete;
  UfwRules& operator=(const UfwRules&) = delete;

  absl::Status Prepare();
  absl::Status Add(const std::string& door, const IpAddress& address, const std::vector<Knock>& ports);
  absl::Status Remove(const std::string& door, const IpAddress& address, const std::vector<Knock>& ports);

  // The argv that adds / deletes one port's rule.
  std::vector<std::string> AllowArgv(const std::string& door, const IpAddress& address, const Knock& port) const;
  std::vector<std::string> DeleteArgv(const IpAddress& address, const Knock& port) const;
  // "sesame door=NAME" (quotes in the name become '_').
  static std::string Comment(const std::string& door);

 private:
  // (address as ufw prints it, port, protocol)
  using RuleKey = std::tuple<std::string, std::string, std::string>;
  static RuleKey KeyOf(const IpAddress& address, const Knock& port);

  absl::Status Run(const std::vector<std::string>& argv, std::string* output = nullptr);

  ProcessRunner& runner_;
  const std::string ufw_;
  absl::Mutex mu_;
  std::map<RuleKey, std::set<std::string>> granted_ ABSL_GUARDED_BY(mu_);  // rule -> doors
};

class UfwBackend final : public FirewallBackend {
 public:
  UfwBackend(std::string door, std::vector<Knock> door_ports, std::shared_ptr<UfwRules> rules);

  std::string_view name() const override { return "ufw"; }
  absl::Status Prepare() override;
  // Ports: grant.ports, or the door's Ports when the grant names none.
  absl::Status Open(const Grant& grant) override;
  absl::Status Close(const Grant& grant) override;

 private:
  const std::vector<Knock>& PortsOf(const Grant& grant) const;

  const std::string door_;
  const std::vector<Knock> door_ports_;
  std::shared_ptr<UfwRules> rules_;
};

}  // namespace sesame
