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
  stats_.open_now = store_->size();
}

void GrantBook::Open(const Grant& grant) {
  FirewallBackend* backend = backends_(grant.door);
  if (backend == nullptr) {
    ++stats_.failures;
    LogError(absl::StrCat(grant.door, ": no such door, grant for ", grant.address.ToString(), " dropped"));
    return;
  }
  Grant g = grant;
  if (auto existing = store_->Find(g.door, g.address)) {
    g.opened = existing->opened;
    g.expires = std::max(existing->expires, g.expires);
  }
  // The firewall first, the record second: the record costs a fsync, and
  // every millisecond here is a millisecond the knocker waits.
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
  const absl::Status stored = store_->Put(g);
  if (!stored.ok()) {
    // Still open, and still closed on time by this process; only a restart
    // before then would forget it.
    LogError(absl::StrCat("cannot record grant ", Describe(g), ": ", stored.ToString()));
  }
  LogInfo(absl::StrCat("opened ", Describe(g), " via ", std::string(backend->name()),
                       resolve_names_ ? NameOf(g.address) : ""));
  stats_.open_now = store_->size();
}

void GrantBook::CloseDue() {
  for (const Grant& g : store_->Due(clock_.Now())) Close(g, "cmd_timeout reached");
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
  stats_.open_now = store_->size();
}

absl::Time GrantBook::NextDue() const {
  absl::Time next = absl::InfiniteFuture();
  for (const Grant& g : store_->All()) next = std::min(next, g.expires);
  return std::max(next, retry_closes_at_);
}

void GrantBook::Close(const Grant& grant, const char* why) {
  if (FirewallBackend* backend = backends_(grant.door)) {
    const absl::Status s = backend->Close(grant);
    if (!s.ok()) {
      // Kept in the store: tried again in a few seconds, or at the next start.
      ++stats_.failures;
      retry_closes_at_ = clock_.Now() + absl::Seconds(5);
      LogError(absl::StrCat(grant.door, ": cannot close for ", grant.address.ToString(), ": ", s.ToString()));
      return;
    }
  }
  const absl::Status removed = store_->Remove(grant.door, grant.address);
  if (!removed.ok()) LogError(absl::StrCat("cannot forget grant ", Describe(grant), ": ", removed.ToString()));
  ++stats_.closed;
  LogInfo(absl::StrCat("closed ", grant.door, ": ", grant.address.ToString(), " (", why, ")"));
}

GrantWorker::GrantWorker(std::unique_ptr<GrantBook> book) : book_(std::move(book)) {
  book_->Reconcile();
  stats_ = book_->stats();
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
  queue_.push_back([g = std::move(grant)](GrantBook& book) { book.Open(g); });
}

void GrantWorker::Revoke(std::string door, IpAddress address) {
  absl::MutexLock lock(&mu_);
  queue_.push_back([door = std::move(door), address](GrantBook& book) { book.Revoke(door, address); });
}

void GrantWorker::Reconfigure(std::function<void(GrantBook&)> change) {
  absl::MutexLock lock(&mu_);
  queue_.push_back([change = std::move(change)](GrantBook& book) {
    change(book);
    book.Reconcile();
  });
}

void GrantWorker::Drain() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](GrantWorker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return w->queue_.empty() && !w->busy_; }, this));
}

GrantStats GrantWorker::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void GrantWorker::Run() {
  for (;;) {
    std::function<void(GrantBook&)> job;
    {
      absl::MutexLock lock(&mu_);
      // Wake for work, for shutdown, or when the earliest grant is due. The
      // wait is capped so a clock change cannot leave a grant open for long.
      const absl::Time due = std::min(book_->NextDue(), absl::Now() + absl::Seconds(1));
      mu_.AwaitWithDeadline(absl::Condition(
                                +[](GrantWorker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
                                  return !w->queue_.empty() || w->stopping_;
                                },
                                this),
                            due);
      if (!queue_.empty()) {
        job = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
      } else if (stopping_) {
        return;
      }
    }
    if (job) job(*book_);
    book_->CloseDue();
    absl::MutexLock lock(&mu_);
    busy_ = false;
    stats_ = book_->stats();
  }
}

}  // namespace sesame
