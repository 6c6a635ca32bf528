#include "agent/match/scanner_aggregator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sesame {
namespace {

void AddSample(std::vector<IpAddress>& sample, size_t limit, const IpAddress& source) {
  if (sample.size() >= limit) return;
  if (std::find(sample.begin(), sample.end(), source) != sample.end()) return;
  sample.push_back(source);
}

}  // namespace

std::string ScannerSummaryText(const ScannerSummary& s) {
  auto time = [](absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()); };
  std::string text = absl::StrCat("scanners in the last ", absl::FormatDuration(s.window), ": ", s.sources,
                                  " more source", s.sources == 1 ? "" : "s", " flagged, ", s.released, " mark",
                                  s.released == 1 ? "" : "s", " ended, ", s.packets, " packets");
  if (s.first <= s.last) absl::StrAppend(&text, ", ", time(s.first), " to ", time(s.last));
  if (!s.sample.empty()) {
    absl::StrAppend(&text, "; e.g. ", absl::StrJoin(s.sample, ", ", [](std::string* out, const IpAddress& a) {
                      out->append(a.ToString());
                    }));
  }
  return text;
}

ScannerAggregator::ScannerAggregator(const Options& options) : options_(options) {
  counting_.window = options_.window;
  ready_.window = options_.window;
}

ScannerAggregator::Verdict ScannerAggregator::Flagged(const IpAddress& source, absl::Time at, uint64_t packets) {
  return Note(kFlaggedBit, source, at, packets);
}

ScannerAggregator::Verdict ScannerAggregator::Released(const IpAddress& source, absl::Time at, uint64_t packets) {
  return Note(kReleasedBit, source, at, packets);
}

ScannerAggregator::Verdict ScannerAggregator::Note(uint8_t kind, const IpAddress& source, absl::Time at,
                                                   uint64_t packets) {
  if (options_.window <= absl::ZeroDuration()) return Verdict::kReportNow;
  CloseIfOver(at);
  if (!open_) Open(at);
  if (!FirstOfKind(kind, source)) return Verdict::kDuplicate;
  const bool alone_allowed = kind == kFlaggedBit || options_.report_releases;
  if (alone_allowed && (reported_ & kind) == 0) {
    reported_ |= kind;
    return Verdict::kReportNow;
  }
  Count(kind, source, at, packets);
  return Verdict::kCounted;
}

void ScannerAggregator::Open(absl::Time at) {
  open_ = true;
  start_ = at;
  end_ = at + options_.window;
  reported_ = 0;
  seen_.clear();
}

void ScannerAggregator::CloseIfOver(absl::Time now) {
  if (!open_) return;
  if (now < end_ && now >= start_ - options_.window) return;
  open_ = false;
  seen_.clear();
  reported_ = 0;
  if (counting_.empty()) return;
  ready_.first = std::min(ready_.first, counting_.first);
  ready_.last = std::max(ready_.last, counting_.last);
  ready_.sources += counting_.sources;
  ready_.released += counting_.released;
  ready_.packets += counting_.packets;
  for (const IpAddress& a : counting_.sample) AddSample(ready_.sample, options_.sample_size, a);
  counting_ = ScannerSummary{};
  counting_.window = options_.window;
}

std::optional<ScannerSummary> ScannerAggregator::TakeDue(absl::Time now) {
  CloseIfOver(now);
  if (ready_.empty()) return std::nullopt;
  ScannerSummary out = std::move(ready_);
  ready_ = ScannerSummary{};
  ready_.window = options_.window;
  return out;
}

void ScannerAggregator::Merge(const ScannerSummary& summary, absl::Time now) {
  if (summary.empty()) return;
  if (options_.window > absl::ZeroDuration()) {
    CloseIfOver(now);
    if (!open_) Open(now);
  }
  // Without windows (window 0) the counts wait in ready_ for the next
  // TakeDue.
  ScannerSummary& into = open_ ? counting_ : ready_;
  into.first = std::min(into.first, summary.first);
  into.last = std::max(into.last, summary.last);
  into.sources += summary.sources;
  into.released += summary.released;
  into.packets += summary.packets;
  for (const IpAddress& a : summary.sample) AddSample(into.sample, options_.sample_size, a);
}

bool ScannerAggregator::FirstOfKind(uint8_t kind, const IpAddress& source) {
  auto it = seen_.find(source);
  if (it != seen_.end()) {
    if ((it->second & kind) != 0) return false;
    it->second |= kind;
    return true;
  }
  if (seen_.size() < options_.distinct_capacity) seen_.emplace(source, kind);
  return true;
}

void ScannerAggregator::Count(uint8_t kind, const IpAddress& source, absl::Time at, uint64_t packets) {
  counting_.first = std::min(counting_.first, at);
  counting_.last = std::max(counting_.last, at);
  if (kind == kFlaggedBit) {
    ++counting_.sources;
  } else {
    ++counting_.released;
  }
  counting_.packets += packets;
  AddSample(counting_.sample, options_.sample_size, source);
}

}  // namespace sesame
