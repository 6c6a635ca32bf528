// A real knocker's wait for its grant while a flood of forged completions of
// another door arrives (issue 15). Each run: 20,000 completions of door a
// from distinct sources reach the grant worker at once (as a static door's
// sequence, forged from spoofed addresses, arrives from the capture loop),
// then real knockers of door b: one right behind the flood, then one every
// 20 ms while the flood is still being applied (at most 200). A knocker's
// wait runs from its completion reaching the worker to its backend's Open()
// returning.
//
// Both doors use the real hosts_allow backend in its include form (one
// include file shared by the two doors, rewritten and fsynced for each new
// address, as in production) and a real grants file, in a temporary
// directory on the disk $TMPDIR names. Nothing else is touched; no root.
//
//   grant_flood_bench
//
// BM_RealKnockersDuringForgedFlood/20000/15: 15 runs; counters: the first
// knocker's wait (p50, p99, max over the runs), every knocker's (p50, p99,
// max), the flood's enqueue cost per completion, the completions dropped,
// the time until everything kept was applied. BM_GrantsFileWriteAtSize: one
// batch's record write with 100 grants held and with the book full
// (GrantBook::kDefaultMaxOpen).
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/grants/backends/hosts_allow_backend.h"
#include "agent/grants/grant_manager.h"
#include "agent/grants/grant_store.h"
#include "benchmark/benchmark.h"
#include "common/clock.h"
#include "common/log.h"

namespace sesame {
namespace {

// A scratch directory, removed with its contents.
class ScratchDir {
 public:
  ScratchDir() {
    const char* tmp = getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/grant-flood-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Passes every call to the real backend and notes when each address's Open
// returned.
class StopwatchBackend final : public FirewallBackend {
 public:
  explicit StopwatchBackend(FirewallBackend& inner) : inner_(inner) {}
  std::string_view name() const override { return inner_.name(); }
  absl::Status Open(const Grant& grant) override {
    absl::Status s = inner_.Open(grant);
    absl::MutexLock lock(&mu_);
    opened_at_[grant.address] = absl::Now();
    return s;
  }
  absl::Status Close(const Grant& grant) override { return inner_.Close(grant); }
  // When `address` was opened (blocks until it is).
  absl::Time WaitFor(const IpAddress& address) {
    absl::MutexLock lock(&mu_);
    awaited_ = address;
    mu_.Await(absl::Condition(this, &StopwatchBackend::AwaitedIsOpen));
    return opened_at_[address];
  }

 private:
  bool AwaitedIsOpen() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return opened_at_.contains(awaited_); }

  FirewallBackend& inner_;
  absl::Mutex mu_;
  IpAddress awaited_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<IpAddress, absl::Time> opened_at_ ABSL_GUARDED_BY(mu_);
};

Grant MakeGrant(const char* door, IpAddress address) {
  Grant g;
  g.door = door;
  g.address = address;
  g.ports = {{22, Protocol::kTcp}};
  g.opened = absl::Now();
  g.expires = g.opened + absl::Minutes(10);
  return g;
}

double Percentile(const std::vector<double>& v, double p) {
  std::vector<double> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

// Real knockers of door b: one right behind the flood, then one every
// kKnockGap while the flood is still being applied, at most kMaxKnockers.
constexpr absl::Duration kKnockGap = absl::Milliseconds(20);
constexpr int kMaxKnockers = 200;

struct FloodRun {
  double first_ms = 0;               // the knocker right behind the flood
  std::vector<double> waits_ms;      // every knocker of b, the first included
  double enqueue_ns_per_completion = 0;
  double dropped = 0;                // completions of a the queue dropped
  double drain_s = 0;                // from the flood's arrival until the queue was empty
};

FloodRun RunOnce(int flood) {
  FloodRun run;
  ScratchDir dir;
  auto include = std::make_shared<HostsAllowIncludeFile>(dir.File("hosts.allow"), dir.File("sesame.allow"), "sshd");
  HostsAllowBackend door_a("a", include);
  HostsAllowBackend door_b("b", include);
  if (!door_a.Prepare().ok() || !door_b.Prepare().ok()) std::abort();
  StopwatchBackend watch_a(door_a);
  StopwatchBackend watch_b(door_b);
  auto store = GrantStore::Open(dir.File("grants"));
  if (!store.ok()) std::abort();
  auto worker = std::make_unique<GrantWorker>(std::make_unique<GrantBook>(
      std::move(*store), [&](const std::string& door) -> FirewallBackend* { return door == "a" ? &watch_a : &watch_b; },
      RealClock::Instance()));

  const absl::Time flood_start = absl::Now();
  for (int i = 0; i < flood; ++i) worker->Open(MakeGrant("a", IpAddress::V4(0x0a000001u + i)));  // 10.0.0.1...
  run.enqueue_ns_per_completion = absl::ToDoubleNanoseconds(absl::Now() - flood_start) / std::max(flood, 1);
  for (int k = 0; k < kMaxKnockers; ++k) {
    const IpAddress knocker = IpAddress::V4(0xc6336401u + k);  // 198.51.100.1...
    const absl::Time arrived = absl::Now();
    worker->Open(MakeGrant("b", knocker));
    const double wait_ms = absl::ToDoubleMilliseconds(watch_b.WaitFor(knocker) - arrived);
    run.waits_ms.push_back(wait_ms);
    if (k == 0) run.first_ms = wait_ms;
    if (worker->stats().pending == 0) break;
    absl::SleepFor(kKnockGap);
  }
  run.dropped = static_cast<double>(worker->stats().dropped);
  worker->Drain();
  run.drain_s = absl::ToDoubleSeconds(absl::Now() - flood_start);
  return run;
}

void BM_RealKnockersDuringForgedFlood(benchmark::State& state) {
  const int flood = static_cast<int>(state.range(0));
  const int runs = static_cast<int>(state.range(1));
  // One line per grant would measure the terminal; warnings and errors stay.
  LogOptions quiet;
  quiet.min_level = LogLevel::kWarning;
  if (!ConfigureLogging(quiet).ok()) std::abort();
  std::vector<double> first, all, enqueue, dropped, drain;
  for (auto _ : state) {
    for (int r = 0; r < runs; ++r) {
      FloodRun run = RunOnce(flood);
      first.push_back(run.first_ms);
      all.insert(all.end(), run.waits_ms.begin(), run.waits_ms.end());
      enqueue.push_back(run.enqueue_ns_per_completion);
      dropped.push_back(run.dropped);
      drain.push_back(run.drain_s);
    }
  }
  auto mean = [](const std::vector<double>& v) {
    double sum = 0;
    for (double x : v) sum += x;
    return v.empty() ? 0 : sum / static_cast<double>(v.size());
  };
  state.counters["runs"] = runs;
  state.counters["first_p50_ms"] = Percentile(first, 0.5);
  state.counters["first_p99_ms"] = Percentile(first, 0.99);
  state.counters["first_max_ms"] = Percentile(first, 1.0);
  state.counters["knockers"] = static_cast<double>(all.size());
  state.counters["all_p50_ms"] = Percentile(all, 0.5);
  state.counters["all_p99_ms"] = Percentile(all, 0.99);
  state.counters["all_max_ms"] = Percentile(all, 1.0);
  state.counters["enqueue_ns"] = mean(enqueue);  // per forged completion, on the caller's thread
  state.counters["dropped"] = mean(dropped);
  state.counters["drain_s"] = mean(drain);
}

BENCHMARK(BM_RealKnockersDuringForgedFlood)
    ->Args({20000, 15})
    ->Iterations(1)
    ->Unit(benchmark::kSecond);

// What one batch's record costs when the book is full: one change, then the
// whole grants file rewritten (write, fsync, rename, fsync of the directory).
void BM_GrantsFileWriteAtSize(benchmark::State& state) {
  const int held = static_cast<int>(state.range(0));
  ScratchDir dir;
  auto store = GrantStore::Open(dir.File("grants"));
  if (!store.ok()) std::abort();
  for (int i = 0; i < held; ++i) (*store)->Stage(MakeGrant("a", IpAddress::V4(0x0a000001u + i)));
  if (!(*store)->Sync().ok()) std::abort();
  uint32_t next = 0;
  for (auto _ : state) {
    (*store)->Stage(MakeGrant("b", IpAddress::V4(0xc6336400u + (next++ % 256))));  // 198.51.100.x
    if (!(*store)->Sync().ok()) std::abort();
  }
  state.counters["grants"] = static_cast<double>((*store)->size());
}

BENCHMARK(BM_GrantsFileWriteAtSize)->Arg(100)->Arg(GrantBook::kDefaultMaxOpen)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sesame
