// The Store contract (controller/store/store.h), run against every
// implementation: SQLite in a temporary state directory, and etcd on real
// members (one cluster for the whole binary, a key prefix of its own per
// test). "Reopen" is what a restart is for each: the database opened again,
// or a new EtcdStore on the same prefix.
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/controller/store/store_test_util.h"
#include "tests/support/temp_dir.h"

namespace sesame::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using store_test::Ip;
using store_test::K;
using store_test::kStart;
using store_test::SshDoor;

class StoreContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    prefix_ = store_test::FreshPrefix();
    Reopen();
  }

  void Reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<Store>> store =
        store_test::OpenStoreUnderTest(GetParam(), dir_.File("state"), prefix_, &clock_);
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
  std::string prefix_;
  ManualClock clock_{kStart};
  std::unique_ptr<Store> store_;
};

INSTANTIATE_TEST_SUITE_P(Stores, StoreContractTest, ::testing::Values("sqlite", "etcd"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

class RecordingListener final : public ChangeListener {
 public:
  void OnCommitted(const std::vector<StoreChange>& changes) override {
    absl::MutexLock lock(&mu);
    for (const StoreChange& c : changes) seen.push_back(c);
  }
  std::vector<StoreChange> Seen() {
    absl::MutexLock lock(&mu);
    return seen;
  }
  absl::Mutex mu;
  std::vector<StoreChange> seen;
};

TEST_P(StoreContractTest, DoorRoundTripAndRevision) {
  EXPECT_EQ(*store_->CurrentRevision(), 0u);
  absl::StatusOr<Door> put = store_->PutDoor(SshDoor(), {});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->revision, 1u);
  absl::StatusOr<Door> got = store_->GetDoor("ssh");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, *put);
  EXPECT_EQ(*store_->CurrentRevision(), 1u);

  Door changed = SshDoor();
  changed.policy.fleet_wide = true;
  ASSERT_TRUE(store_->PutDoor(changed, {}).ok());
  ASSERT_TRUE(store_->PutDoor(SshDoor("vpn"), {}).ok());
  absl::StatusOr<std::vector<Door>> doors = store_->ListDoors();
  ASSERT_TRUE(doors.ok());
  ASSERT_THAT(*doors, SizeIs(2));
  EXPECT_EQ((*doors)[0].name, "ssh");
  EXPECT_TRUE((*doors)[0].policy.fleet_wide);
  EXPECT_EQ((*doors)[0].revision, 2u);
  EXPECT_EQ((*doors)[1].name, "vpn");
  EXPECT_TRUE(absl::IsNotFound(store_->GetDoor("nope").status()));
}

TEST_P(StoreContractTest, RejectsBadDoors) {
  Door bad = SshDoor("bad name");
  EXPECT_TRUE(absl::IsInvalidArgument(store_->PutDoor(bad, {}).status()));
  bad = SshDoor();
  bad.policy.port_first = 3000;
  bad.policy.port_last = 2000;
  EXPECT_THAT(store_->PutDoor(bad, {}).status().message(), HasSubstr("port range"));
  bad = SshDoor();
  bad.policy.port_first = bad.policy.port_last = 2000;
  bad.policy.protocols = {Protocol::kTcp};
  EXPECT_THAT(store_->PutDoor(bad, {}).status().message(), HasSubstr("fewer than"));
  EXPECT_EQ(*store_->CurrentRevision(), 0u);
}

TEST_P(StoreContractTest, SequencesRoundTripAcrossReopen) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  std::vector<Sequence> added = Add({K({7000, 8000, 9000}), K({7001, 8001, 9001}, Protocol::kUdp)});
  ASSERT_THAT(added, SizeIs(2));
  EXPECT_EQ(added[0].id, 1u);
  EXPECT_EQ(added[1].id, 2u);
  EXPECT_EQ(added[0].revision, 2u);
  EXPECT_EQ(added[1].revision, 3u);
  EXPECT_EQ(added[0].state, SequenceState::kIssued);

  Reopen();
  absl::StatusOr<Sequence> got = store_->GetSequence(2);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->door, "ssh");
  EXPECT_EQ(got->knocks, K({7001, 8001, 9001}, Protocol::kUdp));
  EXPECT_EQ(got->issued_to, "alice");
  EXPECT_EQ(got->issued_at, kStart);
  EXPECT_EQ(*store_->CurrentRevision(), 3u);
  EXPECT_TRUE(absl::IsNotFound(store_->GetSequence(3).status()));
}

TEST_P(StoreContractTest, AddSequencesRefusesDuplicatesAndPrefixesAtomically) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  Add({K({7000, 8000, 9000})});
  const uint64_t revision = *store_->CurrentRevision();
  const std::vector<std::vector<Knock>> clashes = {
      K({7000, 8000, 9000}),        // equal
      K({7000, 8000}),              // a prefix of the unused one
      K({7000, 8000, 9000, 10000}), // has the unused one as a prefix
  };
  for (const auto& clash : clashes) {
    std::vector<NewSequence> batch = {{"ssh", K({3000, 3001, 3002}), "bob", ""}, {"ssh", clash, "bob", ""}};
    absl::StatusOr<std::vector<Sequence>> r = store_->AddSequences(batch, {});
    EXPECT_TRUE(absl::IsAlreadyExists(r.status())) << KnocksToText(clash) << ": " << r.status();
  }
  // Within one batch too.
  std::vector<NewSequence> batch = {{"ssh", K({4000, 4001}), "bob", ""}, {"ssh", K({4000, 4001, 4002}), "bob", ""}};
  EXPECT_TRUE(absl::IsAlreadyExists(store_->AddSequences(batch, {}).status()));
  // Nothing of the failed batches stayed, not even their first sequence.
  EXPECT_EQ(*store_->CurrentRevision(), revision);
  EXPECT_THAT(*store_->ListSequences({}), SizeIs(1));
  // "700" is not a prefix of "7000": the check is per knock, not per byte.
  Add({K({700, 800})});
  // Unknown door.
  std::vector<NewSequence> other = {{"nope", K({5000}), "bob", ""}};
  EXPECT_TRUE(absl::IsNotFound(store_->AddSequences(other, {}).status()));
}

TEST_P(StoreContractTest, BurntSequencesFreeTheirKnocks) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  Add({K({7000, 8000, 9000})});
  EXPECT_EQ(Consume(K({7000, 8000, 9000}), "b1").outcome, ConsumeOutcome::kWon);
  // The same knocks may be issued again once burnt; consumption by knocks
  // then finds the unused one.
  std::vector<Sequence> again = Add({K({7000, 8000, 9000})});
  ASSERT_THAT(again, SizeIs(1));
  ConsumeResult r = Consume(K({7000, 8000, 9000}), "b2");
  EXPECT_EQ(r.outcome, ConsumeOutcome::kWon);
  EXPECT_EQ(r.sequence_id, again[0].id);
  EXPECT_EQ(Consume(K({7000, 8000, 9000}), "b2").outcome, ConsumeOutcome::kReplay);
}

TEST_P(StoreContractTest, ExpiredSequencesAreBurntOnceAuditedOnceAndRefused) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  RecordingListener listener;
  store_->SetChangeListener(&listener);
  auto issue = [&](std::vector<Knock> knocks, absl::Duration life, const std::string& reserve = "") {
    absl::StatusOr<std::vector<Sequence>> added =
        store_->AddSequences({NewSequence{"ssh", std::move(knocks), "alice", reserve, kStart + life}}, {});
    EXPECT_TRUE(added.ok()) << added.status();
    return added.ok() ? added->front() : Sequence{};
  };
  const Sequence soon = issue(K({7000, 8000, 9000}), absl::Minutes(1));
  const Sequence sooner = issue(K({7001, 8001, 9001}), absl::Seconds(30), "b1");
  const Sequence used = issue(K({7002, 8002, 9002}), absl::Seconds(10));
  const Sequence later = issue(K({7003, 8003, 9003}), absl::Hours(1));
  EXPECT_EQ(soon.expires_at, kStart + absl::Minutes(1));
  EXPECT_EQ(store_->GetSequence(soon.id)->expires_at, kStart + absl::Minutes(1));
  EXPECT_EQ(Consume(K({7002, 8002, 9002}), "b1").outcome, ConsumeOutcome::kWon);

  // Nothing due yet.
  absl::StatusOr<std::vector<Sequence>> none = store_->ExpireSequences(100);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(*none, SizeIs(0));

  // Knocked after its expiry but before the sweep: refused, not consumed.
  clock_.Advance(absl::Minutes(2));
  ConsumeResult late = Consume(K({7000, 8000, 9000}), "b2");
  EXPECT_EQ(late.outcome, ConsumeOutcome::kRefused);
  EXPECT_EQ(late.refused_reason, "expired");
  EXPECT_FALSE(late.grant.has_value());

  // The sweep: the two due ones, soonest first; not the used one, nor the later one.
  const uint64_t revision = *store_->CurrentRevision();
  absl::StatusOr<std::vector<Sequence>> burnt = store_->ExpireSequences(100);
  ASSERT_TRUE(burnt.ok()) << burnt.status();
  ASSERT_THAT(*burnt, SizeIs(2));
  EXPECT_EQ((*burnt)[0].id, sooner.id);
  EXPECT_EQ((*burnt)[1].id, soon.id);
  for (const Sequence& q : *burnt) {
    EXPECT_EQ(q.state, SequenceState::kBurnt);
    EXPECT_TRUE(q.expired);
    EXPECT_TRUE(q.consumed_by.empty());
    EXPECT_EQ(q.consumed_at, kStart + absl::Minutes(2));
    EXPECT_GT(q.revision, revision);
  }
  absl::StatusOr<Sequence> stored = store_->GetSequence(soon.id);
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->expired);
  EXPECT_EQ(stored->state, SequenceState::kBurnt);
  EXPECT_FALSE(store_->GetSequence(used.id)->expired);
  EXPECT_TRUE(store_->GetSequence(later.id)->unused());
  // Said once: a second sweep finds nothing.
  EXPECT_THAT(*store_->ExpireSequences(100), SizeIs(0));

  // Agents hear of both burns; the audit has one record each.
  int burns = 0;
  for (const StoreChange& c : listener.Seen()) {
    if (c.kind == StoreChange::Kind::kSequenceBurnt && c.sequence.expired) ++burns;
  }
  EXPECT_EQ(burns, 2);
  absl::StatusOr<std::vector<AuditRecord>> audit = store_->ReadAudit(0, 100);
  ASSERT_TRUE(audit.ok());
  std::vector<std::string> expired;
  for (const AuditRecord& r : *audit) {
    if (r.entry.what != "sequence.expired") continue;
    expired.push_back(r.entry.details.at("sequence"));
    EXPECT_EQ(r.entry.who, "controller");
  }
  EXPECT_THAT(expired, ::testing::ElementsAre(absl::StrCat(sooner.id), absl::StrCat(soon.id)));

  // Knocked after the burn: still refused as expired, not a replay.
  ConsumeResult after = Consume(K({7000, 8000, 9000}), "b2");
  EXPECT_EQ(after.outcome, ConsumeOutcome::kRefused);
  EXPECT_EQ(after.refused_reason, "expired");

  // Its knocks are free again.
  EXPECT_THAT(Add({K({7000, 8000, 9000})}), SizeIs(1));
  store_->SetChangeListener(nullptr);
}

TEST_P(StoreContractTest, UnclaimedReserveSequencesAreClaimedOnceEach) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  ASSERT_TRUE(store_->PutDoor(SshDoor("vpn"), {}).ok());
  auto add = [&](std::vector<Knock> knocks, const std::string& door, const std::string& to,
                 const std::string& reserve) {
    ASSERT_TRUE(store_->AddSequences({NewSequence{door, std::move(knocks), to, reserve, kStart + absl::Hours(1)}}, {})
                    .ok());
  };
  add(K({7000, 8000, 9000}), "ssh", kUnclaimedReserve, "b1");
  add(K({7001, 8001, 9001}), "vpn", kUnclaimedReserve, "b1");
  add(K({7002, 8002, 9002}), "ssh", kUnclaimedReserve, "b2");
  add(K({7003, 8003, 9003}), "ssh", "alice", "b1");  // issued by hand: not claimable
  RecordingListener listener;
  store_->SetChangeListener(&listener);
  const uint64_t revision = *store_->CurrentRevision();

  AuditEntry audit{kStart, "admin:bob", "sequences.claimed", "controller", "", {}};
  absl::StatusOr<std::vector<Sequence>> claimed = store_->ClaimSequences({"ssh", "b1", 5, "bob"}, {audit});
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_THAT(*claimed, SizeIs(1));
  EXPECT_EQ((*claimed)[0].knocks, K({7000, 8000, 9000}));
  EXPECT_EQ((*claimed)[0].issued_to, "bob");
  EXPECT_EQ(store_->GetSequence((*claimed)[0].id)->issued_to, "bob");
  EXPECT_TRUE(store_->GetSequence((*claimed)[0].id)->unused());
  // Once each; another door or any door; another bastion's stays.
  EXPECT_THAT(*store_->ClaimSequences({"ssh", "b1", 5, "carol"}, {audit}), SizeIs(0));
  absl::StatusOr<std::vector<Sequence>> any = store_->ClaimSequences({"", "b1", 5, "carol"}, {audit});
  ASSERT_TRUE(any.ok());
  ASSERT_THAT(*any, SizeIs(1));
  EXPECT_EQ((*any)[0].door, "vpn");
  // Agents hold them already: no change for them, no new revision.
  EXPECT_EQ(*store_->CurrentRevision(), revision);
  EXPECT_THAT(listener.Seen(), SizeIs(0));
  absl::StatusOr<std::vector<AuditRecord>> records = store_->ReadAudit(0, 100);
  ASSERT_TRUE(records.ok());
  int claims = 0;
  for (const AuditRecord& r : *records) {
    if (r.entry.what == "sequences.claimed") ++claims;
  }
  EXPECT_EQ(claims, 2);  // the empty claim records nothing
  EXPECT_TRUE(absl::IsInvalidArgument(store_->ClaimSequences({"ssh", "b1", 1, kUnclaimedReserve}, {}).status()));
  store_->SetChangeListener(nullptr);
}

TEST_P(StoreContractTest, ExpireSequencesDoesAtMostItsShareInOneCall) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  std::vector<NewSequence> many;
  for (int i = 0; i < 100; ++i) {
    many.push_back(NewSequence{"ssh", K({static_cast<uint16_t>(20000 + i), 8000, 9000}), "alice", "",
                               kStart + absl::Seconds(1 + i)});
  }
  ASSERT_TRUE(store_->AddSequences(many, {}).ok());
  clock_.Advance(absl::Minutes(5));
  size_t total = 0;
  for (int call = 0; call < 10; ++call) {
    absl::StatusOr<std::vector<Sequence>> burnt = store_->ExpireSequences(1000);
    ASSERT_TRUE(burnt.ok()) << burnt.status();
    EXPECT_LE(burnt->size(), kMaxExpiredPerCall);
    total += burnt->size();
    if (burnt->empty()) break;
  }
  EXPECT_EQ(total, 100u);
  SequenceFilter unused;
  unused.unused_only = true;
  EXPECT_THAT(*store_->ListSequences(unused), SizeIs(0));
}

TEST_P(StoreContractTest, ConsumeOutcomesAreAuditedWithGrant) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  std::vector<Sequence> added = Add({K({7000, 8000, 9000})});
  clock_.Advance(absl::Seconds(5));

  ConsumeResult won = Consume(K({7000, 8000, 9000}), "b1");
  EXPECT_EQ(won.outcome, ConsumeOutcome::kWon);
  EXPECT_EQ(won.sequence_id, added[0].id);
  EXPECT_EQ(won.door, "ssh");
  EXPECT_EQ(won.first_agent, "b1");
  EXPECT_EQ(won.consumed_at, kStart + absl::Seconds(5));
  ASSERT_TRUE(won.grant.has_value());
  EXPECT_EQ(won.grant->address, Ip("198.51.100.7"));
  EXPECT_EQ(won.grant->ports, K({22}));
  EXPECT_EQ(won.grant->agent, "b1");
  EXPECT_EQ(won.grant->expires_at, kStart + absl::Seconds(50));
  EXPECT_EQ(won.grant->sequence_id, added[0].id);
  EXPECT_EQ(won.grant->revision, won.revision + 1);

  ConsumeRequest by_id;
  by_id.sequence_id = added[0].id;
  by_id.knocks = K({7000, 8000, 9000});
  by_id.agent = "b2";
  by_id.source = Ip("2001:db8::1");
  absl::StatusOr<ConsumeResult> replay = store_->Consume(by_id);
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->outcome, ConsumeOutcome::kReplay);
  EXPECT_EQ(replay->first_agent, "b1");
  EXPECT_EQ(replay->first_source, Ip("198.51.100.7"));
  EXPECT_FALSE(replay->grant.has_value());

  EXPECT_EQ(Consume(K({1234, 5678, 9012}), "b1").outcome, ConsumeOutcome::kUnknown);

  absl::StatusOr<std::vector<AuditRecord>> audit = store_->ReadAudit(0, 10);
  ASSERT_TRUE(audit.ok());
  ASSERT_THAT(*audit, SizeIs(3));
  EXPECT_EQ((*audit)[0].entry.what, "knock.opened");
  EXPECT_EQ((*audit)[0].entry.who, "198.51.100.7");
  EXPECT_EQ((*audit)[0].entry.where, "agent:b1");
  EXPECT_EQ((*audit)[0].entry.details.at("grant"), absl::StrCat(won.grant->id));
  EXPECT_EQ((*audit)[0].entry.details.at("door"), "ssh");
  EXPECT_EQ((*audit)[1].entry.what, "knock.replay");
  EXPECT_EQ((*audit)[1].entry.who, "2001:db8::1");
  EXPECT_EQ((*audit)[1].entry.details.at("first_agent"), "b1");
  EXPECT_EQ((*audit)[2].entry.what, "knock.unknown");
  EXPECT_EQ(won.audit_index, 0u);
  EXPECT_EQ(replay->audit_index, 1u);

  absl::StatusOr<Sequence> burnt = store_->GetSequence(added[0].id);
  ASSERT_TRUE(burnt.ok());
  EXPECT_EQ(burnt->state, SequenceState::kBurnt);
  EXPECT_EQ(burnt->consumed_by, "b1");
  EXPECT_EQ(burnt->revision, won.revision);
}

TEST_P(StoreContractTest, ResentRequestGetsTheFirstAnswer) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  Add({K({7000, 8000, 9000})});
  ConsumeResult first = Consume(K({7000, 8000, 9000}), "b1", "msg-1");
  ASSERT_EQ(first.outcome, ConsumeOutcome::kWon);
  EXPECT_FALSE(first.repeated);
  const uint64_t revision = *store_->CurrentRevision();

  Reopen();  // the answer survives a restart
  ConsumeResult again = Consume(K({7000, 8000, 9000}), "b1", "msg-1");
  EXPECT_EQ(again.outcome, ConsumeOutcome::kWon);
  EXPECT_TRUE(again.repeated);
  EXPECT_EQ(again.sequence_id, first.sequence_id);
  EXPECT_EQ(again.audit_index, first.audit_index);
  ASSERT_TRUE(again.grant.has_value());
  EXPECT_EQ(again.grant->id, first.grant->id);
  EXPECT_EQ(*store_->CurrentRevision(), revision);
  EXPECT_THAT(*store_->ReadAudit(0, 10), SizeIs(1));
  EXPECT_THAT(*store_->ListGrants({}), SizeIs(1));

  // A new message from the same agent is a replay; the same id from another
  // agent is another message.
  EXPECT_EQ(Consume(K({7000, 8000, 9000}), "b1", "msg-2").outcome, ConsumeOutcome::kReplay);
  EXPECT_EQ(Consume(K({7000, 8000, 9000}), "b2", "msg-1").outcome, ConsumeOutcome::kReplay);
}

TEST_P(StoreContractTest, ReserveSequencesAreValidOnTheirAgentOnly) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  std::vector<Sequence> reserve = Add({K({7000, 8000, 9000})}, "b1");
  ConsumeResult elsewhere = Consume(K({7000, 8000, 9000}), "b2", "b2-1");
  EXPECT_EQ(elsewhere.outcome, ConsumeOutcome::kRefused);
  EXPECT_EQ(elsewhere.refused_reason, "other_bastion");
  EXPECT_FALSE(elsewhere.grant.has_value());
  EXPECT_TRUE(store_->GetSequence(reserve[0].id)->unused());
  // Refused, the answer is kept like any other: a resend gets it again.
  ConsumeResult resent = Consume(K({7000, 8000, 9000}), "b2", "b2-1");
  EXPECT_EQ(resent.outcome, ConsumeOutcome::kRefused);
  EXPECT_TRUE(resent.repeated);
  ASSERT_THAT(*store_->ReadAudit(0, 10), SizeIs(1));
  ConsumeRequest offline;
  offline.knocks = K({7000, 8000, 9000});
  offline.agent = "b1";
  offline.source = Ip("192.0.2.1");
  offline.offline = true;
  offline.order_grant = false;
  absl::StatusOr<ConsumeResult> home = store_->Consume(offline);
  ASSERT_TRUE(home.ok());
  EXPECT_EQ(home->outcome, ConsumeOutcome::kWon);
  EXPECT_FALSE(home->grant.has_value());
  absl::StatusOr<std::vector<AuditRecord>> audit = store_->ReadAudit(1, 1);
  ASSERT_THAT(*audit, SizeIs(1));
  EXPECT_EQ((*audit)[0].entry.details.at("offline"), "true");
}

TEST_P(StoreContractTest, FleetWideDoorGrantsEverywhere) {
  Door door = SshDoor();
  door.policy.fleet_wide = true;
  ASSERT_TRUE(store_->PutDoor(door, {}).ok());
  Add({K({7000, 8000, 9000})});
  ConsumeResult won = Consume(K({7000, 8000, 9000}), "b1");
  ASSERT_TRUE(won.grant.has_value());
  EXPECT_TRUE(won.grant->fleet_wide);
  EXPECT_EQ(won.grant->agent, "");
  GrantFilter for_b3;
  for_b3.agent = "b3";
  EXPECT_THAT(*store_->ListGrants(for_b3), SizeIs(1));
}

TEST_P(StoreContractTest, ListSequencesFilters) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  ASSERT_TRUE(store_->PutDoor(SshDoor("vpn"), {}).ok());
  Add({K({7000}), K({7001}), K({7002})});
  Add({K({7003})}, "b1");
  std::vector<NewSequence> vpn = {{"vpn", K({7004}), "carol", ""}};
  ASSERT_TRUE(store_->AddSequences(vpn, {}).ok());
  Consume(K({7000}), "b1");

  SequenceFilter unused;
  unused.unused_only = true;
  EXPECT_THAT(*store_->ListSequences(unused), SizeIs(4));
  SequenceFilter burnt;
  burnt.state = SequenceState::kBurnt;
  EXPECT_THAT(*store_->ListSequences(burnt), SizeIs(1));
  SequenceFilter door;
  door.door = "vpn";
  EXPECT_THAT(*store_->ListSequences(door), SizeIs(1));
  SequenceFilter reserve;
  reserve.reserve_agent = "b1";
  EXPECT_THAT(*store_->ListSequences(reserve), SizeIs(1));
  SequenceFilter newest;
  newest.limit = 2;
  absl::StatusOr<std::vector<Sequence>> two = store_->ListSequences(newest);
  ASSERT_THAT(*two, SizeIs(2));
  EXPECT_EQ((*two)[0].id, 5u);
  EXPECT_EQ((*two)[1].id, 4u);
}

TEST_P(StoreContractTest, AgentsAndAcknowledgementsMakeSequencesLive) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  AgentRecord a;
  a.name = "b1";
  a.version = "0.1.0";
  a.connected = true;
  a.connected_at = kStart;
  a.advertise_hosts = {"b1.example.net", "203.0.113.5"};
  ASSERT_TRUE(store_->PutAgent(a, {}).ok());
  absl::StatusOr<AgentRecord> got = store_->GetAgent("b1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, a);
  EXPECT_TRUE(absl::IsNotFound(store_->GetAgent("b9").status()));
  EXPECT_TRUE(absl::IsNotFound(store_->AckRevision("b9", 1)));

  std::vector<Sequence> s = Add({K({7000}), K({7001})});  // revisions 2, 3
  Add({K({7002})}, "b2");                                 // 4: another agent's reserve
  ASSERT_TRUE(store_->AckRevision("b1", 2).ok());
  EXPECT_EQ(store_->GetSequence(s[0].id)->state, SequenceState::kLive);
  EXPECT_EQ(store_->GetSequence(s[1].id)->state, SequenceState::kIssued);
  ASSERT_TRUE(store_->AckRevision("b1", 4).ok());
  EXPECT_EQ(store_->GetSequence(s[1].id)->state, SequenceState::kLive);
  EXPECT_EQ(store_->GetSequence(3)->state, SequenceState::kIssued);
  ASSERT_TRUE(store_->AckRevision("b1", 1).ok());  // never goes back
  EXPECT_EQ(store_->GetAgent("b1")->acked_revision, 4u);
  // Live sequences are consumable.
  EXPECT_EQ(Consume(K({7000}), "b1").outcome, ConsumeOutcome::kWon);
  EXPECT_THAT(*store_->ListAgents(), SizeIs(1));
}

TEST_P(StoreContractTest, GrantLifecycle) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  NewGrant g;
  g.door = "ssh";
  g.address = Ip("192.0.2.9");
  g.ports = K({22});
  g.agent = "b1";
  g.expires_at = kStart + absl::Minutes(5);
  g.opened_by = "admin:alice";
  AuditEntry audit{kStart, "admin:alice", "grant.opened", "controller", "", {{"address", "192.0.2.9"}}};
  absl::StatusOr<GrantRecord> opened = store_->AddGrant(g, {audit});
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->state, GrantState::kOpen);
  EXPECT_THAT(opened->agents, IsEmpty());  // nobody reported yet

  ASSERT_TRUE(store_->SetGrantAgentState(opened->id, {"b1", GrantAgentState::kApplied, "", kStart}, {}).ok());
  ASSERT_TRUE(store_->SetGrantAgentState(opened->id, {"b2", GrantAgentState::kFailed, "nft: boom", kStart}, {}).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->SetGrantAgentState(99, {"b1", GrantAgentState::kApplied, "", kStart}, {})));
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->SetGrantAgentState(opened->id, {"b1", GrantAgentState::kPending, "", kStart}, {})));
  absl::StatusOr<GrantRecord> got = store_->GetGrant(opened->id);
  ASSERT_TRUE(got.ok());
  ASSERT_THAT(got->agents, SizeIs(2));
  EXPECT_EQ(got->agents[0].state, GrantAgentState::kApplied);
  EXPECT_EQ(got->agents[1].detail, "nft: boom");

  GrantFilter by_address;
  by_address.address = Ip("192.0.2.9");
  EXPECT_THAT(*store_->ListGrants(by_address), SizeIs(1));
  // Only a revocation kills sessions.
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->CloseGrant(opened->id, GrantState::kExpired, /*kill_sessions=*/true, {audit}).status()));
  absl::StatusOr<GrantRecord> revoked =
      store_->CloseGrant(opened->id, GrantState::kRevoked, /*kill_sessions=*/true, {audit});
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(revoked->state, GrantState::kRevoked);
  EXPECT_TRUE(revoked->kill_sessions);
  EXPECT_TRUE(store_->GetGrant(opened->id)->kill_sessions);
  EXPECT_GT(revoked->revision, opened->revision);
  // Closing again changes nothing and records nothing.
  const uint64_t revision = *store_->CurrentRevision();
  EXPECT_EQ(store_->CloseGrant(opened->id, GrantState::kExpired, false, {audit})->state, GrantState::kRevoked);
  EXPECT_EQ(*store_->CurrentRevision(), revision);
  EXPECT_THAT(*store_->ListGrants(by_address), IsEmpty());
  GrantFilter all;
  all.open_only = false;
  EXPECT_THAT(*store_->ListGrants(all), SizeIs(1));
  absl::StatusOr<std::vector<AuditRecord>> records = store_->ReadAudit(0, 10);
  ASSERT_THAT(*records, SizeIs(2));
  EXPECT_EQ((*records)[1].entry.details.at("grant"), absl::StrCat(opened->id));
}

TEST_P(StoreContractTest, AuditAppendIsChainedAndIdempotentByOrigin) {
  AuditEntry a{kStart + absl::Nanoseconds(1500), "agent:b1", "scanner.seen", "agent:b1", "agent:b1/17",
               {{"source", "192.0.2.66"}}};
  absl::StatusOr<std::vector<AuditRecord>> first = store_->AppendAudit({a});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)[0].index, 0u);
  EXPECT_EQ((*first)[0].entry.time, kStart + absl::Microseconds(1));  // truncated
  AuditEntry b = a;
  b.origin = "";
  absl::StatusOr<std::vector<AuditRecord>> second = store_->AppendAudit({a, b});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)[0], (*first)[0]);  // same origin: the first record
  EXPECT_EQ((*second)[1].index, 1u);
  EXPECT_EQ((*second)[1].prev_hash, (*first)[0].hash);
  Reopen();
  absl::StatusOr<AuditHead> head = store_->GetAuditHead();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->record_count, 2u);
  EXPECT_EQ(head->hash, (*second)[1].hash);
  absl::StatusOr<std::vector<AuditRecord>> read = store_->ReadAudit(0, 10);
  ASSERT_TRUE(read.ok());
  EXPECT_THAT(*read, ElementsAre((*first)[0], (*second)[1]));
  // The chain continues after a reopen.
  absl::StatusOr<std::vector<AuditRecord>> third = store_->AppendAudit({b});
  EXPECT_EQ((*third)[0].index, 2u);
  EXPECT_EQ((*third)[0].prev_hash, (*second)[1].hash);

  AuditCheckpoint c{2, (*second)[1].hash, kStart, std::string(64, 'x')};
  ASSERT_TRUE(store_->AddCheckpoint(c).ok());
  EXPECT_THAT(*store_->ListCheckpoints(), ElementsAre(c));
}

TEST_P(StoreContractTest, FailedOperationLeavesNoTraceInItsBatch) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  // A failing AddSequences (clash) with an audit entry must neither keep its
  // first sequence nor its audit record nor advance the revision/chain.
  Add({K({7000})});
  const uint64_t revision = *store_->CurrentRevision();
  AuditEntry audit{kStart, "admin:alice", "sequences.issued", "controller", "", {}};
  std::vector<NewSequence> batch = {{"ssh", K({3000}), "bob", ""}, {"ssh", K({7000}), "bob", ""}};
  EXPECT_FALSE(store_->AddSequences(batch, {audit}).ok());
  EXPECT_EQ(*store_->CurrentRevision(), revision);
  EXPECT_EQ(store_->GetAuditHead()->record_count, 0u);
  // The next write uses the revision and chain as if nothing happened.
  std::vector<Sequence> next = Add({K({3000})});
  EXPECT_EQ(next[0].revision, revision + 1);
  ASSERT_TRUE(store_->AppendAudit({audit}).ok());
  EXPECT_EQ(store_->GetAuditHead()->record_count, 1u);
}

TEST_P(StoreContractTest, ChangesReachTheListenerInOrderBeforeTheCallerIsAnswered) {
  RecordingListener listener;
  store_->SetChangeListener(&listener);
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  std::vector<Sequence> added = Add({K({7000}), K({7001})});
  // A failed batch leaves no change behind.
  std::vector<NewSequence> clash = {{"ssh", K({7100}), "bob", ""}, {"ssh", K({7000}), "bob", ""}};
  EXPECT_FALSE(store_->AddSequences(clash, {}).ok());
  ConsumeResult won = Consume(K({7000}), "b1");
  // Already there when Consume returned.
  std::vector<StoreChange> seen = listener.Seen();
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[0].kind, StoreChange::Kind::kDoorChanged);
  EXPECT_EQ(seen[1].kind, StoreChange::Kind::kSequenceAdded);
  EXPECT_EQ(seen[1].sequence.knocks, K({7000}));
  EXPECT_EQ(seen[2].kind, StoreChange::Kind::kSequenceAdded);
  EXPECT_EQ(seen[3].kind, StoreChange::Kind::kSequenceBurnt);
  EXPECT_EQ(seen[3].sequence.id, added[0].id);
  EXPECT_EQ(seen[3].sequence.consumed_by, "b1");
  EXPECT_EQ(seen[3].revision, won.revision);
  EXPECT_EQ(seen[4].kind, StoreChange::Kind::kGrantOpened);
  EXPECT_EQ(seen[4].grant.id, won.grant->id);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GT(seen[i].revision, seen[i - 1].revision);
  // A replay changes nothing agents must know.
  Consume(K({7000}), "b2");
  EXPECT_EQ(listener.Seen().size(), 5u);
  ASSERT_TRUE(store_->CloseGrant(won.grant->id, GrantState::kRevoked, /*kill_sessions=*/true, {}).ok());
  EXPECT_EQ(listener.Seen().back().kind, StoreChange::Kind::kGrantClosed);
  EXPECT_TRUE(listener.Seen().back().grant.kill_sessions);
  store_->SetChangeListener(nullptr);
}

TEST_P(StoreContractTest, FleetStateIsWhatAgentsMayHold) {
  ASSERT_TRUE(store_->PutDoor(SshDoor(), {}).ok());
  Add({K({7000}), K({7001})});
  Add({K({7002})}, "b2");
  ConsumeResult won = Consume(K({7000}), "b1");
  absl::StatusOr<FleetState> state = store_->LoadFleetState();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->revision, *store_->CurrentRevision());
  ASSERT_EQ(state->doors.size(), 1u);
  ASSERT_EQ(state->unused_sequences.size(), 2u);
  EXPECT_EQ(state->unused_sequences[0].knocks, K({7001}));
  EXPECT_EQ(state->unused_sequences[1].reserve_agent, "b2");
  ASSERT_EQ(state->open_grants.size(), 1u);
  EXPECT_EQ(state->open_grants[0].id, won.grant->id);
}

}  // namespace
}  // namespace sesame::controller
