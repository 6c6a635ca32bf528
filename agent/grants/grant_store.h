// The agent's durable record of open grants, so that a grant outlives an
// agent restart or SIGKILL: at start the agent loads it, closes what expired
// while it was down and re-arms the rest.
//
// One small text file (by convention <StateDir>/grants), rewritten whole and
// atomically (WriteFileAtomically: write, fsync, rename, fsync the
// directory), so a crash leaves the old file or the new one, never a torn
// one. Put and Remove rewrite it for one change; Stage, StageRemove and Sync
// let a caller make many changes and rewrite it once (the grant worker does
// so once per batch). The file is read back bounded (kMaxFileBytes). Format,
// version 1:
//
//   sesame-grants 1
//   DOOR ADDRESS PORTS OPENED EXPIRES
//
// one grant per line, fields separated by one space, sorted by (door,
// address). DOOR is the door name with '%', bytes <= ' ' and bytes >= 0x7f
// written as %XX; ADDRESS is canonical IPv4/IPv6 text; PORTS is
// "22:tcp,443:udp" or "-" for none; OPENED and EXPIRES are integer unix
// nanoseconds, or "inf" / "-inf" for absl's infinite times. Times are kept
// to the nanosecond: Put() truncates finer ones, so what All() returns is
// exactly what a reopened store returns.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/grants/firewall.h"
#include "common/ip_address.h"

namespace sesame {

class GrantStore {
 public:
  enum class OnCorrupt {
    // A line that does not parse is an error ("FILE:LINE: expected ...") and
    // the store does not open: silently dropping a grant would leave a door
    // open forever.
    kRefuse,
    // The agent starts anyway: the file is renamed to FILE.corrupt-UNIXTIME
    // (kept for a human), every line that parses is kept, each bad line is
    // logged as an error, and the salvaged set is written back. For an
    // operator who has read the refusal (sesame-agent --salvage-grants).
    kSalvage,
  };

  // The largest grants file Open reads: far above what the grant book's
  // limit on open grants (GrantBook::kDefaultMaxOpen) writes.
  static constexpr size_t kMaxFileBytes = size_t{64} << 20;

  // Loads `path`; a missing file (or an empty one) is an empty store. The
  // directory must exist. A file of an unknown version is refused in both
  // modes: it was written by a newer sesame. So is anything but a regular
  // file of at most kMaxFileBytes.
  static absl::StatusOr<std::unique_ptr<GrantStore>> Open(const std::string& path,
                                                          OnCorrupt on_corrupt = OnCorrupt::kRefuse);

  GrantStore(const GrantStore&) = delete;
  GrantStore& operator=(const GrantStore&) = delete;

  const std::string& path() const { return path_; }

  // Inserts, or replaces the grant with the same (door, address). Durable
  // when it returns OK (staged changes made before it too); on error
  // neither the file nor the store changed.
  absl::Status Put(const Grant& grant);
  // Removes the grant for (door, address); removing what is absent is OK.
  absl::Status Remove(const std::string& door, const IpAddress& address);

  // Batches. Stage and StageRemove change the store at once (Find, All, Due
  // see the change) and leave the file behind until Sync, which rewrites it
  // once for all of them. A failed Sync keeps the store dirty, and the next
  // Sync (or Put, or Remove) writes everything again; the file meanwhile
  // holds its last good content. Staging a grant that a door without a name
  // cannot have is ignored (Put refuses it).
  void Stage(const Grant& grant);
  void StageRemove(const std::string& door, const IpAddress& address);
  absl::Status Sync();
  // Whether the store holds changes the file does not.
  bool dirty() const;

  std::optional<Grant> Find(const std::string& door, const IpAddress& address) const;
  // Every grant, sorted by (door, address).
  std::vector<Grant> All() const;
  // The grants whose expiry is at or before `now`, sorted by (door, address).
  // Costs the number of due grants (and of doors), not of all grants.
  std::vector<Grant> Due(absl::Time now) const;
  // The earliest expiry of any grant; InfiniteFuture for an empty store.
  absl::Time NextExpiry() const;
  size_t size() const;
  // How many grants each door holds (doors with none are absent).
  std::map<std::string, size_t> SizeByDoor() const;
  // The grant of `door` that expires first (ties: the lowest address).
  std::optional<Grant> FirstToExpire(const std::string& door) const;
  // Rewrites of the file so far (Put, Remove, Sync, salvage).
  uint64_t writes() const;

 private:
  using Key = std::pair<std::string, IpAddress>;
  // A grant with its line of the file, made once when the grant changes so
  // that a rewrite only concatenates.
  struct Record {
    Grant grant;
    std::string line;
  };

  explicit GrantStore(std::string path) : path_(std::move(path)) {}
  // Changes the in-memory store only; `grant` is normalised.
  void SetLocked(Grant grant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(const Key& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the whole store to the file; clears dirty_ when that worked.
  absl::Status WriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  mutable absl::Mutex mu_;
  std::map<Key, Record> grants_ ABSL_GUARDED_BY(mu_);
  // door -> (expires, address), to find what is due without a full scan.
  std::map<std::string, std::set<std::pair<absl::Time, IpAddress>>> expiry_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
};

// The file's text for `grants` (any order; duplicates by (door, address) are
// the caller's problem) and its parser. Exposed for tests and tools.
std::string SerializeGrants(const std::vector<Grant>& grants);
struct ParsedGrants {
  std::vector<Grant> grants;
  std::vector<std::string> errors;  // "FILE:LINE: what was expected", one per bad line
};
// Fails only when the file as a whole is unusable (unknown header or
// version); bad lines are reported in `errors`, good ones kept.
absl::StatusOr<ParsedGrants> ParseGrants(const std::string& text, const std::string& file_name);

}  // namespace sesame
