// AgentService sessions end to end over an in-process channel: snapshot then
// deltas, consumption at most once across many agents, burns reaching every
// agent, resends answered identically, receipts, replacement of a session,
// and an agent catching up after being away. The caller's identity comes
// from a test header here; real certificates are tested in
// admin_service_tls_test.
#include "controller/service/agent_service.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <barrier>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "controller/service/controller_metrics.h"
#include "controller/service/wire_convert.h"
#include "controller/store/knock_report_checks.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame::controller {
namespace {

constexpr absl::Duration kWait = absl::Seconds(30);  // generous: a loaded 2-core machine

IdentityResolver HeaderIdentity() {
  return [](const grpc::CallbackServerContext& context) -> absl::StatusOr<PeerIdentity> {
    auto it = context.client_metadata().find("x-test-identity");
    if (it == context.client_metadata().end()) return absl::UnauthenticatedError("no identity");
    return IdentityFromSpiffeId(absl::StrCat("spiffe://sesame/", std::string(it->second.data(), it->second.size())));
  };
}

// One agent's stream, with a thread collecting what the controller sends.
class TestAgent {
 public:
  TestAgent(v1::AgentService::Stub& stub, const std::string& identity) {
    context_.AddMetadata("x-test-identity", identity);
    stream_ = stub.Session(&context_);
    reader_ = std::thread([this] {
      v1::ControllerMessage m;
      while (stream_->Read(&m)) {
        absl::MutexLock lock(&mu_);
        inbox_.push_back(m);
        ++generation_;
      }
      absl::MutexLock lock(&mu_);
      closed_ = true;
    });
  }
  ~TestAgent() {
    if (!finished_) {
      context_.TryCancel();
      reader_.join();
      (void)stream_->Finish();
    }
  }

  bool Send(const v1::AgentMessage& m) { return stream_->Write(m); }

  // False when the controller already ended the stream.
  bool TryHello(uint64_t last_revision = 0, const std::vector<std::string>& hosts = {"bastion.example.net"}) {
    v1::AgentMessage m;
    m.set_id("hello");
    m.mutable_hello()->set_version("test");
    m.mutable_hello()->set_last_revision(last_revision);
    for (const std::string& h : hosts) m.mutable_hello()->add_advertise_hosts(h);
    return Send(m);
  }
  void Hello(uint64_t last_revision = 0, const std::vector<std::string>& hosts = {"bastion.example.net"}) {
    ASSERT_TRUE(TryHello(last_revision, hosts));
  }

  // Whether a message matching pred has arrived (without waiting).
  bool Has(const std::function<bool(const v1::ControllerMessage&)>& pred) {
    absl::MutexLock lock(&mu_);
    return std::any_of(inbox_.begin(), inbox_.end(), pred);
  }

  // The first message matching pred (removed from the inbox), waiting up to
  // kWait.
  std::optional<v1::ControllerMessage> Next(const std::function<bool(const v1::ControllerMessage&)>& pred) {
    const absl::Time deadline = absl::Now() + kWait;
    absl::MutexLock lock(&mu_);
    for (;;) {
      for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
        if (pred(*it)) {
          v1::ControllerMessage m = *it;
          inbox_.erase(it);
          return m;
        }
      }
      if (closed_) return std::nullopt;
      struct Wait {
        TestAgent* agent;
        uint64_t seen;
      } wait{this, generation_};
      const bool changed = mu_.AwaitWithDeadline(
          absl::Condition(+[](Wait* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return w->agent->generation_ != w->seen || w->agent->closed_;
          }, &wait),
          deadline);
      if (!changed) return std::nullopt;
    }
  }

  std::optional<v1::ControllerMessage> Snapshot() {
    return Next([](const v1::ControllerMessage& m) { return m.has_snapshot(); });
  }
  std::optional<v1::ControllerMessage> Verdict(const std::string& id) {
    return Next([id](const v1::ControllerMessage& m) { return m.has_knock_verdict() && m.knock_verdict().reply_to() == id; });
  }
  std::optional<v1::ControllerMessage> Burnt(uint64_t sequence_id) {
    return Next([sequence_id](const v1::ControllerMessage& m) {
      return m.has_delta() && m.delta().has_sequence_burnt() && m.delta().sequence_burnt().sequence_id() == sequence_id;
    });
  }
  std::optional<v1::ControllerMessage> ReceiptFor(const std::string& id) {
    return Next([id](const v1::ControllerMessage& m) {
      return m.has_receipt() && std::find(m.receipt().ids().begin(), m.receipt().ids().end(), id) != m.receipt().ids().end();
    });
  }

  // Closes our side and returns the controller's status.
  grpc::Status Finish() {
    stream_->WritesDone();
    reader_.join();
    finished_ = true;
    return stream_->Finish();
  }
  // Waits for the controller to end the stream; returns its status.
  grpc::Status AwaitEnd() {
    reader_.join();
    finished_ = true;
    return stream_->Finish();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> stream_;
  std::thread reader_;
  bool finished_ = false;
  absl::Mutex mu_;
  std::deque<v1::ControllerMessage> inbox_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

// A report of q as its bastion saw it: by id, with its knocks.
v1::AgentMessage KnockReport(const std::string& id, const Sequence& q, const char* source = "198.51.100.20") {
  v1::AgentMessage m;
  m.set_id(id);
  m.mutable_knock_matched()->set_door("ssh");
  m.mutable_knock_matched()->set_sequence_id(q.id);
  AppendWireKnocks(q.knocks, m.mutable_knock_matched()->mutable_knocks());
  m.mutable_knock_matched()->set_source(source);
  return m;
}

// A clock tests move while the service reads it from its threads.
class SteppedClock final : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::Now();
};

class AgentServiceTest : public ::testing::Test {
 protected:
  // What the service is built with; a fixture below sets its own.
  virtual AgentServiceOptions Options() { return {}; }
  virtual const Clock& ServiceClock() { return RealClock::Instance(); }

  void SetUp() override {
    SqliteStoreOptions options;
    options.state_dir = dir_.path();
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    Door door;
    door.name = "ssh";
    ASSERT_TRUE(store_->PutDoor(door, {}).ok());
    absl::StatusOr<std::unique_ptr<FleetHub>> hub = FleetHub::Create(*store_);
    ASSERT_TRUE(hub.ok()) << hub.status();
    hub_ = *std::move(hub);
    work_ = std::make_unique<WorkQueue>(4);
    service_ = std::make_unique<AgentServiceImpl>(*store_, *hub_, *work_, HeaderIdentity(), ServiceClock(), Options());
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::AgentService::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_.reset();
    service_.reset();
    work_.reset();
    hub_.reset();
    store_.reset();
  }

  std::vector<Sequence> Add(int count, const std::string& reserve = "") {
    std::vector<NewSequence> sequences;
    for (int i = 0; i < count; ++i) {
      const uint16_t base = static_cast<uint16_t>(10000 + 3 * next_++);
      sequences.push_back(NewSequence{"ssh", {{base}, {static_cast<uint16_t>(base + 1)}, {static_cast<uint16_t>(base + 2)}},
                                      "ops", reserve});
    }
    absl::StatusOr<std::vector<Sequence>> added = store_->AddSequences(sequences, {});
    EXPECT_TRUE(added.ok()) << added.status();
    return added.ok() ? *added : std::vector<Sequence>{};
  }

  // Waits (bounded) until pred holds.
  static bool Eventually(const std::function<bool()>& pred) {
    const absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      if (pred()) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return pred();
  }

  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<FleetHub> hub_;
  std::unique_ptr<WorkQueue> work_;
  std::unique_ptr<AgentServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  int next_ = 0;
};

TEST_F(AgentServiceTest, HelloGetsItsSnapshotThenDeltas) {
  std::vector<Sequence> fleet = Add(2);
  std::vector<Sequence> mine = Add(1, "b1");
  Add(1, "b2");
  NewSequence unused;
  NewGrant g;
  g.door = "ssh";
  g.address = *IpAddress::Parse("192.0.2.1");
  g.ports = {{22}};
  g.expires_at = absl::Now() + absl::Hours(1);
  g.agent = "b1";
  ASSERT_TRUE(store_->AddGrant(g, {}).ok());
  g.agent = "b2";
  ASSERT_TRUE(store_->AddGrant(g, {}).ok());
  g.fleet_wide = true;
  ASSERT_TRUE(store_->AddGrant(g, {}).ok());

  TestAgent agent(*stub_, "agent/b1");
  agent.Hello();
  std::optional<v1::ControllerMessage> snapshot = agent.Snapshot();
  ASSERT_TRUE(snapshot.has_value());
  const v1::Snapshot& s = snapshot->snapshot();
  EXPECT_EQ(s.revision(), *store_->CurrentRevision());
  EXPECT_EQ(s.doors_size(), 1);
  ASSERT_EQ(s.sequences_size(), 3);  // two fleet ones and its own reserve
  int reserve = 0;
  for (const v1::HeldSequence& q : s.sequences()) reserve += q.reserve() ? 1 : 0;
  EXPECT_EQ(reserve, 1);
  EXPECT_EQ(s.grants_size(), 2);  // its own and the fleet-wide one
  EXPECT_EQ(s.heartbeat_interval().seconds(), 10);

  std::vector<Sequence> later = Add(1);
  std::optional<v1::ControllerMessage> added = agent.Next([](const v1::ControllerMessage& m) {
    return m.has_delta() && m.delta().has_sequence_added();
  });
  ASSERT_TRUE(added.has_value());
  EXPECT_EQ(added->delta().sequence_added().id(), later[0].id);
  EXPECT_GT(added->delta().revision(), s.revision());
  // Another agent's reserve never reaches it.
  Add(1, "b2");
  Add(1);
  std::optional<v1::ControllerMessage> next = agent.Next([](const v1::ControllerMessage& m) {
    return m.has_delta() && m.delta().has_sequence_added();
  });
  ASSERT_TRUE(next.has_value());
  EXPECT_FALSE(next->delta().sequence_added().reserve());

  AgentRecord record = *store_->GetAgent("b1");
  EXPECT_TRUE(record.connected);
  EXPECT_EQ(record.version, "test");
  EXPECT_EQ(record.advertise_hosts, std::vector<std::string>{"bastion.example.net"});
  EXPECT_TRUE(agent.Finish().ok());
  EXPECT_TRUE(Eventually([&] { return !store_->GetAgent("b1")->connected; }));
}

TEST_F(AgentServiceTest, AWonKnockIsBurntOnEveryAgent) {
  std::vector<Sequence> s = Add(1);
  TestAgent b1(*stub_, "agent/b1"), b2(*stub_, "agent/b2"), b3(*stub_, "agent/b3");
  for (TestAgent* a : {&b1, &b2, &b3}) {
    a->Hello();
    ASSERT_TRUE(a->Snapshot().has_value());
  }
  ASSERT_TRUE(b1.Send(KnockReport("k1", s[0])));
  std::optional<v1::ControllerMessage> verdict = b1.Verdict("k1");
  ASSERT_TRUE(verdict.has_value());
  EXPECT_EQ(verdict->knock_verdict().outcome(), v1::KNOCK_OUTCOME_OPENED);
  EXPECT_EQ(verdict->knock_verdict().sequence_id(), s[0].id);
  EXPECT_EQ(verdict->knock_verdict().grant().address(), "198.51.100.20");
  for (TestAgent* a : {&b1, &b2, &b3}) EXPECT_TRUE(a->Burnt(s[0].id).has_value());
  EXPECT_TRUE(b1.Next([](const v1::ControllerMessage& m) { return m.has_delta() && m.delta().has_grant(); }));

  ASSERT_TRUE(b2.Send(KnockReport("k9", s[0], "203.0.113.50")));
  verdict = b2.Verdict("k9");
  ASSERT_TRUE(verdict.has_value());
  EXPECT_EQ(verdict->knock_verdict().outcome(), v1::KNOCK_OUTCOME_REPLAY);
  EXPECT_EQ(verdict->knock_verdict().first_agent(), "b1");
}

TEST_F(AgentServiceTest, SameSequenceFromManyAgentsOpensOnce) {
  constexpr int kAgents = 6, kRounds = 15;
  std::vector<Sequence> s = Add(kRounds);
  std::vector<std::unique_ptr<TestAgent>> agents;
  for (int i = 0; i < kAgents; ++i) {
    agents.push_back(std::make_unique<TestAgent>(*stub_, absl::StrCat("agent/b", i)));
    agents.back()->Hello();
    ASSERT_TRUE(agents.back()->Snapshot().has_value());
  }
  for (int round = 0; round < kRounds; ++round) {
    std::barrier start(kAgents);
    std::vector<std::thread> threads;
    std::vector<v1::KnockOutcome> outcomes(kAgents);
    for (int i = 0; i < kAgents; ++i) {
      threads.emplace_back([&, i] {
        const std::string id = absl::StrCat("r", round);
        start.arrive_and_wait();
        agents[i]->Send(KnockReport(id, s[round]));
        std::optional<v1::ControllerMessage> v = agents[i]->Verdict(id);
        outcomes[i] = v ? v->knock_verdict().outcome() : v1::KNOCK_OUTCOME_UNSPECIFIED;
      });
    }
    for (std::thread& t : threads) t.join();
    int opened = 0, replays = 0;
    for (v1::KnockOutcome o : outcomes) {
      opened += o == v1::KNOCK_OUTCOME_OPENED;
      replays += o == v1::KNOCK_OUTCOME_REPLAY;
    }
    EXPECT_EQ(opened, 1) << "round " << round;
    EXPECT_EQ(replays, kAgents - 1) << "round " << round;
  }
  GrantFilter all;
  all.open_only = false;
  EXPECT_EQ(store_->ListGrants(all)->size(), static_cast<size_t>(kRounds));
}

TEST_F(AgentServiceTest, AResentMessageGetsTheSameAnswerAndOneRecord) {
  std::vector<Sequence> s = Add(1);
  TestAgent agent(*stub_, "agent/b1");
  agent.Hello();
  ASSERT_TRUE(agent.Snapshot().has_value());
  ASSERT_TRUE(agent.Send(KnockReport("k1", s[0])));
  std::optional<v1::ControllerMessage> first = agent.Verdict("k1");
  ASSERT_TRUE(agent.Send(KnockReport("k1", s[0])));
  std::optional<v1::ControllerMessage> again = agent.Verdict("k1");
  ASSERT_TRUE(first && again);
  EXPECT_EQ(first->knock_verdict().outcome(), v1::KNOCK_OUTCOME_OPENED);
  EXPECT_EQ(again->knock_verdict().outcome(), v1::KNOCK_OUTCOME_OPENED);
  EXPECT_EQ(again->knock_verdict().grant().id(), first->knock_verdict().grant().id());

  v1::AgentMessage event;
  event.set_id("e1");
  event.mutable_audit()->set_what("door.standalone.opened");
  (*event.mutable_audit()->mutable_details())["door"] = "legacy";
  ASSERT_TRUE(agent.Send(event));
  ASSERT_TRUE(agent.ReceiptFor("e1").has_value());
  ASSERT_TRUE(agent.Send(event));
  ASSERT_TRUE(agent.ReceiptFor("e1").has_value());
  absl::StatusOr<std::vector<AuditRecord>> audit = store_->ReadAudit(0, 100);
  int knocks = 0, events = 0;
  for (const AuditRecord& r : *audit) {
    knocks += r.entry.what == "knock.opened";
    events += r.entry.what == "door.standalone.opened";
    if (r.entry.what == "door.standalone.opened") {
      EXPECT_EQ(r.entry.who, "agent:b1");
      EXPECT_EQ(r.entry.origin, "agent:b1/e1");
    }
  }
  EXPECT_EQ(knocks, 1);
  EXPECT_EQ(events, 1);
}

TEST_F(AgentServiceTest, GrantResultsAcksAndHeartbeatsAreRecorded) {
  std::vector<Sequence> s = Add(1);
  TestAgent agent(*stub_, "agent/b1");
  agent.Hello();
  std::optional<v1::ControllerMessage> snapshot = agent.Snapshot();
  ASSERT_TRUE(agent.Send(KnockReport("k1", s[0])));
  std::optional<v1::ControllerMessage> verdict = agent.Verdict("k1");
  ASSERT_TRUE(verdict.has_value());
  const uint64_t grant_id = verdict->knock_verdict().grant().id();

  v1::AgentMessage result;
  result.set_id("g1");
  result.mutable_grant_result()->set_grant_id(grant_id);
  result.mutable_grant_result()->set_applied(true);
  ASSERT_TRUE(agent.Send(result));
  ASSERT_TRUE(agent.ReceiptFor("g1").has_value());
  absl::StatusOr<GrantRecord> g = store_->GetGrant(grant_id);
  ASSERT_EQ(g->agents.size(), 1u);
  EXPECT_EQ(g->agents[0].state, GrantAgentState::kApplied);

  v1::AgentMessage ack;
  ack.set_id("a1");
  ack.mutable_ack()->set_revision(snapshot->snapshot().revision());
  ASSERT_TRUE(agent.Send(ack));
  v1::AgentMessage heartbeat;
  heartbeat.set_id("h1");
  heartbeat.mutable_heartbeat()->set_reserve_left(3);
  heartbeat.mutable_heartbeat()->set_spool_depth(2);
  ASSERT_TRUE(agent.Send(heartbeat));
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<AgentRecord> r = store_->GetAgent("b1");
    return r.ok() && r->acked_revision == snapshot->snapshot().revision() && r->reserve_left == 3 &&
           r->spool_depth == 2;
  }));
}

TEST_F(AgentServiceTest, WrongCallersAndWrongStartsAreRefused) {
  {
    TestAgent admin(*stub_, "admin/alice");
    (void)admin.TryHello();
    EXPECT_EQ(admin.AwaitEnd().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext context;
    auto stream = stub_->Session(&context);
    v1::AgentMessage m;
    stream->Write(m);
    v1::ControllerMessage reply;
    EXPECT_FALSE(stream->Read(&reply));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    TestAgent agent(*stub_, "agent/b1");
    Sequence sequence;
    sequence.id = 1;
    (void)agent.Send(KnockReport("k1", sequence));
    EXPECT_EQ(agent.AwaitEnd().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  EXPECT_EQ(store_->GetAuditHead()->record_count, 0u);
}

TEST_F(AgentServiceTest, ANewSessionReplacesTheOld) {
  TestAgent first(*stub_, "agent/b1");
  first.Hello();
  ASSERT_TRUE(first.Snapshot().has_value());
  TestAgent second(*stub_, "agent/b1");
  second.Hello();
  ASSERT_TRUE(second.Snapshot().has_value());
  EXPECT_EQ(first.AwaitEnd().error_code(), grpc::StatusCode::ABORTED);
  // Deltas go to the new one; the agent stays connected.
  std::vector<Sequence> s = Add(1);
  EXPECT_TRUE(second.Next([](const v1::ControllerMessage& m) { return m.has_delta(); }).has_value());
  EXPECT_TRUE(store_->GetAgent("b1")->connected);
  EXPECT_EQ(hub_->sessions(), 1u);
}

TEST_F(AgentServiceTest, AnAgentAwayCatchesUpOnReturn) {
  std::vector<Sequence> s = Add(2);
  {
    TestAgent b2(*stub_, "agent/b2");
    b2.Hello();
    ASSERT_EQ(b2.Snapshot()->snapshot().sequences_size(), 2);
    EXPECT_TRUE(b2.Finish().ok());
  }
  ASSERT_TRUE(Eventually([&] { return !hub_->IsAttached("b2"); }));
  TestAgent b1(*stub_, "agent/b1");
  b1.Hello();
  ASSERT_TRUE(b1.Snapshot().has_value());
  ASSERT_TRUE(b1.Send(KnockReport("k1", s[0])));
  ASSERT_TRUE(b1.Verdict("k1").has_value());
  std::vector<Sequence> fresh = Add(1);

  TestAgent back(*stub_, "agent/b2");
  back.Hello(/*last_revision=*/1);
  std::optional<v1::ControllerMessage> snapshot = back.Snapshot();
  ASSERT_TRUE(snapshot.has_value());
  std::set<uint64_t> held;
  for (const v1::HeldSequence& q : snapshot->snapshot().sequences()) held.insert(q.id());
  EXPECT_EQ(held, (std::set<uint64_t>{s[1].id, fresh[0].id}));  // the burnt one is gone
}

// --- A bastion is trusted for its own traffic only ---------------------------

// Records of kind what, oldest first.
std::vector<AuditRecord> Records(Store& store, const std::string& what) {
  std::vector<AuditRecord> out;
  absl::StatusOr<std::vector<AuditRecord>> all = store.ReadAudit(0, 10000);
  EXPECT_TRUE(all.ok()) << all.status();
  for (const AuditRecord& r : all.value_or(std::vector<AuditRecord>{})) {
    if (r.entry.what == what) out.push_back(r);
  }
  return out;
}

double MetricValue(ControllerMetrics& metrics, Store& store, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  for (const MetricSample& m : metrics.Collect(store)) {
    if (m.name == name && m.labels == labels) return m.value;
  }
  return -1;
}

v1::KnockOutcome Outcome(TestAgent& agent, const v1::AgentMessage& report) {
  if (!agent.Send(report)) return v1::KNOCK_OUTCOME_UNSPECIFIED;
  std::optional<v1::ControllerMessage> v = agent.Verdict(report.id());
  return v ? v->knock_verdict().outcome() : v1::KNOCK_OUTCOME_UNSPECIFIED;
}

class AgentServiceChecksTest : public AgentServiceTest {
 protected:
  AgentServiceOptions Options() override {
    AgentServiceOptions o;
    o.metrics = &metrics_;
    o.controller_addresses = {*IpAddress::Parse("192.0.2.10")};
    return o;
  }
  ControllerMetrics metrics_;
};

TEST_F(AgentServiceChecksTest, AReportIsCheckedAgainstWhatTheAgentCouldHaveSeen) {
  std::vector<Sequence> s = Add(3);
  std::vector<Sequence> b2_reserve = Add(1, "b2");
  TestAgent b1(*stub_, "agent/b1"), b2(*stub_, "agent/b2");
  b1.Hello(0, {"bastion1.example.net", "192.0.2.11"});
  b2.Hello(0, {"192.0.2.12", "2001:db8::12"});
  ASSERT_TRUE(b1.Snapshot().has_value());
  ASSERT_TRUE(b2.Snapshot().has_value());

  // The knocks are not the sequence's.
  v1::AgentMessage wrong = KnockReport("k1", s[0]);
  wrong.mutable_knock_matched()->mutable_knocks(2)->set_port(1);
  EXPECT_EQ(Outcome(b1, wrong), v1::KNOCK_OUTCOME_REFUSED);
  // Knockers that are the fleet itself, or no host at all.
  EXPECT_EQ(Outcome(b1, KnockReport("k2", s[0], "192.0.2.12")), v1::KNOCK_OUTCOME_REFUSED);   // bastion2
  EXPECT_EQ(Outcome(b1, KnockReport("k3", s[0], "2001:db8::12")), v1::KNOCK_OUTCOME_REFUSED);  // bastion2
  EXPECT_EQ(Outcome(b1, KnockReport("k4", s[0], "192.0.2.10")), v1::KNOCK_OUTCOME_REFUSED);    // the controller
  EXPECT_EQ(Outcome(b1, KnockReport("k5", s[0], "224.0.0.1")), v1::KNOCK_OUTCOME_REFUSED);
  // Another bastion's reserve.
  EXPECT_EQ(Outcome(b1, KnockReport("k6", b2_reserve[0])), v1::KNOCK_OUTCOME_REFUSED);
  // An agent clock far off (the year 294247).
  v1::AgentMessage future = KnockReport("k7", s[1]);
  future.mutable_knock_matched()->mutable_matched_at()->set_seconds(9223372036854LL);
  EXPECT_EQ(Outcome(b1, future), v1::KNOCK_OUTCOME_REFUSED);

  // Nothing was consumed: each of them still opens for its own bastion.
  for (const Sequence& q : {s[0], s[1], b2_reserve[0]}) EXPECT_TRUE(store_->GetSequence(q.id)->unused());
  v1::AgentMessage plausible = KnockReport("k8", s[0]);
  *plausible.mutable_knock_matched()->mutable_matched_at() = ToWireTime(absl::Now() - absl::Seconds(2));
  EXPECT_EQ(Outcome(b1, plausible), v1::KNOCK_OUTCOME_OPENED);
  EXPECT_EQ(Outcome(b2, KnockReport("k1", b2_reserve[0])), v1::KNOCK_OUTCOME_OPENED);

  // Each refusal is recorded with why, and counted by reason.
  std::map<std::string, int> reasons;
  for (const AuditRecord& r : Records(*store_, "knock.refused")) {
    EXPECT_EQ(r.entry.where, "agent:b1");
    EXPECT_FALSE(r.entry.details.at("why").empty());
    ++reasons[r.entry.details.at("reason")];
  }
  EXPECT_EQ(reasons, (std::map<std::string, int>{{"knocks_differ", 1},
                                                 {"source_own_address", 3},
                                                 {"source_not_unicast", 1},
                                                 {"other_bastion", 1},
                                                 {"agent_time", 1}}));
  for (const auto& [reason, count] : reasons) {
    EXPECT_EQ(MetricValue(metrics_, *store_, "sesame_controller_knocks_refused_total", {{"reason", reason}}), count)
        << reason;
  }
  // The won knock's record has the controller's time, the agent's as a detail.
  std::vector<AuditRecord> opened = Records(*store_, "knock.opened");
  ASSERT_EQ(opened.size(), 2u);
  EXPECT_LT(absl::AbsDuration(opened[0].entry.time - absl::Now()), absl::Minutes(10));
  EXPECT_EQ(opened[0].entry.details.count("agent_time"), 1u);
}

TEST_F(AgentServiceChecksTest, AgentTimesAreDetailsAndFarOffOnesAreRefused) {
  TestAgent b1(*stub_, "agent/b1");
  b1.Hello();
  ASSERT_TRUE(b1.Snapshot().has_value());
  const absl::Time before = absl::Now();
  v1::AgentMessage event;
  event.set_id("e1");
  event.mutable_audit()->set_what("door.standalone.opened");
  event.mutable_audit()->mutable_time()->set_seconds(-620000000000LL);  // the year -17678
  (*event.mutable_audit()->mutable_details())["agent_time"] = "forged";
  ASSERT_TRUE(b1.Send(event));
  ASSERT_TRUE(b1.ReceiptFor("e1").has_value());
  v1::AgentMessage honest = event;
  honest.set_id("e2");
  *honest.mutable_audit()->mutable_time() = ToWireTime(before - absl::Seconds(1));
  ASSERT_TRUE(b1.Send(honest));
  ASSERT_TRUE(b1.ReceiptFor("e2").has_value());

  std::vector<AuditRecord> records = Records(*store_, "door.standalone.opened");
  ASSERT_EQ(records.size(), 2u);
  std::sort(records.begin(), records.end(),
            [](const AuditRecord& a, const AuditRecord& b) { return a.entry.origin < b.entry.origin; });
  for (const AuditRecord& r : records) {
    EXPECT_GE(r.entry.time, before - absl::Milliseconds(1));  // the controller's time (truncated to µs)
    EXPECT_LT(r.entry.time, absl::Now() + absl::Seconds(1));
  }
  EXPECT_EQ(records[0].entry.details.count("agent_time"), 0u);
  EXPECT_EQ(records[0].entry.details.at("agent_time_refused").substr(0, 6), "-17678");
  EXPECT_EQ(records[1].entry.details.at("agent_time"), AgentTimeText(absl::FromUnixSeconds(
                                                           absl::ToUnixSeconds(before - absl::Seconds(1)))));
  EXPECT_EQ(MetricValue(metrics_, *store_, "sesame_controller_agent_times_refused_total", {}), 1);
}

class AgentServiceRateLimitTest : public AgentServiceTest {
 protected:
  AgentServiceOptions Options() override {
    AgentServiceOptions o;
    o.metrics = &metrics_;
    o.limits.knock_reports = {1, 3};  // three at once, then one a minute
    o.limits.grants = {1, 2};
    o.limits.audit_window = absl::Minutes(1);
    return o;
  }
  const Clock& ServiceClock() override { return clock_; }
  SteppedClock clock_;
  ControllerMetrics metrics_;
};

TEST_F(AgentServiceRateLimitTest, ExcessIsRefusedCountedAndRecordedOncePerWindow) {
  std::vector<Sequence> s = Add(6);
  std::vector<Sequence> reserve = Add(1, "b1");
  TestAgent b1(*stub_, "agent/b1"), b2(*stub_, "agent/b2");
  b1.Hello();
  b2.Hello();
  ASSERT_TRUE(b1.Snapshot().has_value());
  ASSERT_TRUE(b2.Snapshot().has_value());

  EXPECT_EQ(Outcome(b1, KnockReport("k1", s[0])), v1::KNOCK_OUTCOME_OPENED);
  EXPECT_EQ(Outcome(b1, KnockReport("k2", s[1])), v1::KNOCK_OUTCOME_OPENED);
  EXPECT_EQ(Outcome(b1, KnockReport("k3", s[2])), v1::KNOCK_OUTCOME_REFUSED);  // a third grant
  EXPECT_EQ(Outcome(b1, KnockReport("k4", s[3])), v1::KNOCK_OUTCOME_REFUSED);  // a fourth report
  for (int i = 5; i < 25; ++i) {
    EXPECT_EQ(Outcome(b1, KnockReport(absl::StrCat("k", i), s[3])), v1::KNOCK_OUTCOME_REFUSED);
  }
  // Over the limit, a knock admitted offline is left unanswered: the agent
  // keeps it spooled and resends it at its next session.
  v1::AgentMessage offline = KnockReport("o1", reserve[0]);
  offline.mutable_knock_matched()->set_offline(true);
  ASSERT_TRUE(b1.Send(offline));
  const std::map<std::string, std::string> reports = {{"agent", "b1"}, {"limit", "knock_reports"}};
  ASSERT_TRUE(Eventually([&] {
    return MetricValue(metrics_, *store_, "sesame_controller_rate_limited_total", reports) == 22;
  }));
  EXPECT_FALSE(b1.Has([](const v1::ControllerMessage& m) {
    return m.has_knock_verdict() && m.knock_verdict().reply_to() == "o1";
  }));
  EXPECT_EQ(MetricValue(metrics_, *store_, "sesame_controller_rate_limited_total",
                        {{"agent", "b1"}, {"limit", "grants"}}),
            1);
  // Another bastion is not held back; nothing over the limit was consumed.
  EXPECT_EQ(Outcome(b2, KnockReport("k1", s[4])), v1::KNOCK_OUTCOME_OPENED);
  for (const Sequence& q : {s[2], s[3], reserve[0]}) EXPECT_TRUE(store_->GetSequence(q.id)->unused());

  // Nothing recorded per refusal; once the window has passed, one record
  // per (agent, limit) with the count.
  EXPECT_TRUE(Records(*store_, "knock.refused").empty());
  service_->FlushRefusalWindows();
  EXPECT_TRUE(Records(*store_, "knock.refused").empty());  // the window is still open
  clock_.Advance(absl::Minutes(1));
  service_->FlushRefusalWindows();
  std::map<std::string, std::string> refused;
  for (const AuditRecord& r : Records(*store_, "knock.refused")) {
    EXPECT_EQ(r.entry.who, "agent:b1");
    EXPECT_EQ(r.entry.details.at("reason"), "rate_limit");
    refused[r.entry.details.at("limit")] = r.entry.details.at("refused");
  }
  EXPECT_EQ(refused, (std::map<std::string, std::string>{{"knock_reports", "22"}, {"grants", "1"}}));
  service_->FlushRefusalWindows();
  EXPECT_EQ(Records(*store_, "knock.refused").size(), 2u);

  // A minute later the agent has a token again: its next knock opens, and
  // its resent offline report is taken.
  EXPECT_EQ(Outcome(b1, KnockReport("k30", s[5])), v1::KNOCK_OUTCOME_OPENED);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(Outcome(b1, offline), v1::KNOCK_OUTCOME_OPENED);
  EXPECT_FALSE(store_->GetSequence(reserve[0].id)->unused());
}

// A scanner aggregate (everything an agent's reporting window saw beyond
// the scanner it reported alone) is one audit record with its counts and a
// re-printed sample; a lone scanner's notice names the scanner; a resend
// records nothing twice.
TEST_F(AgentServiceTest, AScannerAggregateIsOneAuditRecord) {
  TestAgent agent(*stub_, "agent/b1");
  agent.Hello();
  ASSERT_TRUE(agent.Snapshot().has_value());
  const absl::Time first = absl::Now() - absl::Seconds(70);

  v1::AgentMessage alone;
  alone.set_id("s1");
  alone.mutable_scanner_seen()->set_source("198.51.100.4");
  alone.mutable_scanner_seen()->set_distinct_ports(12);
  *alone.mutable_scanner_seen()->mutable_at() = ToWireTime(first);
  v1::AgentMessage many;
  many.set_id("s2");
  v1::ScannerSeen* seen = many.mutable_scanner_seen();
  seen->set_source("198.51.100.5");
  seen->set_distinct_ports(12);
  *seen->mutable_at() = ToWireTime(first);
  v1::ScannerSeen::Aggregate* a = seen->mutable_aggregate();
  a->set_sources(99999);
  a->set_released(3);
  a->set_packets(1200000);
  for (const char* s : {"198.51.100.5", "198.51.100.6", "not-an-address", "2001:DB8::1"}) a->add_sample(s);
  *a->mutable_first_seen() = ToWireTime(first);
  *a->mutable_last_seen() = ToWireTime(first + absl::Seconds(3));
  *a->mutable_period() = ToWireDuration(absl::Seconds(60));
  for (const v1::AgentMessage* m : {&alone, &many, &many}) {
    ASSERT_TRUE(agent.Send(*m));
    ASSERT_TRUE(agent.ReceiptFor(m->id()).has_value());
  }

  const std::vector<AuditRecord> records = Records(*store_, "scanner.seen");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].entry.who, "198.51.100.4");
  EXPECT_EQ(records[0].entry.details.count("aggregate"), 0u);
  const AuditEntry& e = records[1].entry;
  EXPECT_EQ(e.who, "agent:b1");
  EXPECT_EQ(e.where, "agent:b1");
  EXPECT_EQ(e.origin, "agent:b1/s2");
  EXPECT_EQ(e.details.at("aggregate"), "true");
  EXPECT_EQ(e.details.at("sources"), "99999");
  EXPECT_EQ(e.details.at("released"), "3");
  EXPECT_EQ(e.details.at("packets"), "1200000");
  EXPECT_EQ(e.details.at("sample"), "198.51.100.5,198.51.100.6,2001:db8::1");
  EXPECT_EQ(e.details.at("period"), "1m");
  EXPECT_EQ(e.details.at("distinct_ports"), "12");
}

}  // namespace
}  // namespace sesame::controller
