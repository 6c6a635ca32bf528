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

TEST_F(SqliteStoreTest, MigratesAnOldDatabaseKeepingItsData) {
  state_dir_ = dir_.File("old");
  Reopen(/*schema_version=*/1);
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  Add({K({7000, 8000, 9000})});
  ASSERT_TRUE(store_->AppendAudit({AuditEntry{kStart, "controller", "test", "controller", "", {}}}).ok());
  // Version 1 has no consumptions table: consuming with a request id fails
  // cleanly there.
  ConsumeRequest r;
  r.knocks = K({7000, 8000, 9000});
  r.agent = "b1";
  r.source = Ip("192.0.2.1");
  r.request_id = "m1";
  EXPECT_FALSE(store_->Consume(r).ok());
  EXPECT_EQ(store_->GetSequence(1)->state, SequenceState::kIssued);

  Reopen();  // latest
  {
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(store_->path(), SqliteOpenOptions{});
    ASSERT_TRUE(db.ok());
    EXPECT_EQ(*SchemaVersion(**db), LatestSchemaVersion());
  }
  EXPECT_EQ(store_->GetDoor("ssh")->policy, SshDoor().policy);
  EXPECT_EQ(store_->GetAuditHead()->record_count, 1u);
  absl::StatusOr<ConsumeResult> won = store_->Consume(r);
  ASSERT_TRUE(won.ok()) << won.status();
  EXPECT_EQ(won->outcome, ConsumeOutcome::kWon);
  EXPECT_EQ(won->audit_index, 1u);
}

TEST_F(SqliteStoreTest, VersionThreeKeepsTheConsumptionsAndAdmitsRefusals) {
  state_dir_ = dir_.File("v2");
  Reopen(/*schema_version=*/2);
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  Add({K({7000, 8000, 9000})});
  Add({K({7001, 8001, 9001})}, "b2");
  const ConsumeResult won = Consume(K({7000, 8000, 9000}), "b1", "m1");
  ASSERT_EQ(won.outcome, ConsumeOutcome::kWon);
  // Version 2 cannot keep a refused answer: the transaction fails whole.
  ConsumeRequest foreign;
  foreign.knocks = K({7001, 8001, 9001});
  foreign.agent = "b1";
  foreign.source = Ip("192.0.2.1");
  foreign.request_id = "m2";
  EXPECT_FALSE(store_->Consume(foreign).ok());
  EXPECT_THAT(*store_->ReadAudit(0, 10), SizeIs(1));

  Reopen();  // latest
  const ConsumeResult again = Consume(K({7000, 8000, 9000}), "b1", "m1");
  EXPECT_TRUE(again.repeated);
  EXPECT_EQ(again.grant->id, won.grant->id);
  absl::StatusOr<ConsumeResult> refused = store_->Consume(foreign);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->outcome, ConsumeOutcome::kRefused);
  absl::StatusOr<ConsumeResult> resent = store_->Consume(foreign);
  ASSERT_TRUE(resent.ok()) << resent.status();
  EXPECT_EQ(resent->outcome, ConsumeOutcome::kRefused);
  EXPECT_TRUE(resent->repeated);
  EXPECT_THAT(*store_->ReadAudit(0, 10), SizeIs(2));
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
