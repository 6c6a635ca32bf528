// Refusals in the audit log within bounds: a burst is recorded, then a few
// a minute; the rest are counted, summed up in one record per kind once a
// minute has passed, and in the metric. Nothing is lost: recorded plus
// counted is every refusal. A real SQLite store and audit log.
#include "controller/service/refusal_audit.h"

#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "controller/audit/audit_log.h"
#include "controller/service/controller_metrics.h"
#include "controller/service/work_queue.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame::controller {
namespace {

class RefusalAuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteStoreOptions options;
    options.state_dir = dir_.path();
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    audit_ = std::make_unique<AuditLog>(*store_, AuditSigningKey::Generate(), clock_);
    work_ = std::make_unique<WorkQueue>(1);
    refusals_ = std::make_unique<RefusalAudit>(*audit_, *work_, clock_, &metrics_,
                                               RefusalAuditOptions{.per_minute = 10, .burst = 5});
  }

  static AuditEntry Refusal(const std::string& what, int n) {
    AuditEntry e;
    e.who = "unidentified";
    e.what = what;
    e.where = "controller";
    e.details = {{"n", std::to_string(n)}};
    return e;
  }

  // Every record so far, once the queued appends are done.
  std::vector<AuditRecord> Records() {
    work_.reset();  // drains the queue
    work_ = std::make_unique<WorkQueue>(1);
    refusals_ = std::make_unique<RefusalAudit>(*audit_, *work_, clock_, &metrics_,
                                               RefusalAuditOptions{.per_minute = 10, .burst = 5});
    return store_->ReadAudit(0, 1000).value();
  }

  static size_t Count(const std::vector<AuditRecord>& records, const std::string& what) {
    return std::count_if(records.begin(), records.end(),
                         [&what](const AuditRecord& r) { return r.entry.what == what; });
  }

  double Metric(const std::string& what, bool audited) {
    for (const MetricSample& m : metrics_.Collect(*store_)) {
      if (m.name == "sesame_controller_refusals_total" && m.labels.at("what") == what &&
          m.labels.at("audited") == (audited ? "true" : "false")) {
        return m.value;
      }
    }
    return 0;
  }

  testing::TempDir dir_;
  ManualClock clock_{absl::FromUnixSeconds(1800000000)};
  ControllerMetrics metrics_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<WorkQueue> work_;
  std::unique_ptr<RefusalAudit> refusals_;
};

TEST_F(RefusalAuditTest, ABurstIsRecordedTheRestCountedAndSummedUpOnce) {
  int audited = 0;
  for (int i = 0; i < 100; ++i) audited += refusals_->Record(Refusal("tls.refused", i)) ? 1 : 0;
  EXPECT_EQ(audited, 5);
  // Another kind has a budget of its own.
  EXPECT_TRUE(refusals_->Record(Refusal("admin.refused", 0)));

  refusals_->Flush();  // not a minute yet: nothing summed up
  clock_.Advance(absl::Seconds(30));
  refusals_->Flush();
  // Half a minute refilled 5 records' worth (10 a minute, at most the burst).
  for (int i = 0; i < 10; ++i) audited += refusals_->Record(Refusal("tls.refused", 100 + i)) ? 1 : 0;
  EXPECT_EQ(audited, 10);
  clock_.Advance(absl::Seconds(31));
  refusals_->Flush();  // a minute after the first suppressed one
  refusals_->Flush();  // said once

  const std::vector<AuditRecord> records = Records();
  EXPECT_EQ(Count(records, "tls.refused"), 10u);
  EXPECT_EQ(Count(records, "admin.refused"), 1u);
  ASSERT_EQ(Count(records, "audit.refusals_suppressed"), 1u);
  for (const AuditRecord& r : records) {
    if (r.entry.what != "audit.refusals_suppressed") continue;
    EXPECT_EQ(r.entry.details.at("refusal"), "tls.refused");
    EXPECT_EQ(r.entry.details.at("count"), "100");  // 95 + 5: recorded plus counted is every one of 110
    EXPECT_EQ(r.entry.details.at("since"), "2027-01-15T08:00:00Z");
  }
  EXPECT_EQ(Metric("tls.refused", true), 10);
  EXPECT_EQ(Metric("tls.refused", false), 100);
  EXPECT_EQ(Metric("admin.refused", true), 1);
}

TEST_F(RefusalAuditTest, AtShutdownWhatWasCountedIsSummedUpWithoutWaiting) {
  for (int i = 0; i < 8; ++i) refusals_->Record(Refusal("tls.refused", i));
  refusals_->Flush(/*all=*/true);
  const std::vector<AuditRecord> records = Records();
  EXPECT_EQ(Count(records, "tls.refused"), 5u);
  ASSERT_EQ(Count(records, "audit.refusals_suppressed"), 1u);
}

TEST(TlsRefusalEntryTest, SaysWhoFromWhereAndWhy) {
  CertificateRefusal r;
  r.stage = CertificateRefusal::Stage::kCall;
  r.peer = "ipv4:192.0.2.7:41000";
  r.subject = "CN=bob,OU=admin,O=sesame";
  r.serial = "1F";
  r.issuer = "CN=sesame CA,OU=ca,O=sesame";
  r.claimed = "spiffe://sesame/admin/bob";
  r.reason = "revoked";
  const AuditEntry e = TlsRefusalEntry(r, absl::UnixEpoch());
  EXPECT_EQ(e.what, "tls.refused");
  EXPECT_EQ(e.who, "unidentified");
  EXPECT_EQ(e.details.at("stage"), "call");
  EXPECT_EQ(e.details.at("peer"), "ipv4:192.0.2.7:41000");
  EXPECT_EQ(e.details.at("serial"), "1F");
  EXPECT_EQ(e.details.at("reason"), "revoked");
  EXPECT_EQ(e.details.at("claimed"), "spiffe://sesame/admin/bob");

  CertificateRefusal handshake;
  handshake.reason = "unknown CA";
  const AuditEntry h = TlsRefusalEntry(handshake, absl::UnixEpoch());
  EXPECT_EQ(h.details.at("stage"), "handshake");
  EXPECT_EQ(h.details.at("peer"), "unknown");
  EXPECT_EQ(h.details.count("subject"), 0u);
}

}  // namespace
}  // namespace sesame::controller
