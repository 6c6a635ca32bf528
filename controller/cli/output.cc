// Table and value printing shared by the sesamectl nouns (JSON: json_output.cc).
#include "controller/cli/output.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "controller/service/wire_convert.h"

namespace sesame::controller::cli {

void Table::Print(std::ostream& out) const {
  std::vector<size_t> width;
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
}

std::string TimeText(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", FromWireTime(t), absl::UTCTimeZone());
}

std::string KnocksText(const google::protobuf::RepeatedPtrField<v1::Knock>& knocks) {
  std::vector<std::string> parts;
  for (const v1::Knock& k : knocks) {
    parts.push_back(absl::StrCat(k.port(), ":", k.protocol() == v1::PROTOCOL_UDP ? "udp" : "tcp"));
  }
  return absl::StrJoin(parts, " ");
}

std::string MetricName(const v1::Metric& m) {
  if (m.labels().empty()) return m.name();
  std::map<std::string, std::string> labels(m.labels().begin(), m.labels().end());
  std::string out = absl::StrCat(m.name(), "{");
  bool comma = false;
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&out, comma ? "," : "", k, "=\"", v, "\"");
    comma = true;
  }
  return out + "}";
}

}  // namespace sesame::controller::cli
