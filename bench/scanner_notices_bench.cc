// What a spoofed scanner flood costs in durable records: 10^6 packets from
// 10^5 spoofed sources through the managed agent's real path — the
// ManagedMatcher (one live sequence), ScannerNotices (the aggregator) and the
// AuditSpool (a file in $TMPDIR, every notice fsynced as the agent does) —
// with no controller, so every notice stays in the spool (the worst case:
// the controller would confirm and the spool would empty). Each notice is
// one audit record on the controller once delivered.
//
// Each source knocks a sequence's first port (so the matcher tracks it),
// then 9 distinct wrong ports: with ScanThreshold = 8 every source is
// flagged (the default 12 would flag none of these 10-packet sources; this
// is the worst case for records). The matcher's sketch of distinct ports is
// keyed at random per run, and all sources send the same 9 ports: a run
// where two of them share a bit would flag nobody, so the key is fixed
// (hash_seed) to one under which the 9 ports fill 9 bits. Packet time runs
// at `rate` packets/s; Tick (timeouts, ends of marks) and the notices' Take
// run every 100 ms of packet time, and after the flood until every mark has
// ended (ScanBan 300 s) and the last window is over.
//
// Arguments: reporting window in seconds (0: every scanner a notice of its
// own, what the agent did before), packets per second. Counters:
//   flagged       sources the matcher flagged
//   records       notices spooled (= audit records on the controller)
//   alone, aggregates   ... of which for one source / for a window
//   spool_bytes   the spool file's size at the end
// Run:
//   build/bench/scanner_notices_bench
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "agent/managed/audit_spool.h"
#include "agent/managed/managed_matcher.h"
#include "agent/managed/scanner_notices.h"
#include "benchmark/benchmark.h"

namespace sesame {
namespace {

constexpr uint32_t kSources = 100000;
constexpr int kPacketsPerSource = 10;
constexpr absl::Duration kTick = absl::Milliseconds(100);
const absl::Time kStart = absl::FromUnixSeconds(1700000000);

// The capture thread's sink: scanner reports into the notices, as
// ManagedAgent::OnScanner does.
class NoticeSink final : public ManagedKnockSink {
 public:
  explicit NoticeSink(ScannerNotices& notices) : notices_(notices) {}
  void OnCompleted(CompletedKnock) override {}
  void OnScanner(ScannerReport report) override { ready_ |= notices_.Add(report); }
  bool TakeReady() {
    const bool r = ready_;
    ready_ = false;
    return r;
  }

 private:
  ScannerNotices& notices_;
  bool ready_ = false;
};

// The worker's part: spool what is due, as ManagedAgent::ReportScannerNotices.
void Spool(ScannerNotices& notices, AuditSpool& spool, absl::Time now) {
  for (v1::ScannerSeen& n : notices.Take(now)) {
    v1::AgentMessage m;
    m.set_id(spool.NewId());
    *m.mutable_scanner_seen() = std::move(n);
    if (!spool.Append(m, SpoolClass::kNotice, /*sync=*/true).ok()) notices.Return(m.scanner_seen(), now);
  }
}

void BM_SpoofedScannerFlood(benchmark::State& state) {
  const absl::Duration window = absl::Seconds(state.range(0));
  const double rate = static_cast<double>(state.range(1));
  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/scanner_notices_bench." +
                          std::to_string(getpid());
  for (auto _ : state) {
    std::filesystem::create_directories(dir);
    MatcherOptions mo;
    mo.scan_threshold = 8;
    mo.hash_seed = 1;
    ScannerNoticeOptions no;
    no.report_window = window;
    no.scan_threshold = mo.scan_threshold;
    no.scan_window = mo.scan_window;
    no.scan_ban = mo.scan_ban;
    ScannerNotices notices(no);
    NoticeSink sink(notices);
    ManagedMatcher matcher(mo, sink);
    LiveSequence seq;
    seq.id = 1;
    seq.door = "ssh";
    seq.knocks = {{7001, Protocol::kTcp}, {7002, Protocol::kTcp}, {7003, Protocol::kTcp}};
    matcher.Publish({seq});
    matcher.Tick(kStart);
    absl::StatusOr<std::unique_ptr<AuditSpool>> spool = AuditSpool::Open(dir + "/spool");
    if (!spool.ok()) {
      state.SkipWithError(std::string(spool.status().message()).c_str());
      return;
    }

    Packet p;
    p.destination = *IpAddress::Parse("192.0.2.1");
    p.protocol = Protocol::kTcp;
    p.source_port = 40000;
    p.tcp_flags = tcp_flags::kSyn;
    absl::Time next_tick = kStart + kTick;
    uint64_t n = 0;
    for (uint32_t s = 0; s < kSources; ++s) {
      p.source = IpAddress::V4(0xC6120000u + s);  // 198.18.0.0/15
      for (int k = 0; k < kPacketsPerSource; ++k, ++n) {
        p.time = kStart + absl::Seconds(static_cast<double>(n) / rate);
        while (p.time >= next_tick) {
          matcher.Tick(next_tick);
          Spool(notices, **spool, next_tick);
          next_tick += kTick;
        }
        p.destination_port = k == 0 ? 7001 : static_cast<uint16_t>(20000 + k);
        matcher.OnPacket(p);
        if (sink.TakeReady()) Spool(notices, **spool, p.time);
      }
    }
    // Until every mark has ended and the last window is over.
    const absl::Time end = p.time + mo.scan_ban + mo.scan_window + window + absl::Seconds(2);
    for (; next_tick <= end; next_tick += kTick) {
      matcher.Tick(next_tick);
      Spool(notices, **spool, next_tick);
    }
    Spool(notices, **spool, absl::InfiniteFuture());

    if (matcher.counters().scanners != kSources) {
      state.SkipWithError("not every source was flagged: the sketch key (hash_seed) lets ports share bits");
    }
    const ScannerNoticeCounters c = notices.counters();
    state.counters["flagged"] = static_cast<double>(matcher.counters().scanners);
    state.counters["records"] = static_cast<double>((*spool)->depth());
    state.counters["alone"] = static_cast<double>(c.alone);
    state.counters["aggregates"] = static_cast<double>(c.aggregates);
    state.counters["spool_bytes"] = static_cast<double>((*spool)->file_bytes());
    state.counters["flood_s"] = static_cast<double>(n) / rate;
    spool->reset();
    std::filesystem::remove_all(dir);
  }
}
BENCHMARK(BM_SpoofedScannerFlood)
    ->ArgNames({"window_s", "pps"})
    ->Args({0, 300000})
    ->Args({60, 300000})
    ->Args({60, 1000})
    ->Args({10, 1000})
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace
}  // namespace sesame
