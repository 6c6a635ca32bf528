// Durable consumptions per second on one controller with SQLite
// (WAL, synchronous=FULL) and group commit.
//
// Each consumption is the whole controller path for a won knock: the burn,
// the grant ordered from the door's policy, the audit record in the hash
// chain and the remembered answer for the agent's message id, committed
// before Consume returns. Many concurrent callers (the agents' sessions)
// share transactions; max_batch:1 shows the same load without group commit.
//
//   build-NAME/bench/consume_bench                     # all variants
//   build-NAME/bench/consume_bench --benchmark_filter='threads:64'
//   SESAME_BENCH_DIR=/path/on/disk build-NAME/bench/consume_bench
//
// The database goes under $SESAME_BENCH_DIR (default /var/tmp), which must be
// on a real disk for the figure to mean anything (tmpfs makes fsync free).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "controller/store/sqlite/sqlite_store.h"

namespace sesame::controller {
namespace {

std::string BenchDir() {
  const char* base = std::getenv("SESAME_BENCH_DIR");
  std::string templ = absl::StrCat(base != nullptr ? base : "/var/tmp", "/sesame-consume-bench-XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  return templ;
}

// Three knocks encoding n in base 60000: all distinct, all of length 3, so
// none is another's prefix.
std::vector<Knock> KnocksFor(uint64_t n) {
  return {{static_cast<uint16_t>(1024 + n % 60000), Protocol::kTcp},
          {static_cast<uint16_t>(1024 + (n / 60000) % 60000), Protocol::kUdp},
          {static_cast<uint16_t>(1024 + (n / 60000 / 60000) % 60000), Protocol::kTcp}};
}

struct Run {
  std::string dir;
  std::unique_ptr<SqliteStore> store;
  std::vector<std::vector<double>> latencies_us;  // per thread
  absl::Time start;
};
Run* g_run = nullptr;

void Setup(const benchmark::State& state, size_t max_batch) {
  g_run = new Run;
  g_run->dir = BenchDir();
  SqliteStoreOptions options;
  options.state_dir = g_run->dir;
  options.max_batch = max_batch;
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
    std::exit(1);
  }
  g_run->store = *std::move(store);
  Door door;
  door.name = "ssh";
  door.policy.grant_ttl = absl::Seconds(30);
  if (!g_run->store->PutDoor(door, {}).ok()) std::exit(1);
  const uint64_t total = static_cast<uint64_t>(state.threads()) * state.max_iterations;
  std::vector<NewSequence> batch;
  for (uint64_t n = 0; n < total; ++n) {
    batch.push_back(NewSequence{"ssh", KnocksFor(n), "bench", ""});
    if (batch.size() == 2000 || n + 1 == total) {
      absl::StatusOr<std::vector<Sequence>> added = g_run->store->AddSequences(batch, {});
      if (!added.ok()) {
        std::fprintf(stderr, "%s\n", std::string(added.status().message()).c_str());
        std::exit(1);
      }
      batch.clear();
    }
  }
  g_run->latencies_us.assign(static_cast<size_t>(state.threads()), {});
}

void BM_Consume(benchmark::State& state) {
  const size_t max_batch = static_cast<size_t>(state.range(0));
  if (state.thread_index() == 0) Setup(state, max_batch);
  // Sequence ids are 1..threads*iterations; each thread takes its own slice.
  const uint64_t first_id = 1 + static_cast<uint64_t>(state.thread_index()) * state.max_iterations;
  std::vector<double> latencies;
  latencies.reserve(state.max_iterations);
  uint64_t i = 0;
  int errors = 0;
  const std::string agent = absl::StrCat("bastion", state.thread_index() % 16);
  for (auto _ : state) {
    if (i == 0 && state.thread_index() == 0) g_run->start = absl::Now();
    ConsumeRequest r;
    r.sequence_id = first_id + i;
    r.knocks = KnocksFor(r.sequence_id - 1);  // what the bastion saw (sequence n+1 has KnocksFor(n))
    r.agent = agent;
    r.source = IpAddress::V4(0xc6336400u + static_cast<uint32_t>(i % 250));
    r.request_id = absl::StrCat("t", state.thread_index(), "-", i);
    const absl::Time t0 = absl::Now();
    absl::StatusOr<ConsumeResult> result = g_run->store->Consume(r);
    latencies.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
    if (!result.ok() || result->outcome != ConsumeOutcome::kWon) ++errors;
    ++i;
  }
  g_run->latencies_us[static_cast<size_t>(state.thread_index())] = std::move(latencies);
  if (errors > 0) state.SkipWithError("a consumption failed or was not won");
  if (state.thread_index() == 0) {
    const double seconds = absl::ToDoubleSeconds(absl::Now() - g_run->start);
    std::vector<double> all;
    for (const auto& v : g_run->latencies_us) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end());
    const GroupCommitStats stats = g_run->store->commit_stats();
    const double total = static_cast<double>(state.threads()) * static_cast<double>(state.max_iterations);
    // Counters are summed over threads: only thread 0 sets them.
    state.counters["consumptions_per_s"] = total / seconds;
    state.counters["avg_batch"] = static_cast<double>(stats.operations) / static_cast<double>(stats.batches);
    state.counters["p50_us"] = all.empty() ? 0 : all[all.size() / 2];
    state.counters["p99_us"] = all.empty() ? 0 : all[all.size() * 99 / 100];
    g_run->store.reset();
    std::filesystem::remove_all(g_run->dir);
    delete g_run;
    g_run = nullptr;
  }
}

// Closed loop: each caller consumes, waits for the durable answer, consumes
// again. Iterations are per thread, sized so that every variant runs long
// enough to include WAL checkpoints (tens of thousands of consumptions).
void Variants(benchmark::internal::Benchmark* b) {
  b->ArgName("max_batch")->UseRealTime()->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_Consume)->Apply(Variants)->Arg(1024)->Threads(1)->Iterations(2000);
BENCHMARK(BM_Consume)->Apply(Variants)->Arg(1024)->Threads(8)->Iterations(2500);
BENCHMARK(BM_Consume)->Apply(Variants)->Arg(1024)->Threads(64)->Iterations(1000);
BENCHMARK(BM_Consume)->Apply(Variants)->Arg(1024)->Threads(256)->Iterations(250);
// Without group commit: one transaction, one fsync per consumption.
BENCHMARK(BM_Consume)->Apply(Variants)->Arg(1)->Threads(64)->Iterations(30);

}  // namespace
}  // namespace sesame::controller
