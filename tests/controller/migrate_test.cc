// sesame-controller migrate: a single controller's SQLite store copied into
// etcd, its audit chain verifying before and after, ids and states kept,
// and an etcd prefix that already holds a store refused.
#include "controller/migrate.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_log.h"
#include "controller/audit/audit_verifier.h"
#include "controller/store/etcd/etcd_store.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/etcd_cluster.h"
#include "tests/support/temp_dir.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;

std::vector<Knock> K(std::initializer_list<uint16_t> ports) {
  std::vector<Knock> out;
  for (uint16_t p : ports) out.push_back(Knock{p, Protocol::kTcp});
  return out;
}

ConsumeRequest Report(const std::vector<Knock>& knocks) {
  ConsumeRequest r;
  r.knocks = knocks;
  r.agent = "bastion1";
  r.source = *IpAddress::Parse("198.51.100.9");
  return r;
}

TEST(MigrateTest, CopiesASqliteStoreIntoEtcdWithItsChainIntact) {
  absl::StatusOr<std::unique_ptr<testing::EtcdCluster>> cluster = testing::EtcdCluster::Start(1);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  testing::TempDir state;
  ControllerConfig config;
  config.path = "controller.conf";
  config.name = "controller1";
  config.state_dir = state.path();
  config.audit_key = state.File("audit.key");
  config.store = StoreKind::kEtcd;
  config.etcd.endpoints = (*cluster)->endpoints();
  config.etcd.tls = TlsFiles{(*cluster)->ca_cert(), (*cluster)->client_cert(), (*cluster)->client_key(), ""};

  // A single controller's life: a door, sequences (one used), a grant, the
  // audit chain with a checkpoint.
  uint64_t unused_id = 0, burnt_id = 0;
  AuditHead head_before;
  {
    SqliteStoreOptions options;
    options.state_dir = state.path();
    absl::StatusOr<std::unique_ptr<SqliteStore>> sqlite = SqliteStore::Open(options);
    ASSERT_TRUE(sqlite.ok()) << sqlite.status();
    absl::StatusOr<AuditSigningKey> key = AuditSigningKey::LoadOrCreate(config.audit_key);
    ASSERT_TRUE(key.ok());
    AuditLog log(**sqlite, *key);
    Door door;
    door.name = "ssh";
    ASSERT_TRUE((*sqlite)->PutDoor(door, {}).ok());
    absl::StatusOr<std::vector<Sequence>> added = (*sqlite)->AddSequences(
        {NewSequence{"ssh", K({2001, 3001, 4001}), "alice", ""}, NewSequence{"ssh", K({2002, 3002, 4002}), "bob", ""}},
        {AuditEntry{absl::Now(), "admin:alice", "sequences.issued", "controller", "", {}}});
    ASSERT_TRUE(added.ok());
    unused_id = (*added)[1].id;
    absl::StatusOr<ConsumeResult> won = (*sqlite)->Consume(Report(K({2001, 3001, 4001})));
    ASSERT_TRUE(won.ok());
    ASSERT_EQ(won->outcome, ConsumeOutcome::kWon);
    burnt_id = won->sequence_id;
    ASSERT_TRUE(log.Checkpoint().ok());
    absl::StatusOr<AuditHead> head = (*sqlite)->GetAuditHead();
    ASSERT_TRUE(head.ok());
    head_before = *head;
  }

  absl::StatusOr<std::string> done = Migrate(absl::StrCat("sqlite:", state.path()), "etcd", config);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_THAT(*done, HasSubstr("verified before and after"));

  EtcdStoreOptions options;
  options.client.endpoints = config.etcd.endpoints;
  options.client.tls = config.etcd.tls;
  absl::StatusOr<std::unique_ptr<EtcdStore>> etcd = EtcdStore::Open(options);
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  // The chain goes on from where it was: the old head is a prefix of it.
  absl::StatusOr<std::vector<AuditRecord>> records = (*etcd)->ReadAudit(head_before.record_count - 1, 1);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].hash, head_before.hash);
  absl::StatusOr<std::string> pem = sesame::ReadFileToString(config.audit_key);
  ASSERT_TRUE(pem.ok());
  absl::StatusOr<AuditSigningKey> key = AuditSigningKey::FromPem(*pem);
  ASSERT_TRUE(key.ok());
  absl::StatusOr<AuditVerification> v = VerifyStoredAudit(**etcd, key->PublicKey());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->ok) << v->problem;
  // Ids and states as they were: the burnt one replays, the other wins,
  // and new ids follow the old ones.
  absl::StatusOr<ConsumeResult> replay = (*etcd)->Consume(Report(K({2001, 3001, 4001})));
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->outcome, ConsumeOutcome::kReplay);
  EXPECT_EQ(replay->sequence_id, burnt_id);
  absl::StatusOr<ConsumeResult> won = (*etcd)->Consume(Report(K({2002, 3002, 4002})));
  ASSERT_TRUE(won.ok());
  EXPECT_EQ(won->outcome, ConsumeOutcome::kWon);
  EXPECT_EQ(won->sequence_id, unused_id);
  absl::StatusOr<std::vector<Sequence>> next =
      (*etcd)->AddSequences({NewSequence{"ssh", K({2003, 3003, 4003}), "carol", ""}}, {});
  ASSERT_TRUE(next.ok());
  EXPECT_GT((*next)[0].id, unused_id);

  // A second migration into the same prefix is refused, changing nothing.
  absl::StatusOr<std::string> again = Migrate(absl::StrCat("sqlite:", state.path()), "etcd", config);
  EXPECT_FALSE(again.ok());
  EXPECT_THAT(again.status().message(), HasSubstr("migrate only into an empty prefix"));
}

TEST(MigrateTest, RefusesWhatItCannotDo) {
  ControllerConfig sqlite_config;
  EXPECT_THAT(Migrate("sqlite:/nonexistent", "etcd", sqlite_config).status().message(),
              HasSubstr("does not say Store = etcd"));
  EXPECT_THAT(Migrate("postgres:/x", "etcd", sqlite_config).status().message(), HasSubstr("expected sqlite:PATH"));
  EXPECT_THAT(Migrate("sqlite:/x", "consul", sqlite_config).status().message(), HasSubstr("expected etcd"));
}

}  // namespace
}  // namespace sesame::controller
