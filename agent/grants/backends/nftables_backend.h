// nftables backend, in-process through libnftables (about 50 µs per change;
// spawning nft costs about 1.7 ms).
//
// The agent owns one table, `inet <Nft_Table>` (default `sesame`). Each door
// has two sets of granted sources, `<door>_v4` (ipv4_addr) and `<door>_v6`
// (ipv6_addr), both `flags timeout`. Open adds the address with a timeout of
// the time left until the grant expires, so the kernel closes the door even
// when the agent is dead; a grant without expiry gets no timeout. Close
// deletes it. Both are single atomic transactions (add; delete; add), so
// re-opening replaces the timeout and closing an absent address is fine.
//
// The table's chain, `input` (hook input, priority filter - 10, policy
// accept), guards the doors' Ports itself:
//
//   ct state established,related accept
//   tcp dport { 22 } ip saddr @openSSH_v4 meta mark set meta mark | 0x5e5a0000 accept
//   tcp dport { 22 } ip6 saddr @openSSH_v6 meta mark set meta mark | 0x5e5a0000 accept
//   ...                                  (every door's accept rules first)
//   tcp dport { 22 } drop                (then every door's drop rules)
//
// so a door's ports are invisible to everyone not granted (by that door or
// any other door of the table guarding the same port), and established
// sessions outlive the grant. In nftables every base chain at a hook gets
// its say and a drop anywhere is final, while an accept here only means "no
// objection" to the chains that run later: the administrator's own ruleset
// (another table, priority filter or later) must also let the packet pass.
// With a default-deny input chain, add one rule there:
//
//   meta mark & 0x5e5a0000 == 0x5e5a0000 accept
//
// (or accept the door's ports there outright: sesame's chain already drops
// them unless granted). The mark is OR-ed in, so other users of the mark
// keep their bits.
//
// Prepare() builds all of that in one transaction: it creates the table and
// sets when missing (existing elements are live grants and stay) and
// replaces the chain's rules with those of the doors registered now. Sets of
// doors no longer configured are left alone (their elements expire).
//
// Set names come from door names: letters, digits and '_' are kept, other
// characters become '_' and a hash of the real name is appended then.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/grants/firewall.h"
#include "common/clock.h"
#include "common/ip_address.h"
#include "common/knock.h"

struct nft_ctx;

namespace sesame {

// The table, shared by every door that names it. Thread-safe.
class NftablesTable {
 public:
  // What sesame's chain ORs into the packet mark of granted traffic.
  static constexpr uint32_t kGrantMark = 0x5e5a0000;
  // Timeouts longer than this are clamped (the agent closes such a grant
  // itself anyway).
  static constexpr absl::Duration kMaxTimeout = absl::Hours(24 * 3650);

  // Fails when libnftables cannot make a context. `clock` is what grant
  // expiries are measured against.
  static absl::StatusOr<std::shared_ptr<NftablesTable>> Create(std::string table,
                                                               const Clock& clock = RealClock::Instance());
  ~NftablesTable();
  NftablesTable(const NftablesTable&) = delete;
  NftablesTable& operator=(const NftablesTable&) = delete;

  // Registers a door (replacing an earlier registration of the same name);
  // its sets and rules appear at the next Prepare().
  void AddDoor(const std::string& door, std::vector<Knock> ports);
  absl::Status Prepare();
  // An `expires` already past removes the address instead.
  absl::Status Add(const std::string& door, const IpAddress& address, absl::Time expires);
  absl::Status Remove(const std::string& door, const IpAddress& address);

  // Runs nft commands in this table's libnftables context and returns what
  // nft printed (JSON with `json`). For tests and diagnostics.
  absl::StatusOr<std::string> Run(const std::string& commands, bool json = false);

  // The transaction Prepare() runs.
  std::string PrepareCommands() const;
  const std::string& table() const { return table_; }
  static std::string SetName(const std::string& door, IpAddress::Family family);

 private:
  NftablesTable(std::string table, const Clock& clock, nft_ctx* ctx);
  absl::StatusOr<std::string> RunLocked(const std::string& commands, bool json) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string PrepareCommandsLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const std::string table_;
  const Clock& clock_;
  mutable absl::Mutex mu_;
  nft_ctx* const ctx_ ABSL_PT_GUARDED_BY(mu_);
  std::map<std::string, std::vector<Knock>> doors_ ABSL_GUARDED_BY(mu_);
};

// One door's view of the table.
class NftablesBackend final : public FirewallBackend {
 public:
  // Registers the door with `table`.
  NftablesBackend(const std::string& door, std::vector<Knock> ports, std::shared_ptr<NftablesTable> table);

  std::string_view name() const override { return "nftables"; }
  absl::Status Prepare() override;
  // Opens the door's configured Ports (the chain's rules); grant.ports is
  // not consulted.
  absl::Status Open(const Grant& grant) override;
  absl::Status Close(const Grant& grant) override;

 private:
  const std::string door_;
  std::shared_ptr<NftablesTable> table_;
};

}  // namespace sesame
