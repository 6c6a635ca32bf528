#include "common/prometheus_text.h"

#include <cmath>
#include <cstdint>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/log.h"

namespace sesame {
namespace {

bool IsNameChar(char c, bool first, bool colon_ok) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon_ok && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

bool IsValidName(std::string_view name, bool colon_ok) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i], i == 0, colon_ok)) return false;
  }
  return true;
}

// HELP text escapes backslash and newline; label values also the quote.
std::string Escape(std::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

const char* KindName(MetricKind kind) { return kind == MetricKind::kCounter ? "counter" : "gauge"; }

}  // namespace

MetricSample Counter(std::string name, std::string help, double value) {
  return MetricSample{std::move(name), std::move(help), MetricKind::kCounter, value, {}};
}

MetricSample Gauge(std::string name, std::string help, double value) {
  return MetricSample{std::move(name), std::move(help), MetricKind::kGauge, value, {}};
}

bool IsValidMetricName(std::string_view name) { return IsValidName(name, /*colon_ok=*/true); }
bool IsValidLabelName(std::string_view name) { return IsValidName(name, /*colon_ok=*/false); }

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  constexpr double kExact = 9007199254740992.0;  // 2^53
  if (value == std::trunc(value) && std::fabs(value) <= kExact) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  return absl::StrFormat("%.17g", value);
}

absl::StatusOr<std::string> FormatPrometheusText(const std::vector<MetricSample>& samples) {
  // Family index by name, in order of first appearance.
  std::vector<std::vector<const MetricSample*>> families;
  std::unordered_map<std::string, size_t> index;
  for (const MetricSample& s : samples) {
    if (!IsValidMetricName(s.name)) {
      return absl::InvalidArgumentError(absl::StrCat("metric name \"", s.name,
                                                     "\": expected [a-zA-Z_:][a-zA-Z0-9_:]*"));
    }
    for (const auto& [label, value] : s.labels) {
      if (!IsValidLabelName(label)) {
        return absl::InvalidArgumentError(
            absl::StrCat("metric ", s.name, ": label name \"", label, "\": expected [a-zA-Z_][a-zA-Z0-9_]*"));
      }
    }
    auto [it, added] = index.emplace(s.name, families.size());
    if (added) {
      families.emplace_back();
    } else if (families[it->second].front()->kind != s.kind) {
      return absl::InvalidArgumentError(absl::StrCat("metric ", s.name, " is both a counter and a gauge"));
    }
    families[it->second].push_back(&s);
  }
  std::string out;
  for (const std::vector<const MetricSample*>& family : families) {
    const MetricSample& first = *family.front();
    absl::StrAppend(&out, "# HELP ", first.name, " ", Escape(first.help, /*quote=*/false), "\n# TYPE ", first.name,
                    " ", KindName(first.kind), "\n");
    for (const MetricSample* s : family) {
      out += s->name;
      if (!s->labels.empty()) {
        out += '{';
        bool comma = false;
        for (const auto& [label, value] : s->labels) {
          absl::StrAppend(&out, comma ? "," : "", label, "=\"", Escape(value, /*quote=*/true), "\"");
          comma = true;
        }
        out += '}';
      }
      absl::StrAppend(&out, " ", FormatMetricValue(s->value), "\n");
    }
  }
  return out;
}

absl::Status WritePrometheusFile(const std::string& path, const std::vector<MetricSample>& samples) {
  absl::StatusOr<std::string> text = FormatPrometheusText(samples);
  if (!text.ok()) return text.status();
  return WriteFileAtomically(path, *text, 0644);
}

PrometheusFileWriter::PrometheusFileWriter(std::string path) : path_(std::move(path)) {
  thread_ = std::thread([this] { Run(); });
}

PrometheusFileWriter::~PrometheusFileWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void PrometheusFileWriter::Post(std::vector<MetricSample> samples) {
  absl::MutexLock lock(&mu_);
  pending_ = std::move(samples);
}

absl::Status PrometheusFileWriter::Flush() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &PrometheusFileWriter::Idle));
  return last_;
}

void PrometheusFileWriter::Run() {
  for (;;) {
    std::vector<MetricSample> samples;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &PrometheusFileWriter::HasWork));
      if (!pending_.has_value()) return;  // stopping, nothing left
      samples = *std::move(pending_);
      pending_.reset();
      writing_ = true;
    }
    const absl::Status s = WritePrometheusFile(path_, samples);
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!s.ok() && last_.ok()) LogWarning(absl::StrCat("metrics file: ", s.message(), " (retrying quietly)"));
    if (s.ok() && !last_.ok()) LogInfo(absl::StrCat("metrics file: ", path_, " written again"));
    last_ = s;
  }
}

}  // namespace sesame
