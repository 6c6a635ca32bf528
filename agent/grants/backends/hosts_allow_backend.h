// TCP Wrappers backend (hosts_access(5)): access is granted by a pattern that
// matches the client's address in hosts.allow, for one daemon (SERVICE,
// e.g. sshd). Ports are not TCP Wrappers' business: a grant opens SERVICE,
// whatever the door's Ports say.
//
// include form (the default). The table (/etc/hosts.allow) holds one fixed
// line, added by Prepare() when missing and never touched again:
//
//   sshd: /var/lib/sesame-agent/hosts.allow
//
// hosts_access(5) reads a pattern that begins with '/' as a file of
// patterns. The agent owns that include file and rewrites it atomically
// (write, fsync, rename) from its in-memory set of granted addresses on every
// change: one address per line, IPv6 in brackets ("[2001:db8::7]", the form
// hosts_access(5) documents). The file holds addresses only: tcpd reads every
// word of it as a pattern, so a comment line would become host name
// patterns. Prepare() resets the file to what this process grants (empty at
// start; the agent re-opens live grants afterwards).
//
// inline form. Each grant is one line appended to the table itself:
//
//   sshd: 192.0.2.7 EXCEPT # sesame door=openSSH
//
// tcpd has no end-of-line comments: every word after the ':' is a client
// pattern, so a plain "ADDR # sesame door=NAME" would also admit any client
// whose host name is "sesame" (tcpd resolves it). After EXCEPT those words
// can only narrow the grant, never widen it. The table is rewritten
// atomically (temporary file with the table's mode and owner, fsync, rename,
// fsync of the directory), after its previous content was saved to
// TABLE.sesame~ (one backup, replaced each time). Every other line stays
// byte-identical. Prepare() removes sesame lines (those holding
// " EXCEPT # sesame door=") that this process does not grant: what an
// earlier run left behind.
//
// A rewrite notices an edit that raced with it (the table changed between
// read and rename) and starts over, a few times at most. A line is appended
// at the end of the table: a catch-all "ALL: ALL : DENY" line in hosts.allow
// itself (the single-file style of hosts_options(5)) would shadow it.
//
// Sharing. Doors that name the same include file share one
// HostsAllowIncludeFile; doors that edit the same table inline share one
// HostsAllowInlineTable (backend_factory.h sees to it). Both keep a
// reference count per (door, address) and keep an address allowed while any
// door grants it. All methods are thread-safe.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "agent/config/config.h"
#include "agent/grants/firewall.h"
#include "common/ip_address.h"

namespace sesame {

// How an address is written as a hosts_access(5) pattern: "192.0.2.7",
// "[2001:db8::7]".
std::string HostsAccessPattern(const IpAddress& address);

// The include form's file and the line that points the table at it.
class HostsAllowIncludeFile {
 public:
  // `table` is the hosts.allow that gets the include line; `include_file`
  // is the file the agent owns; `service` the daemon list of that line.
  HostsAllowIncludeFile(std::string table, std::string include_file, std::string service);
  HostsAllowIncludeFile(const HostsAllowIncludeFile&) = delete;
  HostsAllowIncludeFile& operator=(const HostsAllowIncludeFile&) = delete;

  // Ensures the include line is in the table (appends it if absent), then
  // rewrites the include file from the current grants.
  absl::Status Prepare();
  // Idempotent per (door, address). The file is rewritten only when the set
  // of addresses changes; on failure the in-memory state is unchanged.
  absl::Status Add(const std::string& door, const IpAddress& address);
  absl::Status Remove(const std::string& door, const IpAddress& address);

  // "sshd: /var/lib/sesame-agent/hosts.allow"
  std::string IncludeLine() const;
  const std::string& table() const { return table_; }
  const std::string& include_file() const { return include_file_; }
  const std::string& service() const { return service_; }

 private:
  absl::Status WriteIncludeFile(const std::map<IpAddress, std::set<std::string>>& granted) const;

  const std::string table_;
  const std::string include_file_;
  const std::string service_;
  absl::Mutex mu_;
  std::map<IpAddress, std::set<std::string>> granted_ ABSL_GUARDED_BY(mu_);  // address -> doors
};

// The inline form's table.
class HostsAllowInlineTable {
 public:
  explicit HostsAllowInlineTable(std::string table);
  HostsAllowInlineTable(const HostsAllowInlineTable&) = delete;
  HostsAllowInlineTable& operator=(const HostsAllowInlineTable&) = delete;

  // Checks that the table can be replaced, and removes sesame lines that
  // this process does not grant.
  absl::Status Prepare();
  // Appends the grant's line unless it is already there; idempotent.
  absl::Status Add(const std::string& service, const std::string& door, const IpAddress& address);
  // Removes that line unless another door still holds the same line.
  // Removing a line that is not there is fine.
  absl::Status Remove(const std::string& service, const std::string& door, const IpAddress& address);

  // "sshd: 192.0.2.7 EXCEPT # sesame door=openSSH". Characters of the door
  // name other than letters, digits and "._-" are written as '_' (a ':'
  // would start tcpd's option field).
  static std::string GrantLine(const std::string& service, const std::string& door, const IpAddress& address);
  // Whether a table line has the shape GrantLine() writes.
  static bool IsGrantLine(std::string_view line);
  // Where the previous content is kept.
  std::string backup() const { return table_ + ".sesame~"; }
  const std::string& table() const { return table_; }

 private:
  const std::string table_;
  absl::Mutex mu_;
  std::map<std::string, std::set<std::string>> granted_ ABSL_GUARDED_BY(mu_);  // line -> doors
};

// One door's view of either form.
class HostsAllowBackend final : public FirewallBackend {
 public:
  HostsAllowBackend(std::string door, std::shared_ptr<HostsAllowIncludeFile> include_file);
  HostsAllowBackend(std::string door, std::string service, std::shared_ptr<HostsAllowInlineTable> table);

  std::string_view name() const override { return "hosts_allow"; }
  absl::Status Prepare() override;
  absl::Status Open(const Grant& grant) override;
  absl::Status Close(const Grant& grant) override;

 private:
  const std::string door_;
  const std::string service_;
  std::shared_ptr<HostsAllowIncludeFile> include_file_;  // include form
  std::shared_ptr<HostsAllowInlineTable> inline_table_;  // inline form
};

}  // namespace sesame
