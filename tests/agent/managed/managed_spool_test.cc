// AuditSpool: durable until confirmed, ids unique across restarts, torn
// tails dropped, corruption kept aside, compaction.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/managed/audit_spool.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

v1::AgentMessage Audit(AuditSpool& spool, const std::string& what) {
  v1::AgentMessage m;
  m.set_id(spool.NewId());
  m.mutable_audit()->set_what(what);
  return m;
}

std::vector<std::string> Whats(const AuditSpool& spool) {
  std::vector<std::string> out;
  for (const v1::AgentMessage* m : spool.Pending()) out.push_back(m->audit().what());
  return out;
}

TEST(AuditSpoolTest, Crc32MatchesZlib) {
  EXPECT_EQ(Crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(Crc32("", 0), 0u);
}

TEST(AuditSpoolTest, KeepsWhatIsUnconfirmedAcrossReopen) {
  testing::TempDir dir;
  const std::string path = dir.File("spool");
  std::string first_id;
  {
    auto spool = AuditSpool::Open(path);
    ASSERT_TRUE(spool.ok()) << spool.status();
    v1::AgentMessage a = Audit(**spool, "a");
    first_id = a.id();
    ASSERT_TRUE((*spool)->Append(a).ok());
    ASSERT_TRUE((*spool)->Append(Audit(**spool, "b")).ok());
    ASSERT_TRUE((*spool)->Append(Audit(**spool, "c")).ok());
    ASSERT_TRUE((*spool)->Confirm({(*spool)->Pending()[1]->id(), "no-such-id"}).ok());
    EXPECT_EQ(Whats(**spool), (std::vector<std::string>{"a", "c"}));
    // Appending the same id twice keeps one.
    ASSERT_TRUE((*spool)->Append(a).ok());
    EXPECT_EQ((*spool)->depth(), 2u);
  }
  auto again = AuditSpool::Open(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Whats(**again), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ((*again)->Pending()[0]->id(), first_id);  // resent with its own id
  EXPECT_TRUE((*again)->Contains(first_id));
}

TEST(AuditSpoolTest, DeferredAppendsAreSyncedLater) {
  testing::TempDir dir;
  {
    auto spool = AuditSpool::Open(dir.File("spool"));
    ASSERT_TRUE(spool.ok());
    ASSERT_TRUE((*spool)->Append(Audit(**spool, "deferred"), /*sync=*/false).ok());
    EXPECT_TRUE((*spool)->unsynced());
    ASSERT_TRUE((*spool)->Sync().ok());
    EXPECT_FALSE((*spool)->unsynced());
    ASSERT_TRUE((*spool)->Append(Audit(**spool, "synced")).ok());
  }
  auto spool = AuditSpool::Open(dir.File("spool"));
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ(Whats(**spool), (std::vector<std::string>{"deferred", "synced"}));
}

TEST(AuditSpoolTest, IdsAreNeverReusedAfterARestart) {
  testing::TempDir dir;
  std::set<std::string> ids;
  for (int run = 0; run < 3; ++run) {
    auto spool = AuditSpool::Open(dir.File("spool"));
    ASSERT_TRUE(spool.ok());
    for (int i = 0; i < 5; ++i) {
      const std::string id = (*spool)->NewId();
      EXPECT_LE(id.size(), 64u);
      EXPECT_TRUE(ids.insert(id).second) << id;
    }
  }
}

TEST(AuditSpoolTest, DropsATornLastRecord) {
  testing::TempDir dir;
  const std::string path = dir.File("spool");
  {
    auto spool = AuditSpool::Open(path);
    ASSERT_TRUE(spool.ok());
    ASSERT_TRUE((*spool)->Append(Audit(**spool, "kept")).ok());
    ASSERT_TRUE((*spool)->Append(Audit(**spool, "torn")).ok());
  }
  auto text = ReadFileToString(path);
  ASSERT_TRUE(text.ok());
  ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(text->size() - 3)), 0);  // a crash mid-append
  auto spool = AuditSpool::Open(path);
  ASSERT_TRUE(spool.ok()) << spool.status();
  EXPECT_EQ(Whats(**spool), (std::vector<std::string>{"kept"}));
  // And appends continue on a clean file.
  ASSERT_TRUE((*spool)->Append(Audit(**spool, "next")).ok());
  auto reopened = AuditSpool::Open(path);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(Whats(**reopened), (std::vector<std::string>{"kept", "next"}));
}

TEST(AuditSpoolTest, KeepsTheGoodPrefixOfACorruptFileAndACopy) {
  testing::TempDir dir;
  const std::string path = dir.File("spool");
  {
    auto spool = AuditSpool::Open(path);
    ASSERT_TRUE(spool.ok());
    for (const char* w : {"one", "two", "three"}) ASSERT_TRUE((*spool)->Append(Audit(**spool, w)).ok());
  }
  auto text = ReadFileToString(path);
  ASSERT_TRUE(text.ok());
  // Flip a byte inside the second record's payload.
  std::string bad = *text;
  const size_t second = bad.find("two");
  ASSERT_NE(second, std::string::npos);
  bad[second] = 'T';
  ASSERT_TRUE(WriteFileAtomically(path, bad, 0600).ok());
  auto spool = AuditSpool::Open(path);
  ASSERT_TRUE(spool.ok()) << spool.status();
  EXPECT_EQ(Whats(**spool), (std::vector<std::string>{"one"}));
  bool copied = false;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    copied |= absl::StrContains(entry.path().filename().string(), "spool.corrupt-");
  }
  EXPECT_TRUE(copied);
}

TEST(AuditSpoolTest, RefusesAFileThatIsNotASpool) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomically(dir.File("spool"), "hello\n").ok());
  auto spool = AuditSpool::Open(dir.File("spool"));
  ASSERT_FALSE(spool.ok());
  EXPECT_TRUE(absl::StrContains(spool.status().message(), "not a sesame spool")) << spool.status();
}

TEST(AuditSpoolTest, CompactsOnceConfirmationsPileUp) {
  testing::TempDir dir;
  auto spool = AuditSpool::Open(dir.File("spool"));
  ASSERT_TRUE(spool.ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 600; ++i) {
    v1::AgentMessage m = Audit(**spool, "x");
    ids.push_back(m.id());
    ASSERT_TRUE((*spool)->Append(m).ok());
  }
  const uint64_t full = (*spool)->file_bytes();
  for (int i = 0; i < 590; ++i) ASSERT_TRUE((*spool)->Confirm({ids[i]}).ok());
  EXPECT_LT((*spool)->file_bytes(), full);
  EXPECT_EQ((*spool)->depth(), 10u);
  auto reopened = AuditSpool::Open(dir.File("spool"));
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->depth(), 10u);
  EXPECT_EQ((*reopened)->Pending()[0]->id(), ids[590]);
}

// The size limit (audit_spool.h): notices give way first, records are
// refused when only records and consumptions are left, consumptions never.

constexpr uint64_t kLimit = 8192;

v1::AgentMessage Notice(AuditSpool& spool, int n) {
  v1::AgentMessage m;
  m.set_id(spool.NewId());
  v1::ScannerSeen* s = m.mutable_scanner_seen();
  s->set_source(absl::StrCat("198.18.0.", n % 250 + 1));
  s->set_distinct_ports(12);
  return m;
}

v1::AgentMessage Consumption(AuditSpool& spool, uint64_t sequence) {
  v1::AgentMessage m;
  m.set_id(spool.NewId());
  v1::KnockMatched* k = m.mutable_knock_matched();
  k->set_door("ssh");
  k->set_sequence_id(sequence);
  k->set_source("198.51.100.7");
  k->set_offline(true);
  return m;
}

struct Kinds {
  int notices = 0, records = 0, consumptions = 0;
};
Kinds KindsOf(const AuditSpool& spool) {
  Kinds k;
  for (const v1::AgentMessage* m : spool.Pending()) {
    if (m->has_scanner_seen()) {
      ++k.notices;
    } else if (m->has_knock_matched()) {
      ++k.consumptions;
    } else {
      ++k.records;
    }
  }
  return k;
}

TEST(AuditSpoolLimitTest, ClassesFollowTheMessage) {
  v1::AgentMessage m;
  m.mutable_scanner_seen();
  EXPECT_EQ(AuditSpool::ClassOf(m), SpoolClass::kNotice);
  m.mutable_knock_matched();
  EXPECT_EQ(AuditSpool::ClassOf(m), SpoolClass::kConsumption);
  m.mutable_grant_result();
  EXPECT_EQ(AuditSpool::ClassOf(m), SpoolClass::kRecord);
  m.mutable_audit();
  EXPECT_EQ(AuditSpool::ClassOf(m), SpoolClass::kRecord);
}

TEST(AuditSpoolLimitTest, NoticesStopAtTheLimit) {
  testing::TempDir dir;
  auto spool = AuditSpool::Open(dir.File("spool"), kLimit);
  ASSERT_TRUE(spool.ok()) << spool.status();
  AuditSpool& s = **spool;
  int written = 0;
  absl::Status status;
  for (int i = 0; i < 10000 && status.ok(); ++i) {
    status = s.Append(Notice(s, i));
    if (status.ok()) ++written;
  }
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("scanner notice not written"));
  EXPECT_GT(written, 10);
  EXPECT_EQ(s.depth(), static_cast<size_t>(written));  // a refused one is not pending
  EXPECT_LE(s.file_bytes(), kLimit);
  EXPECT_EQ(s.counters().notices_refused, 1u);
  EXPECT_EQ(std::filesystem::file_size(dir.File("spool")), s.file_bytes());
}

TEST(AuditSpoolLimitTest, ARecordShedsEveryPendingNoticeAndSaysSo) {
  testing::TempDir dir;
  {
    auto spool = AuditSpool::Open(dir.File("spool"), kLimit);
    ASSERT_TRUE(spool.ok());
    AuditSpool& s = **spool;
    ASSERT_TRUE(s.Append(Audit(s, "before")).ok());
    int notices = 0;
    while (s.Append(Notice(s, notices)).ok()) ++notices;
    ASSERT_GT(notices, 10);
    ASSERT_TRUE(s.Append(Audit(s, "knock.opened")).ok());
    const Kinds k = KindsOf(s);
    EXPECT_EQ(k.notices, 0);
    EXPECT_EQ(k.records, 2);
    EXPECT_EQ(s.counters().notices_shed, static_cast<uint64_t>(notices));
    EXPECT_LE(s.file_bytes(), kLimit);
    // Room again for notices, after the records.
    EXPECT_TRUE(s.Append(Notice(s, 1)).ok());
  }
  auto reopened = AuditSpool::Open(dir.File("spool"), kLimit);
  ASSERT_TRUE(reopened.ok());
  const Kinds k = KindsOf(**reopened);
  EXPECT_EQ(k.records, 2);  // the shed notices stay shed
  EXPECT_EQ(k.notices, 1);
}

TEST(AuditSpoolLimitTest, ConfirmedRecordsAreCompactedAwayBeforeAnythingIsRefused) {
  testing::TempDir dir;
  auto spool = AuditSpool::Open(dir.File("spool"), kLimit);
  ASSERT_TRUE(spool.ok());
  AuditSpool& s = **spool;
  for (int round = 0; round < 20; ++round) {
    std::vector<std::string> ids;
    for (int i = 0; i < 20; ++i) {
      v1::AgentMessage m = Audit(s, std::string(100, 'x'));
      ids.push_back(m.id());
      ASSERT_TRUE(s.Append(m).ok()) << "round " << round << ": " << i;
      ASSERT_TRUE(s.Append(Notice(s, i)).ok()) << "round " << round << ": " << i;
    }
    std::vector<std::string> all = ids;
    for (const v1::AgentMessage* m : s.Pending()) all.push_back(m->id());
    ASSERT_TRUE(s.Confirm(all).ok());
    EXPECT_LE(s.file_bytes(), kLimit);
  }
  EXPECT_EQ(s.counters().notices_refused, 0u);
  EXPECT_EQ(s.counters().notices_shed, 0u);
  EXPECT_EQ(s.counters().records_refused, 0u);
}

// Full of records that must not be shed: a record is refused, a
// consumption is written past the limit (one per sequence held, a bound of
// its own), and nothing already there is touched.
TEST(AuditSpoolLimitTest, FullOfRecordsARecordIsRefusedAConsumptionNever) {
  testing::TempDir dir;
  auto spool = AuditSpool::Open(dir.File("spool"), kLimit);
  ASSERT_TRUE(spool.ok());
  AuditSpool& s = **spool;
  int records = 0;
  absl::Status status;
  while ((status = s.Append(Audit(s, std::string(64, 'r')))).ok()) ++records;
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_EQ(s.counters().records_refused, 1u);
  EXPECT_EQ(s.depth(), static_cast<size_t>(records));

  for (uint64_t sequence = 41; sequence <= 43; ++sequence) ASSERT_TRUE(s.Append(Consumption(s, sequence)).ok());
  EXPECT_GE(s.counters().over_limit, 2u);  // the first may still have fitted
  EXPECT_GT(s.file_bytes(), kLimit);
  EXPECT_EQ(KindsOf(s).consumptions, 3);
  EXPECT_EQ(KindsOf(s).records, records);
  // A replay's report is a record: refused.
  v1::AgentMessage replay = Consumption(s, 44);
  replay.mutable_knock_matched()->set_offline(false);
  EXPECT_TRUE(absl::IsResourceExhausted(s.Append(replay, SpoolClass::kRecord, /*sync=*/true)));
  EXPECT_FALSE(s.Contains(replay.id()));
  // And a notice, of course.
  EXPECT_TRUE(absl::IsResourceExhausted(s.Append(Notice(s, 1))));

  // Once the controller confirms, everything fits again.
  std::vector<std::string> ids;
  for (const v1::AgentMessage* m : s.Pending()) ids.push_back(m->id());
  ASSERT_TRUE(s.Confirm(ids).ok());
  EXPECT_TRUE(s.Append(Notice(s, 2)).ok());
  EXPECT_LE(s.file_bytes(), kLimit);
}

TEST(AuditSpoolLimitTest, AFileAboveTheLimitIsKeptWholeAtOpen) {
  testing::TempDir dir;
  size_t written = 0;
  {
    auto spool = AuditSpool::Open(dir.File("spool"), 4 * kLimit);
    ASSERT_TRUE(spool.ok());
    for (int i = 0; i < 100; ++i) ASSERT_TRUE((*spool)->Append(Audit(**spool, std::string(100, 'k'))).ok());
    written = (*spool)->depth();
    ASSERT_GT((*spool)->file_bytes(), kLimit);
  }
  auto smaller = AuditSpool::Open(dir.File("spool"), kLimit);
  ASSERT_TRUE(smaller.ok()) << smaller.status();
  EXPECT_EQ((*smaller)->depth(), written);
  EXPECT_TRUE(absl::IsResourceExhausted((*smaller)->Append(Notice(**smaller, 1))));
  EXPECT_FALSE(AuditSpool::Open(dir.File("other"), 100).ok()) << "a limit too small to hold anything";
}

}  // namespace
}  // namespace sesame
