// Matching throughput in memory, one core: packets/s (items_per_second).
//
//   BM_FloodMix      90% spoofed first knocks (random IPv4 sources, a door's
//                    first port), 9.5% SYNs from random sources to random
//                    non-door ports, 0.5% real knockers completing sequences.
//   BM_RealKnocks    only real knockers (10,000 sources taking turns).
//   BM_Ipv6Flood     the flood mix with IPv6 sources.
//   BM_FloodMixBatch the flood mix through ProcessBatch (prefetching).
//   BM_ExpireFullTable, BM_SetSequenceFullTable: the table walks.
//
// Packets are generated beforehand (1M, 100 ns apart: a 10 Mpps stream) and
// replayed round and round. The argument is the table's capacity: with the
// default 65,536 sources (4.5 MiB) the table is full and evicting throughout;
// 1,048,576 (72 MiB) shows a table larger than the CPU's cache. Run:
//   build/bench/matcher_bench --benchmark_repetitions=3
#include <random>
#include <vector>

#include "agent/match/matcher.h"
#include "benchmark/benchmark.h"

namespace sesame {
namespace {

constexpr size_t kPackets = 1 << 20;
const absl::Time kStart = absl::FromUnixSeconds(1700000000);
const IpAddress kServer4 = *IpAddress::Parse("192.0.2.1");
const IpAddress kServer6 = *IpAddress::Parse("2001:db8::1");

std::vector<MatcherDoor> Doors() {
  std::vector<MatcherDoor> doors;
  for (int i = 0; i < 4; ++i) {
    MatcherDoor d;
    d.name = "door" + std::to_string(i);
    d.sequence = {{static_cast<uint16_t>(7000 + i), Protocol::kTcp},
                  {static_cast<uint16_t>(8000 + i), Protocol::kUdp},
                  {static_cast<uint16_t>(9000 + i), Protocol::kTcp}};
    d.reset_mode = i % 2 == 0 ? ResetMode::kStrict : ResetMode::kCompat;
    doors.push_back(d);
  }
  return doors;
}

std::unique_ptr<KnockMatcher> NewMatcher(bool v6, size_t max_sources = 65536) {
  MatcherOptions options;  // defaults: scanner detection on
  options.max_sources = max_sources;
  auto m = KnockMatcher::Create(options, Doors());
  if (!m.ok()) std::abort();
  (*m)->SetLocalAddresses({v6 ? kServer6 : kServer4});
  return std::move(*m);
}

IpAddress RandomSource(std::mt19937_64& rng, bool v6) {
  if (!v6) return IpAddress::V4(static_cast<uint32_t>(rng()));
  uint8_t b[16];
  const uint64_t hi = 0x20010db800000000ULL | (rng() & 0xffffffff), lo = rng();
  for (int i = 0; i < 8; ++i) {
    b[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    b[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
  return IpAddress::V6(b);
}

Packet MakePacket(size_t i, const IpAddress& source, const IpAddress& dst, Knock k) {
  Packet p;
  p.time = kStart + absl::Nanoseconds(100 * static_cast<int64_t>(i));
  p.source = source;
  p.destination = dst;
  p.protocol = k.protocol;
  p.source_port = 40000;
  p.destination_port = k.port;
  p.tcp_flags = k.protocol == Protocol::kTcp ? tcp_flags::kSyn : 0;
  return p;
}

// real_per_mille: share of packets from `knockers` real knockers, taking turns
// (each knocks its door's sequence round and round); the rest splits 900:95
// between flood first knocks and random non-door ports.
std::vector<Packet> Generate(bool v6, int real_per_mille, size_t num_knockers, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const IpAddress& dst = v6 ? kServer6 : kServer4;
  const std::vector<MatcherDoor> doors = Doors();
  struct Knocker {
    IpAddress source;
    size_t door = 0;
    size_t next = 0;
  };
  std::vector<Knocker> knockers(num_knockers);
  for (auto& k : knockers) {
    k.source = RandomSource(rng, v6);
    k.door = rng() % doors.size();
  }
  std::vector<Packet> packets;
  packets.reserve(kPackets);
  size_t turn = 0;
  for (size_t i = 0; i < kPackets; ++i) {
    const int draw = static_cast<int>(rng() % 1000);
    if (draw < real_per_mille) {
      Knocker& k = knockers[turn++ % knockers.size()];
      packets.push_back(MakePacket(i, k.source, dst, doors[k.door].sequence[k.next]));
      k.next = (k.next + 1) % doors[k.door].sequence.size();
    } else if (draw < real_per_mille + (1000 - real_per_mille) * 95 / 995) {
      const uint16_t port = static_cast<uint16_t>(10000 + rng() % 50000);
      packets.push_back(MakePacket(i, RandomSource(rng, v6), dst, {port, Protocol::kTcp}));
    } else {
      const Knock first = doors[rng() % doors.size()].sequence[0];
      packets.push_back(MakePacket(i, RandomSource(rng, v6), dst, first));
    }
  }
  return packets;
}

void Run(benchmark::State& state, bool v6, int real_per_mille, size_t knockers) {
  const std::vector<Packet> packets = Generate(v6, real_per_mille, knockers, 1);
  std::unique_ptr<KnockMatcher> matcher = NewMatcher(v6, static_cast<size_t>(state.range(0)));
  for (const Packet& p : packets) matcher->Process(p);  // warm: the table is full
  size_t i = 0;
  uint64_t completed = 0;
  for (auto _ : state) {
    completed += matcher->Process(packets[i]).completed.size();
    if (++i == packets.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["completions"] = static_cast<double>(completed);
  state.counters["occupancy"] = static_cast<double>(matcher->occupancy());
}

// 50 knockers among the flood: a knocker's knocks are ~10,000 packets (1 ms) apart.
void BM_FloodMix(benchmark::State& state) { Run(state, /*v6=*/false, /*real_per_mille=*/5, /*knockers=*/50); }
void BM_RealKnocks(benchmark::State& state) { Run(state, /*v6=*/false, /*real_per_mille=*/1000, 10000); }
void BM_Ipv6Flood(benchmark::State& state) { Run(state, /*v6=*/true, /*real_per_mille=*/5, /*knockers=*/50); }

void BM_FloodMixBatch(benchmark::State& state) {
  const std::vector<Packet> packets = Generate(false, 5, 50, 1);
  std::unique_ptr<KnockMatcher> matcher = NewMatcher(false, static_cast<size_t>(state.range(0)));
  std::vector<MatchResult> results(256);
  for (size_t i = 0; i < packets.size(); i += 256) {
    matcher->ProcessBatch(absl::MakeConstSpan(packets).subspan(i, 256), absl::MakeSpan(results));
  }
  size_t i = 0;
  for (auto _ : state) {
    matcher->ProcessBatch(absl::MakeConstSpan(packets).subspan(i, 256), absl::MakeSpan(results));
    benchmark::DoNotOptimize(results.data());
    i += 256;
    if (i == packets.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations() * 256);
}

// Expire() on a table full of flood entries with nothing due yet (the walk
// the agent pays on every call), and SetSequence (a one-time sequence used).
void BM_ExpireFullTable(benchmark::State& state) {
  const std::vector<Packet> packets = Generate(false, 5, 50, 1);
  std::unique_ptr<KnockMatcher> matcher = NewMatcher(false);
  for (const Packet& p : packets) matcher->Process(p);
  const absl::Time now = packets.back().time;
  for (auto _ : state) benchmark::DoNotOptimize(matcher->Expire(now));
  state.counters["occupancy"] = static_cast<double>(matcher->occupancy());
}

void BM_SetSequenceFullTable(benchmark::State& state) {
  const std::vector<Packet> packets = Generate(false, 5, 50, 1);
  std::unique_ptr<KnockMatcher> matcher = NewMatcher(false);
  for (const Packet& p : packets) matcher->Process(p);
  const std::vector<Knock> sequence = Doors()[0].sequence;
  for (auto _ : state) {
    if (!matcher->SetSequence(0, sequence).ok()) std::abort();
  }
}

BENCHMARK(BM_FloodMix)->Arg(65536)->Arg(1 << 20);
BENCHMARK(BM_RealKnocks)->Arg(65536);
BENCHMARK(BM_Ipv6Flood)->Arg(65536)->Arg(1 << 20);
BENCHMARK(BM_FloodMixBatch)->Arg(65536)->Arg(1 << 20);
BENCHMARK(BM_ExpireFullTable)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SetSequenceFullTable)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace sesame
