// What the managed agent tells the controller about scanners: the
// ScannerReports of the capture thread in, ScannerSeen notices out, through
// a ScannerAggregator (agent/match/scanner_aggregator.h). The first source
// flagged in a reporting window becomes a notice of its own at once; the
// rest of the window (further sources, marks that ended, their packets)
// becomes one aggregate notice when the window is over. A spoofed scan from
// 100,000 sources thus costs two spool records and two audit records per
// window instead of 100,000 (bench/scanner_notices_bench.cc).
//
// Threads: Add on the capture thread, the rest on the managed agent's
// worker; one mutex inside, held for a few hash-map operations. Nothing here
// grows with the flood: at most kMaxWaiting notices wait between two Takes,
// further ones are counted into the aggregate instead.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/managed/managed_matcher.h"
#include "agent/match/scanner_aggregator.h"
#include "sesame/v1/agent.pb.h"

namespace sesame {

struct ScannerNoticeOptions {
  absl::Duration report_window = absl::Seconds(60);  // ScanReportWindow; 0: every scanner alone
  size_t sample_size = 8;                            // addresses in an aggregate
  // The matcher's scanner settings, for the notices' fields.
  int scan_threshold = 12;
  absl::Duration scan_window = absl::Seconds(5);
  absl::Duration scan_ban = absl::Seconds(300);
};

struct ScannerNoticeCounters {
  uint64_t flagged = 0;     // sources flagged (every report, duplicates included)
  uint64_t alone = 0;       // notices of one source made
  uint64_t aggregates = 0;  // aggregate notices made
  uint64_t returned = 0;    // notices the spool refused, folded into a later aggregate
};

class ScannerNotices {
 public:
  static constexpr size_t kMaxWaiting = 16;

  explicit ScannerNotices(const ScannerNoticeOptions& options);

  // Capture thread. True when a notice is ready to be taken now (wake the
  // worker); false when the report was only counted.
  bool Add(const ScannerReport& report);
  // Worker: the notices due at `now`, oldest first: those of one source,
  // then the aggregate of a window that is over.
  std::vector<v1::ScannerSeen> Take(absl::Time now);
  // Worker: a notice the spool refused (full). Its counts go into the
  // aggregate of the window open at `now` (or one opened then).
  void Return(const v1::ScannerSeen& notice, absl::Time now);

  ScannerNoticeCounters counters() const;

 private:
  v1::ScannerSeen Alone(const ScannerReport& report) const;
  v1::ScannerSeen Aggregate(const ScannerSummary& summary) const;

  const ScannerNoticeOptions options_;
  mutable absl::Mutex mu_;
  ScannerAggregator aggregator_ ABSL_GUARDED_BY(mu_);
  std::deque<ScannerReport> waiting_ ABSL_GUARDED_BY(mu_);  // to be reported alone
  ScannerNoticeCounters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sesame
