// The managed agent (agent/managed/) against the real controller
// (ControllerDaemon: SQLite store, fleet hub, AgentService, AdminService) on
// loopback with mutual TLS: an operator issues sequences, both bastions
// learn them, a knock on one wins and the other stops recognising it at
// once, an operator's revocation closes the door; with the controller down
// a reserve sequence admits on its own and is reported (and burnt) once the
// controller is back. A bastion cut off from the controller while a
// sequence is burnt elsewhere no longer recognises it once it is back. A
// fresh bastion of a fleet holding 200,000 sequences gets them all (a
// snapshot in parts, far past what one gRPC message may carry). A spool of
// 10,000 reports left by a long outage drains in one session, each report
// in the audit exactly once.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/managed/proto_convert.h"
#include "controller/controller_config.h"
#include "controller/controller_daemon.h"
#include "gtest/gtest.h"
#include "sesame/v1/admin.grpc.pb.h"
#include "tests/agent/managed/managed_test_support.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using namespace managed_testing;  // NOLINT: test support

const IpAddress kKnocker = *IpAddress::Parse("198.51.100.40");

// A TCP forwarder on loopback between one agent and the controller that
// the test can cut (every connection closed, new ones closed as soon as
// they are accepted) and restore: a network partition of one bastion while
// the others stay connected. TLS passes through untouched.
class Partition {
 public:
  explicit Partition(int upstream_port) : upstream_port_(upstream_port) {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = Loopback(0);
    socklen_t size = sizeof(a);
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(listener_, 16), 0);
    EXPECT_EQ(getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &size), 0);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(pipe2(wake_, O_CLOEXEC | O_NONBLOCK), 0);
    thread_ = std::thread([this] { Run(); });
  }
  ~Partition() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    Wake();
    thread_.join();
    for (const auto& [a, b] : pairs_) {
      close(a);
      close(b);
    }
    close(listener_);
    close(wake_[0]);
    close(wake_[1]);
  }

  int port() const { return port_; }

  // Returns once every forwarded connection is closed.
  void Cut() {
    absl::MutexLock lock(&mu_);
    cut_ = true;
    const uint64_t target = ++cut_requests_;
    Wake();
    auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return cuts_done_ >= target; };
    mu_.Await(absl::Condition(&done));
  }
  void Restore() {
    absl::MutexLock lock(&mu_);
    cut_ = false;
  }

 private:
  static sockaddr_in Loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }
  void Wake() { (void)!write(wake_[1], "x", 1); }

  void Run() {
    for (;;) {
      bool cut;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        cut = cut_;
        if (cuts_done_ < cut_requests_) {
          for (const auto& [a, b] : pairs_) {
            close(a);
            close(b);
          }
          pairs_.clear();
          cuts_done_ = cut_requests_;
        }
      }
      std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {listener_, POLLIN, 0}};
      for (const auto& [a, b] : pairs_) {
        fds.push_back({a, POLLIN, 0});
        fds.push_back({b, POLLIN, 0});
      }
      if (poll(fds.data(), fds.size(), 1000) <= 0) continue;
      if (fds[0].revents != 0) {
        char drain[64];
        (void)!read(wake_[0], drain, sizeof(drain));
      }
      if (fds[1].revents != 0) Accept(cut);
      std::vector<size_t> broken;
      for (size_t i = 0; i < pairs_.size(); ++i) {
        const auto [a, b] = pairs_[i];
        const bool ok = (fds[2 + 2 * i].revents == 0 || Forward(a, b)) &&
                        (fds[3 + 2 * i].revents == 0 || Forward(b, a));
        if (!ok) broken.push_back(i);
      }
      for (auto it = broken.rbegin(); it != broken.rend(); ++it) {
        close(pairs_[*it].first);
        close(pairs_[*it].second);
        pairs_.erase(pairs_.begin() + static_cast<std::ptrdiff_t>(*it));
      }
    }
  }

  void Accept(bool cut) {
    const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    if (cut) {
      close(client);
      return;
    }
    const int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in a = Loopback(upstream_port_);
    if (connect(upstream, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) != 0) {
      close(client);
      close(upstream);
      return;
    }
    pairs_.emplace_back(client, upstream);
  }

  // Copies what `from` has to `to`; false when either side is done.
  static bool Forward(int from, int to) {
    char buf[16384];
    const ssize_t n = read(from, buf, sizeof(buf));
    if (n <= 0) return false;
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = write(to, buf + done, static_cast<size_t>(n - done));
      if (w <= 0) return false;
      done += w;
    }
    return true;
  }

  const int upstream_port_;
  int listener_ = -1;
  int port_ = 0;
  int wake_[2] = {-1, -1};
  std::vector<std::pair<int, int>> pairs_;  // (agent side, controller side); the thread's
  std::thread thread_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool cut_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t cut_requests_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t cuts_done_ ABSL_GUARDED_BY(mu_) = 0;
};

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
        "  Grant_TTL = 1h\n  Seq_Timeout = 10s\n", door_extra_);
    absl::StatusOr<controller::ControllerConfig> config = controller::ParseControllerConfig(conf, "controller.conf");
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<std::unique_ptr<controller::ControllerDaemon>> daemon = controller::ControllerDaemon::Start(*config);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    controller_ = *std::move(daemon);
  }

  std::string door_extra_;  // more keys of [door ssh]

  std::vector<v1::IssuedSequence> Issue(int count, const std::string& reserve_agent = "",
                                        absl::Duration lifetime = absl::ZeroDuration()) {
    v1::IssueSequencesRequest request;
    request.set_door("ssh");
    request.set_count(count);
    request.set_reserve_agent(reserve_agent);
    if (lifetime > absl::ZeroDuration()) *request.mutable_expires_at() = ToProtoTime(absl::Now() + lifetime);
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

TEST_F(ManagedAgentControllerTest, AFreshAgentOfALargeFleetReceivesEverySequence) {
  // 200,000 unused sequences (about 8 MB on the wire: twice gRPC's limit
  // for one message), issued before the bastion ever connects.
  constexpr int kSequences = 200000;
  uint64_t first = 0, last = 0;
  std::vector<uint16_t> last_ports;
  for (int issued = 0; issued < kSequences; issued += 1000) {
    const std::vector<v1::IssuedSequence> batch = Issue(1000);
    ASSERT_EQ(batch.size(), 1000u);
    if (first == 0) first = batch.front().id();
    last = batch.back().id();
    last_ports = Ports(batch.back());
  }
  Agent b1(agent1_dir_.path(), pki_, port_, firewall1_, "", "bastion1");
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.online && s.sequences == kSequences; }))
      << b1.managed().status().sequences << " held; last error: " << b1.managed().status().last_error;
  ASSERT_TRUE(b1.WaitLive(first, true));
  ASSERT_TRUE(b1.WaitLive(last, true));
  EXPECT_EQ(b1.managed().matcher().live(), static_cast<size_t>(kSequences));
  EXPECT_EQ(b1.managed().matcher().over_capacity(), 0u);
  b1.KnockOn(last_ports, kKnocker);
  ASSERT_TRUE(firewall1_.WaitOpen("ssh", kKnocker, true));
}

TEST_F(ManagedAgentControllerTest, ALongOutagesSpoolDrainsInOneSession) {
  // What a bastion spools through a long outage (here written straight into
  // the spool it will open): far more reports than the controller takes in
  // processing at once (AgentServiceOptions::max_pending, 256).
  constexpr int kReports = 10000;
  {
    ASSERT_EQ(mkdir((agent1_dir_.path() + "/managed").c_str(), 0700), 0);
    absl::StatusOr<std::unique_ptr<AuditSpool>> spool =
        AuditSpool::Open(agent1_dir_.path() + "/managed/spool", AuditSpool::kDefaultMaxBytes);
    ASSERT_TRUE(spool.ok()) << spool.status();
    for (int i = 0; i < kReports; ++i) {
      v1::AgentMessage m;
      m.set_id((*spool)->NewId());
      m.mutable_audit()->set_what("test.outage_report");
      (*m.mutable_audit()->mutable_details())["n"] = absl::StrCat(i);
      ASSERT_TRUE((*spool)->Append(m, /*sync=*/i + 1 == kReports).ok());
    }
  }
  Agent b1(agent1_dir_.path(), pki_, port_, firewall1_, "", "bastion1");
  const absl::Time deadline = absl::Now() + absl::Minutes(5);  // a loaded 2-core machine
  while (absl::Now() < deadline && !(b1.managed().status().online && b1.managed().status().spool_depth == 0)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const ManagedStatus status = b1.managed().status();
  ASSERT_EQ(status.spool_depth, 0u) << status.last_error;
  EXPECT_EQ(status.link.sessions, 1u) << "the session was reset while draining";

  // Every report in the audit exactly once.
  v1::TailAuditRequest request;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
  std::unique_ptr<grpc::ClientReader<v1::AuditRecord>> reader = admin_->TailAudit(&context, request);
  std::set<std::string> seen;
  int records = 0;
  v1::AuditRecord record;
  while (reader->Read(&record)) {
    if (record.what() != "test.outage_report") continue;
    ++records;
    seen.insert(record.details().at("n"));
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(records, kReports);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kReports));
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

TEST_F(ManagedAgentControllerTest, AnExpiredReserveOpensNothingOfflineAndIsBurntOnceTheControllerIsBack) {
  Agent b1(agent1_dir_.path(), pki_, port_, firewall1_, "", "bastion1");
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.online; }));
  const std::vector<v1::IssuedSequence> reserve = Issue(1, "bastion1", absl::Seconds(2));
  ASSERT_EQ(reserve.size(), 1u);
  ASSERT_TRUE(b1.WaitLive(reserve[0].id(), true));

  controller_->Shutdown();
  controller_.reset();
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return !s.online; }));
  absl::SleepFor(FromProtoTime(reserve[0].expires_at()) - absl::Now() + absl::Milliseconds(200));
  b1.KnockOn(Ports(reserve[0]), kKnocker);
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.knocks_reported == 1; }));
  EXPECT_FALSE(firewall1_.IsOpen("ssh", kKnocker));
  EXPECT_EQ(b1.managed().status().offline_admitted, 0u);

  // Back: its report is refused as expired, and the sweep burns it once.
  StartController(absl::StrCat("127.0.0.1:", port_));
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.online && s.spool_depth == 0; }));
  controller_->Tick();
  EXPECT_EQ(StateOf(reserve[0].id()), v1::SEQUENCE_STATE_BURNT);
  EXPECT_FALSE(firewall1_.IsOpen("ssh", kKnocker));
}

TEST_F(ManagedAgentControllerTest, TheControllerKeepsTheReserveAndAClaimedSequenceOpensOffline) {
  controller_->Shutdown();
  controller_.reset();
  door_extra_ = "  Offline_Reserve = 2\n";
  StartController(absl::StrCat("127.0.0.1:", port_));
  Agent b1(agent1_dir_.path(), pki_, port_, firewall1_, "", "bastion1");
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.online; }));
  // The leader's tick (every second in sesame-controller) tops the reserve up every 10 s.
  auto topped_up = [&] {
    const absl::Time deadline = absl::Now() + kPatience;
    while (b1.managed().status().reserve_left != 2 && absl::Now() < deadline) {
      controller_->Tick();
      absl::SleepFor(absl::Milliseconds(200));
    }
    return b1.managed().status().reserve_left == 2;
  };
  ASSERT_TRUE(topped_up());

  auto claim = [&](int count) {
    v1::ClaimReserveRequest request;
    request.set_agent("bastion1");
    request.set_count(count);
    v1::IssueSequencesResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
    const grpc::Status s = admin_->ClaimReserve(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return std::vector<v1::IssuedSequence>(response.sequences().begin(), response.sequences().end());
  };
  const std::vector<v1::IssuedSequence> mine = claim(1);
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].knocks_size(), 3);
  EXPECT_EQ(claim(5).size(), 1u);  // the other one
  EXPECT_EQ(claim(1).size(), 0u);  // each is shown once

  // The controller is down: the claimed sequence opens there on its own.
  controller_->Shutdown();
  controller_.reset();
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return !s.online; }));
  b1.KnockOn(Ports(mine[0]), kKnocker);
  ASSERT_TRUE(firewall1_.WaitOpen("ssh", kKnocker, true));

  // Back: the use is reported, and the reserve is topped up again.
  StartController(absl::StrCat("127.0.0.1:", port_));
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.online && s.spool_depth == 0; }));
  EXPECT_EQ(StateOf(mine[0].id()), v1::SEQUENCE_STATE_BURNT);
  ASSERT_TRUE(topped_up());
  EXPECT_EQ(claim(5).size(), 1u);  // the new one, unclaimed until now
}

TEST_F(ManagedAgentControllerTest, ABastionCutOffWhileASequenceIsBurntNoLongerRecognisesItOnReturn) {
  Partition partition(port_);
  Agent b1(agent1_dir_.path(), pki_, port_, firewall1_, "", "bastion1");
  Agent b2(agent2_dir_.path(), pki_, partition.port(), firewall2_, "", "bastion2");
  ASSERT_TRUE(b1.WaitStatus([](const ManagedStatus& s) { return s.online; }));
  ASSERT_TRUE(b2.WaitStatus([](const ManagedStatus& s) { return s.online; }));
  const std::vector<v1::IssuedSequence> issued = Issue(2);
  ASSERT_EQ(issued.size(), 2u);
  for (const v1::IssuedSequence& s : issued) {
    ASSERT_TRUE(b1.WaitLive(s.id(), true));
    ASSERT_TRUE(b2.WaitLive(s.id(), true));
  }

  // bastion2 is cut off; the sequence is used on bastion1 meanwhile.
  partition.Cut();
  ASSERT_TRUE(b2.WaitStatus([](const ManagedStatus& s) { return !s.online; }));
  b1.KnockOn(Ports(issued[0]), kKnocker);
  ASSERT_TRUE(firewall1_.WaitOpen("ssh", kKnocker, true));
  EXPECT_EQ(StateOf(issued[0].id()), v1::SEQUENCE_STATE_BURNT);
  // bastion2 cannot know yet.
  EXPECT_TRUE(b2.managed().matcher().IsLive(issued[0].id()));

  // Back: the snapshot is published to the matcher before the agent counts
  // as online, and the capture thread adopts it before its next packet, so
  // no knock processed once it is online can use the burnt sequence. It is
  // still watched, as spent: knocking it is a replay the controller audits.
  const uint64_t sessions_before = b2.managed().status().link.sessions;
  partition.Restore();
  ASSERT_TRUE(b2.WaitStatus(
      [&](const ManagedStatus& s) { return s.online && s.link.sessions > sessions_before; }));
  b2.managed().matcher().Tick(absl::Now());  // what the capture thread does before its next packet
  EXPECT_FALSE(b2.managed().matcher().IsLive(issued[0].id()));
  EXPECT_TRUE(b2.managed().matcher().IsSpent(issued[0].id()));
  const uint64_t replays = b2.managed().status().replays;
  b2.KnockOn(Ports(issued[0]), kKnocker);
  ASSERT_TRUE(b2.WaitStatus([&](const ManagedStatus& s) { return s.replays == replays + 1; }));
  EXPECT_FALSE(firewall2_.IsOpen("ssh", kKnocker));

  // What it did not miss still works there.
  const IpAddress other = *IpAddress::Parse("198.51.100.41");
  EXPECT_TRUE(b2.managed().matcher().IsLive(issued[1].id()));
  b2.KnockOn(Ports(issued[1]), other);
  ASSERT_TRUE(firewall2_.WaitOpen("ssh", other, true));
  EXPECT_FALSE(firewall2_.IsOpen("ssh", kKnocker));
}

}  // namespace
}  // namespace sesame
