// Applies grants through the doors' firewall backends, remembers them in the
// GrantStore and closes them when they expire — also across an agent
// restart: Reconcile() closes what expired while the agent was down and
// re-applies what is still live (Open is idempotent in every backend).
//
// GrantBook is the logic, synchronous and driven by a Clock, so tests run it
// step by step. GrantWorker runs a GrantBook on a thread of its own: the
// capture loop only enqueues, so a slow firewall (a fsync, an iptables
// spawn, a hung ufw) never delays the recognition of the next knock.
//
// Under a flood of completions (a static door's sequence forged from many
// spoofed sources) the worker keeps a real knocker's wait short and its
// memory bounded:
//  - completions wait in a GrantQueue (grant_queue.h): one entry per
//    (door, address), extended in place; served door by door in turn;
//    bounded, dropping first what matters least (see there);
//  - the worker applies what it takes one grant at a time, checking for
//    other doors' knockers between two grants, and writes the grants file
//    once per batch (at most kMaxBatch grants or kBatchBudget of firewall
//    work), not once per grant;
//  - the book holds at most max_open() recorded grants; at the limit a new
//    grant first closes, early, the grant that expires first at the door
//    holding the most (the flooded door pays, as in the queue).
//
// Crash guarantees (unchanged in kind; the window is now one batch):
//  - the firewall first, the record second: a grant is recorded in the
//    grants file after its backend opened it, at the end of its batch. A
//    crash inside that window (at most one batch: kMaxBatch grants,
//    kBatchBudget) forgets those grants: hosts_allow loses nothing by it
//    (at start PrepareAll removes what the recorded grants do not hold, in
//    both forms) nor does nftables (the element times out in the kernel),
//    while an iptables/ufw rule or a command's grant stays open until
//    removed by hand, as before for the one grant in flight.
//  - closing, too, goes firewall first: a grant leaves the file (in the
//    batch's write) only after its backend closed it, so a crash before the
//    write closes it again at the next start (closing what is closed is
//    harmless); an open grant is never forgotten that way.
//  - the file is replaced atomically (GrantStore), never torn. If writing
//    it fails the grants stay open and are closed on time by this process;
//    the write is retried at the next batch, and on its own after kRetry.
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/grants/firewall.h"
#include "agent/grants/grant_queue.h"
#include "agent/grants/grant_store.h"
#include "agent/grants/session_killer.h"
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
  uint64_t evicted = 0;        // closed early at the limit of open grants (also counted in closed)
  uint64_t record_writes = 0;  // rewrites of the grants file
  // The worker's queue (zero for a bare GrantBook).
  size_t pending = 0;                // completions waiting now
  size_t pending_limit = 0;          // GrantWorker's queue limit
  uint64_t coalesced = 0;            // completions merged into one already waiting
  uint64_t dropped = 0;              // completions dropped at the queue's limit (new ones and extensions)
  uint64_t dropped_extensions = 0;   // of which extensions of an open grant
  size_t control_pending = 0;        // revocations and reloads waiting (at most GrantWorker::kMaxControl)
};

class GrantBook {
 public:
  // Recorded grants held open at most (see the top). The grants file then
  // holds about 1.3 MB, which takes a few milliseconds to rewrite.
  static constexpr size_t kDefaultMaxOpen = 16384;
  // Told when the book starts or stops holding a recorded grant for
  // (door, address); called on the book's thread.
  using HeldChanged = std::function<void(const std::string& door, const IpAddress& address, bool held)>;

  GrantBook(std::unique_ptr<GrantStore> store, BackendLookup backends, const Clock& clock);

  // At start (and after a reload): closes expired grants, re-applies live
  // ones (where the backend allows it), closes grants of doors that no
  // longer exist.
  void Reconcile();
  // Applies a grant and records it durably. A grant for an address that
  // already holds one on that door is extended (the later expiry wins): the
  // backend is asked again (idempotent; nftables takes the new timeout),
  // the record updated.
  void Open(const Grant& grant) {
    OpenInBatch(grant);
    CommitBatch();
  }
  // Open, except that the record joins the current batch: it is in the
  // grants file after the next CommitBatch (or Open, CloseDue, Revoke).
  void OpenInBatch(const Grant& grant);
  // Writes every change since the last write to the grants file, once.
  void CommitBatch();
  // Closes and forgets every grant due at the clock's now; retries a failed
  // write of the grants file when its time has come.
  void CloseDue();
  // Closes the grant of `address` on `door` now, before its expiry (a
  // revocation from the controller). A grant not on record (lost, or never
  // applied) is still closed in the door's backend: closing what is not
  // open is harmless, and the firewall may hold it anyway.
  void Revoke(const std::string& door, const IpAddress& address);
  // When CloseDue next has work: the earliest expiry among open grants
  // (InfiniteFuture when none), but not before a failed close may be
  // retried; or when a failed write of the grants file is to be retried.
  absl::Time NextDue() const;
  void SetBackends(BackendLookup backends) { backends_ = std::move(backends); }
  // Whether the book holds a recorded grant for (door, address).
  bool Holds(const std::string& door, const IpAddress& address) const {
    return store_->Find(door, address).has_value();
  }
  void set_on_held_changed(HeldChanged fn) { on_held_changed_ = std::move(fn); }
  size_t max_open() const { return max_open_; }
  void set_max_open(size_t n) { max_open_ = std::max<size_t>(n, 1); }
  // knockd -l: name knockers in the log. The lookup runs after the door is
  // open, so a slow resolver delays only the log line and later grants.
  void set_resolve_names(bool on) { resolve_names_ = on; }

  const GrantStats& stats() const { return stats_; }
  const GrantStore& store() const { return *store_; }

 private:
  // How long a failed close or a failed write of the grants file waits
  // before it is tried again.
  static constexpr absl::Duration kRetry = absl::Seconds(5);

  // Closes in the backend, then forgets the record (in the current batch).
  // False when the backend failed: the record stays, retried later.
  bool Close(const Grant& grant, const char* why);
  // Makes room for one more recorded grant at max_open(). False when that
  // failed (the backend would not close): the new grant is refused.
  bool MakeRoom();
  void Record(const Grant& grant);
  void Forget(const Grant& grant);

  std::unique_ptr<GrantStore> store_;
  BackendLookup backends_;
  const Clock& clock_;
  GrantStats stats_;
  absl::Time retry_closes_at_ = absl::InfinitePast();
  absl::Time retry_write_at_ = absl::InfiniteFuture();  // set after a failed write
  bool resolve_names_ = false;
  size_t max_open_ = kDefaultMaxOpen;
  HeldChanged on_held_changed_;
};

// A revocation that also ends the address's live sessions: the ports whose
// connections end (session_killer.h) and who hears what was ended (on the
// worker thread). No ports: nothing is killed.
struct SessionKill {
  std::vector<Knock> ports;
  std::function<void(const KilledSessions&)> done;
};

class GrantWorker final : public GrantSink {
 public:
  // Completions waiting at most; beyond, GrantQueue drops (see there). At
  // the rate a fsyncing backend applies grants (about 500 a second) this is
  // several seconds of work, more than any real crowd of knockers.
  static constexpr size_t kDefaultMaxPending = 4096;
  // A batch ends after this many grants or this much firewall work, then
  // the grants file is written once for the whole batch.
  static constexpr int kMaxBatch = 256;
  static constexpr absl::Duration kBatchBudget = absl::Milliseconds(10);
  // Revocations and reconfigurations waiting at most; a caller beyond it
  // waits for room (they come from the controller's link and from reloads,
  // never from packets, and none may be dropped).
  static constexpr size_t kMaxControl = 1024;

  // Reconciles on the calling thread (so start-up errors show before the
  // capture opens), then starts the thread.
  explicit GrantWorker(std::unique_ptr<GrantBook> book, size_t max_pending = kDefaultMaxPending);
  ~GrantWorker() override;  // finishes queued work, then stops; grants stay open

  // Never blocks on the firewall or the disk: enqueues (GrantQueue::Offer).
  void Open(Grant grant) override;
  // GrantBook::Revoke on the worker thread, ahead of the completions
  // waiting: one of the same (door, address) that arrived before it is
  // applied right before it (then closed by it); completions that arrive
  // after it are applied after it. With `kill`, the address's live
  // sessions end right after the door closed.
  void Revoke(std::string door, IpAddress address, SessionKill kill = {});
  // Runs `change` on the worker thread between two grants, then reconciles:
  // how a reload swaps the backends. Completions still waiting are applied
  // afterwards, with the new backends.
  void Reconfigure(std::function<void(GrantBook&)> change);
  // Blocks until nothing waits and nothing runs (tests, shutdown).
  void Drain();
  GrantStats stats() const;

 private:
  using Job = std::function<void(GrantBook&)>;

  void Run();
  // Applies completions from the queue until it is empty, a control job
  // arrives, or the batch is full; then writes the grants file once.
  void ApplyBatch();
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LogDropsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnqueueControl(Job job);

  std::unique_ptr<GrantBook> book_;
  mutable absl::Mutex mu_;
  GrantQueue queue_ ABSL_GUARDED_BY(mu_);
  std::deque<Job> control_ ABSL_GUARDED_BY(mu_);
  // What the book holds, as its HeldChanged reports it: tells an extension
  // from a new completion without touching the book from the caller's thread.
  absl::flat_hash_set<std::pair<std::string, IpAddress>> held_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  GrantStats stats_ ABSL_GUARDED_BY(mu_);
  uint64_t drops_logged_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time drops_logged_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::thread thread_;
};

}  // namespace sesame
