// What the number of live sequences costs a managed agent's matcher
// (agent/managed/managed_matcher.h): 10, 1,000 and 100,000 live sequences
// of 4 TCP knocks drawn as the controller draws them (any port from 1024
// up), of three doors whose match parameters differ (three classes in the
// matcher), one in ten a reserve sequence; then 2,000,000 packets of
// background noise from 50,000
// random sources, with a real knocker completing a sequence every 1,000
// packets. Two kinds of noise (the second argument, noise):
//   0  flood    SYNs to random ports: with 100,000 sequences most of them
//               land on some sequence's first knock and are tracked;
//   1  service  SYNs to the services a bastion serves (22, 80, 443): what
//               a bastion sees on an ordinary day; no knock port is below
//               1024.
//
// Counters:
//   cpu_ns_per_packet  the capture thread's CPU time over all packets,
//                      with a Tick every 100 ms of packet time (as the agent)
//   tick_us            CPU time of one Tick (a walk of the source table)
//   knock_p50_ns, knock_p99_ns  OnPacket time of the knockers' packets
//                      (the matcher's part of knock -> open)
//   opened, replays    completions of live sequences, and of spent ones
//                      (knocked     = opened + replays: none missed)
//   bytes_per_sequence growth of the matcher's memory per sequence held
//                      (MemoryBytes(), the trie and records; the source
//                      table is allocated up front)
//   table_bytes        the source table (MatcherOptions::max_sources = 65,536)
//   burn_publish_us    a burn: Publish of the list without one sequence
//                      (the worker's diff) ...
//   burn_adopt_ns      ... and the next packet's adoption of it
// Run:
//   build/bench/managed_scale_bench
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "agent/managed/managed_matcher.h"
#include "benchmark/benchmark.h"

namespace sesame {
namespace {

constexpr int kPackets = 2000000;
constexpr int kKnockEvery = 1000;
constexpr int kNoiseSources = 50000;
const IpAddress kLocal = *IpAddress::Parse("10.0.0.1");

class CountingSink final : public ManagedKnockSink {
 public:
  void OnCompleted(CompletedKnock knock) override { ++(knock.spent ? replays : completed); }
  void OnScanner(ScannerReport) override { ++scanners; }
  uint64_t completed = 0;
  uint64_t replays = 0;  // a sequence knocked again (10 and 1,000 live: the knockers go round)
  uint64_t scanners = 0;
};

int64_t ThreadCpuNanos() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}
int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

Packet Syn(const IpAddress& source, uint16_t port, absl::Time t) {
  Packet p;
  p.time = t;
  p.source = source;
  p.destination = kLocal;
  p.protocol = Protocol::kTcp;
  p.source_port = 40000;
  p.destination_port = port;
  p.tcp_flags = tcp_flags::kSyn;
  return p;
}

void BM_ManagedScale(benchmark::State& state) {
  const size_t sequences = static_cast<size_t>(state.range(0));
  const bool service_noise = state.range(1) == 1;
  std::mt19937_64 random(1);
  auto port = [&] { return static_cast<uint16_t>(1024 + random() % 64512); };
  constexpr uint16_t kServicePorts[] = {22, 80, 443};
  auto noise_port = [&] { return service_noise ? kServicePorts[random() % 3] : port(); };
  std::vector<LiveSequence> live;
  struct Door {
    const char* name;
    MatchParams params;
  };
  Door doors[3] = {{"openSSH", {}}, {"consoleSSH", {}}, {"fleetSSH", {}}};
  doors[1].params.seq_timeout = absl::Seconds(10);
  doors[2].params.reset_mode = ResetMode::kCompat;
  for (size_t i = 1; i <= sequences; ++i) {
    LiveSequence s;
    s.id = i;
    s.door = doors[i % 3].name;
    s.params = doors[i % 3].params;
    s.reserve = i % 10 == 0;
    for (int k = 0; k < 4; ++k) s.knocks.push_back(Knock{port(), Protocol::kTcp});
    live.push_back(std::move(s));
  }
  std::vector<IpAddress> noise;
  for (int i = 0; i < kNoiseSources; ++i) {
    noise.push_back(IpAddress::V4(0x0b000000u + static_cast<uint32_t>(random() % 0x00ffffffu)));
  }

  for (auto _ : state) {
    CountingSink sink;
    MatcherOptions options;
    ManagedMatcher matcher(options, sink);
    matcher.SetLocalAddresses({kLocal});
    const size_t empty_bytes = matcher.MemoryBytes();
    absl::Time now = absl::FromUnixSeconds(1700000000);
    matcher.Publish(live);
    matcher.Tick(now);
    const size_t held_bytes = matcher.MemoryBytes();

    std::vector<int64_t> knock_ns;
    size_t next_sequence = 0;
    int64_t cpu = 0;
    int64_t tick_ns = 0;
    int ticks = 0;
    int packets = 0;
    while (packets < kPackets) {
      const int64_t cpu_start = ThreadCpuNanos();
      for (int i = 0; i < kKnockEvery - 4; ++i) {
        now += absl::Microseconds(10);  // 100,000 packets/s
        matcher.OnPacket(Syn(noise[random() % noise.size()], noise_port(), now));
      }
      // A knocker completes the next sequence, one knock every 10 us of
      // packet time among the noise.
      const IpAddress knocker = IpAddress::V4(0xc6336400u + static_cast<uint32_t>(next_sequence % 250));
      const LiveSequence& s = live[next_sequence++ % live.size()];
      for (const Knock& k : s.knocks) {
        now += absl::Microseconds(10);
        const Packet p = Syn(knocker, k.port, now);
        const int64_t t0 = MonotonicNanos();
        matcher.OnPacket(p);
        knock_ns.push_back(MonotonicNanos() - t0);
      }
      packets += kKnockEvery;
      // Every 100 ms of packet time, as the agent ticks: its walk of the
      // source table is the capture thread's too.
      if (packets % 10000 == 0) {
        const int64_t t0 = ThreadCpuNanos();
        matcher.Tick(now);
        tick_ns += ThreadCpuNanos() - t0;
        ++ticks;
      }
      cpu += ThreadCpuNanos() - cpu_start;
    }

    // One burn: the worker's diff, then the next packet adopts it.
    std::vector<LiveSequence> burnt(live.begin() + 1, live.end());
    const int64_t p0 = MonotonicNanos();
    matcher.Publish(std::move(burnt));
    const int64_t p1 = MonotonicNanos();
    matcher.OnPacket(Syn(noise[0], 1, now + absl::Microseconds(10)));
    const int64_t p2 = MonotonicNanos();

    std::sort(knock_ns.begin(), knock_ns.end());
    state.counters["cpu_ns_per_packet"] = static_cast<double>(cpu) / packets;
    state.counters["tick_us"] = static_cast<double>(tick_ns) / ticks / 1000;
    state.counters["knock_p50_ns"] = static_cast<double>(knock_ns[knock_ns.size() / 2]);
    state.counters["knock_p99_ns"] = static_cast<double>(knock_ns[knock_ns.size() * 99 / 100]);
    state.counters["opened"] = static_cast<double>(sink.completed);
    state.counters["replays"] = static_cast<double>(sink.replays);
    state.counters["knocked"] = static_cast<double>(packets / kKnockEvery);
    state.counters["scanners"] = static_cast<double>(sink.scanners);
    state.counters["bytes_per_sequence"] = static_cast<double>(held_bytes - empty_bytes) / sequences;
    state.counters["table_bytes"] = static_cast<double>(empty_bytes);
    state.counters["burn_publish_us"] = static_cast<double>(p1 - p0) / 1000;
    state.counters["burn_adopt_ns"] = static_cast<double>(p2 - p1);
  }
}
BENCHMARK(BM_ManagedScale)
    ->ArgNames({"sequences", "noise"})
    ->ArgsProduct({{10, 1000, 100000}, {0, 1}})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sesame
