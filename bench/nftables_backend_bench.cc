// Cost of opening a door through the nftables backend, in-process through
// libnftables, beside spawning nft for the same change. Runs in a private
// network namespace (entered before main, while the process has one thread),
// so it needs root and leaves the host's ruleset alone.
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/grants/backends/nftables_backend.h"
#include "benchmark/benchmark.h"

extern char** environ;

namespace sesame {
namespace {

const bool kIsolated = [] {
  if (unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "nftables_backend_bench: unshare(CLONE_NEWNET): %s (needs root)\n", std::strerror(errno));
    std::exit(1);
  }
  return true;
}();

struct Fixture {
  std::shared_ptr<NftablesTable> table;
  std::unique_ptr<NftablesBackend> door;
};

Fixture& F() {
  static Fixture* f = [] {
    auto* fixture = new Fixture;
    absl::StatusOr<std::shared_ptr<NftablesTable>> table = NftablesTable::Create("sesame");
    if (!table.ok()) std::abort();
    fixture->table = *table;
    fixture->door = std::make_unique<NftablesBackend>("openSSH", std::vector<Knock>{{22, Protocol::kTcp}},
                                                      fixture->table);
    if (!fixture->door->Prepare().ok()) std::abort();
    return fixture;
  }();
  return *f;
}
std::shared_ptr<NftablesTable> Table() { return F().table; }
NftablesBackend& Door() { return *F().door; }

Grant GrantFor(uint32_t n) {
  Grant g;
  g.door = "openSSH";
  g.address = IpAddress::V4(0x0a000000u + (n % 0xffffffu) + 1);  // 10.x.y.z
  g.opened = absl::Now();
  g.expires = absl::Now() + absl::Minutes(5);
  return g;
}

// A new address each time: the common case, one knock, one grant.
void BM_OpenNewAddress(benchmark::State& state) {
  uint32_t n = 0;
  for (auto _ : state) {
    if (!Door().Open(GrantFor(n++)).ok()) state.SkipWithError("Open failed");
  }
  (void)Table()->Run("flush set inet sesame openSSH_v4");
}
BENCHMARK(BM_OpenNewAddress);

// The same grant again (a re-knock extends it).
void BM_ReopenSameAddress(benchmark::State& state) {
  const Grant g = GrantFor(7);
  for (auto _ : state) {
    if (!Door().Open(g).ok()) state.SkipWithError("Open failed");
  }
}
BENCHMARK(BM_ReopenSameAddress);

void BM_OpenThenClose(benchmark::State& state) {
  uint32_t n = 0;
  for (auto _ : state) {
    const Grant g = GrantFor(n++);
    if (!Door().Open(g).ok() || !Door().Close(g).ok()) state.SkipWithError("Open/Close failed");
  }
}
BENCHMARK(BM_OpenThenClose);

// One plain "add element" through libnftables: the floor under Open.
void BM_RawAddElement(benchmark::State& state) {
  uint32_t n = 0;
  for (auto _ : state) {
    const std::string cmd =
        absl::StrCat("add element inet sesame openSSH_v4 { ", GrantFor(n++).address.ToString(), " timeout 5m }");
    if (!Table()->Run(cmd).ok()) state.SkipWithError("add element failed");
  }
  (void)Table()->Run("flush set inet sesame openSSH_v4");
}
BENCHMARK(BM_RawAddElement);

// The same change by spawning nft, for comparison.
void BM_SpawnNft(benchmark::State& state) {
  uint32_t n = 0;
  for (auto _ : state) {
    const std::string element = absl::StrCat("{ ", GrantFor(n++).address.ToString(), " timeout 5m }");
    std::vector<std::string> args = {"nft", "add", "element", "inet", "sesame", "openSSH_v4", element};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid;
    if (posix_spawnp(&pid, "nft", nullptr, nullptr, argv.data(), environ) != 0) {
      state.SkipWithError("cannot spawn nft");
      break;
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) state.SkipWithError("nft failed");
  }
  (void)Table()->Run("flush set inet sesame openSSH_v4");
}
BENCHMARK(BM_SpawnNft)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sesame
