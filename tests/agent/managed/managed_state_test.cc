// ManagedState: the rules of Snapshot and Delta, and the state file.
#include "agent/managed/managed_state.h"

#include "absl/strings/match.h"
#include "agent/managed/proto_convert.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

v1::HeldSequence Seq(uint64_t id, std::vector<uint16_t> ports, bool reserve = false, const std::string& door = "ssh") {
  v1::HeldSequence s;
  s.set_id(id);
  s.set_door(door);
  s.set_reserve(reserve);
  for (uint16_t p : ports) {
    v1::Knock* k = s.add_knocks();
    k->set_port(p);
    k->set_protocol(v1::PROTOCOL_TCP);
  }
  return s;
}

v1::Grant GrantOf(uint64_t id, const std::string& address, const std::string& door = "ssh") {
  v1::Grant g;
  g.set_id(id);
  g.set_door(door);
  g.set_address(address);
  g.set_state(v1::GRANT_STATE_OPEN);
  *g.mutable_expires_at() = ToProtoTime(absl::FromUnixSeconds(4000000000));
  return g;
}

v1::Snapshot Snap(uint64_t revision) {
  v1::Snapshot s;
  s.set_revision(revision);
  v1::Door* d = s.add_doors();
  d->set_name("ssh");
  return s;
}

std::vector<uint64_t> Ids(const ManagedState& state) {
  std::vector<uint64_t> out;
  for (const auto& [id, s] : state.sequences()) out.push_back(id);
  return out;
}

TEST(ManagedStateTest, SnapshotReplacesEverything) {
  ManagedState state;
  v1::Snapshot first = Snap(10);
  *first.add_sequences() = Seq(1, {7001, 7002});
  *first.add_sequences() = Seq(2, {7003}, /*reserve=*/true);
  *first.add_grants() = GrantOf(100, "192.0.2.1");
  ManagedState::Changes c = state.ApplySnapshot(first, {});
  EXPECT_TRUE(c.doors_changed);
  EXPECT_TRUE(c.sequences_changed);
  ASSERT_EQ(c.grants_to_open.size(), 1u);
  EXPECT_EQ(state.revision(), 10u);
  EXPECT_EQ(state.reserve_left(), 1u);

  // Same content again: nothing to do.
  c = state.ApplySnapshot(first, {});
  EXPECT_FALSE(c.changed());

  v1::Snapshot second = Snap(12);
  *second.add_sequences() = Seq(2, {7003}, true);
  c = state.ApplySnapshot(second, {});
  EXPECT_TRUE(c.sequences_changed);
  EXPECT_EQ(Ids(state), (std::vector<uint64_t>{2}));
  ASSERT_EQ(c.grants_to_close.size(), 1u);  // not listed: closed
  EXPECT_EQ(c.grants_to_close[0].id(), 100u);
}

TEST(ManagedStateTest, ConsumedSequencesAreNeverBroughtBack) {
  ManagedState state;
  v1::Snapshot s = Snap(5);
  *s.add_sequences() = Seq(1, {7001});
  *s.add_sequences() = Seq(2, {7002});
  (void)state.ApplySnapshot(s, /*consumed=*/{2});
  EXPECT_EQ(Ids(state), (std::vector<uint64_t>{1}));
  v1::Delta d;
  d.set_revision(6);
  *d.mutable_sequence_added() = Seq(3, {7003});
  (void)state.ApplyDelta(d, {3});
  EXPECT_EQ(Ids(state), (std::vector<uint64_t>{1}));
}

TEST(ManagedStateTest, DeltasApplyInOrderAndStaleOnesAreIgnored) {
  ManagedState state;
  (void)state.ApplySnapshot(Snap(10), {});
  v1::Delta add;
  add.set_revision(11);
  *add.mutable_sequence_added() = Seq(1, {7001, 7002});
  EXPECT_TRUE(state.ApplyDelta(add, {}).sequences_changed);
  v1::Delta burn;
  burn.set_revision(12);
  burn.mutable_sequence_burnt()->set_sequence_id(1);
  EXPECT_TRUE(state.ApplyDelta(burn, {}).sequences_changed);
  EXPECT_TRUE(state.sequences().empty());
  // A replay of revision 11 changes nothing.
  EXPECT_FALSE(state.ApplyDelta(add, {}).changed());
  EXPECT_TRUE(state.sequences().empty());
  EXPECT_EQ(state.revision(), 12u);
}

TEST(ManagedStateTest, GrantsAndRevokes) {
  ManagedState state;
  (void)state.ApplySnapshot(Snap(1), {});
  v1::Delta grant;
  grant.set_revision(2);
  *grant.mutable_grant() = GrantOf(7, "2001:db8::1");
  ManagedState::Changes c = state.ApplyDelta(grant, {});
  ASSERT_EQ(c.grants_to_open.size(), 1u);
  // The same grant from a KnockVerdict first, then its Delta: opened once.
  EXPECT_FALSE(state.PutGrant(GrantOf(7, "2001:db8::1")));
  v1::Delta again = grant;
  again.set_revision(3);
  EXPECT_TRUE(state.ApplyDelta(again, {}).grants_to_open.empty());

  v1::Delta revoke;
  revoke.set_revision(4);
  revoke.mutable_revoke()->set_grant_id(7);
  c = state.ApplyDelta(revoke, {});
  ASSERT_EQ(c.grants_to_close.size(), 1u);
  EXPECT_EQ(c.grants_to_close[0].address(), "2001:db8::1");
  EXPECT_TRUE(state.grants().empty());

  // A revoke of a grant the agent lost still names what to close.
  revoke.set_revision(5);
  revoke.mutable_revoke()->set_grant_id(8);
  revoke.mutable_revoke()->set_address("192.0.2.9");
  revoke.mutable_revoke()->set_door("ssh");
  c = state.ApplyDelta(revoke, {});
  ASSERT_EQ(c.grants_to_close.size(), 1u);
  EXPECT_EQ(c.grants_to_close[0].address(), "192.0.2.9");
}

TEST(ManagedStateTest, RemovedDoorTakesItsSequencesAndGrants) {
  ManagedState state;
  v1::Snapshot s = Snap(1);
  v1::Door* web = s.add_doors();
  web->set_name("web");
  *s.add_sequences() = Seq(1, {7001}, false, "ssh");
  *s.add_sequences() = Seq(2, {7002}, false, "web");
  *s.add_grants() = GrantOf(9, "192.0.2.1", "web");
  (void)state.ApplySnapshot(s, {});
  v1::Delta d;
  d.set_revision(2);
  d.mutable_door_changed()->mutable_door()->set_name("web");
  d.mutable_door_changed()->set_removed(true);
  ManagedState::Changes c = state.ApplyDelta(d, {});
  EXPECT_TRUE(c.doors_changed);
  EXPECT_EQ(Ids(state), (std::vector<uint64_t>{1}));
  ASSERT_EQ(c.grants_to_close.size(), 1u);
  EXPECT_EQ(state.doors().count("web"), 0u);
}

TEST(ManagedStateTest, BadInputIsSkippedWithAnError) {
  ManagedState state;
  v1::Snapshot s = Snap(1);
  *s.add_sequences() = Seq(1, {7001});
  v1::HeldSequence no_protocol = Seq(2, {7002});
  no_protocol.mutable_knocks(0)->set_protocol(v1::PROTOCOL_UNSPECIFIED);
  *s.add_sequences() = no_protocol;
  *s.add_sequences() = Seq(3, {});  // no knocks
  *s.add_sequences() = Seq(4, {7004}, false, "bad door name");
  ManagedState::Changes c = state.ApplySnapshot(s, {});
  EXPECT_EQ(Ids(state), (std::vector<uint64_t>{1}));
  ASSERT_EQ(c.errors.size(), 3u);
  EXPECT_TRUE(absl::StrContains(c.errors[0], "no protocol")) << c.errors[0];
}

TEST(ManagedStateTest, SavesAndLoads) {
  testing::TempDir dir;
  const std::string path = dir.File("managed-state");
  auto missing = ManagedState::Load(path);
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->revision(), 0u);

  ManagedState state;
  v1::Snapshot s = Snap(42);
  *s.add_sequences() = Seq(1, {7001, 7002}, true);
  *s.add_grants() = GrantOf(3, "192.0.2.3");
  *s.mutable_heartbeat_interval() = ToProtoDuration(absl::Seconds(3));
  (void)state.ApplySnapshot(s, {});
  ASSERT_TRUE(state.Save(path).ok());
  auto loaded = ManagedState::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->revision(), 42u);
  EXPECT_EQ(Ids(*loaded), (std::vector<uint64_t>{1}));
  EXPECT_EQ(loaded->reserve_left(), 1u);
  EXPECT_EQ(loaded->grants().size(), 1u);
  EXPECT_EQ(loaded->heartbeat_interval(), absl::Seconds(3));

  ASSERT_TRUE(WriteFileAtomically(path, "sesame-managed-state 1\n\xff\xff\xff").ok());
  EXPECT_FALSE(ManagedState::Load(path).ok());
}

}  // namespace
}  // namespace sesame
