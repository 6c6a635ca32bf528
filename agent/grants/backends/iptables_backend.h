// iptables backend: rules in a chain of the agent's own (Iptables_Chain,
// default SESAME) in the filter table, for iptables and ip6tables alike.
//
//   -A INPUT -j SESAME                       (inserted first, exactly once)
//   -A SESAME -s 192.0.2.7/32 -p tcp -m tcp --dport 22
//             -m comment --comment "sesame door=openSSH" -j ACCEPT
//
// One rule per port of the grant (grant.ports, or the door's Ports when the
// grant names none). An ACCEPT in a chain jumped to from INPUT is final for
// the filter table, so an administrator's default-deny INPUT needs nothing
// more (the knockd way). Traffic that matches no rule returns to INPUT.
//
// Open checks each rule with -C before -A (applying a grant twice adds
// nothing); Close deletes it with -D (as often as -C still finds it, so a
// duplicate left by anyone else goes too). Rules carry their door in the
// comment, so doors never share a rule. Prepare() creates the chain and the
// jump when missing and deletes sesame rules of the chain (comment "sesame
// door=...") that this process does not grant: what an earlier run left.
// Other rules of the chain and of INPUT are never touched.
//
// Every command runs through ProcessRunner::RunAndWait with "-w 10" (wait
// for the xtables lock). Thread-safe: one mutex per chain serialises
// check-then-change sequences.
#pragma once

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
#include "agent/config/config.h"
#include "agent/grants/firewall.h"
#include "agent/grants/process_runner.h"
#include "common/ip_address.h"
#include "common/knock.h"

namespace sesame {

struct IptablesTools {
  std::string iptables = "iptables";
  std::string ip6tables = "ip6tables";
};

// The chain, shared by every door that names it.
class IptablesChain {
 public:
  IptablesChain(std::string chain, ProcessRunner& runner, IptablesTools tools = {});
  IptablesChain(const IptablesChain&) = delete;
  IptablesChain& operator=(const IptablesChain&) = delete;

  absl::Status Prepare();
  absl::Status Add(const std::string& door, const IpAddress& address, const std::vector<Knock>& ports);
  absl::Status Remove(const std::string& door, const IpAddress& address, const std::vector<Knock>& ports);

  // What follows "-A CHAIN" for one port of a grant.
  static std::vector<std::string> RuleSpec(const std::string& door, const IpAddress& address, const Knock& port);
  // "sesame door=NAME", at most 255 characters (the comment match's limit).
  static std::string Comment(const std::string& door);
  const std::string& chain() const { return chain_; }

 private:
  // (family, address, protocol, port, comment): what identifies a rule.
  using RuleKey = std::tuple<IpAddress::Family, std::string, std::string, std::string, std::string>;

  absl::StatusOr<ProcessResult> Tool(IpAddress::Family family, std::vector<std::string> args);
  // -C: true when the rule is there, false when not, an error otherwise.
  absl::StatusOr<bool> Exists(IpAddress::Family family, const std::vector<std::string>& spec);
  absl::Status Append(IpAddress::Family family, const std::vector<std::string>& spec);
  absl::Status Delete(IpAddress::Family family, const std::vector<std::string>& spec);
  absl::Status PrepareFamily(IpAddress::Family family) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string chain_;
  ProcessRunner& runner_;
  const IptablesTools tools_;
  absl::Mutex mu_;
  std::set<RuleKey> granted_ ABSL_GUARDED_BY(mu_);
};

class IptablesBackend final : public FirewallBackend {
 public:
  IptablesBackend(std::string door, std::vector<Knock> door_ports, std::shared_ptr<IptablesChain> chain);

  std::string_view name() const override { return "iptables"; }
  absl::Status Prepare() override;
  absl::Status Open(const Grant& grant) override;
  absl::Status Close(const Grant& grant) override;

 private:
  const std::vector<Knock>& PortsOf(const Grant& grant) const;

  const std::string door_;
  const std::vector<Knock> door_ports_;
  std::shared_ptr<IptablesChain> chain_;
};

// Splits one line of `iptables -S` into words, undoing its double quotes and
// backslash escapes. Exposed for tests.
std::vector<std::string> SplitIptablesLine(std::string_view line);

}  // namespace sesame
