// The managed agent against an in-process fake AgentService over real mutual
// TLS on loopback (a throwaway CA and certificates made with the openssl
// command line): hello, snapshot, deltas and acks; reconnect after the
// controller restarts; burns; the offline reserve; the spool across agent
// restarts; revocations. The agent's grants go through the real GrantWorker
// and GrantBook into a fake firewall.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/config/config.h"
#include "agent/grants/grant_manager.h"
#include "agent/managed/backend_switch.h"
#include "agent/managed/controller_link.h"
#include "agent/managed/managed_agent.h"
#include "agent/managed/proto_convert.h"
#include "agent/managed/tls_identity.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "sesame/v1/agent.grpc.pb.h"
#include "tests/agent/managed/managed_test_support.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using namespace managed_testing;  // NOLINT: test support

const IpAddress kKnocker = *IpAddress::Parse("198.51.100.23");

class ManagedLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = MakePki(pki_dir_.path());
    server_.Start();
  }

  testing::TempDir pki_dir_;
  testing::TempDir state_dir_;
  Pki pki_;
  FakeController controller_;
  TestServer server_{controller_, pki_};
  FakeFirewall firewall_;
};

TEST_F(ManagedLinkTest, HelloSnapshotDeltasAcksHeartbeatsKnockGrantRevoke) {
  controller_.set_snapshot(SnapshotAt(10, {Seq(1, {7001, 7002, 7003})}));
  Agent agent(state_dir_.path(), pki_, server_.port(), firewall_);

  ASSERT_TRUE(controller_.WaitFor(HasAck(10)));
  std::vector<v1::AgentMessage> r = controller_.received();
  ASSERT_TRUE(r[0].has_hello());
  EXPECT_EQ(r[0].hello().last_revision(), 0u);
  EXPECT_EQ(r[0].hello().version(), "0.1.0");
  // The controller saw the agent's certificate.
  EXPECT_EQ(controller_.peer_names().at(0), "spiffe://sesame/agent/bastion1");

  v1::Delta add;
  add.set_revision(11);
  *add.mutable_sequence_added() = Seq(2, {8001, 8002, 8003});
  ASSERT_TRUE(controller_.SendDelta(add));
  ASSERT_TRUE(controller_.WaitFor(HasAck(11)));
  ASSERT_TRUE(controller_.WaitFor([](const auto& r) {
    for (const auto& m : r) {
      if (m.has_heartbeat() && m.heartbeat().revision() == 11) return true;
    }
    return false;
  }));
  ASSERT_TRUE(agent.WaitLive(2, true));

  // A knock: reported, won, the grant applied and its result reported.
  agent.KnockOn({8001, 8002, 8003}, kKnocker);
  ASSERT_TRUE(firewall_.WaitOpen("ssh", kKnocker, true));
  ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kGrantResult, 1)));
  r = controller_.received();
  const auto knocks = Of(r, v1::AgentMessage::kKnockMatched);
  ASSERT_EQ(knocks.size(), 1u);
  EXPECT_EQ(knocks[0].knock_matched().sequence_id(), 2u);
  EXPECT_EQ(knocks[0].knock_matched().door(), "ssh");
  EXPECT_EQ(knocks[0].knock_matched().source(), "198.51.100.23");
  EXPECT_FALSE(knocks[0].knock_matched().offline());
  EXPECT_EQ(knocks[0].knock_matched().knocks_size(), 3);
  const auto results = Of(r, v1::AgentMessage::kGrantResult);
  EXPECT_EQ(results[0].grant_result().grant_id(), 1002u);
  EXPECT_TRUE(results[0].grant_result().applied());
  EXPECT_FALSE(agent.managed().matcher().IsLive(2));

  // The grant's Delta after the verdict opens nothing a second time.
  v1::Delta grant;
  grant.set_revision(12);
  *grant.mutable_grant() = controller_.issued(1002);
  ASSERT_EQ(grant.grant().id(), 1002u);
  ASSERT_TRUE(controller_.SendDelta(grant));
  ASSERT_TRUE(controller_.WaitFor(HasAck(12)));
  // A revoke closes now.
  v1::Delta revoke;
  revoke.set_revision(13);
  revoke.mutable_revoke()->set_grant_id(1002);
  ASSERT_TRUE(controller_.SendDelta(revoke));
  ASSERT_TRUE(firewall_.WaitOpen("ssh", kKnocker, false));
  ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kRevokeApplied, 1)));
  const auto revoked = Of(controller_.received(), v1::AgentMessage::kRevokeApplied);
  EXPECT_EQ(revoked[0].revoke_applied().grant_id(), 1002u);
  EXPECT_FALSE(revoked[0].revoke_applied().expired());
  EXPECT_EQ(revoked[0].revoke_applied().error(), "");
  // Receipts and the verdict emptied the spool.
  EXPECT_TRUE(agent.WaitStatus([](const ManagedStatus& s) {
    return s.confirmed == 3 && s.spool_depth == 0 && s.revision == 13;
  }));
  EXPECT_EQ(Of(controller_.received(), v1::AgentMessage::kGrantResult).size(), 1u);
}

TEST_F(ManagedLinkTest, ABurnDeltaStopsAdmittingAtOnceAndTheRestIsAReplay) {
  controller_.set_snapshot(SnapshotAt(10, {Seq(1, {7001, 7002, 7003}), Seq(3, {9001, 9002})}));
  Agent agent(state_dir_.path(), pki_, server_.port(), firewall_);
  ASSERT_TRUE(controller_.WaitFor(HasAck(10)));
  ASSERT_TRUE(agent.WaitLive(1, true));

  agent.KnockOn({7001, 7002}, kKnocker);  // two knocks in
  controller_.MarkBurnt(1);
  v1::Delta burn;
  burn.set_revision(11);
  burn.mutable_sequence_burnt()->set_sequence_id(1);
  burn.mutable_sequence_burnt()->set_door("ssh");
  ASSERT_TRUE(controller_.SendDelta(burn));
  // Acknowledged means applied: the very next packet cannot complete it as
  // live; it completes as a replay, reported for the controller to audit.
  ASSERT_TRUE(controller_.WaitFor(HasAck(11)));
  agent.KnockOn({7003}, kKnocker);
  EXPECT_FALSE(agent.managed().matcher().IsLive(1));
  EXPECT_TRUE(agent.managed().matcher().IsSpent(1));
  EXPECT_EQ(agent.managed().matcher().replays(), 1u);
  ASSERT_TRUE(agent.WaitStatus([](const ManagedStatus& s) { return s.replays == 1; }));
  EXPECT_FALSE(firewall_.IsOpen("ssh", kKnocker));
  // Reports are in order: the replay, then sequence 3, which opens.
  agent.KnockOn({9001, 9002}, kKnocker);
  ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kKnockMatched, 2)));
  const auto knocks = Of(controller_.received(), v1::AgentMessage::kKnockMatched);
  ASSERT_EQ(knocks.size(), 2u);
  EXPECT_EQ(knocks[0].knock_matched().sequence_id(), 1u);
  EXPECT_FALSE(knocks[0].knock_matched().offline());
  EXPECT_EQ(knocks[1].knock_matched().sequence_id(), 3u);
  ASSERT_TRUE(firewall_.WaitOpen("ssh", kKnocker, true));
}

TEST_F(ManagedLinkTest, ReconnectsAfterTheControllerRestarts) {
  controller_.set_snapshot(SnapshotAt(10, {Seq(1, {7001, 7002})}));
  Agent agent(state_dir_.path(), pki_, server_.port(), firewall_);
  ASSERT_TRUE(controller_.WaitFor(HasAck(10)));

  server_.Stop();
  ASSERT_TRUE(agent.WaitStatus([](const ManagedStatus& s) { return !s.online; }));
  controller_.set_snapshot(SnapshotAt(20, {Seq(1, {7001, 7002}), Seq(5, {7501, 7502})}));
  server_.Start();
  ASSERT_TRUE(controller_.WaitFor(HasAck(20)));
  const auto hellos = Of(controller_.received(), v1::AgentMessage::kHello);
  ASSERT_EQ(hellos.size(), 2u);
  EXPECT_EQ(hellos[1].hello().last_revision(), 10u);
  ASSERT_EQ(hellos[1].hello().sequence_ids_size(), 1);
  EXPECT_EQ(hellos[1].hello().sequence_ids(0), 1u);
  ASSERT_TRUE(agent.WaitLive(5, true));
  EXPECT_GE(agent.managed().status().link.sessions, 2u);
}

TEST_F(ManagedLinkTest, OfflineReserveAdmitsWhileTheControllerIsDownAndReportsLater) {
  controller_.set_snapshot(SnapshotAt(10, {Seq(1, {7001, 7002}), Seq(50, {7601, 7602, 7603}, /*reserve=*/true)}));
  Agent agent(state_dir_.path(), pki_, server_.port(), firewall_);
  ASSERT_TRUE(controller_.WaitFor(HasAck(10)));
  ASSERT_TRUE(agent.WaitLive(50, true));

  server_.Stop();
  ASSERT_TRUE(agent.WaitStatus([](const ManagedStatus& s) { return !s.online; }));
  // A fleet sequence is not admitted offline; the reserve one is.
  const IpAddress other = *IpAddress::Parse("2001:db8::77");
  agent.KnockOn({7001, 7002}, other);
  agent.KnockOn({7601, 7602, 7603}, kKnocker);
  ASSERT_TRUE(firewall_.WaitOpen("ssh", kKnocker, true));
  EXPECT_FALSE(firewall_.IsOpen("ssh", other));
  ASSERT_TRUE(agent.WaitStatus([](const ManagedStatus& s) {
    return s.offline_admitted == 1 && s.reserve_left == 0 && s.spool_depth >= 2;
  }));

  // Back: the controller hears of both, the offline one flagged.
  controller_.set_snapshot(SnapshotAt(11, {Seq(1, {7001, 7002}), Seq(50, {7601, 7602, 7603}, true)}));
  server_.Start();
  ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kKnockMatched, 2)));
  ASSERT_TRUE(controller_.WaitFor(HasAck(11)));
  const auto r = controller_.received();
  const auto hellos = Of(r, v1::AgentMessage::kHello);
  ASSERT_EQ(hellos.size(), 2u);
  EXPECT_EQ(hellos[1].hello().sequence_ids_size(), 0);  // both spent
  EXPECT_GE(hellos[1].hello().spool_depth(), 2u);
  const auto knocks = Of(r, v1::AgentMessage::kKnockMatched);
  ASSERT_EQ(knocks.size(), 2u);
  EXPECT_EQ(knocks[0].knock_matched().sequence_id(), 1u);
  EXPECT_FALSE(knocks[0].knock_matched().offline());
  EXPECT_EQ(knocks[1].knock_matched().sequence_id(), 50u);
  EXPECT_TRUE(knocks[1].knock_matched().offline());
  // The stale snapshot (it still lists 1 and 50) did not bring them back.
  EXPECT_FALSE(agent.managed().matcher().IsLive(50));
  EXPECT_FALSE(agent.managed().matcher().IsLive(1));
  // The fleet sequence won late: its grant opens now.
  ASSERT_TRUE(firewall_.WaitOpen("ssh", other, true));
}

TEST_F(ManagedLinkTest, AReplayIsNeverAdmittedOfflineNotEvenFromTheReserve) {
  controller_.set_snapshot(SnapshotAt(10, {Seq(50, {7601, 7602, 7603}, /*reserve=*/true)}));
  Agent agent(state_dir_.path(), pki_, server_.port(), firewall_);
  ASSERT_TRUE(controller_.WaitFor(HasAck(10)));
  ASSERT_TRUE(agent.WaitLive(50, true));

  server_.Stop();
  ASSERT_TRUE(agent.WaitStatus([](const ManagedStatus& s) { return !s.online; }));
  agent.KnockOn({7601, 7602, 7603}, kKnocker);
  ASSERT_TRUE(firewall_.WaitOpen("ssh", kKnocker, true));
  // The same reserve sequence again, from elsewhere: spooled, not admitted.
  const IpAddress other = *IpAddress::Parse("2001:db8::77");
  agent.KnockOn({7601, 7602, 7603}, other);
  ASSERT_TRUE(agent.WaitStatus([](const ManagedStatus& s) { return s.spool_depth >= 2; }));
  EXPECT_FALSE(firewall_.IsOpen("ssh", other));
  EXPECT_EQ(agent.managed().status().offline_admitted, 1u);
  EXPECT_EQ(agent.managed().matcher().replays(), 1u);

  // Back: the controller hears of the admission, then of the replay.
  controller_.set_snapshot(SnapshotAt(11, {}));
  server_.Start();
  ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kKnockMatched, 2)));
  const auto knocks = Of(controller_.received(), v1::AgentMessage::kKnockMatched);
  ASSERT_EQ(knocks.size(), 2u);
  EXPECT_TRUE(knocks[0].knock_matched().offline());
  EXPECT_EQ(knocks[0].knock_matched().source(), kKnocker.ToString());
  EXPECT_EQ(knocks[1].knock_matched().sequence_id(), 50u);
  EXPECT_FALSE(knocks[1].knock_matched().offline());  // the agent opened nothing for it
  EXPECT_EQ(knocks[1].knock_matched().source(), other.ToString());
  ASSERT_TRUE(agent.WaitStatus([](const ManagedStatus& s) { return s.replays == 1 && s.spool_depth == 0; }));
  EXPECT_FALSE(firewall_.IsOpen("ssh", other));
}

TEST_F(ManagedLinkTest, TheSpoolSurvivesAnAgentRestartWithoutDuplicates) {
  controller_.set_snapshot(SnapshotAt(10, {Seq(7, {7701, 7702})}));
  controller_.set_answer_knocks(false);  // the report stays unconfirmed
  std::string id;
  {
    Agent agent(state_dir_.path(), pki_, server_.port(), firewall_);
    ASSERT_TRUE(controller_.WaitFor(HasAck(10)));
    ASSERT_TRUE(agent.WaitLive(7, true));
    agent.KnockOn({7701, 7702}, kKnocker);
    ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kKnockMatched, 1)));
    id = Of(controller_.received(), v1::AgentMessage::kKnockMatched)[0].id();
  }  // the agent stops (a crash would leave the same spool: it was synced)

  controller_.set_answer_knocks(true);
  {
    Agent agent(state_dir_.path(), pki_, server_.port(), firewall_);
    // Resent with the same id, after the new Hello; the spent sequence stays
    // spent although the (stale) snapshot lists it.
    ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kKnockMatched, 2)));
    ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kAck, 2)));  // the snapshot applied
    ASSERT_TRUE(firewall_.WaitOpen("ssh", kKnocker, true));
    // Confirmed: the knock by its verdict, the grant's result by a receipt.
    EXPECT_TRUE(agent.WaitStatus([](const ManagedStatus& s) { return s.confirmed == 2 && s.spool_depth == 0; }));
    agent.managed().matcher().Tick(absl::Now());
    EXPECT_FALSE(agent.managed().matcher().IsLive(7));
  }
  {
    Agent agent(state_dir_.path(), pki_, server_.port(), firewall_);
    ASSERT_TRUE(controller_.WaitForSessions(3));
    ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kAck, 3)));
  }
  const auto r = controller_.received();
  const auto knocks = Of(r, v1::AgentMessage::kKnockMatched);
  ASSERT_EQ(knocks.size(), 2u);  // once, then once again with the same id; never a third time
  EXPECT_EQ(knocks[0].id(), id);
  EXPECT_EQ(knocks[1].id(), id);
  const auto hellos = Of(r, v1::AgentMessage::kHello);
  ASSERT_EQ(hellos.size(), 3u);
  EXPECT_EQ(hellos[1].hello().spool_depth(), 1u);
  EXPECT_EQ(hellos[2].hello().spool_depth(), 0u);
  EXPECT_EQ(hellos[2].hello().last_revision(), 10u);
  // Grant results are reported once per grant.
  EXPECT_EQ(Of(r, v1::AgentMessage::kGrantResult).size(), 1u);
}

// Crash images. While a reserve sequence is used online (the report, the
// verdict confirming it, the state saved without it), the agent's files are
// copied over and over: a process killed at that instant leaves exactly
// such files (the page cache outlives it; the spool is copied before the
// state, and a later state only holds fewer sequences). An agent started
// from any image taken once the report was in the spool, with the
// controller down, must not hold the sequence as live: it would admit it
// offline a second time. (It did from an image taken between the
// confirmation, which dropped the report from the spool, and the next save
// of the state.)
TEST_F(ManagedLinkTest, AReserveUsedOnlineNeverComesBackWhateverInstantTheAgentDies) {
  controller_.set_snapshot(SnapshotAt(10, {Seq(50, {7601, 7602, 7603}, /*reserve=*/true)}));
  testing::TempDir images;
  struct Image {
    std::string dir;
    uintmax_t spool_bytes = 0;
  };
  std::vector<Image> taken;
  uintmax_t spool_before = 0;
  const std::string from = state_dir_.path() + "/managed";
  {
    Agent agent(state_dir_.path(), pki_, server_.port(), firewall_);
    ASSERT_TRUE(controller_.WaitFor(HasAck(10)));
    ASSERT_TRUE(agent.WaitLive(50, true));
    ASSERT_TRUE(agent.WaitStatus([](const ManagedStatus& s) { return s.spool_depth == 0; }));
    absl::SleepFor(absl::Milliseconds(200));  // the state saved at the snapshot
    spool_before = std::filesystem::file_size(from + "/spool");
    std::atomic<bool> stop{false};
    std::atomic<int> after_spooled{0};  // images taken once the report was in the spool
    std::thread copier([&] {
      for (int i = 0; i < 2000 && !stop.load(); ++i) {  // bounded: at most 2,000 images
        Image image{absl::StrCat(images.path(), "/", i)};
        std::error_code ec;
        std::filesystem::create_directories(image.dir + "/managed", ec);
        std::filesystem::copy_file(from + "/spool", image.dir + "/managed/spool", ec);
        std::filesystem::copy_file(from + "/managed-state", image.dir + "/managed/managed-state", ec);
        image.spool_bytes = std::filesystem::file_size(image.dir + "/managed/spool", ec);
        if (image.spool_bytes > spool_before) ++after_spooled;
        taken.push_back(image);
        absl::SleepFor(absl::Microseconds(300));
      }
    });
    agent.KnockOn({7601, 7602, 7603}, kKnocker);
    const bool open = firewall_.WaitOpen("ssh", kKnocker, true);
    // Well past the next save, which lets the confirmed report go, and
    // enough images of the agent after the report was spooled (a loaded
    // machine takes fewer a millisecond).
    const bool drained = agent.WaitStatus([](const ManagedStatus& s) { return s.spool_depth == 0; });
    absl::SleepFor(absl::Milliseconds(100));
    const absl::Time patience = absl::Now() + absl::Seconds(30);
    while (after_spooled.load() < 20 && absl::Now() < patience) absl::SleepFor(absl::Milliseconds(10));
    stop = true;
    copier.join();
    ASSERT_TRUE(open);
    ASSERT_TRUE(drained);
  }
  server_.Stop();  // the images' agents find no controller

  int checked = 0;
  for (const Image& image : taken) {
    // The spool had not grown yet: the report of the use was not written,
    // the sequence is still rightly live there.
    if (image.spool_bytes <= spool_before) continue;
    FakeFirewall firewall;
    Agent agent(image.dir, pki_, server_.port(), firewall);
    agent.managed().matcher().Tick(absl::Now());  // adopts what it published at start
    EXPECT_FALSE(agent.managed().matcher().IsLive(50)) << "image " << image.dir;
    ++checked;
  }
  EXPECT_GE(checked, 20) << "too few images after the report was spooled";
}

// 300 spoofed scanners (each knocks a sequence's first port, then 40
// distinct wrong ports): the controller hears of the first one alone, at
// once, and of the other 299 in one aggregate when the reporting window
// ends; both are confirmed and leave the spool.
//
// 40 wrong ports, not just over ScanThreshold (12): the matcher counts
// distinct ports in a 64-bit sketch keyed at random per run, and 13 ports
// share a bit often enough (about one run in two) that every source, all
// sending the same ports, stayed below the threshold. 40 ports fill at least
// 12 bits in any run (the chance they do not is below 10^-9).
TEST_F(ManagedLinkTest, AFloodOfScannersReachesTheControllerAsTwoNotices) {
  controller_.set_snapshot(SnapshotAt(10, {Seq(1, {7001, 7002, 7003})}));
  Agent agent(state_dir_.path(), pki_, server_.port(), firewall_, "ScanReportWindow = 1s\n");
  ASSERT_TRUE(controller_.WaitFor(HasAck(10)));
  ASSERT_TRUE(agent.WaitLive(1, true));

  const absl::Time t0 = absl::Now();  // one capture time: one window, however slow this machine
  for (uint32_t i = 1; i <= 300; ++i) {
    Packet p;
    p.time = t0;
    p.source = IpAddress::V4(0xC6120000u + i);  // 198.18.x.y
    p.destination = *IpAddress::Parse("10.0.0.1");
    p.protocol = Protocol::kTcp;
    p.source_port = 40000;
    p.tcp_flags = tcp_flags::kSyn;
    p.destination_port = 7001;
    agent.managed().matcher().OnPacket(p);
    for (uint16_t port = 20001; port <= 20040; ++port) {
      p.destination_port = port;
      agent.managed().matcher().OnPacket(p);
    }
  }
  const MatcherCounters mc = agent.managed().matcher().counters();
  ASSERT_EQ(mc.scanners, 300u) << "packets=" << mc.packets << " knocks=" << mc.knocks << " resets=" << mc.resets
                               << " evictions=" << mc.evictions << " live=" << agent.managed().matcher().live()
                               << " capacity=" << agent.managed().matcher().capacity();
  ASSERT_TRUE(controller_.WaitFor(Count(v1::AgentMessage::kScannerSeen, 2)));
  const auto notices = Of(controller_.received(), v1::AgentMessage::kScannerSeen);
  ASSERT_EQ(notices.size(), 2u);
  EXPECT_FALSE(notices[0].scanner_seen().has_aggregate());
  EXPECT_EQ(notices[0].scanner_seen().source(), "198.18.0.1");
  ASSERT_TRUE(notices[1].scanner_seen().has_aggregate());
  EXPECT_EQ(notices[1].scanner_seen().aggregate().sources(), 299u);
  EXPECT_EQ(notices[1].scanner_seen().aggregate().sample_size(), 8);
  EXPECT_TRUE(agent.WaitStatus([](const ManagedStatus& s) {
    return s.spool_depth == 0 && s.scanner_notices.alone == 1 && s.scanner_notices.aggregates == 1;
  }));
}

TEST_F(ManagedLinkTest, ASecondAddressIsTriedWhenTheFirstIsDown) {
  controller_.set_snapshot(SnapshotAt(3, {}));
  // Nothing listens on port 1 of loopback.
  Agent agent(state_dir_.path(), pki_, 1, firewall_,
              absl::StrCat("Controller = 127.0.0.1:1, 127.0.0.1:", server_.port(), "\n"));
  ASSERT_TRUE(controller_.WaitFor(HasAck(3)));
  EXPECT_GE(agent.managed().status().link.connect_failures, 1u);
}

TEST(ManagedTlsTest, TheCertificateNamesTheAgent) {
  testing::TempDir dir;
  Pki pki = MakePki(dir.path());
  ManagedOptions options;
  options.ca_cert = pki.Path("ca.crt");
  options.cert = pki.Path("bastion1.crt");
  options.key = pki.Path("bastion1.key");
  auto identity = LoadTlsIdentity(options);
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(identity->agent_name, "bastion1");

  options.agent_name = "bastion2";
  auto wrong = LoadTlsIdentity(options);
  ASSERT_FALSE(wrong.ok());
  EXPECT_TRUE(absl::StrContains(wrong.status().message(), "AgentName is \"bastion2\" but the certificate"))
      << wrong.status();

  options.agent_name.clear();
  options.key = pki.Path("controller.key");
  auto mismatch = LoadTlsIdentity(options);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_TRUE(absl::StrContains(mismatch.status().message(), "does not belong to the certificate")) << mismatch.status();

  options.key = pki.Path("missing.key");
  EXPECT_FALSE(LoadTlsIdentity(options).ok());

  // Without a spiffe URI, the CN names the agent.
  testing::TestLeaf plain("plain", "");
  plain.cn = "bastion9";
  ASSERT_TRUE(testing::IssueTestLeaf(dir.path(), plain).ok());
  auto cn = AgentNameFromCertificate(*ReadFileToString(pki.Path("plain.crt")));
  ASSERT_TRUE(cn.ok());
  EXPECT_EQ(*cn, "bastion9");
}

TEST_F(ManagedLinkTest, AControllerSignedByAnotherCaIsRefused) {
  testing::TempDir other_dir;
  ASSERT_TRUE(testing::MakeTestCa(other_dir.path(), "ca").ok());
  // The agent trusts another CA than the one that signed the controller.
  ASSERT_TRUE(WriteFileAtomically(pki_.Path("other-ca.crt"), *ReadFileToString(other_dir.path() + "/ca.crt")).ok());
  Agent agent(state_dir_.path(), pki_, server_.port(), firewall_,
              absl::StrCat("CaCert = ", pki_.Path("other-ca.crt"), "\n"));
  ASSERT_TRUE(agent.WaitStatus([](const ManagedStatus& s) { return s.link.connect_failures >= 2; }));
  EXPECT_EQ(agent.managed().status().link.sessions, 0u);
  EXPECT_EQ(controller_.sessions(), 0);
}

}  // namespace
}  // namespace sesame
