// The controller's counters end to end, on loopback with real mutual TLS:
// an agent reports a winning knock, a replay, a resend, an unknown sequence
// and a scanner, and sends a heartbeat with its metrics; GetStats, the
// Prometheus file, `sesamectl stats` and `sesamectl agents show` all say so.
#include <grpcpp/grpcpp.h>

#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "controller/cli/sesamectl.h"
#include "controller/controller_config.h"
#include "controller/controller_daemon.h"
#include "controller/service/controller_metrics.h"
#include "controller/service/tls_credentials.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sesame/v1/admin.grpc.pb.h"
#include "sesame/v1/agent.grpc.pb.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;
using sesame::testing::Eventually;


// An agent's session collecting what the controller sends.
class Agent {
 public:
  explicit Agent(const std::shared_ptr<grpc::Channel>& channel) : stub_(v1::AgentService::NewStub(channel)) {
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
  // The verdict answering message `id`.
  std::optional<v1::KnockVerdict> Verdict(const std::string& id) {
    std::optional<v1::KnockVerdict> found;
    Eventually([&] {
      absl::MutexLock lock(&mu_);
      for (const v1::ControllerMessage& m : inbox_) {
        if (m.has_knock_verdict() && m.knock_verdict().reply_to() == id) found = m.knock_verdict();
      }
      return found.has_value();
    });
    return found;
  }
  bool Answered(const std::string& id, size_t times) {
    return Eventually([&] {
      absl::MutexLock lock(&mu_);
      size_t n = 0;
      for (const v1::ControllerMessage& m : inbox_) n += m.has_knock_verdict() && m.knock_verdict().reply_to() == id;
      return n >= times;
    });
  }
  bool Received(const std::string& receipt_id) {
    return Eventually([&] {
      absl::MutexLock lock(&mu_);
      for (const v1::ControllerMessage& m : inbox_) {
        for (const std::string& id : m.receipt().ids()) {
          if (id == receipt_id) return true;
        }
      }
      return false;
    });
  }

 private:
  std::unique_ptr<v1::AgentService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> stream_;
  std::thread reader_;
  absl::Mutex mu_;
  std::vector<v1::ControllerMessage> inbox_ ABSL_GUARDED_BY(mu_);
};

v1::AgentMessage Knock(const std::string& id, uint64_t sequence,
                       const google::protobuf::RepeatedPtrField<v1::Knock>& knocks) {
  v1::AgentMessage m;
  m.set_id(id);
  m.mutable_knock_matched()->set_sequence_id(sequence);
  *m.mutable_knock_matched()->mutable_knocks() = knocks;
  m.mutable_knock_matched()->set_source("203.0.113.9");
  return m;
}

v1::Metric WireMetric(const std::string& name, double value, bool counter) {
  v1::Metric m;
  m.set_name(name);
  m.set_value(value);
  m.set_counter(counter);
  return m;
}

double Value(const v1::GetStatsResponse& stats, const std::string& name, const std::string& agent = "",
             const std::string& label = "", const std::string& label_value = "") {
  for (const v1::Metric& m : stats.metrics()) {
    if (m.name() != name) continue;
    if (!agent.empty() && (m.labels().count("agent") == 0 || m.labels().at("agent") != agent)) continue;
    if (!label.empty() && (m.labels().count(label) == 0 || m.labels().at(label) != label_value)) continue;
    return m.value();
  }
  return -1;
}

class ControllerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status pki = testing::MakeTestPki(
        pki_.path(), {{"ctl", "controller", {"localhost"}, {"127.0.0.1"}}, {"alice", "admin"}, {"b1", "agent"}});
    ASSERT_TRUE(pki.ok()) << pki;
    const std::string conf = absl::StrCat(
        "[controller]\n  Listen = 127.0.0.1:0\n  StateDir = ", state_.path(), "\n",
        "[tls]\n  CA_Cert = ", pki_.File("ca.crt"), "\n  Cert = ", pki_.File("ctl.crt"), "\n  Key = ",
        pki_.File("ctl.key"), "\n",
        "[metrics]\n  File = ", Prom(), "\n  Interval = 1s\n",
        "[door ssh]\n  Sequence_Length = 3\n  Port_Range = 20000-30000\n  Grant_Ports = 22\n  Grant_TTL = 1h\n");
    absl::StatusOr<ControllerConfig> config = ParseControllerConfig(conf, "test.conf");
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<std::unique_ptr<ControllerDaemon>> daemon = ControllerDaemon::Start(*config);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    admin_ = v1::AdminService::NewStub(Channel("alice"));
  }

  std::string Prom() const { return state_.File("sesame_controller.prom"); }

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

  v1::GetStatsResponse Stats() {
    v1::GetStatsResponse stats;
    const grpc::Status s = admin_->GetStats(Context().get(), v1::GetStatsRequest(), &stats);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return stats;
  }

  std::string Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {"sesamectl", "--controller", absl::StrCat("127.0.0.1:", daemon_->port()),
                                     "--ca-cert", pki_.File("ca.crt"), "--cert", pki_.File("alice.crt"),
                                     "--key", pki_.File("alice.key"), "--timeout", "20s"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<const char*> raw;
    for (const std::string& a : argv) raw.push_back(a.c_str());
    std::ostringstream out, err;
    const int code = RunSesamectl(static_cast<int>(raw.size()), raw.data(), out, err);
    EXPECT_EQ(code, kExitOk) << err.str();
    return out.str();
  }

  testing::TempDir pki_, state_;
  std::unique_ptr<ControllerDaemon> daemon_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(ControllerMetricsTest, KnockOutcomesScannersAndHeartbeatsAreCounted) {
  v1::IssueSequencesRequest issue;
  issue.set_door("ssh");
  issue.set_count(1);
  v1::IssueSequencesResponse issued;
  ASSERT_TRUE(admin_->IssueSequences(Context().get(), issue, &issued).ok());
  const uint64_t id = issued.sequences(0).id();

  Agent b1(Channel("b1"));
  v1::AgentMessage hello;
  hello.set_id("hello");
  hello.mutable_hello()->set_version("0.1.0");
  ASSERT_TRUE(b1.Send(hello));

  const auto& knocks = issued.sequences(0).knocks();
  ASSERT_TRUE(b1.Send(Knock("k1", id, knocks)));
  ASSERT_EQ(b1.Verdict("k1").value_or(v1::KnockVerdict()).outcome(), v1::KNOCK_OUTCOME_OPENED);
  ASSERT_TRUE(b1.Send(Knock("k2", id, knocks)));
  ASSERT_EQ(b1.Verdict("k2").value_or(v1::KnockVerdict()).outcome(), v1::KNOCK_OUTCOME_REPLAY);
  ASSERT_TRUE(b1.Send(Knock("k1", id, knocks)));  // a resend after a reconnect: the first answer, not counted again
  ASSERT_TRUE(b1.Answered("k1", 2));
  ASSERT_TRUE(b1.Send(Knock("k3", 987654, knocks)));
  ASSERT_EQ(b1.Verdict("k3").value_or(v1::KnockVerdict()).outcome(), v1::KNOCK_OUTCOME_UNKNOWN);
  ASSERT_TRUE(b1.Send(Knock("k4", id, {})));  // by id without the knocks
  ASSERT_EQ(b1.Verdict("k4").value_or(v1::KnockVerdict()).outcome(), v1::KNOCK_OUTCOME_REFUSED);
  v1::AgentMessage scanner;
  scanner.set_id("s1");
  scanner.mutable_scanner_seen()->set_source("198.51.100.4");
  scanner.mutable_scanner_seen()->set_distinct_ports(40);
  ASSERT_TRUE(b1.Send(scanner));
  ASSERT_TRUE(b1.Received("s1"));

  v1::AgentMessage heartbeat;
  heartbeat.set_id("h1");
  heartbeat.mutable_heartbeat()->set_reserve_left(3);
  heartbeat.mutable_heartbeat()->set_spool_depth(2);
  *heartbeat.mutable_heartbeat()->add_metrics() = WireMetric("sesame_agent_knocks_seen_total", 1234567, true);
  *heartbeat.mutable_heartbeat()->add_metrics() = WireMetric("sesame_agent_capture_drops_total", 5, true);
  *heartbeat.mutable_heartbeat()->add_metrics() = WireMetric("not a metric name", 1, false);  // dropped
  ASSERT_TRUE(b1.Send(heartbeat));

  // The heartbeat is kept for `agents show`.
  v1::AgentInfo info;
  ASSERT_TRUE(Eventually([&] {
    v1::GetAgentRequest request;
    request.set_name("b1");
    info.Clear();
    return admin_->GetAgent(Context().get(), request, &info).ok() && info.metrics_size() > 0 &&
           info.spool_depth() == 2;
  }));
  ASSERT_EQ(info.metrics_size(), 2);
  EXPECT_EQ(info.metrics(0).name(), "sesame_agent_knocks_seen_total");
  EXPECT_EQ(info.metrics(0).value(), 1234567);
  EXPECT_EQ(info.spool_depth(), 2u);
  EXPECT_EQ(info.reserve_left(), 3u);

  v1::GetStatsResponse stats;
  ASSERT_TRUE(Eventually([&] {
    stats = Stats();
    return Value(stats, "sesame_controller_agent_spool_depth", "b1") == 2;
  }));
  EXPECT_EQ(Value(stats, "sesame_controller_knocks_reported_total"), 4);
  EXPECT_EQ(Value(stats, "sesame_controller_knocks_refused_total", "", "reason", "knocks_differ"), 1);
  EXPECT_EQ(Value(stats, "sesame_controller_knocks_refused_total", "", "reason", "other_bastion"), 0);
  EXPECT_EQ(Value(stats, "sesame_controller_consumptions_won_total"), 1);
  EXPECT_EQ(Value(stats, "sesame_controller_replays_total"), 1);
  EXPECT_EQ(Value(stats, "sesame_controller_unknown_sequences_total"), 1);
  EXPECT_EQ(Value(stats, "sesame_controller_scanners_reported_total"), 1);
  EXPECT_EQ(Value(stats, "sesame_controller_sessions"), 1);
  EXPECT_EQ(Value(stats, "sesame_controller_grants_open"), 1);
  EXPECT_EQ(Value(stats, "sesame_controller_up"), 1);
  EXPECT_EQ(Value(stats, "sesame_controller_agent_connected", "b1"), 1);
  EXPECT_EQ(Value(stats, "sesame_controller_agent_reserve_left", "b1"), 3);
  EXPECT_GT(Value(stats, "sesame_controller_audit_records_total"), 4);
  EXPECT_GE(Value(stats, "sesame_controller_store_writes_total"), 5);
  EXPECT_GT(Value(stats, "sesame_controller_store_write_seconds_total"), 0);
  EXPECT_GT(Value(stats, "sesame_controller_store_write_max_seconds"), 0);
  EXPECT_GT(Value(stats, "sesame_controller_store_commits_total"), 0);
  EXPECT_EQ(Value(stats, "sesame_controller_revision"), static_cast<double>(stats.revision()));

  // The same list in the Prometheus file, once its interval has passed.
  std::string prom;
  ASSERT_TRUE(Eventually([&] {
    daemon_->Tick();
    prom = ReadFileToString(Prom()).value_or("");
    return absl::StrContains(prom, "sesame_controller_agent_spool_depth{agent=\"b1\"} 2");
  })) << prom;
  EXPECT_THAT(prom, HasSubstr("# TYPE sesame_controller_replays_total counter\nsesame_controller_replays_total 1\n"));
  EXPECT_THAT(prom, HasSubstr("# TYPE sesame_controller_sessions gauge\nsesame_controller_sessions 1\n"));
  EXPECT_THAT(prom, HasSubstr("sesame_controller_consumptions_won_total 1\n"));
  EXPECT_THAT(prom, HasSubstr("sesame_controller_up 1\n"));
  EXPECT_THAT(prom, HasSubstr("# HELP sesame_controller_store_write_seconds_total "));
  for (const v1::Metric& m : stats.metrics()) {
    EXPECT_THAT(prom, HasSubstr(absl::StrCat("\n", m.name()))) << m.name() << " is in GetStats, not in the file";
  }

  // sesamectl shows both.
  std::string out = Ctl({"agents", "show", "b1"});
  EXPECT_THAT(out, HasSubstr("metrics (last heartbeat):"));
  EXPECT_THAT(out, ::testing::ContainsRegex("sesame_agent_knocks_seen_total +1234567\n"));
  EXPECT_THAT(out, HasSubstr("sesame_agent_capture_drops_total"));
  out = Ctl({"stats"});
  EXPECT_THAT(out, HasSubstr("sesame_controller_agent_connected{agent=\"b1\"}"));
  EXPECT_THAT(out, HasSubstr("sesame_controller_replays_total"));
}

TEST_F(ControllerMetricsTest, AnAgentWithoutHeartbeatShowsNoMetrics) {
  {
    Agent b1(Channel("b1"));
    v1::AgentMessage hello;
    hello.set_id("hello");
    hello.mutable_hello()->set_version("0.1.0");
    ASSERT_TRUE(b1.Send(hello));
    ASSERT_TRUE(Eventually([&] { return Value(Stats(), "sesame_controller_sessions") == 1; }));
  }
  ASSERT_TRUE(Eventually([&] { return Value(Stats(), "sesame_controller_agent_connected", "b1") == 0; }));
  const std::string out = Ctl({"agents", "show", "b1"});
  EXPECT_THAT(out, HasSubstr("metrics:         - (none since the controller started"));
}

TEST(ControllerMetricsUnitTest, KeepsAtMostTheLimitOfAnAgentsMetrics) {
  ControllerMetrics metrics;
  google::protobuf::RepeatedPtrField<v1::Metric> many;
  for (size_t i = 0; i < kMaxAgentMetrics + 10; ++i) *many.Add() = WireMetric(absl::StrCat("m", i), 1, false);
  metrics.AgentHeartbeat("b1", many);
  EXPECT_EQ(metrics.AgentMetrics("b1").size(), kMaxAgentMetrics);
  EXPECT_TRUE(metrics.AgentMetrics("b2").empty());
}

}  // namespace
}  // namespace sesame::controller
