// What holds when several controllers share one etcd store, against real
// etcd members: a sequence won once across controllers, one audit chain,
// changes reaching every controller (also after a compaction), members and
// quorum lost and back, and one fenced leader. (Each Store method's own
// behaviour is in store_contract_test.cc, for both stores.)
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "controller/store/etcd/etcd_leader.h"
#include "controller/store/etcd/etcd_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/etcd_cluster.h"
#include "tests/support/eventually.h"

namespace sesame::controller {
namespace {

using testing::EtcdCluster;
using testing::Eventually;

std::vector<Knock> K(std::initializer_list<uint16_t> ports) {
  std::vector<Knock> out;
  for (uint16_t p : ports) out.push_back(Knock{p, Protocol::kTcp});
  return out;
}

class Recorder final : public ChangeListener {
 public:
  void OnCommitted(const std::vector<StoreChange>& changes) override {
    absl::MutexLock lock(&mu_);
    for (const StoreChange& c : changes) {
      if (c.kind == StoreChange::Kind::kSequenceBurnt) burnt_.push_back(c.sequence.id);
      revisions_.push_back(c.revision);
    }
  }
  bool Burnt(uint64_t id) {
    absl::MutexLock lock(&mu_);
    return std::find(burnt_.begin(), burnt_.end(), id) != burnt_.end();
  }
  std::vector<uint64_t> revisions() {
    absl::MutexLock lock(&mu_);
    return revisions_;
  }

 private:
  absl::Mutex mu_;
  std::vector<uint64_t> burnt_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> revisions_ ABSL_GUARDED_BY(mu_);
};

class EtcdHaTest : public ::testing::Test {
 protected:
  void Start(int members) {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(members);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
  }

  // A controller's store; endpoints: which members, in its order (all by default).
  std::unique_ptr<EtcdStore> Open(const std::string& name, std::vector<int> members = {}) {
    EtcdStoreOptions options;
    if (members.empty()) {
      options.client.endpoints = cluster_->endpoints();
    } else {
      for (int m : members) options.client.endpoints.push_back(cluster_->endpoints()[m]);
    }
    options.client.tls.ca_cert = cluster_->ca_cert();
    options.client.tls.cert = cluster_->client_cert();
    options.client.tls.key = cluster_->client_key();
    options.controller = name;
    absl::StatusOr<std::unique_ptr<EtcdStore>> store = EtcdStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  static void AddDoor(Store& store) {
    Door door;
    door.name = "ssh";
    ASSERT_TRUE(store.PutDoor(door, {}).ok());
  }

  static ConsumeRequest Report(const std::vector<Knock>& knocks, const std::string& agent, const std::string& id) {
    ConsumeRequest r;
    r.knocks = knocks;
    r.agent = agent;
    r.source = *IpAddress::Parse("198.51.100.7");
    r.request_id = id;
    return r;
  }

  // As an agent does: the same report again (same id) until it is answered;
  // while etcd elects a leader, calls fail.
  static absl::StatusOr<ConsumeResult> ConsumeUntilAnswered(Store& store, const ConsumeRequest& report) {
    absl::StatusOr<ConsumeResult> r;
    for (int attempt = 0; attempt < 200; ++attempt) {
      r = store.Consume(report);
      if (r.ok()) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return r;
  }

  // etcd's revision: it moves with every commit, and with every one that failed.
  static int64_t EtcdRevision(EtcdStore& store) {
    absl::StatusOr<etcdserverpb::RangeResponse> r = store.client().Range(store.keys().head(), "");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->header().revision() : 0;
  }

  // How many knock.opened records the chain holds.
  static int OpenedRecords(Store& store) {
    absl::StatusOr<std::vector<AuditRecord>> records = store.ReadAudit(0, 100000);
    EXPECT_TRUE(records.ok()) << records.status();
    int opened = 0;
    for (const AuditRecord& r : records.ok() ? *records : std::vector<AuditRecord>{}) {
      opened += r.entry.what == "knock.opened";
    }
    return opened;
  }

  // The chain read back is one chain: indexes 0.., each linked to the last.
  static void ExpectOneChain(Store& store) {
    absl::StatusOr<std::vector<AuditRecord>> records = store.ReadAudit(0, 100000);
    ASSERT_TRUE(records.ok()) << records.status();
    ChainHash prev{};
    for (size_t i = 0; i < records->size(); ++i) {
      const AuditRecord& r = (*records)[i];
      ASSERT_EQ(r.index, i);
      ASSERT_EQ(r.prev_hash, prev) << "record " << i;
      ASSERT_EQ(NextChainHash(prev, r.index, r.entry), r.hash) << "record " << i;
      prev = r.hash;
    }
  }

  std::unique_ptr<EtcdCluster> cluster_;
};

TEST_F(EtcdHaTest, ASequenceKnockedThroughThreeControllersAtOnceIsWonOnce) {
  Start(3);
  std::vector<std::unique_ptr<EtcdStore>> controllers;
  for (int c = 0; c < 3; ++c) controllers.push_back(Open(absl::StrCat("c", c), {c, (c + 1) % 3, (c + 2) % 3}));
  AddDoor(*controllers[0]);
  constexpr int kRounds = 10;
  for (int round = 0; round < kRounds; ++round) {
    const std::vector<Knock> knocks = K({static_cast<uint16_t>(2000 + round), 3000, 4000});
    ASSERT_TRUE(controllers[round % 3]->AddSequences({NewSequence{"ssh", knocks, "alice", ""}}, {}).ok());
    std::atomic<int> won{0}, replay{0}, other{0};
    std::vector<std::thread> racers;
    for (int t = 0; t < 9; ++t) {
      racers.emplace_back([&, t] {
        absl::StatusOr<ConsumeResult> r = controllers[t % 3]->Consume(
            Report(knocks, absl::StrCat("bastion", t), absl::StrCat("r", round, "-", t)));
        if (!r.ok()) {
          ++other;
        } else if (r->outcome == ConsumeOutcome::kWon) {
          ++won;
        } else if (r->outcome == ConsumeOutcome::kReplay) {
          ++replay;
        } else {
          ++other;
        }
      });
    }
    for (std::thread& t : racers) t.join();
    EXPECT_EQ(won, 1) << "round " << round;
    EXPECT_EQ(replay, 8) << "round " << round;
    EXPECT_EQ(other, 0) << "round " << round;
  }
  ExpectOneChain(*controllers[1]);
  EXPECT_EQ(OpenedRecords(*controllers[2]), kRounds);
}

// A report of an unused sequence assumes no answer was kept for its id, and
// the commit's compare checks it. A resend that was answered (refused while
// its sequence stayed unused) fails that commit once, gets its first answer,
// and from then on its agent's reports read their kept answers first: its
// next such resend fails no commit. Failed commits show in etcd's revision
// (each writes the controller's waiting/ mark).
TEST_F(EtcdHaTest, AResendOfARefusedReportGetsItsFirstAnswerAndFailsOneCommitAtMost) {
  Start(1);
  std::unique_ptr<EtcdStore> store = Open("c1");
  AddDoor(*store);
  const std::vector<Knock> knocks = K({2000, 3000, 4000});
  ASSERT_TRUE(store->AddSequences({NewSequence{"ssh", knocks, "alice", "bastion1"}}, {}).ok());  // bastion1's reserve
  auto revision = [&] { return EtcdRevision(*store); };
  auto refused_again = [&](const std::string& id, bool repeated) {
    absl::StatusOr<ConsumeResult> r = store->Consume(Report(knocks, "bastion2", id));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcome, ConsumeOutcome::kRefused);
    EXPECT_EQ(r->repeated, repeated);
  };

  refused_again("r1", false);  // another bastion's reserve: refused, the sequence stays unused
  int64_t before = revision();
  refused_again("r1", true);
  EXPECT_EQ(revision(), before + 1);  // one failed commit, nothing else written

  refused_again("r2", false);
  before = revision();
  refused_again("r2", true);
  EXPECT_EQ(revision(), before);  // read first: no failed commit
  absl::StatusOr<std::vector<AuditRecord>> records = store->ReadAudit(0, 100);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 2u);  // each report audited once
}

TEST_F(EtcdHaTest, AWinByIdIsOneKeyAndEveryControllerAnswersItsResendsFromIt) {
  Start(1);
  std::unique_ptr<EtcdStore> c1 = Open("c1");
  std::unique_ptr<EtcdStore> c2 = Open("c2");
  AddDoor(*c1);
  const std::vector<Knock> knocks = K({2100, 3100, 4100});
  absl::StatusOr<std::vector<Sequence>> added = c1->AddSequences({NewSequence{"ssh", knocks, "alice", ""}}, {});
  ASSERT_TRUE(added.ok()) << added.status();
  ConsumeRequest report = Report(knocks, "bastion1", "w1");
  report.sequence_id = added->front().id;
  report.order_grant = true;
  auto keys_under = [&](const std::string& folder) {
    const std::string prefix = c1->keys().prefix() + folder;
    absl::StatusOr<etcdserverpb::RangeResponse> r = c1->client().Range(prefix, EtcdPrefixEnd(prefix));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->kvs_size() : -1;
  };
  auto kept_keys = [&] { return keys_under("consumption/"); };
  auto revision = [&] { return EtcdRevision(*c1); };

  absl::StatusOr<ConsumeResult> won = c1->Consume(report);
  ASSERT_TRUE(won.ok()) << won.status();
  ASSERT_EQ(won->outcome, ConsumeOutcome::kWon);
  ASSERT_TRUE(won->grant.has_value());
  // One key for the burn, its answer and its grant (and the batch's audit key).
  EXPECT_EQ(kept_keys(), 0);
  EXPECT_EQ(keys_under("grant/"), 0);
  absl::StatusOr<GrantRecord> grant = c2->GetGrant(won->grant->id);
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->state, GrantState::kOpen);
  EXPECT_EQ(grant->revision, won->grant->revision);

  ASSERT_TRUE(c2->GetSequence(report.sequence_id).ok());  // c2's copy holds the burn (else its resend loses a commit)
  const int64_t before = revision();
  for (EtcdStore* store : {c1.get(), c2.get()}) {
    absl::StatusOr<ConsumeResult> again = store->Consume(report);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->outcome, ConsumeOutcome::kWon);
    EXPECT_TRUE(again->repeated);
    ASSERT_TRUE(again->grant.has_value());
    EXPECT_EQ(again->grant->id, won->grant->id);
    EXPECT_EQ(again->audit_index, won->audit_index);
  }
  EXPECT_EQ(revision(), before);  // answered from the row: nothing written, no commit lost

  // Another bastion's report with the same request id is its own report: a
  // replay, whose answer is kept under its own key.
  ConsumeRequest other = report;
  other.agent = "bastion2";
  absl::StatusOr<ConsumeResult> replay = c2->Consume(other);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->outcome, ConsumeOutcome::kReplay);
  EXPECT_FALSE(replay->repeated);
  EXPECT_EQ(kept_keys(), 1);
  absl::StatusOr<ConsumeResult> replay_again = c1->Consume(other);
  ASSERT_TRUE(replay_again.ok()) << replay_again.status();
  EXPECT_EQ(replay_again->outcome, ConsumeOutcome::kReplay);
  EXPECT_TRUE(replay_again->repeated);
  EXPECT_EQ(replay_again->audit_index, replay->audit_index);
  EXPECT_EQ(OpenedRecords(*c1), 1);

  // Once the grant changes it has a key of its own, and every copy holds
  // the change, the burn's copy of the grant notwithstanding (also a copy
  // read afresh).
  ASSERT_TRUE(c2->CloseGrant(won->grant->id, GrantState::kRevoked, false, {}).ok());
  EXPECT_EQ(keys_under("grant/"), 1);
  std::unique_ptr<EtcdStore> c3 = Open("c3");
  for (EtcdStore* store : {c1.get(), c3.get()}) {
    absl::StatusOr<GrantRecord> closed = store->GetGrant(won->grant->id);
    ASSERT_TRUE(closed.ok()) << closed.status();
    EXPECT_EQ(closed->state, GrantState::kRevoked);
  }
  ExpectOneChain(*c2);
}

TEST_F(EtcdHaTest, ATransactionsAuditRecordsAreOneKeyAndReadFromAnyIndex) {
  Start(1);
  std::unique_ptr<EtcdStore> store = Open("c1");
  auto entries = [](std::vector<std::string> origins) {
    std::vector<AuditEntry> out;
    for (const std::string& origin : origins) {
      out.push_back(AuditEntry{absl::Now(), "agent:bastion1", "test.record", "agent:bastion1", origin, {}});
    }
    return out;
  };
  ASSERT_TRUE(store->AppendAudit(entries({"o0", "o1", "o2", "o3", "o4"})).ok());
  ASSERT_TRUE(store->AppendAudit(entries({"o5", "o6"})).ok());

  const std::string prefix = store->keys().prefix() + "audit/";
  absl::StatusOr<etcdserverpb::RangeResponse> keys = store->client().Range(prefix, EtcdPrefixEnd(prefix));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->kvs_size(), 2);
  EXPECT_EQ(keys->kvs(0).key(), store->keys().audit(4));  // each under its last record's index
  EXPECT_EQ(keys->kvs(1).key(), store->keys().audit(6));

  auto indexes = [&](uint64_t from, size_t limit) {
    std::vector<uint64_t> out;
    absl::StatusOr<std::vector<AuditRecord>> records = store->ReadAudit(from, limit);
    EXPECT_TRUE(records.ok()) << records.status();
    for (const AuditRecord& r : records.ok() ? *records : std::vector<AuditRecord>{}) out.push_back(r.index);
    return out;
  };
  EXPECT_EQ(indexes(0, 100), (std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(indexes(2, 2), (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(indexes(3, 3), (std::vector<uint64_t>{3, 4, 5}));
  EXPECT_EQ(indexes(6, 10), (std::vector<uint64_t>{6}));
  EXPECT_TRUE(indexes(7, 10).empty());

  // An origin already recorded, in the middle of a committed key: the
  // record it names, nothing new.
  absl::StatusOr<std::vector<AuditRecord>> again = store->AppendAudit(entries({"o2", "o7", "o5"}));
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), 3u);
  EXPECT_EQ((*again)[0].index, 2u);
  EXPECT_EQ((*again)[1].index, 7u);
  EXPECT_EQ((*again)[2].index, 5u);
  // And within one transaction: the second o8 is the first's record.
  absl::StatusOr<std::vector<AuditRecord>> twice = store->AppendAudit(entries({"o8", "o8"}));
  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_EQ((*twice)[0].index, 8u);
  EXPECT_EQ((*twice)[1].index, 8u);
  absl::StatusOr<AuditHead> head = store->GetAuditHead();
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->record_count, 9u);
  ExpectOneChain(*store);
}

TEST_F(EtcdHaTest, ABurnThroughOneControllerReachesTheOthersListenerInOrder) {
  Start(1);
  std::unique_ptr<EtcdStore> a = Open("a");
  std::unique_ptr<EtcdStore> b = Open("b");
  Recorder seen_by_b;
  b->SetChangeListener(&seen_by_b);
  AddDoor(*a);
  ASSERT_TRUE(a->AddSequences({NewSequence{"ssh", K({2001, 3001, 4001}), "alice", ""}}, {}).ok());
  absl::StatusOr<ConsumeResult> r = a->Consume(Report(K({2001, 3001, 4001}), "bastion1", "x"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->outcome, ConsumeOutcome::kWon);
  EXPECT_TRUE(Eventually([&] { return seen_by_b.Burnt(r->sequence_id); }));
  const std::vector<uint64_t> revisions = seen_by_b.revisions();
  EXPECT_TRUE(std::is_sorted(revisions.begin(), revisions.end()));
  b->SetChangeListener(nullptr);
}

TEST_F(EtcdHaTest, AWatchWhoseMemberDiedResumesAcrossACompaction) {
  Start(3);
  std::unique_ptr<EtcdStore> a = Open("a", {1, 2});
  std::unique_ptr<EtcdStore> b = Open("b", {0});  // b sees etcd through member 0 only
  Recorder seen_by_b;
  b->SetChangeListener(&seen_by_b);
  AddDoor(*a);
  absl::StatusOr<std::vector<Sequence>> added =
      a->AddSequences({NewSequence{"ssh", K({2002, 3002, 4002}), "alice", ""}}, {});
  ASSERT_TRUE(added.ok());
  ASSERT_TRUE(Eventually([&] { return b->GetSequence((*added)[0].id).ok(); }));
  cluster_->Kill(0);
  absl::StatusOr<ConsumeResult> r = ConsumeUntilAnswered(*a, Report(K({2002, 3002, 4002}), "bastion1", "y"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->outcome, ConsumeOutcome::kWon);
  // Compacted up to now: b resumes from history or, once its member applied
  // the compaction, from a fresh snapshot (which path depends on timing).
  absl::StatusOr<std::string> rev = cluster_->Etcdctl({"get", "/sesame/head", "-w", "fields"});
  ASSERT_TRUE(rev.ok()) << rev.status();
  const size_t at = rev->find("\"Revision\" : ");
  ASSERT_NE(at, std::string::npos) << *rev;
  const std::string revision = rev->substr(at + 13, rev->find('\n', at) - at - 13);
  ASSERT_TRUE(cluster_->Etcdctl({"compaction", revision}).ok());
  ASSERT_TRUE(cluster_->Restart(0).ok());
  EXPECT_TRUE(Eventually([&] { return seen_by_b.Burnt(r->sequence_id); }));
  absl::StatusOr<Sequence> q = b->GetSequence(r->sequence_id);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->state, SequenceState::kBurnt);
  b->SetChangeListener(nullptr);
}

TEST_F(EtcdHaTest, KnocksKeepBeingWonOnceWhileTheEtcdLeaderDies) {
  Start(3);
  std::unique_ptr<EtcdStore> store = Open("a");
  AddDoor(*store);
  constexpr int kSequences = 60;
  std::vector<NewSequence> sequences;
  for (int i = 0; i < kSequences; ++i) {
    sequences.push_back(NewSequence{"ssh", K({static_cast<uint16_t>(5000 + i), 3003, 4003}), "alice", ""});
  }
  ASSERT_TRUE(store->AddSequences(sequences, {}).ok());
  for (int i = 0; i < kSequences; ++i) {
    if (i == kSequences / 3) cluster_->Kill(cluster_->LeaderIndex());
    absl::StatusOr<ConsumeResult> r =
        ConsumeUntilAnswered(*store, Report(sequences[i].knocks, "bastion1", absl::StrCat("k", i)));
    ASSERT_TRUE(r.ok()) << "sequence " << i << ": " << r.status();
    EXPECT_EQ(r->outcome, ConsumeOutcome::kWon) << "sequence " << i;
  }
  ExpectOneChain(*store);
  EXPECT_EQ(OpenedRecords(*store), kSequences);
}

TEST_F(EtcdHaTest, WithoutQuorumTheStoreRefusesAndComesBackWithIt) {
  Start(3);
  std::unique_ptr<EtcdStore> store = Open("a");
  AddDoor(*store);
  ASSERT_TRUE(store->CheckReachable().ok());
  cluster_->Kill(1);
  cluster_->Kill(2);
  EXPECT_FALSE(store->CheckReachable().ok());
  EXPECT_FALSE(store->AddSequences({NewSequence{"ssh", K({2004, 3004, 4004}), "alice", ""}}, {}).ok());
  ASSERT_TRUE(cluster_->Restart(1).ok());
  ASSERT_TRUE(Eventually([&] { return store->CheckReachable().ok(); }));
  absl::StatusOr<std::vector<Sequence>> added =
      store->AddSequences({NewSequence{"ssh", K({2004, 3004, 4004}), "alice", ""}}, {});
  ASSERT_TRUE(added.ok()) << added.status();
  ExpectOneChain(*store);
}

TEST_F(EtcdHaTest, OneLeaderAtATimeAndAFormerLeadersWritesAreRefused) {
  Start(1);
  std::unique_ptr<EtcdStore> store = Open("a");
  AddDoor(*store);
  auto first = std::make_unique<EtcdLeader>(store->client(), store->keys().leader(), "a", absl::Seconds(3));
  ASSERT_TRUE(Eventually([&] { return first->leading(); }));
  EtcdLeader second(store->client(), store->keys().leader(), "b", absl::Seconds(3));
  absl::SleepFor(absl::Seconds(1));  // a few of its rounds
  EXPECT_FALSE(second.leading());
  const int64_t fence = first->revision();
  ASSERT_NE(fence, 0);
  {
    EtcdStore::FencedScope scope(fence);
    EXPECT_TRUE(store->AppendAudit({AuditEntry{absl::Now(), "controller", "leader.test", "controller", "", {}}}).ok());
  }
  // The first gives its lease back; the second takes over, and what the
  // first would still write under its old fence is refused.
  first.reset();
  ASSERT_TRUE(Eventually([&] { return second.leading(); }));
  {
    EtcdStore::FencedScope stale(fence);
    absl::StatusOr<std::vector<AuditRecord>> refused =
        store->AppendAudit({AuditEntry{absl::Now(), "controller", "leader.stale", "controller", "", {}}});
    EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  }
  EXPECT_TRUE(second.leading());
  ExpectOneChain(*store);
}

}  // namespace
}  // namespace sesame::controller
