#include "agent/grants/grant_manager.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace sesame {
namespace {

std::string Describe(const Grant& g) {
  std::string ttl = g.expires == absl::InfiniteFuture() ? "no expiry"
                                                        : absl::StrCat("until ", absl::FormatTime(g.expires));
  return absl::StrCat(g.door, ": ", g.address.ToString(), " (", ttl, ")");
}

// " (host.name)" for a resolvable address, else "".
std::string NameOf(const IpAddress& address) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (address.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, address.bytes(), 4);
    length = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, address.bytes(), 16);
    length = sizeof(sockaddr_in6);
  }
  char host[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<sockaddr*>(&storage), length, host, sizeof host, nullptr, 0, NI_NAMEREQD) != 0) {
    return "";
  }
  return absl::StrCat(" (", host, ")");
}

}  // namespace

GrantBook::GrantBook(std::unique_ptr<GrantStore> store, BackendLookup backends, const Clock& clock)
    : store_(std::move(store)), backends_(std::move(backends)), clock_(clock) {
  stats_.open_now = store_->size();
}

void GrantBook::Reconcile() {
  const absl::Time now = clock_.Now();
  for (const Grant& g : store_->All()) {
    FirewallBackend* backend = backends_(g.door);
    if (backend == nullptr || g.expires <= now) {
      Close(g, backend == nullptr ? "door removed" : "expired while the agent was down");
      continue;
    }
    if (!backend->reapply_after_restart()) continue;
    const absl::Status s = backend->Open(g);
    if (!s.ok()) {
      ++stats_.failures;
      LogError(absl::StrCat(g.door, ": cannot re-apply grant for ", g.address.ToString(), ": ", s.ToString()));
    } else {
      LogInfo(absl::StrCat("re-applied grant ", Describe(g)));
    }
  }
  CommitBatch();
}

void GrantBook::OpenInBatch(const Grant& grant) {
  FirewallBackend* backend = backends_(grant.door);
  if (backend == nullptr) {
    ++stats_.failures;
    LogError(absl::StrCat(grant.door, ": no such door, grant for ", grant.address.ToString(), " dropped"));
    return;
  }
  Grant g = grant;
  const std::optional<Grant> existing = store_->Find(g.door, g.address);
  if (existing.has_value()) {
    g.opened = existing->opened;
    g.expires = std::max(existing->expires, g.expires);
  } else if (g.expires != absl::InfiniteFuture() && store_->size() >= max_open_ && !MakeRoom()) {
    ++stats_.failures;
    LogError(absl::StrCat(g.door, ": ", max_open_, " grants open and none could be closed to make room; grant for ",
                          g.address.ToString(), " refused"));
    return;
  }
  // The firewall first, the record second: the record costs a fsync (once
  // per batch), and every millisecond here is a millisecond the knocker
  // waits.
  const absl::Time start = absl::Now();
  const absl::Status opened = backend->Open(g);
  if (LogEnabled(LogLevel::kDebug)) {
    // grant.opened is the capture time of the last knock.
    LogDebug(absl::StrCat(g.door, ": ", g.address.ToString(), ": knock captured ",
                          absl::FormatDuration(start - grant.opened), " before the backend call, which took ",
                          absl::FormatDuration(absl::Now() - start)));
  }
  if (!opened.ok()) {
    ++stats_.failures;
    LogError(absl::StrCat(g.door, ": cannot open for ", g.address.ToString(), " via ", std::string(backend->name()), ": ",
                          opened.ToString()));
    return;
  }
  ++stats_.opened;
  if (g.expires == absl::InfiniteFuture()) {
    // Nothing will ever close it (a knockd door with a start command only):
    // nothing to remember either.
    LogInfo(absl::StrCat("opened ", Describe(g), " via ", std::string(backend->name())));
    return;
  }
  Record(g);
  LogInfo(absl::StrCat("opened ", Describe(g), " via ", std::string(backend->name()),
                       resolve_names_ ? NameOf(g.address) : ""));
}

void GrantBook::CommitBatch() {
  stats_.open_now = store_->size();
  if (!store_->dirty()) return;
  const absl::Status written = store_->Sync();
  stats_.record_writes = store_->writes();
  if (written.ok()) {
    retry_write_at_ = absl::InfiniteFuture();
    return;
  }
  // Still open, and still closed on time by this process; only a restart
  // before the file is written again would forget them.
  ++stats_.failures;
  retry_write_at_ = clock_.Now() + kRetry;
  LogError(absl::StrCat("cannot record grants in ", store_->path(), ": ", written.ToString(), "; retrying in ",
                        absl::FormatDuration(kRetry)));
}

void GrantBook::CloseDue() {
  const absl::Time now = clock_.Now();
  if (now >= retry_closes_at_) {
    for (const Grant& g : store_->Due(now)) Close(g, "cmd_timeout reached");
  }
  if (store_->dirty() && (now >= retry_write_at_ || retry_write_at_ == absl::InfiniteFuture())) CommitBatch();
  stats_.open_now = store_->size();
}

void GrantBook::Revoke(const std::string& door, const IpAddress& address) {
  if (std::optional<Grant> g = store_->Find(door, address)) {
    Close(*g, "revoked");
  } else if (FirewallBackend* backend = backends_(door)) {
    Grant g;
    g.door = door;
    g.address = address;
    g.opened = g.expires = clock_.Now();
    if (const absl::Status s = backend->Close(g); !s.ok()) {
      ++stats_.failures;
      LogError(absl::StrCat(door, ": cannot close for ", address.ToString(), ": ", s.ToString()));
    }
  }
  CommitBatch();
}

absl::Time GrantBook::NextDue() const {
  const absl::Time next = std::max(store_->NextExpiry(), retry_closes_at_);
  return std::min(next, retry_write_at_);
}

bool GrantBook::Close(const Grant& grant, const char* why) {
  if (FirewallBackend* backend = backends_(grant.door)) {
    const absl::Status s = backend->Close(grant);
    if (!s.ok()) {
      // Kept in the store: tried again in a few seconds, or at the next start.
      ++stats_.failures;
      retry_closes_at_ = clock_.Now() + kRetry;
      LogError(absl::StrCat(grant.door, ": cannot close for ", grant.address.ToString(), ": ", s.ToString()));
      return false;
    }
  }
  Forget(grant);
  ++stats_.closed;
  LogInfo(absl::StrCat("closed ", grant.door, ": ", grant.address.ToString(), " (", why, ")"));
  return true;
}

bool GrantBook::MakeRoom() {
  // The door holding the most grants gives up the one that expires first:
  // a flood at one door displaces its own grants, not another door's.
  const std::map<std::string, size_t> sizes = store_->SizeByDoor();
  const auto fullest = std::max_element(sizes.begin(), sizes.end(),
                                        [](const auto& a, const auto& b) { return a.second < b.second; });
  if (fullest == sizes.end()) return false;
  const std::optional<Grant> victim = store_->FirstToExpire(fullest->first);
  if (!victim.has_value() || !Close(*victim, "closed early: the limit of open grants was reached")) return false;
  ++stats_.evicted;
  return true;
}

void GrantBook::Record(const Grant& grant) {
  const bool was_held = store_->Find(grant.door, grant.address).has_value();
  store_->Stage(grant);
  if (!was_held && on_held_changed_) on_held_changed_(grant.door, grant.address, true);
}

void GrantBook::Forget(const Grant& grant) {
  store_->StageRemove(grant.door, grant.address);
  if (on_held_changed_) on_held_changed_(grant.door, grant.address, false);
}

// ---------------------------------------------------------------------------

GrantWorker::GrantWorker(std::unique_ptr<GrantBook> book, size_t max_pending)
    : book_(std::move(book)), queue_(max_pending) {
  book_->set_on_held_changed([this](const std::string& door, const IpAddress& address, bool held) {
    absl::MutexLock lock(&mu_);
    if (held) {
      held_.emplace(door, address);
    } else {
      held_.erase(std::make_pair(door, address));
    }
  });
  {
    absl::MutexLock lock(&mu_);
    for (const Grant& g : book_->store().All()) held_.emplace(g.door, g.address);
  }
  book_->Reconcile();
  absl::MutexLock lock(&mu_);
  PublishLocked();
  thread_ = std::thread([this] { Run(); });
}

GrantWorker::~GrantWorker() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void GrantWorker::Open(Grant grant) {
  absl::MutexLock lock(&mu_);
  const bool held = held_.contains(std::make_pair(grant.door, grant.address));
  queue_.Offer(std::move(grant), held);
}

void GrantWorker::Revoke(std::string door, IpAddress address, SessionKill kill) {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](GrantWorker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return w->control_.size() < kMaxControl - 1; },
      this));
  // A completion of that source still waiting came first: it is applied
  // first, then closed (each reports its outcome, as the managed agent
  // expects), both ahead of the rest of the queue.
  if (std::optional<Grant> waiting = queue_.Remove(door, address)) {
    control_.push_back([g = *std::move(waiting)](GrantBook& book) { book.Open(g); });
  }
  control_.push_back([door = std::move(door), address, kill = std::move(kill)](GrantBook& book) {
    book.Revoke(door, address);
    if (kill.ports.empty()) return;
    const KilledSessions killed = KillSessions(address, kill.ports);
    if (kill.done) kill.done(killed);
  });
}

void GrantWorker::Reconfigure(std::function<void(GrantBook&)> change) {
  EnqueueControl([change = std::move(change)](GrantBook& book) {
    change(book);
    book.Reconcile();
  });
}

void GrantWorker::EnqueueControl(Job job) {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](GrantWorker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return w->control_.size() < kMaxControl; },
      this));
  control_.push_back(std::move(job));
}

void GrantWorker::Drain() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](GrantWorker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
        return w->queue_.empty() && w->control_.empty() && !w->busy_;
      },
      this));
}

GrantStats GrantWorker::stats() const {
  absl::MutexLock lock(&mu_);
  GrantStats s = stats_;
  const GrantQueueStats q = queue_.stats();
  s.pending = q.pending;
  s.pending_limit = queue_.max_pending();
  s.coalesced = q.coalesced;
  s.dropped = q.dropped_new + q.dropped_extensions;
  s.dropped_extensions = q.dropped_extensions;
  s.control_pending = control_.size();
  return s;
}

void GrantWorker::Run() {
  for (;;) {
    std::deque<Job> control;
    {
      absl::MutexLock lock(&mu_);
      // Wake for work, for shutdown, or when the earliest grant is due. The
      // wait is capped so a clock change cannot leave a grant open for long.
      const absl::Time due = std::min(book_->NextDue(), absl::Now() + absl::Seconds(1));
      mu_.AwaitWithDeadline(absl::Condition(
                                +[](GrantWorker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
                                  return !w->queue_.empty() || !w->control_.empty() || w->stopping_;
                                },
                                this),
                            due);
      if (queue_.empty() && control_.empty() && stopping_) return;
      control.swap(control_);  // revocations and reloads go first
      busy_ = !control.empty() || !queue_.empty();
    }
    for (Job& job : control) job(*book_);
    if (control.empty()) ApplyBatch();
    book_->CloseDue();
    absl::MutexLock lock(&mu_);
    busy_ = false;
    PublishLocked();
    LogDropsLocked();
  }
}

void GrantWorker::ApplyBatch() {
  const absl::Time start = absl::Now();
  for (int n = 0; n < kMaxBatch && absl::Now() - start < kBatchBudget; ++n) {
    std::optional<Grant> next;
    {
      absl::MutexLock lock(&mu_);
      if (!control_.empty()) break;  // a revocation must not wait for the batch
      next = queue_.Take();
    }
    if (!next.has_value()) break;
    book_->OpenInBatch(*next);
  }
  book_->CommitBatch();
}

void GrantWorker::PublishLocked() {
  stats_ = book_->stats();
}

void GrantWorker::LogDropsLocked() {
  const GrantQueueStats q = queue_.stats();
  const uint64_t dropped = q.dropped_new + q.dropped_extensions;
  if (dropped == drops_logged_) return;
  // A flood drops thousands: one line at once, then one every minute at most.
  const absl::Time now = absl::Now();
  if (now - drops_logged_at_ < absl::Minutes(1)) return;
  LogWarning(absl::StrCat("grant queue full (", queue_.max_pending(), " completions waiting): dropped ",
                          dropped - drops_logged_, " completion(s) since the last report (", dropped,
                          " in all, ", q.dropped_extensions,
                          " of them extensions of open grants); the oldest of the door with the most "
                          "waiting go first"));
  drops_logged_ = dropped;
  drops_logged_at_ = now;
}

}  // namespace sesame
