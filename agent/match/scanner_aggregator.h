// Scanner notices, aggregated per reporting window, so that a flood of
// spoofed scanners costs a few notices a minute instead of one per source.
// Both the standalone log (knock_pipeline.cc) and the managed agent's
// reports to the controller (agent/managed/scanner_notices.h) go through it.
//
// Events are the matcher's: a source flagged as a scanner (kScannerFlagged)
// and a mark that ended (kScannerReleased, with the packets the source sent
// while marked).
//
// - Windows. A window opens with the first event after the previous one
//   closed and lasts `window`. The first source flagged in a window is
//   reported alone at once (kReportNow: an operator wants to know fast);
//   with report_releases, the first mark that ended in a window too. Every
//   further event of the window is counted, and TakeDue hands the counts
//   over as one summary once the window is over: how many distinct sources
//   were flagged, how many marks ended, their packets, the first and last
//   time, and a sample of the first few addresses. A window in which
//   nothing was counted ends without a summary. Under a steady flood that
//   is two notices per window, whatever the number of sources.
// - Packets. A flagged source brings the wrong knocks that flagged it (the
//   caller says how many: the matcher's threshold, a lower bound); an ended
//   mark brings the packets seen while it lasted. A source evicted from the
//   matcher's table while marked never reports those.
// - Duplicates. One address counts once per window and kind (the managed
//   agent's shards may each flag the same source for the same packet). The
//   addresses are remembered for up to distinct_capacity sources per
//   window; past that every event counts, so `sources` may over-count but
//   never under-count.
// - window = 0: no aggregation, every event is reported alone (what sesame
//   did before; bench/scanner_notices_bench.cc compares both).
// - Time is the caller's (capture time, or the clock of the thread that
//   calls TakeDue, when both are the wall clock). A clock set back by more
//   than a window ends the open window.
// - Bounded: the sample holds at most sample_size addresses, the set of
//   addresses at most distinct_capacity; counts are 64-bit.
//
// Not thread-safe: one owner, or a lock around it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "common/ip_address.h"

namespace sesame {

struct ScannerSummary {
  absl::Time first = absl::InfiniteFuture();  // first and last event counted
  absl::Time last = absl::InfinitePast();
  uint64_t sources = 0;   // distinct sources flagged (beyond those reported alone)
  uint64_t released = 0;  // marks that ended (beyond those reported alone)
  uint64_t packets = 0;   // their packets (see the header)
  std::vector<IpAddress> sample;  // the first sources counted, at most sample_size
  absl::Duration window;          // the reporting window

  bool empty() const { return sources == 0 && released == 0 && packets == 0; }
};

// One line for the log: "scanners in the last 1m: 4 more sources flagged,
// 1 mark ended, 52 packets, 2024-01-01T10:00:01Z to 2024-01-01T10:00:40Z;
// e.g. 198.18.0.2, 198.18.0.3".
std::string ScannerSummaryText(const ScannerSummary& summary);

class ScannerAggregator {
 public:
  struct Options {
    absl::Duration window = absl::Seconds(60);
    size_t sample_size = 8;
    size_t distinct_capacity = 16384;
    // Report the first mark that ended in a window alone (the standalone
    // log does); otherwise marks that ended are only counted.
    bool report_releases = false;
  };
  enum class Verdict {
    kReportNow,  // report this event alone, now
    kCounted,    // counted in the window's summary
    kDuplicate,  // this address was already counted in this window
  };

  explicit ScannerAggregator(const Options& options);

  // `source` was flagged at `at` after `packets` packets.
  Verdict Flagged(const IpAddress& source, absl::Time at, uint64_t packets);
  // `source`'s mark ended at `at`; `packets` arrived while it lasted.
  Verdict Released(const IpAddress& source, absl::Time at, uint64_t packets);

  // The summary of a window that is over at `now`, if anything was counted
  // in it (or folded back into it with Merge).
  std::optional<ScannerSummary> TakeDue(absl::Time now);
  // When the open window ends (InfiniteFuture: none open).
  absl::Time due() const { return open_ ? end_ : absl::InfiniteFuture(); }

  // Folds counts that could not be delivered (a full spool) into the open
  // window, or a new one opened at `now`: they come out with its summary.
  // Nothing reported alone is lost: merge it as a summary of one source.
  void Merge(const ScannerSummary& summary, absl::Time now);

  const Options& options() const { return options_; }

 private:
  static constexpr uint8_t kFlaggedBit = 1;
  static constexpr uint8_t kReleasedBit = 2;

  Verdict Note(uint8_t kind, const IpAddress& source, absl::Time at, uint64_t packets);
  void Open(absl::Time at);
  void CloseIfOver(absl::Time now);
  bool FirstOfKind(uint8_t kind, const IpAddress& source);  // false: a duplicate
  void Count(uint8_t kind, const IpAddress& source, absl::Time at, uint64_t packets);

  const Options options_;
  bool open_ = false;
  absl::Time start_;
  absl::Time end_;
  uint8_t reported_ = 0;  // kinds reported alone in the open window
  absl::flat_hash_map<IpAddress, uint8_t> seen_;  // address -> kinds, this window
  ScannerSummary counting_;  // the open window's counts
  ScannerSummary ready_;     // of windows that ended, not yet taken
};

}  // namespace sesame
