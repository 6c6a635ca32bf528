// Durable consumptions through several controllers sharing an etcd store
// (EtcdStore: one etcd transaction per batch, optimistic between
// controllers), and how soon a burn committed through one controller
// reaches another's agents (its store's ChangeListener, which feeds the
// agents' sessions).
//
// Real etcd members (tests/support/etcd_cluster.h: mutual TLS, loopback),
// their data under $TMPDIR: on tmpfs the figure is etcd's and ours without
// the disk; on a disk it includes etcd's fsync per commit.
//
//   build/bench/etcd_consume_bench                                  # all
//   build/bench/etcd_consume_bench --benchmark_filter=Consume
//   TMPDIR=/var/tmp build/bench/etcd_consume_bench                 # on disk
#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "controller/store/etcd/etcd_store.h"
#include "tests/support/etcd_cluster.h"

namespace sesame::controller {
namespace {

constexpr int kMembers = 3;
// SESAME_BENCH_CONTROLLERS (default 3): how many controllers share the store.
const int kControllers = [] {
  const char* n = std::getenv("SESAME_BENCH_CONTROLLERS");
  return n != nullptr && std::atoi(n) > 0 ? std::atoi(n) : 3;
}();

std::vector<Knock> KnocksFor(uint64_t n) {
  return {{static_cast<uint16_t>(1024 + n % 60000), Protocol::kTcp},
          {static_cast<uint16_t>(1024 + (n / 60000) % 60000), Protocol::kUdp},
          {static_cast<uint16_t>(1024 + (n / 60000 / 60000) % 60000), Protocol::kTcp}};
}

struct Fleet;
// The running benchmark's fleet: Die() takes it down (its members and their
// directory), since exit() runs no destructor of ours.
Fleet* g_fleet = nullptr;

struct Fleet {
  ~Fleet() {
    if (g_fleet == this) g_fleet = nullptr;
  }
  std::unique_ptr<testing::EtcdCluster> cluster;
  std::vector<std::unique_ptr<EtcdStore>> stores;  // one per controller
};

[[noreturn]] void Die(const absl::Status& s) {
  std::fprintf(stderr, "etcd_consume_bench: %s\n", std::string(s.message()).c_str());
  if (g_fleet != nullptr) {
    g_fleet->stores.clear();
    g_fleet->cluster.reset();
  }
  std::exit(1);
}

std::unique_ptr<Fleet> StartFleet(const std::string& prefix) {
  auto fleet = std::make_unique<Fleet>();
  g_fleet = fleet.get();
  absl::StatusOr<std::unique_ptr<testing::EtcdCluster>> cluster = testing::EtcdCluster::Start(kMembers);
  if (!cluster.ok()) Die(cluster.status());
  fleet->cluster = *std::move(cluster);
  for (int c = 0; c < kControllers; ++c) {
    EtcdStoreOptions options;
    options.client.endpoints = fleet->cluster->endpoints();
    // Each controller starts on another member, as a fleet's would.
    std::rotate(options.client.endpoints.begin(), options.client.endpoints.begin() + c % kMembers,
                options.client.endpoints.end());
    options.client.tls.ca_cert = fleet->cluster->ca_cert();
    options.client.tls.cert = fleet->cluster->client_cert();
    options.client.tls.key = fleet->cluster->client_key();
    options.prefix = prefix;
    options.controller = absl::StrCat("controller", c + 1);
    absl::StatusOr<std::unique_ptr<EtcdStore>> store = EtcdStore::Open(options);
    if (!store.ok()) Die(store.status());
    fleet->stores.push_back(*std::move(store));
  }
  Door door;
  door.name = "ssh";
  if (absl::Status s = fleet->stores[0]->PutDoor(door, {}).status(); !s.ok()) Die(s);
  return fleet;
}

void AddSequences(EtcdStore& store, uint64_t total) {
  std::vector<NewSequence> batch;
  for (uint64_t n = 0; n < total; ++n) {
    batch.push_back(NewSequence{"ssh", KnocksFor(n), "bench", ""});
    if (batch.size() == 1000 || n + 1 == total) {
      if (absl::Status s = store.AddSequences(batch, {}).status(); !s.ok()) Die(s);
      batch.clear();
    }
  }
}

struct Run {
  std::unique_ptr<Fleet> fleet;
  std::vector<std::vector<double>> latencies_us;  // per thread
  absl::Time start;
};
Run* g_run = nullptr;

// Closed loop: each caller (an agent's session) consumes through its
// controller, waits for the durable answer, consumes again; callers are
// spread over the controllers.
void BM_EtcdConsume(benchmark::State& state) {
  if (state.thread_index() == 0) {
    g_run = new Run;
    g_run->fleet = StartFleet("/bench/");
    AddSequences(*g_run->fleet->stores[0], static_cast<uint64_t>(state.threads()) * state.max_iterations);
    g_run->latencies_us.assign(static_cast<size_t>(state.threads()), {});
  }
  EtcdStore* store = nullptr;  // chosen once the loop starts: thread 0 has set up by then
  const uint64_t first_id = 1 + static_cast<uint64_t>(state.thread_index()) * state.max_iterations;
  std::vector<double> latencies;
  uint64_t i = 0;
  int errors = 0;
  const std::string agent = absl::StrCat("bastion", state.thread_index() % 16);
  for (auto _ : state) {
    if (i == 0) {
      store = g_run->fleet->stores[static_cast<size_t>(state.thread_index() % kControllers)].get();
      if (state.thread_index() == 0) g_run->start = absl::Now();
    }
    ConsumeRequest r;
    r.sequence_id = first_id + i;
    r.knocks = KnocksFor(r.sequence_id - 1);
    r.agent = agent;
    r.source = IpAddress::V4(0xc6336400u + static_cast<uint32_t>(i % 250));
    r.request_id = absl::StrCat("t", state.thread_index(), "-", i);
    const absl::Time t0 = absl::Now();
    absl::StatusOr<ConsumeResult> result = store->Consume(r);
    latencies.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
    if (!result.ok() || result->outcome != ConsumeOutcome::kWon) {
      if (errors++ == 0) {
        std::fprintf(stderr, "thread %d: %s\n", state.thread_index(),
                     result.ok() ? ConsumeOutcomeName(result->outcome) : std::string(result.status().message()).c_str());
      }
    }
    ++i;
  }
  g_run->latencies_us[static_cast<size_t>(state.thread_index())] = std::move(latencies);
  if (errors > 0) state.SkipWithError("a consumption failed or was not won");
  if (state.thread_index() == 0) {
    const double seconds = absl::ToDoubleSeconds(absl::Now() - g_run->start);
    std::vector<double> all;
    for (const auto& v : g_run->latencies_us) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end());
    uint64_t batches = 0, operations = 0;
    for (const auto& s : g_run->fleet->stores) {
      batches += s->commit_stats().batches;
      operations += s->commit_stats().operations;
    }
    const double total = static_cast<double>(state.threads()) * static_cast<double>(state.max_iterations);
    state.counters["consumptions_per_s"] = total / seconds;
    state.counters["avg_batch"] = batches == 0 ? 0 : static_cast<double>(operations) / static_cast<double>(batches);
    state.counters["p50_us"] = all.empty() ? 0 : all[all.size() / 2];
    state.counters["p99_us"] = all.empty() ? 0 : all[all.size() * 99 / 100];
    delete g_run;
    g_run = nullptr;
  }
}
BENCHMARK(BM_EtcdConsume)->UseRealTime()->Unit(benchmark::kMicrosecond)->Threads(1)->Iterations(500);
BENCHMARK(BM_EtcdConsume)->UseRealTime()->Unit(benchmark::kMicrosecond)->Threads(3)->Iterations(300);
BENCHMARK(BM_EtcdConsume)->UseRealTime()->Unit(benchmark::kMicrosecond)->Threads(96)->Iterations(300);
BENCHMARK(BM_EtcdConsume)->UseRealTime()->Unit(benchmark::kMicrosecond)->Threads(288)->Iterations(100);

// A burn committed through controller 1 reaching controller 2's listener:
// from the call to Consume on 1 to OnCommitted on 2.
class BurnWatch final : public ChangeListener {
 public:
  void OnCommitted(const std::vector<StoreChange>& changes) override {
    absl::MutexLock lock(&mu_);
    for (const StoreChange& c : changes) {
      if (c.kind == StoreChange::Kind::kSequenceBurnt) burnt_at_[c.sequence.id] = absl::Now();
    }
  }
  absl::Time WaitFor(uint64_t id) {
    absl::MutexLock lock(&mu_);
    want_ = id;
    mu_.Await(absl::Condition(this, &BurnWatch::Arrived));
    return burnt_at_[id];
  }

 private:
  bool Arrived() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return burnt_at_.count(want_) > 0; }

  absl::Mutex mu_;
  uint64_t want_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, absl::Time> burnt_at_ ABSL_GUARDED_BY(mu_);
};

void BM_BurnReachesOtherController(benchmark::State& state) {
  std::unique_ptr<Fleet> fleet = StartFleet("/burn/");
  BurnWatch watch;
  fleet->stores[1]->SetChangeListener(&watch);
  AddSequences(*fleet->stores[0], static_cast<uint64_t>(state.max_iterations));
  std::vector<double> latencies;
  uint64_t id = 0;
  for (auto _ : state) {
    ++id;
    ConsumeRequest r;
    r.sequence_id = id;
    r.knocks = KnocksFor(id - 1);
    r.agent = "bastion1";
    r.source = IpAddress::V4(0xc6336407u);
    const absl::Time t0 = absl::Now();
    absl::StatusOr<ConsumeResult> result = fleet->stores[0]->Consume(r);
    if (!result.ok() || result->outcome != ConsumeOutcome::kWon) {
      state.SkipWithError("a consumption failed");
      break;
    }
    latencies.push_back(absl::ToDoubleMicroseconds(watch.WaitFor(id) - t0));
  }
  std::sort(latencies.begin(), latencies.end());
  state.counters["p50_us"] = latencies.empty() ? 0 : latencies[latencies.size() / 2];
  state.counters["p99_us"] = latencies.empty() ? 0 : latencies[latencies.size() * 99 / 100];
  fleet->stores[1]->SetChangeListener(nullptr);
}
BENCHMARK(BM_BurnReachesOtherController)->UseRealTime()->Unit(benchmark::kMicrosecond)->Iterations(200);

}  // namespace
}  // namespace sesame::controller
