// The real sesame-controller binary, SIGKILLed and restarted in the middle
// of a stream of knocks from three managed agents: twice, and nine times
// with a reserve sequence knocked at each kill. The agents are the real
// agent code, its link over mutual TLS on loopback and its durable spool;
// the test thread plays each agent's capture thread. Afterwards:
//   - every sequence was won exactly once across the fleet, even those
//     reported by two bastions at once, and its door opened on the winner
//     alone;
//   - every report an agent spooled is in the controller's audit log exactly
//     once (knock reports by agent and sequence, the others by their origin
//     "agent:NAME/ID"), and nothing else claims to come from an agent;
//   - the audit chain and its signed checkpoints verify;
//   - every agent reconnected after each kill, and a change made afterwards
//     reaches each one, which acknowledges the controller's latest revision.
// No timing assertion: the waits are bounded and generous, the pacing of
// the stream only spreads the knocks around the kills.
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/managed/audit_spool.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "sesame/v1/admin.grpc.pb.h"
#include "tests/agent/managed/managed_test_support.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace sesame {
namespace {

using namespace managed_testing;  // NOLINT: test support

const std::string kControllerBinary = SESAME_BINARY_DIR "/controller/sesame-controller";
constexpr int kSequences = 36;
constexpr int kAgents = 3;

// A port free on loopback right now (the controller must come back on the
// same one, so Listen cannot say :0).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(a);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &size), 0);
  close(fd);
  return ntohs(a.sin_port);
}

// sesame-controller as a child process; its output goes to `log`.
class ControllerProcess {
 public:
  ControllerProcess(std::string config, std::string log) : config_(std::move(config)), log_(std::move(log)) {}
  ~ControllerProcess() { Stop(); }

  void Start() {
    ASSERT_LT(pid_, 0);
    absl::StatusOr<pid_t> pid = testing::SpawnWithLog({kControllerBinary, "--config", config_}, log_);
    ASSERT_TRUE(pid.ok()) << pid.status();
    pid_ = *pid;
  }

  // SIGKILL: no shutdown, no last checkpoint, sessions cut mid-stream.
  void Kill() {
    if (pid_ < 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // SIGTERM, then SIGKILL if it does not stop within the patience.
  void Stop() {
    if (pid_ < 0) return;
    kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + kPatience;
    while (waitpid(pid_, nullptr, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "sesame-controller ignored SIGTERM";
        Kill();
        return;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    pid_ = -1;
  }

 private:
  const std::string config_;
  const std::string log_;
  pid_t pid_ = -1;
};

// Every AgentMessage an agent's spool file ever held, as long as it was
// never compacted (the file format is in agent/managed/audit_spool.h).
std::vector<v1::AgentMessage> SpooledMessages(const std::string& path) {
  std::vector<v1::AgentMessage> out;
  absl::StatusOr<std::string> text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return out;
  EXPECT_EQ(text->compare(0, 8, "SSPOOL1\n"), 0) << path;
  auto u32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>((*text)[at + i]);
    return v;
  };
  for (size_t at = 8; at + 8 <= text->size();) {
    const uint32_t size = u32(at);
    const uint32_t crc = u32(at + 4);
    EXPECT_LE(at + 8 + size, text->size()) << path << ": torn record";
    if (at + 8 + size > text->size() || size == 0) break;
    const std::string payload = text->substr(at + 8, size);
    EXPECT_EQ(Crc32(payload.data(), payload.size()), crc) << path;
    if (payload[0] == 'M') {
      v1::AgentMessage m;
      EXPECT_TRUE(m.ParseFromString(payload.substr(1))) << path;
      out.push_back(std::move(m));
    }
    at += 8 + size;
  }
  return out;
}

class ControllerCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kControllerBinary.c_str(), X_OK), 0)
        << kControllerBinary << " is missing: build the sesame-controller target first";
    ASSERT_TRUE(MakeDirectories(dir_.File("pki"), 0700).ok());
    pki_ = MakePki(dir_.File("pki"));
    ASSERT_TRUE(testing::IssueTestLeaf(pki_.dir, {"bastion3", "agent"}).ok());
    port_ = FreePort();
    const std::string config = absl::StrCat(
        "[controller]\n  Listen = 127.0.0.1:", port_, "\n  StateDir = ", dir_.File("state"),
        "\n  Heartbeat_Interval = 1s\n",
        "[tls]\n  CA_Cert = ", pki_.Path("ca.crt"), "\n  Cert = ", pki_.Path("controller.crt"),
        "\n  Key = ", pki_.Path("controller.key"), "\n",
        "[audit]\n  Checkpoint_Interval = 1s\n",
        "[door ssh]\n  Sequence_Length = 3\n  Protocols = tcp\n  Port_Range = 20000-30000\n  Grant_Ports = 22\n"
        "  Grant_TTL = 1h\n  Seq_Timeout = 10s\n");
    ASSERT_TRUE(WriteFileAtomically(dir_.File("controller.conf"), config, 0600).ok());
    controller_ = std::make_unique<ControllerProcess>(dir_.File("controller.conf"), dir_.File("controller.log"));
    controller_->Start();

    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pki_.ca_cert;
    ssl.pem_cert_chain = *ReadFileToString(pki_.Path("alice.crt"));
    ssl.pem_private_key = *ReadFileToString(pki_.Path("alice.key"));
    admin_ = v1::AdminService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::SslCredentials(ssl)));
  }

  void TearDown() override {
    agents_.clear();
    if (controller_) controller_->Stop();
    if (HasFailure()) {
      std::cerr << "--- controller log:\n" << ReadFileToString(dir_.File("controller.log")).value_or("") << "\n";
    }
  }

  // Calls wait for the controller to be up (it may be restarting).
  static std::unique_ptr<grpc::ClientContext> Context() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
    c->set_wait_for_ready(true);
    return c;
  }

  uint64_t Revision() {
    v1::GetStatsResponse stats;
    const grpc::Status s = admin_->GetStats(Context().get(), v1::GetStatsRequest(), &stats);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return stats.revision();
  }

  std::map<std::string, v1::AgentInfo> Agents() {
    v1::ListAgentsResponse response;
    const grpc::Status s = admin_->ListAgents(Context().get(), v1::ListAgentsRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::map<std::string, v1::AgentInfo> out;
    for (const v1::AgentInfo& a : response.agents()) out[a.name()] = a;
    return out;
  }

  std::vector<v1::AuditRecord> Audit() {
    v1::TailAuditRequest request;  // from index 0, no follow
    std::unique_ptr<grpc::ClientContext> context = Context();
    auto reader = admin_->TailAudit(context.get(), request);
    std::vector<v1::AuditRecord> out;
    v1::AuditRecord r;
    while (reader->Read(&r)) out.push_back(r);
    const grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  bool AllOnline() {
    for (const auto& a : agents_) {
      if (!a->managed().status().online) return false;
    }
    return true;
  }
  bool WaitAllOnline() {
    const absl::Time deadline = absl::Now() + kPatience;
    while (!AllOnline()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return true;
  }

  // Every agent online with its spool empty, and the controller knows it
  // acknowledged the revision it holds; at_latest: that is the controller's
  // latest revision.
  bool Settled(bool at_latest) {
    const uint64_t revision = Revision();
    std::map<std::string, v1::AgentInfo> known = Agents();
    for (size_t i = 0; i < agents_.size(); ++i) {
      const ManagedStatus s = agents_[i]->managed().status();
      const v1::AgentInfo& info = known[Name(i)];
      if (!s.online || s.spool_depth != 0 || !info.connected() || info.acked_revision() != s.revision) return false;
      if (at_latest && s.revision != revision) return false;
    }
    return true;
  }

  // For a failure message: where each agent and the controller stand.
  std::string Describe() {
    std::string out = absl::StrCat("controller at revision ", Revision());
    std::map<std::string, v1::AgentInfo> known = Agents();
    for (size_t i = 0; i < agents_.size(); ++i) {
      const ManagedStatus s = agents_[i]->managed().status();
      const v1::AgentInfo& info = known[Name(i)];
      absl::StrAppend(&out, "\n  ", Name(i), ": online ", s.online, ", revision ", s.revision, ", spool ",
                      s.spool_depth, ", sessions ", s.link.sessions, "; the controller says connected ",
                      info.connected(), ", acked ", info.acked_revision());
    }
    return out;
  }

  static std::string Name(size_t i) { return absl::StrCat("bastion", i + 1); }
  static IpAddress Knocker(int i) { return *IpAddress::Parse(absl::StrCat("198.51.100.", 10 + i)); }
  static IpAddress ReserveKnocker(int k) { return *IpAddress::Parse(absl::StrCat("198.51.100.", 100 + k)); }
  void RunStream(const std::set<int>& kill_after, int down_for, int reserve_per_agent);
  std::string SpoolPath(size_t i) const { return dir_.File(absl::StrCat(Name(i), "/managed/spool")); }

  testing::TempDir dir_;
  Pki pki_;
  int port_ = 0;
  std::unique_ptr<ControllerProcess> controller_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  FakeFirewall firewalls_[kAgents];
  std::vector<std::unique_ptr<Agent>> agents_;
};

// The stream of knocks with the controller SIGKILLed right after the
// knocks of each sequence in kill_after, back down_for sequences later.
// With reserve_per_agent, each agent holds that many reserve sequences of
// its own, and at each kill one agent in turn knocks one of them: admitted
// offline if its agent saw the link go, else reported and judged once the
// controller is back. Then checks everything the top of the file says, for
// fleet and reserve sequences alike.
void ControllerCrashTest::RunStream(const std::set<int>& kill_after, int down_for, int reserve_per_agent) {
  for (size_t i = 0; i < kAgents; ++i) {
    agents_.push_back(std::make_unique<Agent>(dir_.File(Name(i)), pki_, port_, firewalls_[i], "", Name(i)));
  }
  ASSERT_TRUE(WaitAllOnline());

  v1::IssueSequencesRequest request;
  request.set_door("ssh");
  request.set_count(kSequences);
  v1::IssueSequencesResponse issued;
  const grpc::Status s = admin_->IssueSequences(Context().get(), request, &issued);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(issued.sequences_size(), kSequences);
  auto ports_of = [](const v1::IssuedSequence& q) {
    std::vector<uint16_t> p;
    for (const v1::Knock& k : q.knocks()) p.push_back(static_cast<uint16_t>(k.port()));
    return p;
  };
  std::vector<std::vector<uint16_t>> ports;
  for (const v1::IssuedSequence& q : issued.sequences()) {
    ports.push_back(ports_of(q));
    for (auto& a : agents_) ASSERT_TRUE(a->WaitLive(q.id(), true));
  }
  // Each agent's reserve, and who knocks which (knocker ReserveKnocker(k)).
  std::vector<std::vector<v1::IssuedSequence>> reserves(kAgents);
  for (size_t a = 0; a < kAgents && reserve_per_agent > 0; ++a) {
    v1::IssueSequencesRequest r;
    r.set_door("ssh");
    r.set_count(reserve_per_agent);
    r.set_reserve_agent(Name(a));
    v1::IssueSequencesResponse out;
    ASSERT_TRUE(admin_->IssueSequences(Context().get(), r, &out).ok());
    for (const v1::IssuedSequence& q : out.sequences()) {
      ASSERT_TRUE(agents_[a]->WaitLive(q.id(), true));
      reserves[a].push_back(q);
    }
  }
  struct ReserveUse {
    size_t agent;
    v1::IssuedSequence sequence;
    IpAddress knocker;
  };
  std::vector<ReserveUse> reserve_uses;

  // The stream: sequence i on agent i%3, every other one on the next agent
  // too (two bastions racing for the same sequence). The controller is
  // killed right after the knocks of the sequences in kill_after (reports in
  // flight), knocks go on while it is down (spooled, resent on reconnect),
  // and it comes back down_for sequences later.
  int restart_at = -1;
  int kills = 0;
  for (int i = 0; i < kSequences; ++i) {
    // Each kill finds the whole fleet connected, and the knocks just made.
    if (kill_after.contains(i)) {
      ASSERT_TRUE(WaitAllOnline());
    }
    const size_t first = static_cast<size_t>(i) % kAgents;
    agents_[first]->KnockOn(ports[i], Knocker(i));
    if (i % 2 == 0) agents_[(first + 1) % kAgents]->KnockOn(ports[i], Knocker(i));
    if (i == restart_at) {
      controller_->Start();
      restart_at = -1;
    }
    if (kill_after.contains(i)) {
      controller_->Kill();
      const size_t a = static_cast<size_t>(kills) % kAgents;
      if (const size_t k = reserve_uses.size() / kAgents; k < reserves[a].size()) {
        // Every other time once the agent saw the link go (admitted
        // offline), else at once (reported to a controller that is gone).
        const absl::Time deadline = absl::Now() + kPatience;
        while (kills % 2 == 1 && agents_[a]->managed().status().online && absl::Now() < deadline) {
          absl::SleepFor(absl::Milliseconds(5));
        }
        reserve_uses.push_back({a, reserves[a][k], ReserveKnocker(static_cast<int>(reserve_uses.size()))});
        agents_[a]->KnockOn(ports_of(reserve_uses.back().sequence), reserve_uses.back().knocker);
      }
      ++kills;
      restart_at = i + down_for;
    }
    absl::SleepFor(absl::Milliseconds(20));  // pacing only
  }
  ASSERT_EQ(kills, static_cast<int>(kill_after.size()));
  if (restart_at >= 0) controller_->Start();

  // Once every report is answered, a last fleet-wide change (one more
  // sequence) must reach every agent: each is back on the live stream, at
  // the controller's latest revision, and acknowledged it. (Grants concern
  // one bastion only, so without it an agent may rightly stop short of the
  // latest revision.)
  const absl::Time deadline = absl::Now() + kPatience * 2;
  auto settle = [&](bool at_latest) {
    while (!Settled(at_latest)) {
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "the fleet did not resynchronise: " << Describe();
        return false;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return true;
  };
  ASSERT_TRUE(settle(/*at_latest=*/false));
  request.set_count(1);
  v1::IssueSequencesResponse last;
  ASSERT_TRUE(admin_->IssueSequences(Context().get(), request, &last).ok());
  ASSERT_EQ(last.sequences_size(), 1);
  ASSERT_TRUE(settle(/*at_latest=*/true));
  for (auto& a : agents_) EXPECT_TRUE(a->WaitLive(last.sequences(0).id(), true));
  std::vector<uint64_t> knocks_reported;
  for (size_t i = 0; i < kAgents; ++i) {
    const ManagedStatus st = agents_[i]->managed().status();
    EXPECT_GE(st.link.sessions, kill_after.size() + 1) << Name(i) << " did not reconnect after each kill";
    knocks_reported.push_back(st.knocks_reported);
  }

  // Exactly one win per sequence, on the bastion the controller names, and
  // its door open there alone.
  v1::ListSequencesResponse sequences;
  ASSERT_TRUE(admin_->ListSequences(Context().get(), v1::ListSequencesRequest(), &sequences).ok());
  std::map<uint64_t, v1::SequenceInfo> by_id;
  for (const v1::SequenceInfo& q : sequences.sequences()) by_id[q.id()] = q;
  for (int i = 0; i < kSequences; ++i) {
    const v1::SequenceInfo& q = by_id[issued.sequences(i).id()];
    ASSERT_EQ(q.state(), v1::SEQUENCE_STATE_BURNT) << "sequence " << i;
    EXPECT_EQ(q.consumed_from(), Knocker(i).ToString());
    for (size_t a = 0; a < kAgents; ++a) {
      const bool winner = q.consumed_by() == Name(a);
      EXPECT_TRUE(firewalls_[a].WaitOpen("ssh", Knocker(i), winner))
          << "sequence " << i << " won by " << q.consumed_by() << ", door on " << Name(a);
    }
  }

  // Each reserve sequence used once, on its own bastion, for its knocker.
  for (const ReserveUse& use : reserve_uses) {
    const v1::SequenceInfo& q = by_id[use.sequence.id()];
    EXPECT_EQ(q.state(), v1::SEQUENCE_STATE_BURNT) << "reserve sequence " << use.sequence.id();
    EXPECT_EQ(q.consumed_by(), Name(use.agent));
    EXPECT_TRUE(firewalls_[use.agent].WaitOpen("ssh", use.knocker, true)) << "reserve sequence " << use.sequence.id();
  }

  // The agents stop; their spools tell what they ever reported.
  agents_.clear();
  std::vector<v1::AuditRecord> audit = Audit();
  std::map<std::pair<std::string, uint64_t>, int> knock_records;  // (where, sequence) -> records
  std::map<uint64_t, int> wins;                                   // sequence -> knock.opened records
  std::map<std::string, int> by_origin;
  size_t agent_knock_records = 0;
  for (const v1::AuditRecord& r : audit) {
    if (!r.origin().empty()) ++by_origin[r.origin()];
    if (r.what().rfind("knock.", 0) == 0 && r.where().rfind("agent:", 0) == 0) {
      uint64_t sequence = 0;
      const auto it = r.details().find("sequence");
      ASSERT_TRUE(it != r.details().end() && absl::SimpleAtoi(it->second, &sequence)) << r.ShortDebugString();
      ++knock_records[{r.where(), sequence}];
      if (r.what() == "knock.opened") ++wins[sequence];
      ++agent_knock_records;
    }
  }
  for (int i = 0; i < kSequences; ++i) EXPECT_EQ(wins[issued.sequences(i).id()], 1) << "sequence " << i;
  for (const ReserveUse& use : reserve_uses) {
    EXPECT_EQ(wins[use.sequence.id()], 1) << "reserve sequence " << use.sequence.id();
  }

  size_t spooled_knocks = 0;
  size_t spooled_others = 0;
  for (size_t a = 0; a < kAgents; ++a) {
    const std::vector<v1::AgentMessage> spooled = SpooledMessages(SpoolPath(a));
    size_t knocks = 0;
    for (const v1::AgentMessage& m : spooled) {
      if (m.has_knock_matched()) {
        ++knocks;
        EXPECT_EQ((knock_records[{absl::StrCat("agent:", Name(a)), m.knock_matched().sequence_id()}]), 1)
            << Name(a) << " knock report " << m.id() << " on sequence " << m.knock_matched().sequence_id();
      } else {
        ++spooled_others;
        EXPECT_EQ(by_origin[absl::StrCat("agent:", Name(a), "/", m.id())], 1)
            << Name(a) << " report " << m.ShortDebugString();
      }
    }
    // The spool was never compacted, so it holds every knock report.
    ASSERT_EQ(knocks, knocks_reported[a]) << Name(a) << ": the spool does not hold every report any more";
    spooled_knocks += knocks;
  }
  EXPECT_GE(spooled_knocks, static_cast<size_t>(kSequences));
  EXPECT_GE(spooled_others, static_cast<size_t>(kSequences));  // at least one GrantResult per win
  // Nothing the agents did not report.
  EXPECT_EQ(agent_knock_records, spooled_knocks);
  size_t agent_origins = 0;
  for (const auto& [origin, count] : by_origin) agent_origins += origin.rfind("agent:", 0) == 0 ? 1 : 0;
  EXPECT_EQ(agent_origins, spooled_others);

  v1::VerifyAuditResponse verified;
  ASSERT_TRUE(admin_->VerifyAudit(Context().get(), v1::VerifyAuditRequest(), &verified).ok());
  EXPECT_TRUE(verified.ok()) << verified.problem();
  EXPECT_GE(verified.records(), audit.size());  // plus the agents' disconnects, maybe
  EXPECT_GE(verified.checkpoints(), 1u);
}

TEST_F(ControllerCrashTest, KilledTwiceMidStreamNoDoubleUseNoLostOrDuplicatedAuditAgentsResynchronise) {
  RunStream({kSequences / 3, 2 * kSequences / 3}, /*down_for=*/4, /*reserve_per_agent=*/0);
}

// Many points of the consume and reserve paths: a kill after every fourth
// sequence, back two sequences later, a reserve sequence knocked at each.
TEST_F(ControllerCrashTest, KilledNineTimesAcrossConsumptionsAndReserveUsesNothingUsedTwiceNothingLost) {
  std::set<int> kill_after;
  for (int i = 2; i < kSequences; i += 4) kill_after.insert(i);
  RunStream(kill_after, /*down_for=*/2, /*reserve_per_agent=*/3);
}

}  // namespace
}  // namespace sesame
