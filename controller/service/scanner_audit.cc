#include "controller/service/scanner_audit.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/ip_address.h"
#include "controller/service/wire_convert.h"

namespace sesame::controller {

uint64_t DescribeScannerSeen(const v1::ScannerSeen& seen, AuditEntry& audit) {
  audit.details["distinct_ports"] = absl::StrCat(seen.distinct_ports());
  audit.details["window"] = absl::FormatDuration(FromWireDuration(seen.window()));
  if (!seen.has_aggregate()) {
    std::optional<IpAddress> source = IpAddress::Parse(seen.source());
    audit.who = source ? source->ToString() : "invalid-address";
    return 1;
  }
  const v1::ScannerSeen::Aggregate& a = seen.aggregate();
  std::vector<std::string> sample;
  for (const std::string& text : a.sample()) {
    if (sample.size() >= kMaxScannerSample) break;
    if (std::optional<IpAddress> address = IpAddress::Parse(text)) sample.push_back(address->ToString());
  }
  auto time = [](const google::protobuf::Timestamp& t) {
    return absl::FormatTime(absl::RFC3339_full, FromWireTime(t), absl::UTCTimeZone());
  };
  audit.details["aggregate"] = "true";
  audit.details["sources"] = absl::StrCat(a.sources());
  audit.details["released"] = absl::StrCat(a.released());
  audit.details["packets"] = absl::StrCat(a.packets());
  audit.details["sample"] = absl::StrJoin(sample, ",");
  audit.details["first_seen"] = time(a.first_seen());
  audit.details["last_seen"] = time(a.last_seen());
  audit.details["period"] = absl::FormatDuration(FromWireDuration(a.period()));
  return a.sources();
}

}  // namespace sesame::controller
