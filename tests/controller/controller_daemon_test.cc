// The whole controller on loopback with real mutual TLS: an operator issues
// sequences, agents receive them, one agent's knock wins and burns the
// sequence on the others, the operator revokes the grant and the agent is
// told; the health service answers SERVING; a restart keeps everything.
#include "controller/controller_daemon.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "controller/controller_config.h"
#include "controller/service/tls_credentials.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sesame/v1/admin.grpc.pb.h"
#include "sesame/v1/agent.grpc.pb.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace sesame::controller {
namespace {

constexpr absl::Duration kWait = absl::Seconds(30);

// An agent's session collecting what the controller sends.
class Agent {
 public:
  Agent(const std::shared_ptr<grpc::Channel>& channel) : stub_(v1::AgentService::NewStub(channel)) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
    stream_ = stub_->Session(&context_);
    reader_ = std::thread([this] {
      v1::ControllerMessage m;
      while (stream_->Read(&m)) {
        absl::MutexLock lock(&mu_);
        inbox_.push_back(m);
      }
    });
  }
  ~Agent() {
    context_.TryCancel();
    reader_.join();
    (void)stream_->Finish();
  }
  bool Send(const v1::AgentMessage& m) { return stream_->Write(m); }
  std::optional<v1::ControllerMessage> Next(const std::function<bool(const v1::ControllerMessage&)>& pred) {
    const absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      {
        absl::MutexLock lock(&mu_);
        for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
          if (pred(*it)) {
            v1::ControllerMessage m = *it;
            inbox_.erase(it);
            return m;
          }
        }
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return std::nullopt;
  }

 private:
  std::unique_ptr<v1::AgentService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> stream_;
  std::thread reader_;
  absl::Mutex mu_;
  std::vector<v1::ControllerMessage> inbox_ ABSL_GUARDED_BY(mu_);
};

class ControllerDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status pki = testing::MakeTestPki(
        pki_.path(), {{"ctl", "controller", {"localhost"}, {"127.0.0.1"}},
                      {"alice", "admin"},
                      {"b1", "agent"},
                      {"b2", "agent"}});
    ASSERT_TRUE(pki.ok()) << pki;
    const std::string conf = absl::StrCat(
        "[controller]\n  Listen = 127.0.0.1:0\n  StateDir = ", state_.path(), "\n",
        "[tls]\n  CA_Cert = ", pki_.File("ca.crt"), "\n  Cert = ", pki_.File("ctl.crt"), "\n  Key = ",
        pki_.File("ctl.key"), "\n",
        "[audit]\n  Checkpoint_Interval = 1s\n",
        "[metrics]\n  File = ", state_.File("sesame.prom"), "\n",
        "[door ssh]\n  Sequence_Length = 3\n  Port_Range = 20000-30000\n  Grant_Ports = 22\n  Grant_TTL = 1h\n");
    absl::StatusOr<ControllerConfig> config = ParseControllerConfig(conf, "test.conf");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    StartDaemon();
  }

  void StartDaemon() {
    absl::StatusOr<std::unique_ptr<ControllerDaemon>> daemon = ControllerDaemon::Start(config_);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
  }

  std::shared_ptr<grpc::Channel> Channel(const std::string& name) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = MakeClientCredentials(
        TlsFiles{pki_.File("ca.crt"), pki_.File(name + ".crt"), pki_.File(name + ".key"), ""});
    EXPECT_TRUE(creds.ok()) << creds.status();
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", daemon_->port()), *creds);
  }

  static std::unique_ptr<grpc::ClientContext> Context() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return c;
  }

  static v1::AgentMessage Hello() {
    v1::AgentMessage m;
    m.set_id("hello");
    m.mutable_hello()->set_version("0.1.0");
    m.mutable_hello()->add_advertise_hosts("bastion.example.net");
    return m;
  }

  testing::TempDir pki_, state_;
  ControllerConfig config_;
  std::unique_ptr<ControllerDaemon> daemon_;
};

TEST_F(ControllerDaemonTest, IssueKnockBurnRevokeAcrossTheFleet) {
  auto admin = v1::AdminService::NewStub(Channel("alice"));
  Agent b1(Channel("b1")), b2(Channel("b2"));
  for (Agent* a : {&b1, &b2}) {
    ASSERT_TRUE(a->Send(Hello()));
    ASSERT_TRUE(a->Next([](const v1::ControllerMessage& m) { return m.has_snapshot(); }).has_value());
  }

  v1::IssueSequencesRequest issue;
  issue.set_door("ssh");
  issue.set_count(1);
  v1::IssueSequencesResponse issued;
  grpc::Status status = admin->IssueSequences(Context().get(), issue, &issued);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(issued.sequences_size(), 1);
  const uint64_t id = issued.sequences(0).id();
  EXPECT_EQ(issued.sequences(0).commands_size(), 2);  // one per bastion
  for (Agent* a : {&b1, &b2}) {
    ASSERT_TRUE(a->Next([id](const v1::ControllerMessage& m) {
      return m.has_delta() && m.delta().sequence_added().id() == id;
    }));
  }

  v1::AgentMessage knock;
  knock.set_id("k1");
  knock.mutable_knock_matched()->set_door("ssh");
  knock.mutable_knock_matched()->set_sequence_id(id);
  *knock.mutable_knock_matched()->mutable_knocks() = issued.sequences(0).knocks();
  knock.mutable_knock_matched()->set_source("203.0.113.77");
  ASSERT_TRUE(b1.Send(knock));
  std::optional<v1::ControllerMessage> verdict =
      b1.Next([](const v1::ControllerMessage& m) { return m.has_knock_verdict(); });
  ASSERT_TRUE(verdict.has_value());
  EXPECT_EQ(verdict->knock_verdict().outcome(), v1::KNOCK_OUTCOME_OPENED);
  ASSERT_TRUE(b2.Next([id](const v1::ControllerMessage& m) {
    return m.has_delta() && m.delta().sequence_burnt().sequence_id() == id;
  }));

  v1::RevokeGrantsRequest revoke;
  revoke.set_address("203.0.113.77");
  v1::RevokeGrantsResponse revoked;
  ASSERT_TRUE(admin->RevokeGrants(Context().get(), revoke, &revoked).ok());
  ASSERT_EQ(revoked.grant_ids_size(), 1);
  std::optional<v1::ControllerMessage> told = b1.Next([](const v1::ControllerMessage& m) {
    return m.has_delta() && m.delta().has_revoke();
  });
  ASSERT_TRUE(told.has_value());
  EXPECT_EQ(told->delta().revoke().grant_id(), revoked.grant_ids(0));

  v1::VerifyAuditResponse verified;
  ASSERT_TRUE(admin->VerifyAudit(Context().get(), v1::VerifyAuditRequest(), &verified).ok());
  EXPECT_TRUE(verified.ok()) << verified.problem();
}

TEST_F(ControllerDaemonTest, HealthServesAndMetricsAreWritten) {
  grpc::GenericStub generic(Channel("alice"));
  grpc::ByteBuffer request;  // HealthCheckRequest{service: ""} is empty
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer response;
  absl::Mutex mu;
  bool done = false;
  grpc::Status status;
  auto context = Context();
  generic.UnaryCall(context.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      absl::MutexLock lock(&mu);
                      status = s;
                      done = true;
                    });
  {
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(absl::Condition(&done), kWait);
    ASSERT_TRUE(done);
  }
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING

  absl::StatusOr<std::string> metrics = ReadFileToString(state_.File("sesame.prom"));
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, ::testing::HasSubstr("sesame_controller_sessions 0"));
}

TEST_F(ControllerDaemonTest, ARestartKeepsBurntSequencesBurnt) {
  auto admin = v1::AdminService::NewStub(Channel("alice"));
  v1::IssueSequencesRequest issue;
  issue.set_door("ssh");
  issue.set_count(1);
  v1::IssueSequencesResponse issued;
  ASSERT_TRUE(admin->IssueSequences(Context().get(), issue, &issued).ok());
  const uint64_t id = issued.sequences(0).id();
  {
    Agent b1(Channel("b1"));
    ASSERT_TRUE(b1.Send(Hello()));
    v1::AgentMessage knock;
    knock.set_id("k1");
    knock.mutable_knock_matched()->set_sequence_id(id);
    *knock.mutable_knock_matched()->mutable_knocks() = issued.sequences(0).knocks();
    knock.mutable_knock_matched()->set_source("203.0.113.78");
    ASSERT_TRUE(b1.Send(knock));
    std::optional<v1::ControllerMessage> verdict =
        b1.Next([](const v1::ControllerMessage& m) { return m.has_knock_verdict(); });
    ASSERT_TRUE(verdict.has_value());
    EXPECT_EQ(verdict->knock_verdict().outcome(), v1::KNOCK_OUTCOME_OPENED);
  }
  daemon_.reset();
  StartDaemon();
  Agent b2(Channel("b2"));
  ASSERT_TRUE(b2.Send(Hello()));
  std::optional<v1::ControllerMessage> snapshot =
      b2.Next([](const v1::ControllerMessage& m) { return m.has_snapshot(); });
  ASSERT_TRUE(snapshot.has_value());
  EXPECT_EQ(snapshot->snapshot().sequences_size(), 0);
  v1::AgentMessage knock;
  knock.set_id("k1");
  knock.mutable_knock_matched()->set_sequence_id(id);
  *knock.mutable_knock_matched()->mutable_knocks() = issued.sequences(0).knocks();
  knock.mutable_knock_matched()->set_source("203.0.113.79");
  ASSERT_TRUE(b2.Send(knock));
  std::optional<v1::ControllerMessage> verdict =
      b2.Next([](const v1::ControllerMessage& m) { return m.has_knock_verdict(); });
  ASSERT_TRUE(verdict.has_value());
  EXPECT_EQ(verdict->knock_verdict().outcome(), v1::KNOCK_OUTCOME_REPLAY);
  EXPECT_EQ(verdict->knock_verdict().first_agent(), "b1");
  auto admin2 = v1::AdminService::NewStub(Channel("alice"));
  v1::VerifyAuditResponse verified;
  ASSERT_TRUE(admin2->VerifyAudit(Context().get(), v1::VerifyAuditRequest(), &verified).ok());
  EXPECT_TRUE(verified.ok()) << verified.problem();
}

// A controller killed with its agents connected left them "connected" in
// the store; the next start closes those sessions and says why.
TEST_F(ControllerDaemonTest, AStartAfterACrashClosesTheSessionsItCouldNotRecord) {
  daemon_.reset();
  {
    SqliteStoreOptions options;
    options.state_dir = state_.path();
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    AgentRecord b1;
    b1.name = "b1";
    b1.version = "0.1.0";
    b1.connected = true;
    b1.connected_at = absl::Now();
    ASSERT_TRUE((*store)->PutAgent(b1, {}).ok());
  }
  StartDaemon();
  auto admin = v1::AdminService::NewStub(Channel("alice"));
  v1::GetAgentRequest get;
  get.set_name("b1");
  v1::AgentInfo info;
  ASSERT_TRUE(admin->GetAgent(Context().get(), get, &info).ok());
  EXPECT_FALSE(info.connected());
  v1::TailAuditRequest tail;
  tail.set_from_end(true);
  tail.set_from_index(20);
  auto context = Context();
  auto reader = admin->TailAudit(context.get(), tail);
  v1::AuditRecord record;
  int disconnects = 0;
  while (reader->Read(&record)) {
    if (record.what() == "agent.disconnected" && record.who() == "agent:b1") {
      ++disconnects;
      EXPECT_EQ(record.details().at("reason"), "controller restarted without a clean shutdown");
    }
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(disconnects, 1);
}

TEST(ControllerConfigTest, ParsesTheExampleShapeAndReportsErrorsWithLines) {
  const char* text =
      "# comment\n[controller]\n  Listen = [::]:7443\n  StateDir = /var/lib/x\n"
      "[tls]\n  CA_Cert = /a\n  Cert = /b\n  Key = /c\n  CRL_Directory = /d\n"
      "[audit]\n  Checkpoint_Interval = 1m\n"
      "[door openSSH]\n  Sequence_Length = 4\n  Protocols = tcp,udp\n  Port_Range = 10000-60000\n"
      "  Avoid_Ports = 22,80,443\n  Grant_Ports = 22:tcp\n  Grant_TTL = 30s\n  Fleet_Wide = no\n"
      "  Seq_Timeout = 5s\n  Offline_Reserve = 5\n";
  absl::StatusOr<ControllerConfig> c = ParseControllerConfig(text, "c.conf");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listen, "[::]:7443");
  EXPECT_EQ(c->audit_key, "/var/lib/x/audit.key");
  EXPECT_EQ(c->tls.crl_dir, "/d");
  EXPECT_FALSE(c->unknown_ca_at_call);  // strangers stop at the handshake
  ASSERT_EQ(c->doors.size(), 1u);
  EXPECT_EQ(c->doors[0].name, "openSSH");
  EXPECT_EQ(c->doors[0].policy.sequence_length, 4);
  EXPECT_EQ(c->doors[0].policy.protocols.size(), 2u);
  EXPECT_EQ(c->doors[0].policy.avoid_ports, (std::vector<uint16_t>{22, 80, 443}));
  EXPECT_EQ(c->doors[0].policy.grant_ttl, absl::Seconds(30));
  EXPECT_EQ(c->offline_reserve.at("openSSH"), 5);

  const std::pair<const char*, const char*> bad[] = {
      {"[tls]\nCA_Cert=/a\nCert=/b\nKey=/c\n[door x]\nPort_Range = 9-3\n", "c.conf:6: Port_Range"},
      {"[tls]\nCA_Cert=/a\nCert=/b\nKey=/c\n[nope]\n", "c.conf:5: unknown section"},
      {"[tls]\nCA_Cert=/a\nCert=/b\nKey=/c\n[audit]\nCheckpoint_Interval = soon\n", "c.conf:6:"},
      {"[tls]\nCA_Cert=/a\nCert=/b\nKey=/c\nUnknown_CA_Refused_At = later\n",
       "c.conf:5: Unknown_CA_Refused_At: \"later\": expected handshake or call"},
      {"[controller]\nListen = x\n", "[tls] CA_Cert is required"},
      {"[tls]\nCA_Cert=/a\nCert=/b\nKey=/c\n[door x]\nSequence_Length = 3\nPort_Range = 1000-1001\n",
       "c.conf:5: door x"},
  };
  for (const auto& [text, expected] : bad) {
    absl::StatusOr<ControllerConfig> r = ParseControllerConfig(text, "c.conf");
    EXPECT_FALSE(r.ok()) << text;
    EXPECT_THAT(r.status().message(), ::testing::HasSubstr(expected)) << text;
  }
}

TEST(ControllerConfigTest, TheShippedExampleParses) {
  const std::string path = std::string(SESAME_SOURCE_DIR) + "/deploy/examples/controller.conf";
  absl::StatusOr<std::string> text = ReadFileToString(path);
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<ControllerConfig> c = ParseControllerConfig(*text, path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sequence_lifetime, kDefaultSequenceLifetime);
  EXPECT_EQ(c->offline_reserve.at("openSSH"), 5);
}

TEST(ControllerConfigTest, SequenceLifetimeIsDaysOrADurationUpToAYearAndADay) {
  const std::string tls = "[tls]\nCA_Cert=/a\nCert=/b\nKey=/c\n";
  absl::StatusOr<ControllerConfig> c =
      ParseControllerConfig("[controller]\nSequence_Lifetime = 7d\n" + tls, "c.conf");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sequence_lifetime, absl::Hours(24 * 7));
  c = ParseControllerConfig("[controller]\nSequence_Lifetime = 90m\n" + tls, "c.conf");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sequence_lifetime, absl::Minutes(90));
  for (const char* bad : {"0d", "367d", "soon", "-1h", "d"}) {
    c = ParseControllerConfig(absl::StrCat("[controller]\nSequence_Lifetime = ", bad, "\n", tls), "c.conf");
    EXPECT_FALSE(c.ok()) << bad;
    EXPECT_THAT(c.status().message(), ::testing::HasSubstr("c.conf:2: Sequence_Lifetime")) << bad;
  }
}

TEST(ControllerConfigTest, PerAgentLimitsHaveSaneDefaultsAndAreChecked) {
  const std::string tls = "[tls]\nCA_Cert=/a\nCert=/b\nKey=/c\n";
  absl::StatusOr<ControllerConfig> defaults = ParseControllerConfig(tls, "c.conf");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->agent_limits.knock_reports.per_minute, 12);
  EXPECT_EQ(defaults->agent_limits.knock_reports.burst, 30);
  EXPECT_EQ(defaults->agent_limits.grants.per_minute, 6);
  EXPECT_EQ(defaults->agent_limits.grants.burst, 20);
  EXPECT_EQ(defaults->agent_limits.audit_window, absl::Minutes(1));

  absl::StatusOr<ControllerConfig> set = ParseControllerConfig(
      tls + "[limits]\n  Knock_Reports_Per_Minute = 4\n  Knock_Report_Burst = 8\n  Grants_Per_Minute = 2\n"
            "  Grant_Burst = 3\n  Refusal_Audit_Window = 5m\n",
      "c.conf");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->agent_limits.knock_reports.per_minute, 4);
  EXPECT_EQ(set->agent_limits.knock_reports.burst, 8);
  EXPECT_EQ(set->agent_limits.grants.per_minute, 2);
  EXPECT_EQ(set->agent_limits.grants.burst, 3);
  EXPECT_EQ(set->agent_limits.audit_window, absl::Minutes(5));

  const std::pair<const char*, const char*> bad[] = {
      {"[limits]\nKnock_Reports_Per_Minute = 0\n",
       "c.conf:6: Knock_Reports_Per_Minute: \"0\": expected a whole number"},
      {"[limits]\nGrant_Burst = lots\n", "c.conf:6: Grant_Burst"},
      {"[limits]\nRefusal_Audit_Window = 2d\n", "c.conf:6:"},
      {"[limits]\nRefusal_Audit_Window = 25h\n", "c.conf:6: Refusal_Audit_Window: expected at most 24h"},
      {"[limits]\nBurst = 3\n", "c.conf:6: unknown key \"burst\" in [limits]"},
  };
  for (const auto& [text, expected] : bad) {
    absl::StatusOr<ControllerConfig> r = ParseControllerConfig(tls + text, "c.conf");
    EXPECT_FALSE(r.ok()) << text;
    EXPECT_THAT(r.status().message(), ::testing::HasSubstr(expected)) << text;
  }
}

}  // namespace
}  // namespace sesame::controller
