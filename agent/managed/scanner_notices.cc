#include "agent/managed/scanner_notices.h"

#include <optional>
#include <utility>

#include "agent/managed/proto_convert.h"

namespace sesame {
namespace {

ScannerAggregator::Options AggregatorOptions(const ScannerNoticeOptions& o) {
  ScannerAggregator::Options a;
  a.window = o.report_window;
  a.sample_size = o.sample_size;
  a.report_releases = false;  // the controller hears of ended marks in aggregates only
  return a;
}

}  // namespace

ScannerNotices::ScannerNotices(const ScannerNoticeOptions& options)
    : options_(options), aggregator_(AggregatorOptions(options)) {}

bool ScannerNotices::Add(const ScannerReport& report) {
  absl::MutexLock lock(&mu_);
  if (report.released) {
    // Counted (or, without windows, dropped as before: there is no notice
    // of one ended mark).
    aggregator_.Released(report.source, report.at, report.packets);
    return false;
  }
  ++counters_.flagged;
  const uint64_t packets = report.distinct_ports > 0 ? static_cast<uint64_t>(report.distinct_ports) : 0;
  if (aggregator_.Flagged(report.source, report.at, packets) != ScannerAggregator::Verdict::kReportNow) return false;
  if (waiting_.size() >= kMaxWaiting) {
    // The worker is behind (or there are no windows): count it instead.
    ScannerSummary s;
    s.first = s.last = report.at;
    s.sources = 1;
    s.packets = packets;
    s.sample = {report.source};
    aggregator_.Merge(s, report.at);
    return false;
  }
  waiting_.push_back(report);
  return true;
}

std::vector<v1::ScannerSeen> ScannerNotices::Take(absl::Time now) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::ScannerSeen> out;
  for (const ScannerReport& r : waiting_) out.push_back(Alone(r));
  counters_.alone += waiting_.size();
  waiting_.clear();
  if (std::optional<ScannerSummary> s = aggregator_.TakeDue(now)) {
    out.push_back(Aggregate(*s));
    ++counters_.aggregates;
  }
  return out;
}

void ScannerNotices::Return(const v1::ScannerSeen& notice, absl::Time now) {
  ScannerSummary s;
  if (notice.has_aggregate()) {
    const v1::ScannerSeen::Aggregate& a = notice.aggregate();
    s.sources = a.sources();
    s.released = a.released();
    s.packets = a.packets();
    s.first = FromProtoTime(a.first_seen());
    s.last = FromProtoTime(a.last_seen());
    for (const std::string& text : a.sample()) {
      if (std::optional<IpAddress> address = IpAddress::Parse(text)) s.sample.push_back(*address);
    }
  } else {
    s.sources = 1;
    s.packets = notice.distinct_ports();
    s.first = s.last = FromProtoTime(notice.at());
    if (std::optional<IpAddress> address = IpAddress::Parse(notice.source())) s.sample.push_back(*address);
  }
  absl::MutexLock lock(&mu_);
  aggregator_.Merge(s, now);
  ++counters_.returned;
}

ScannerNoticeCounters ScannerNotices::counters() const {
  absl::MutexLock lock(&mu_);
  return counters_;
}

v1::ScannerSeen ScannerNotices::Alone(const ScannerReport& r) const {
  v1::ScannerSeen n;
  n.set_source(r.source.ToString());
  n.set_distinct_ports(static_cast<uint32_t>(r.distinct_ports));
  *n.mutable_window() = ToProtoDuration(r.window);
  *n.mutable_ignored_until() = ToProtoTime(r.ignored_until);
  *n.mutable_at() = ToProtoTime(r.at);
  return n;
}

v1::ScannerSeen ScannerNotices::Aggregate(const ScannerSummary& s) const {
  v1::ScannerSeen n;
  // Fields 1-5 as a reader that does not know the aggregate takes them.
  if (!s.sample.empty()) n.set_source(s.sample.front().ToString());
  n.set_distinct_ports(static_cast<uint32_t>(options_.scan_threshold));
  *n.mutable_window() = ToProtoDuration(options_.scan_window);
  *n.mutable_at() = ToProtoTime(s.first);
  *n.mutable_ignored_until() = ToProtoTime(s.last + options_.scan_ban);
  v1::ScannerSeen::Aggregate* a = n.mutable_aggregate();
  a->set_sources(s.sources);
  a->set_released(s.released);
  a->set_packets(s.packets);
  for (const IpAddress& address : s.sample) a->add_sample(address.ToString());
  *a->mutable_first_seen() = ToProtoTime(s.first);
  *a->mutable_last_seen() = ToProtoTime(s.last);
  *a->mutable_period() = ToProtoDuration(s.window);
  return n;
}

}  // namespace sesame
