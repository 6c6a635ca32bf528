// DescribeScannerSeen: a lone scanner is the record's who; an aggregate keeps
// the agent as who, adds its counts, a bounded re-printed sample, and keeps
// the details the session put there.
#include "controller/service/scanner_audit.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controller/service/wire_convert.h"
#include "gtest/gtest.h"

namespace sesame::controller {
namespace {

AuditEntry SessionAudit() {
  AuditEntry audit;
  audit.who = "agent:b1";
  audit.where = "agent:b1";
  audit.what = "scanner.seen";
  audit.details["agent_time"] = "kept";
  return audit;
}

TEST(ScannerAuditTest, ALoneScannerIsWho) {
  v1::ScannerSeen seen;
  seen.set_source("2001:DB8::7");
  seen.set_distinct_ports(12);
  *seen.mutable_window() = ToWireDuration(absl::Seconds(5));
  AuditEntry audit = SessionAudit();
  EXPECT_EQ(DescribeScannerSeen(seen, audit), 1u);
  EXPECT_EQ(audit.who, "2001:db8::7");
  EXPECT_EQ(audit.details.at("distinct_ports"), "12");
  EXPECT_EQ(audit.details.at("window"), "5s");
  EXPECT_EQ(audit.details.at("agent_time"), "kept");

  seen.set_source("198.51.100.4; rm -rf /");
  AuditEntry bad = SessionAudit();
  DescribeScannerSeen(seen, bad);
  EXPECT_EQ(bad.who, "invalid-address");
}

TEST(ScannerAuditTest, AnAggregateKeepsItsCountsAndABoundedSample) {
  v1::ScannerSeen seen;
  v1::ScannerSeen::Aggregate* a = seen.mutable_aggregate();
  a->set_sources(1000000);
  a->set_packets(10000000);
  for (int i = 0; i < 100; ++i) a->add_sample(absl::StrCat("198.18.0.", i + 1));
  AuditEntry audit = SessionAudit();
  EXPECT_EQ(DescribeScannerSeen(seen, audit), 1000000u);
  EXPECT_EQ(audit.who, "agent:b1");
  EXPECT_EQ(audit.details.at("sources"), "1000000");
  EXPECT_EQ(audit.details.at("packets"), "10000000");
  const std::vector<std::string> sample = absl::StrSplit(audit.details.at("sample"), ',');
  EXPECT_EQ(sample.size(), static_cast<size_t>(kMaxScannerSample));
  EXPECT_EQ(sample.front(), "198.18.0.1");
  EXPECT_EQ(audit.details.at("agent_time"), "kept");
}

}  // namespace
}  // namespace sesame::controller
