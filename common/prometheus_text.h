// Counters and gauges in Prometheus' text exposition format (version 0.0.4),
// the format node_exporter's textfile collector reads from *.prom files.
// Both daemons describe their metrics as MetricSamples once and use the same
// list for the file, for heartbeats (agent) and for GetStats (controller).
//
//   # HELP sesame_agent_knocks_seen_total Packets that started or advanced a door.
//   # TYPE sesame_agent_knocks_seen_total counter
//   sesame_agent_knocks_seen_total 42
//
// Samples of one name form one family (one HELP and TYPE line, taken from the
// family's first sample), whatever their order in the list; families keep
// the order in which they first appear.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace sesame {

enum class MetricKind { kCounter, kGauge };

struct MetricSample {
  std::string name;  // [a-zA-Z_:][a-zA-Z0-9_:]*; counters end in _total
  std::string help;  // one sentence
  MetricKind kind = MetricKind::kGauge;
  double value = 0;
  std::map<std::string, std::string> labels;  // names [a-zA-Z_][a-zA-Z0-9_]*, values any UTF-8
};

MetricSample Counter(std::string name, std::string help, double value);
MetricSample Gauge(std::string name, std::string help, double value);

bool IsValidMetricName(std::string_view name);
bool IsValidLabelName(std::string_view name);

// Whole numbers up to 2^53 in full ("1234567", never "1.23457e+06"), others
// with 17 significant digits; NaN, +Inf, -Inf as Prometheus spells them.
std::string FormatMetricValue(double value);

// The exposition text. InvalidArgument (naming the sample) for a bad metric
// or label name, or a family whose samples disagree on the kind.
absl::StatusOr<std::string> FormatPrometheusText(const std::vector<MetricSample>& samples);

// Formats and writes `path` atomically (temporary beside it, fsync, rename:
// the collector never reads half a file; the temporary's name does not end
// in .prom), mode 0644. Nothing is written if formatting fails.
absl::Status WritePrometheusFile(const std::string& path, const std::vector<MetricSample>& samples);

// WritePrometheusFile on a thread of its own, so that a slow disk (the write
// fsyncs) never stalls the caller, e.g. the agent's capture loop. Samples
// posted while a write is in progress replace each other: only the newest
// list is written. A failing write is logged as a warning once, and its
// recovery once, not every interval.
class PrometheusFileWriter {
 public:
  explicit PrometheusFileWriter(std::string path);
  // Writes what is still pending, then stops.
  ~PrometheusFileWriter();
  PrometheusFileWriter(const PrometheusFileWriter&) = delete;
  PrometheusFileWriter& operator=(const PrometheusFileWriter&) = delete;

  const std::string& path() const { return path_; }
  void Post(std::vector<MetricSample> samples);
  // Waits until everything posted so far is written; the last write's status.
  absl::Status Flush();

 private:
  void Run();
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !pending_.has_value() && !writing_; }
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pending_.has_value() || stopping_; }

  const std::string path_;
  absl::Mutex mu_;
  std::optional<std::vector<MetricSample>> pending_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status last_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace sesame
