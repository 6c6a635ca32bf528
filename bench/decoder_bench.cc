// Decode throughput per link type: ns per frame for DecodeFrame alone (the
// capture path's budget is about 100 ns per packet in all).
//
//   build-*/bench/decoder_bench --benchmark_min_time=1
#include <pcap/dlt.h>

#include <cstdint>
#include <vector>

#include "agent/packet/decoder.h"
#include "benchmark/benchmark.h"

namespace sesame {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

const Bytes kEthernetMacs = {0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02};
const Bytes kTypeIpv4 = {0x08, 0x00};
const Bytes kTypeIpv6 = {0x86, 0xdd};
const Bytes kVlanTpid = {0x81, 0x00};
const Bytes kQinQTpid = {0x88, 0xa8};
const Bytes kTci = {0x00, 0x64};
const Bytes kIpv4Tcp = {0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 10, 192, 0, 2, 1};
const Bytes kIpv4Udp = {0x45, 0, 0, 28, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 192, 0, 2, 10, 192, 0, 2, 1};
const Bytes kTcpSyn = {0x9c, 0x40, 0x1b, 0x58, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0};
const Bytes kUdp = {0x9c, 0x40, 0x1f, 0x40, 0, 8, 0, 0};
const Bytes kAddresses6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07,
                           0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
Bytes Ipv6Header(uint8_t next, uint16_t payload) {
  const Bytes fixed = {0x60, 0, 0, 0, static_cast<uint8_t>(payload >> 8), static_cast<uint8_t>(payload), next, 64};
  return Cat({fixed, kAddresses6});
}
// Hop-by-hop (8), destination options (8), fragment (8, atomic), then TCP.
const Bytes kExtensionChain = {60, 0, 1, 4, 0, 0, 0, 0,  // HBH -> DO
                               44, 0, 1, 4, 0, 0, 0, 0,  // DO -> fragment
                               6,  0, 0, 0, 0, 0, 0, 1};  // fragment -> TCP
const Bytes kSllHeader = {0, 0, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 0x02, 0, 0};             // + protocol
const Bytes kSll2Tail = {0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 0x02, 0, 0};  // after protocol

struct Case {
  const char* name;
  int link_type;
  Bytes frame;
};

std::vector<Case> Cases() {
  return {
      {"EN10MB/ipv4/tcp", DLT_EN10MB, Cat({kEthernetMacs, kTypeIpv4, kIpv4Tcp, kTcpSyn})},
      {"EN10MB/vlan/ipv4/udp", DLT_EN10MB, Cat({kEthernetMacs, kVlanTpid, kTci, kTypeIpv4, kIpv4Udp, kUdp})},
      {"EN10MB/qinq/ipv6/tcp", DLT_EN10MB,
       Cat({kEthernetMacs, kQinQTpid, kTci, kVlanTpid, kTci, kTypeIpv6, Ipv6Header(6, 20), kTcpSyn})},
      {"EN10MB/ipv6/3ext/tcp", DLT_EN10MB,
       Cat({kEthernetMacs, kTypeIpv6, Ipv6Header(0, 24 + 20), kExtensionChain, kTcpSyn})},
      {"LINUX_SLL/ipv4/udp", DLT_LINUX_SLL, Cat({kSllHeader, kTypeIpv4, kIpv4Udp, kUdp})},
      {"LINUX_SLL2/ipv6/tcp", DLT_LINUX_SLL2, Cat({kTypeIpv6, kSll2Tail, Ipv6Header(6, 20), kTcpSyn})},
      {"RAW/ipv4/tcp", DLT_RAW, Cat({kIpv4Tcp, kTcpSyn})},
      {"IPV6/udp", DLT_IPV6, Cat({Ipv6Header(17, 8), kUdp})},
      {"NULL/ipv4/udp", DLT_NULL, Cat({{2, 0, 0, 0}, kIpv4Udp, kUdp})},
      {"LOOP/ipv6/tcp", DLT_LOOP, Cat({{0, 0, 0, 24}, Ipv6Header(6, 20), kTcpSyn})},
      // The common reject: ARP on Ethernet.
      {"EN10MB/arp(ignored)", DLT_EN10MB, Cat({kEthernetMacs, {0x08, 0x06}, Bytes(28, 0)})},
  };
}

void BM_Decode(benchmark::State& state, int link_type, Bytes frame) {
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  Packet packet;
  {
    const DecodeResult r = DecodeFrame(link_type, frame, t, &packet);
    if (r != DecodeResult::kOk && r != DecodeResult::kIgnoredNotIp) {
      state.SkipWithError(DecodeResultName(r));
      return;
    }
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(frame.data());
    const DecodeResult r = DecodeFrame(link_type, frame, t, &packet);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(packet);
  }
  state.SetItemsProcessed(state.iterations());
}

// All cases interleaved, so the branch predictor cannot learn one shape.
void BM_DecodeMixed(benchmark::State& state) {
  const std::vector<Case> cases = Cases();
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  Packet packet;
  size_t i = 0;
  for (auto _ : state) {
    const Case& c = cases[i];
    i = i + 1 == cases.size() ? 0 : i + 1;
    const DecodeResult r = DecodeFrame(c.link_type, c.frame, t, &packet);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(packet);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeMixed);

const bool kRegistered = [] {
  for (const Case& c : Cases()) {
    benchmark::RegisterBenchmark((std::string("BM_Decode/") + c.name).c_str(), BM_Decode, c.link_type, c.frame);
  }
  return true;
}();

}  // namespace
}  // namespace sesame
