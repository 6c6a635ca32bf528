// Applies grants through the doors' firewall backends, remembers them in the
// GrantStore and closes them when they expire — also across an agent
// restart: Reconcile() closes what expired while the agent was down and
// re-applies what is still live (Open is idempotent in every backend).
//
// GrantBook is the logic, synchronous and driven by a Clock, so tests run it
// step by step. GrantWorker runs a GrantBook on a thread of its own: the
// capture loop only enqueues, so a slow firewall (a fsync, an iptables
// spawn, a hung ufw) never delays the recognition of the next knock.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "agent/grants/firewall.h"
#include "agent/grants/grant_store.h"
#include "common/clock.h"

namespace sesame {

// Finds the backend of a door; nullptr when the door no longer exists.
using BackendLookup = std::function<FirewallBackend*(const std::string& door)>;

// Where completed knocks go: the live worker, or a recorder for --pcap.
class GrantSink {
 public:
  virtual ~GrantSink() = default;
  virtual void Open(Grant grant) = 0;
};

struct GrantStats {
  uint64_t opened = 0;
  uint64_t closed = 0;
  uint64_t failures = 0;
  size_t open_now = 0;
};

class GrantBook {
 public:
  GrantBook(std::unique_ptr<GrantStore> store, BackendLookup backends, const Clock& clock);

  // At start (and after a reload): closes expired grants, re-applies live
  // ones (where the backend allows it), closes grants of doors that no
  // longer exist.
  void Reconcile();
  // Applies a grant. A grant for an address that already holds one on that
  // door is extended (the later expiry wins), not applied twice.
  void Open(const Grant& grant);
  // Closes and forgets every grant due at the clock's now.
  void CloseDue();
  // Closes the grant of `address` on `door` now, before its expiry (a
  // revocation from the controller). A grant not on record (lost, or never
  // applied) is still closed in the door's backend: closing what is not
  // open is harmless, and the firewall may hold it anyway.
  void Revoke(const std::string& door, const IpAddress& address);
  // When CloseDue next has work: the earliest expiry among open grants
  // (InfiniteFuture when none), but not before a failed close may be retried.
  absl::Time NextDue() const;
  void SetBackends(BackendLookup backends) { backends_ = std::move(backends); }
  // knockd -l: name knockers in the log. The lookup runs after the door is
  // open, so a slow resolver delays only the log line and later grants.
  void set_resolve_names(bool on) { resolve_names_ = on; }

  const GrantStats& stats() const { return stats_; }
  const GrantStore& store() const { return *store_; }

 private:
  void Close(const Grant& grant, const char* why);

  std::unique_ptr<GrantStore> store_;
  BackendLookup backends_;
  const Clock& clock_;
  GrantStats stats_;
  absl::Time retry_closes_at_ = absl::InfinitePast();
  bool resolve_names_ = false;
};

class GrantWorker final : public GrantSink {
 public:
  // Reconciles on the calling thread (so start-up errors show before the
  // capture opens), then starts the thread.
  explicit GrantWorker(std::unique_ptr<GrantBook> book);
  ~GrantWorker() override;  // finishes queued work, then stops; grants stay open

  void Open(Grant grant) override;
  // GrantBook::Revoke on the worker thread, in order with Open.
  void Revoke(std::string door, IpAddress address);
  // Runs `change` on the worker thread between two grants, then reconciles:
  // how a reload swaps the backends.
  void Reconfigure(std::function<void(GrantBook&)> change);
  // Blocks until the queue is empty (tests, shutdown).
  void Drain();
  GrantStats stats() const;

 private:
  void Run();

  std::unique_ptr<GrantBook> book_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void(GrantBook&)>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  GrantStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace sesame
