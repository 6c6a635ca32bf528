// AgentService sessions end to end over an in-process channel: snapshot then
// deltas, consumption at most once across many agents, burns reaching every
// agent, resends answered identically, receipts, replacement of a session,
// and an agent catching up after being away. The caller's identity comes
// from a test header here; real certificates are tested in
// admin_service_tls_test.
#include "controller/service/agent_service.h"

#include <grpcpp/grpcpp.h>

#include <barrier>
#include <deque>
#include <memory>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
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
  bool TryHello(uint64_t last_revision = 0) {
    v1::AgentMessage m;
    m.set_id("hello");
    m.mutable_hello()->set_version("test");
    m.mutable_hello()->set_last_revision(last_revision);
    m.mutable_hello()->add_advertise_hosts("bastion.example.net");
    return Send(m);
  }
  void Hello(uint64_t last_revision = 0) { ASSERT_TRUE(TryHello(last_revision)); }

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

v1::AgentMessage KnockReport(const std::string& id, uint64_t sequence_id, const char* source = "198.51.100.20") {
  v1::AgentMessage m;
  m.set_id(id);
  m.mutable_knock_matched()->set_door("ssh");
  m.mutable_knock_matched()->set_sequence_id(sequence_id);
  m.mutable_knock_matched()->set_source(source);
  return m;
}

class AgentServiceTest : public ::testing::Test {
 protected:
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
    service_ = std::make_unique<AgentServiceImpl>(*store_, *hub_, *work_, HeaderIdentity());
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
  ASSERT_TRUE(b1.Send(KnockReport("k1", s[0].id)));
  std::optional<v1::ControllerMessage> verdict = b1.Verdict("k1");
  ASSERT_TRUE(verdict.has_value());
  EXPECT_EQ(verdict->knock_verdict().outcome(), v1::KNOCK_OUTCOME_OPENED);
  EXPECT_EQ(verdict->knock_verdict().sequence_id(), s[0].id);
  EXPECT_EQ(verdict->knock_verdict().grant().address(), "198.51.100.20");
  for (TestAgent* a : {&b1, &b2, &b3}) EXPECT_TRUE(a->Burnt(s[0].id).has_value());
  EXPECT_TRUE(b1.Next([](const v1::ControllerMessage& m) { return m.has_delta() && m.delta().has_grant(); }));

  ASSERT_TRUE(b2.Send(KnockReport("k9", s[0].id, "203.0.113.50")));
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
        agents[i]->Send(KnockReport(id, s[round].id));
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
  ASSERT_TRUE(agent.Send(KnockReport("k1", s[0].id)));
  std::optional<v1::ControllerMessage> first = agent.Verdict("k1");
  ASSERT_TRUE(agent.Send(KnockReport("k1", s[0].id)));
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
  ASSERT_TRUE(agent.Send(KnockReport("k1", s[0].id)));
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
    (void)agent.Send(KnockReport("k1", 1));
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
  ASSERT_TRUE(b1.Send(KnockReport("k1", s[0].id)));
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

}  // namespace
}  // namespace sesame::controller
