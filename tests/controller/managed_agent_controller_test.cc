// The managed agent (agent/managed/) against the real controller
// (ControllerDaemon: SQLite store, fleet hub, AgentService, AdminService) on
// loopback with mutual TLS: an operator issues sequences, both bastions
// learn them, a knock on one wins and the other stops recognising it at
// once, an operator's revocation closes the door; with the controller down
// a reserve sequence admits on its own and is reported (and burnt) once the
// controller is back.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "controller/controller_config.h"
#include "controller/controller_daemon.h"
#include "gtest/gtest.h"
#include "sesame/v1/admin.grpc.pb.h"
#include "tests/agent/managed_test_support.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using namespace managed_testing;  // NOLINT: test support

const IpAddress kKnocker = *IpAddress::Parse("198.51.100.40");

std::vector<uint16_t> Ports(const v1::IssuedSequence& s) {
  std::vector<uint16_t> out;
  for (const v1::Knock& k : s.knocks()) out.push_back(static_cast<uint16_t>(k.port()));
  return out;
}

class ManagedAgentControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = MakePki(pki_dir_.path());
    StartController("127.0.0.1:0");
    port_ = controller_->port();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pki_.ca_cert;
    ssl.pem_cert_chain = *ReadFileToString(pki_.Path("alice.crt"));
    ssl.pem_private_key = *ReadFileToString(pki_.Path("alice.key"));
    admin_ = v1::AdminService::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::SslCredentials(ssl)));
  }
  void TearDown() override {
    if (controller_) controller_->Shutdown();
  }

  void StartController(const std::string& listen) {
    const std::string conf = absl::StrCat(
        "[controller]\n  Listen = ", listen, "\n  StateDir = ", controller_dir_.path(), "\n  Heartbeat_Interval = 1s\n",
        "[tls]\n  CA_Cert = ", pki_.Path("ca.crt"), "\n  Cert = ", pki_.Path("controller.crt"),
        "\n  Key = ", pki_.Path("controller.key"), "\n",
        "[door ssh]\n  Sequence_Length = 3\n  Protocols = tcp\n  Port_Range = 20000-30000\n  Grant_Ports = 22\n"
        "  Grant_TTL = 1h\n  Seq_Timeout = 10s\n");
    absl::StatusOr<controller::ControllerConfig> config = controller::ParseControllerConfig(conf, "controller.conf");
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<std::unique_ptr<controller::ControllerDaemon>> daemon = controller::ControllerDaemon::Start(*config);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    controller_ = *std::move(daemon);
  }

  std::vector<v1::IssuedSequence> Issue(int count, const std::string& reserve_agent = "") {
    v1::IssueSequencesRequest request;
    request.set_door("ssh");
    request.set_count(count);
    request.set_reserve_agent(reserve_agent);
    v1::IssueSequencesResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
    const grpc::Status s = admin_->IssueSequences(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {response.sequences().begin(), response.sequences().end()};
  }

  v1::SequenceState StateOf(uint64_t id) {
    v1::ListSequencesRequest request;
    v1::ListSequencesResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
    EXPECT_TRUE(admin_->ListSequences(&context, request, &response).ok());
    for (const v1::SequenceInfo& s : response.sequences()) {
      if (s.id() == id) return s.state();
    }
    return v1::SEQUENCE_STATE_UNSPECIFIED;
  }

  testing::TempDir pki_dir_;
  testing::TempDir controller_dir_;
  testing::TempDir agent1_dir_;
  testing::TempDir agent2_dir_;
  Pki pki_;
  std::unique_ptr<controller::ControllerDaemon> controller_;
  int port_ = 0;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  FakeFirewall firewall1_;
  FakeFirewall firewall2_;
};

TEST_F(ManagedAgentControllerTest, OneKnockWinsFleetWideAndARevocationCloses) {
  Agent b1(agent1_dir_.path(), pki_, port_, firewall1_, "", "bastion1");
  Agent b2(agent2_dir_.path(), pki_, port_, firewall2_, "", "bastion2");
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.online; }));
  ASSERT_TRUE(b2.WaitStatus([](const ManagedStatus& s) { return s.online; }));

  const std::vector<v1::IssuedSequence> issued = Issue(2);
  ASSERT_EQ(issued.size(), 2u);
  for (const v1::IssuedSequence& s : issued) {
    ASSERT_TRUE(b1.WaitLive(s.id(), true));
    ASSERT_TRUE(b2.WaitLive(s.id(), true));
  }

  // bastion1 wins; bastion2 hears of the burn and stops recognising it.
  b1.KnockOn(Ports(issued[0]), kKnocker);
  ASSERT_TRUE(firewall1_.WaitOpen("ssh", kKnocker, true));
  ASSERT_TRUE(b2.WaitLive(issued[0].id(), false));
  b2.KnockOn(Ports(issued[0]), kKnocker);
  EXPECT_FALSE(firewall2_.IsOpen("ssh", kKnocker));
  EXPECT_TRUE(b2.managed().matcher().IsLive(issued[1].id()));
  EXPECT_EQ(StateOf(issued[0].id()), v1::SEQUENCE_STATE_BURNT);
  // The grant's result reached the controller: the report left the spool.
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.confirmed >= 2 && s.spool_depth == 0; }));

  // The operator revokes every grant of the address: closed on bastion1.
  v1::RevokeGrantsRequest revoke;
  revoke.set_address(kKnocker.ToString());
  v1::RevokeGrantsResponse revoked;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
  ASSERT_TRUE(admin_->RevokeGrants(&context, revoke, &revoked).ok());
  ASSERT_EQ(revoked.grant_ids_size(), 1);
  ASSERT_TRUE(firewall1_.WaitOpen("ssh", kKnocker, false));
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.confirmed >= 3 && s.spool_depth == 0; }));
}

TEST_F(ManagedAgentControllerTest, TheOfflineReserveWorksWhileTheControllerIsDown) {
  Agent b1(agent1_dir_.path(), pki_, port_, firewall1_, "", "bastion1");
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.online; }));
  const std::vector<v1::IssuedSequence> reserve = Issue(1, "bastion1");
  ASSERT_EQ(reserve.size(), 1u);
  ASSERT_TRUE(b1.WaitLive(reserve[0].id(), true));
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.reserve_left == 1; }));

  controller_->Shutdown();
  controller_.reset();
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return !s.online; }));
  b1.KnockOn(Ports(reserve[0]), kKnocker);
  ASSERT_TRUE(firewall1_.WaitOpen("ssh", kKnocker, true));

  // Back on the same port: the offline use is reported and burns the sequence.
  StartController(absl::StrCat("127.0.0.1:", port_));
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.online && s.spool_depth == 0; }));
  EXPECT_EQ(StateOf(reserve[0].id()), v1::SEQUENCE_STATE_BURNT);
  EXPECT_EQ(b1.managed().status().offline_admitted, 1u);
  EXPECT_FALSE(b1.managed().matcher().IsLive(reserve[0].id()));
}

}  // namespace
}  // namespace sesame
