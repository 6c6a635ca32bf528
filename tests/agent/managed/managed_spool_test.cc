// AuditSpool: durable until confirmed, ids unique across restarts, torn
// tails dropped, corruption kept aside, compaction.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "agent/managed/audit_spool.h"
#include "common/file_util.h"
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

}  // namespace
}  // namespace sesame
