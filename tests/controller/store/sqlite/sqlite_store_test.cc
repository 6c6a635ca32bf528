#include "controller/store/sqlite/sqlite_store.h"

#include <sys/stat.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "controller/store/sqlite/sqlite_db.h"
#include "controller/store/sqlite/sqlite_schema.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/controller/store/store_test_util.h"
#include "tests/support/temp_dir.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

using store_test::Ip;
using store_test::K;
using store_test::kStart;
using store_test::SshDoor;

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(int schema_version = 0) {
    store_.reset();
    SqliteStoreOptions options;
    options.state_dir = state_dir_;
    options.clock = &clock_;
    options.schema_version = schema_version;
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  std::vector<Sequence> Add(std::vector<std::vector<Knock>> list, const std::string& reserve = "") {
    return store_test::AddTo(*store_, std::move(list), reserve);
  }

  ConsumeResult Consume(const std::vector<Knock>& knocks, const std::string& agent, const std::string& request_id = "") {
    return store_test::ConsumeOn(*store_, knocks, agent, request_id);
  }

  testing::TempDir dir_;
  std::string state_dir_ = dir_.File("state");
  ManualClock clock_{kStart};
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(SqliteStoreTest, FilesArePrivate) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  struct stat st;
  ASSERT_EQ(stat(store_->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((store_->path() + "-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(dir_.File("state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(SqliteStoreTest, UsesWalWithFullSync) {
  store_.reset();
  SqliteOpenOptions options;
  absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(dir_.File("state/controller.db"), options);
  ASSERT_TRUE(db.ok());
  absl::StatusOr<SqliteStatement> mode = (*db)->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->Text(0), "wal");
  // 2 is FULL.
  EXPECT_EQ(*(*db)->QueryInt("PRAGMA synchronous"), 2);
}

// --- Migrations -------------------------------------------------------------

// Rows as an older controller wrote them: raw SQL with the columns every
// version has (today's code reads and writes columns they lack).
void InsertOldSequence(SqliteStore& store, int64_t id, const std::string& knocks, const std::string& reserve = "",
                       bool burnt = false) {
  absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(store.path(), SqliteOpenOptions{});
  ASSERT_TRUE(db.ok()) << db.status();
  const absl::Status s = (*db)->Exec(absl::StrCat(
      "INSERT INTO sequences (id, door, knocks, state, issued_to, issued_at_us, reserve_agent, consumed_by, "
      "consumed_from, consumed_at_us, revision) VALUES (",
      id, ", 'ssh', '", knocks, "', '", burnt ? "burnt" : "issued", "', 'alice', ", absl::ToUnixMicros(kStart),
      ", '", reserve, "', ", burnt ? "'b1', '192.0.2.9', " : "NULL, NULL, ",
      burnt ? absl::StrCat(absl::ToUnixMicros(kStart)) : "NULL", ", ", id + 1, ")"));
  ASSERT_TRUE(s.ok()) << s;
}

TEST_F(SqliteStoreTest, MigratesAnOldDatabaseKeepingItsData) {
  state_dir_ = dir_.File("old");
  Reopen(/*schema_version=*/1);
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  InsertOldSequence(*store_, 1, "7000:tcp,8000:tcp,9000:tcp");
  ASSERT_TRUE(store_->AppendAudit({AuditEntry{kStart, "controller", "test", "controller", "", {}}}).ok());

  Reopen();  // latest
  {
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(store_->path(), SqliteOpenOptions{});
    ASSERT_TRUE(db.ok());
    EXPECT_EQ(*SchemaVersion(**db), LatestSchemaVersion());
  }
  EXPECT_EQ(store_->GetDoor("ssh")->policy, SshDoor().policy);
  EXPECT_EQ(store_->GetAuditHead()->record_count, 1u);
  ConsumeRequest r;
  r.knocks = K({7000, 8000, 9000});
  r.agent = "b1";
  r.source = Ip("192.0.2.1");
  r.request_id = "m1";
  absl::StatusOr<ConsumeResult> won = store_->Consume(r);
  ASSERT_TRUE(won.ok()) << won.status();
  EXPECT_EQ(won->outcome, ConsumeOutcome::kWon);
  EXPECT_EQ(won->audit_index, 1u);
}

TEST_F(SqliteStoreTest, VersionThreeKeepsTheConsumptionsAndAdmitsRefusals) {
  state_dir_ = dir_.File("v2");
  Reopen(/*schema_version=*/2);
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  InsertOldSequence(*store_, 1, "7000:tcp,8000:tcp,9000:tcp", "", /*burnt=*/true);
  InsertOldSequence(*store_, 2, "7001:tcp,8001:tcp,9001:tcp", "b2");
  {
    // The answer a version-2 controller kept for b1's request m1.
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(store_->path(), SqliteOpenOptions{});
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec("INSERT INTO consumptions (agent, request_id, outcome, sequence_id, grant_id, "
                            "audit_index, at_us) VALUES ('b1', 'm1', 'won', 1, 0, 0, 0)")
                    .ok());
  }
  ConsumeRequest foreign;
  foreign.knocks = K({7001, 8001, 9001});
  foreign.agent = "b1";
  foreign.source = Ip("192.0.2.1");
  foreign.request_id = "m2";

  Reopen();  // latest
  const ConsumeResult again = Consume(K({7000, 8000, 9000}), "b1", "m1");
  EXPECT_TRUE(again.repeated);
  EXPECT_EQ(again.outcome, ConsumeOutcome::kWon);
  EXPECT_EQ(again.sequence_id, 1u);
  absl::StatusOr<ConsumeResult> refused = store_->Consume(foreign);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->outcome, ConsumeOutcome::kRefused);
  absl::StatusOr<ConsumeResult> resent = store_->Consume(foreign);
  ASSERT_TRUE(resent.ok()) << resent.status();
  EXPECT_EQ(resent->outcome, ConsumeOutcome::kRefused);
  EXPECT_TRUE(resent->repeated);
  EXPECT_THAT(*store_->ReadAudit(0, 10), SizeIs(1));
}

TEST_F(SqliteStoreTest, VersionFourGivesUnusedSequencesTheDefaultLifetime) {
  state_dir_ = dir_.File("v3");
  Reopen(/*schema_version=*/3);
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  InsertOldSequence(*store_, 1, "7000:tcp,8000:tcp,9000:tcp");
  InsertOldSequence(*store_, 2, "7001:tcp,8001:tcp,9001:tcp", "", /*burnt=*/true);

  Reopen();  // latest
  absl::StatusOr<Sequence> unused = store_->GetSequence(1);
  ASSERT_TRUE(unused.ok()) << unused.status();
  EXPECT_EQ(unused->expires_at, kStart + kDefaultSequenceLifetime);
  absl::StatusOr<Sequence> burnt = store_->GetSequence(2);
  ASSERT_TRUE(burnt.ok()) << burnt.status();
  EXPECT_EQ(burnt->expires_at, absl::InfiniteFuture());
  EXPECT_FALSE(burnt->expired);
  EXPECT_EQ(burnt->consumed_by, "b1");

  clock_.Advance(kDefaultSequenceLifetime);
  absl::StatusOr<std::vector<Sequence>> expired = store_->ExpireSequences(10);
  ASSERT_TRUE(expired.ok()) << expired.status();
  ASSERT_THAT(*expired, SizeIs(1));
  EXPECT_EQ((*expired)[0].id, 1u);
}

TEST_F(SqliteStoreTest, RefusesADatabaseFromTheFuture) {
  const std::string path = store_->path();
  store_.reset();
  {
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path, SqliteOpenOptions{});
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec(absl::StrCat("PRAGMA user_version = ", LatestSchemaVersion() + 1)).ok());
  }
  SqliteStoreOptions options;
  options.state_dir = dir_.File("state");
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
  EXPECT_TRUE(absl::IsFailedPrecondition(store.status())) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr("newer"));
}

TEST_F(SqliteStoreTest, OneStorePerDatabase) {
  SqliteStoreOptions options;
  options.state_dir = state_dir_;
  absl::StatusOr<std::unique_ptr<SqliteStore>> second = SqliteStore::Open(options);
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));
  store_.reset();
  second = SqliteStore::Open(options);
  EXPECT_TRUE(second.ok()) << second.status();
}

TEST_F(SqliteStoreTest, MigrationsAreContiguous) {
  int expected = 1;
  for (const Migration& m : SqliteMigrations()) EXPECT_EQ(m.version, expected++);
}

TEST_F(SqliteStoreTest, NotADatabaseIsAClearError) {
  store_.reset();
  testing::TempDir other;
  ASSERT_TRUE(WriteFileAtomically(other.File("controller.db"), "this is not sqlite, just some text\n", 0600).ok());
  SqliteStoreOptions options;
  options.state_dir = other.path();
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
  EXPECT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr("controller.db"));
}

}  // namespace
}  // namespace sesame::controller
