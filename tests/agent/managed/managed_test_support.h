// Test support for the managed agent: a throwaway PKI, a fake controller
// (AgentService) that answers like the real one and records what the agent
// sends, a fake firewall, and a managed agent assembled as the daemon assembles it (the test thread plays the capture
// thread). Header-only, for the managed_*_test.cc files.
#pragma once

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/config/config.h"
#include "agent/grants/grant_manager.h"
#include "agent/managed/backend_switch.h"
#include "agent/managed/managed_agent.h"
#include "agent/managed/proto_convert.h"
#include "agent/managed/tls_identity.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "sesame/v1/agent.grpc.pb.h"
#include "tests/support/test_pki.h"

namespace sesame::managed_testing {

inline constexpr absl::Duration kPatience = absl::Seconds(30);  // generous: a loaded 2-core machine

// One UDP datagram to 127.0.0.1:port (a knock on loopback).
inline void SendUdp(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  const ssize_t sent = sendto(fd, "k", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  close(fd);
  ASSERT_EQ(sent, 1) << std::strerror(errno);
}

// ---------------------------------------------------------------------------
// A throwaway PKI (tests/support/test_pki.h): a CA, the controller's
// certificate (127.0.0.1), agents bastion1 and bastion2, and admin alice.

struct Pki {
  std::string dir;
  std::string ca_cert, server_cert, server_key;
  std::string Path(const std::string& name) const { return dir + "/" + name; }
};

inline Pki MakePki(const std::string& dir) {
  Pki pki;
  pki.dir = dir;
  const absl::Status made =
      testing::MakeTestPki(dir, {{"controller", "controller", {"localhost"}, {"127.0.0.1"}},
                                 {"bastion1", "agent"},
                                 {"bastion2", "agent"},
                                 {"alice", "admin"}});
  EXPECT_TRUE(made.ok()) << made;
  pki.ca_cert = ReadFileToString(dir + "/ca.crt").value_or("");
  pki.server_cert = ReadFileToString(dir + "/controller.crt").value_or("");
  pki.server_key = ReadFileToString(dir + "/controller.key").value_or("");
  return pki;
}

// ---------------------------------------------------------------------------
// The fake controller: answers Hello with a snapshot, KnockMatched with a
// verdict, reports with receipts (each switchable), records everything, and
// lets the test push messages.

class FakeController final : public v1::AgentService::Service {
 public:
  grpc::Status Session(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>* stream) override {
    {
      absl::MutexLock lock(&mu_);
      ++sessions_;
      peer_names_.push_back(PeerName(*context));
    }
    {
      absl::MutexLock lock(&write_mu_);
      stream_ = stream;
    }
    v1::AgentMessage m;
    while (stream->Read(&m)) {
      std::vector<v1::ControllerMessage> replies;
      {
        absl::MutexLock lock(&mu_);
        received_.push_back(m);
        replies = RespondLocked(m);
      }
      for (const v1::ControllerMessage& r : replies) Send(r);
      if (m.has_hello()) {
        absl::MutexLock lock(&mu_);
        hello_answered_ = sessions_;
      }
    }
    absl::MutexLock lock(&write_mu_);
    stream_ = nullptr;
    return grpc::Status::OK;
  }

  bool Send(const v1::ControllerMessage& m) {
    absl::MutexLock lock(&write_mu_);
    return stream_ != nullptr && stream_->Write(m);
  }
  bool SendDelta(v1::Delta delta) {
    v1::ControllerMessage m;
    *m.mutable_delta() = std::move(delta);
    return Send(m);
  }

  void set_snapshot(v1::Snapshot s) {
    absl::MutexLock lock(&mu_);
    snapshot_ = std::move(s);
  }
  void set_answer_knocks(bool on) {
    absl::MutexLock lock(&mu_);
    answer_knocks_ = on;
  }
  void set_grant_ttl(absl::Duration ttl) {
    absl::MutexLock lock(&mu_);
    grant_ttl_ = ttl;
  }
  // A sequence consumed elsewhere: a knock reporting it is a replay (as the
  // real controller answers; the test sends the burn Delta itself).
  void MarkBurnt(uint64_t sequence_id) {
    absl::MutexLock lock(&mu_);
    consumed_.try_emplace(sequence_id, "elsewhere");
  }

  // Waits until pred(received) holds.
  bool WaitFor(const std::function<bool(const std::vector<v1::AgentMessage>&)>& pred,
               absl::Duration timeout = kPatience) {
    absl::MutexLock lock(&mu_);
    auto cond = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return pred(received_); };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), timeout);
  }
  bool WaitForSessions(int n) {
    absl::MutexLock lock(&mu_);
    auto cond = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return hello_answered_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), kPatience);
  }
  std::vector<v1::AgentMessage> received() const {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  std::vector<std::string> peer_names() const {
    absl::MutexLock lock(&mu_);
    return peer_names_;
  }
  // A grant this fake ordered in a KnockVerdict.
  v1::Grant issued(uint64_t id) const {
    absl::MutexLock lock(&mu_);
    auto it = issued_.find(id);
    return it == issued_.end() ? v1::Grant() : it->second;
  }
  int sessions() const {
    absl::MutexLock lock(&mu_);
    return sessions_;
  }

 private:
  static std::string PeerName(const grpc::ServerContext& context) {
    for (const grpc::string_ref& uri : context.auth_context()->FindPropertyValues("x509_subject_alternative_name")) {
      return std::string(uri.data(), uri.size());
    }
    return "";
  }

  std::vector<v1::ControllerMessage> RespondLocked(const v1::AgentMessage& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<v1::ControllerMessage> out;
    switch (m.body_case()) {
      case v1::AgentMessage::kHello:
        out.emplace_back();
        *out.back().mutable_snapshot() = snapshot_;
        break;
      case v1::AgentMessage::kKnockMatched: {
        if (!answer_knocks_) break;
        const v1::KnockMatched& k = m.knock_matched();
        out.emplace_back();
        v1::KnockVerdict* v = out.back().mutable_knock_verdict();
        v->set_reply_to(m.id());
        v->set_sequence_id(k.sequence_id());
        auto [it, first] = consumed_.try_emplace(k.sequence_id(), m.id());
        if (!first && it->second != m.id()) {
          v->set_outcome(v1::KNOCK_OUTCOME_REPLAY);
          break;
        }
        v->set_outcome(v1::KNOCK_OUTCOME_OPENED);
        if (k.offline()) break;  // the agent opened it itself
        v1::Grant* g = v->mutable_grant();
        g->set_id(1000 + k.sequence_id());
        g->set_door(k.door());
        g->set_address(k.source());
        g->set_state(v1::GRANT_STATE_OPEN);
        *g->mutable_expires_at() = ToProtoTime(absl::Now() + grant_ttl_);
        issued_[g->id()] = *g;
        break;
      }
      case v1::AgentMessage::kGrantResult:
      case v1::AgentMessage::kRevokeApplied:
      case v1::AgentMessage::kScannerSeen:
      case v1::AgentMessage::kAudit:
        out.emplace_back();
        out.back().mutable_receipt()->add_ids(m.id());
        break;
      default:
        break;
    }
    return out;
  }

  mutable absl::Mutex mu_;
  std::vector<v1::AgentMessage> received_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> peer_names_ ABSL_GUARDED_BY(mu_);
  v1::Snapshot snapshot_ ABSL_GUARDED_BY(mu_);
  bool answer_knocks_ ABSL_GUARDED_BY(mu_) = true;
  absl::Duration grant_ttl_ ABSL_GUARDED_BY(mu_) = absl::Minutes(5);
  std::map<uint64_t, std::string> consumed_ ABSL_GUARDED_BY(mu_);  // sequence -> first message id
  std::map<uint64_t, v1::Grant> issued_ ABSL_GUARDED_BY(mu_);
  int sessions_ ABSL_GUARDED_BY(mu_) = 0;
  int hello_answered_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex write_mu_;  // one write at a time; guards the stream pointer's lifetime
  grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>* stream_ ABSL_GUARDED_BY(write_mu_) = nullptr;
};

class TestServer {
 public:
  TestServer(FakeController& service, const Pki& pki) : service_(service), pki_(pki) {}
  ~TestServer() { Stop(); }

  // Port 0: any free port (remembered for a restart on the same port).
  void Start() {
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = pki_.ca_cert;
    ssl.pem_key_cert_pairs.push_back({pki_.server_key, pki_.server_cert});
    grpc::ServerBuilder builder;
    int selected = 0;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port_), grpc::SslServerCredentials(ssl), &selected);
    builder.RegisterService(&service_);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(selected, 0);
    port_ = selected;
  }
  void Stop() {
    if (!server_) return;
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(200)));
    server_->Wait();
    server_.reset();
  }
  int port() const { return port_; }

 private:
  FakeController& service_;
  const Pki& pki_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// ---------------------------------------------------------------------------
// Messages.

inline v1::HeldSequence Seq(uint64_t id, std::vector<uint16_t> ports, bool reserve = false,
                            v1::Protocol protocol = v1::PROTOCOL_TCP) {
  v1::HeldSequence s;
  s.set_id(id);
  s.set_door("ssh");
  s.set_reserve(reserve);
  for (uint16_t p : ports) {
    v1::Knock* k = s.add_knocks();
    k->set_port(p);
    k->set_protocol(protocol);
  }
  return s;
}

inline v1::Snapshot SnapshotAt(uint64_t revision, std::vector<v1::HeldSequence> sequences) {
  v1::Snapshot s;
  s.set_revision(revision);
  v1::Door* d = s.add_doors();
  d->set_name("ssh");
  v1::Knock* port = d->mutable_policy()->add_grant_ports();
  port->set_port(22);
  port->set_protocol(v1::PROTOCOL_TCP);
  *d->mutable_policy()->mutable_grant_ttl() = ToProtoDuration(absl::Minutes(2));
  *d->mutable_policy()->mutable_seq_timeout() = ToProtoDuration(absl::Seconds(10));
  for (v1::HeldSequence& q : sequences) *s.add_sequences() = std::move(q);
  *s.mutable_heartbeat_interval() = ToProtoDuration(absl::Milliseconds(200));
  return s;
}

inline auto HasAck(uint64_t revision) {
  return [revision](const std::vector<v1::AgentMessage>& r) {
    for (const auto& m : r) {
      if (m.has_ack() && m.ack().revision() == revision) return true;
    }
    return false;
  };
}

inline auto Count(v1::AgentMessage::BodyCase body, size_t n) {
  return [body, n](const std::vector<v1::AgentMessage>& r) {
    size_t c = 0;
    for (const auto& m : r) c += m.body_case() == body ? 1 : 0;
    return c >= n;
  };
}

inline std::vector<v1::AgentMessage> Of(const std::vector<v1::AgentMessage>& r, v1::AgentMessage::BodyCase body) {
  std::vector<v1::AgentMessage> out;
  for (const auto& m : r) {
    if (m.body_case() == body) out.push_back(m);
  }
  return out;
}

// ---------------------------------------------------------------------------
// A fake firewall behind the real grant book.

class FakeFirewall {
 public:
  class Backend final : public FirewallBackend {
   public:
    Backend(FakeFirewall& fw, std::string door) : fw_(fw), door_(std::move(door)) {}
    std::string_view name() const override { return "fake"; }
    absl::Status Open(const Grant& g) override {
      absl::MutexLock lock(&fw_.mu_);
      fw_.open_[Key(g.door, g.address)] = g;
      ++fw_.opens_;
      return absl::OkStatus();
    }
    absl::Status Close(const Grant& g) override {
      absl::MutexLock lock(&fw_.mu_);
      fw_.open_.erase(Key(g.door, g.address));
      ++fw_.closes_;
      return absl::OkStatus();
    }

   private:
    FakeFirewall& fw_;
    std::string door_;
  };

  static std::string Key(const std::string& door, const IpAddress& address) {
    return absl::StrCat(door, " ", address.ToString());
  }

  BackendSwitch::Factory Factory() {
    return [this](const AgentConfig& config) -> absl::StatusOr<BackendSwitch::Built> {
      auto backends = std::make_shared<std::map<std::string, std::unique_ptr<Backend>>>();
      for (const DoorConfig& d : config.doors) (*backends)[d.name] = std::make_unique<Backend>(*this, d.name);
      BackendSwitch::Built built;
      built.lookup = [backends](const std::string& door) -> FirewallBackend* {
        auto it = backends->find(door);
        return it == backends->end() ? nullptr : it->second.get();
      };
      built.prepare = [] { return absl::OkStatus(); };
      return built;
    };
  }

  bool IsOpen(const std::string& door, const IpAddress& address) const {
    absl::MutexLock lock(&mu_);
    return open_.contains(Key(door, address));
  }
  bool WaitOpen(const std::string& door, const IpAddress& address, bool open) const {
    absl::MutexLock lock(&mu_);
    const std::string key = Key(door, address);
    auto cond = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return open_.contains(key) == open; };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), kPatience);
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, Grant> open_ ABSL_GUARDED_BY(mu_);
  int opens_ ABSL_GUARDED_BY(mu_) = 0;
  int closes_ ABSL_GUARDED_BY(mu_) = 0;
};

// ---------------------------------------------------------------------------
// One managed agent, built as the daemon builds it (minus capture: the test
// thread plays the capture thread).

class Agent {
 public:
  Agent(const std::string& dir, const Pki& pki, int port, FakeFirewall& firewall, const std::string& extra = "",
        const std::string& name = "bastion1") {
    const std::string text = absl::StrCat("[options]\nController = 127.0.0.1:", port, "\nCaCert = ", pki.Path("ca.crt"),
                                          "\nCert = ", pki.Path(name + ".crt"), "\nKey = ", pki.Path(name + ".key"),
                                          "\nAgentName = ", name, "\nStateDir = ", dir, "\n", extra);
    absl::StatusOr<AgentConfig> config = ParseConfig(text, "agent.conf");
    EXPECT_TRUE(config.ok()) << config.status();
    config_ = *config;
    absl::StatusOr<TlsIdentity> identity = LoadTlsIdentity(config_.options.managed);
    EXPECT_TRUE(identity.ok()) << identity.status();
    ManagedAgentOptions options = ManagedAgentOptionsFor(config_, *identity);
    options.state_dir = dir + "/managed";
    options.link.backoff_min = absl::Milliseconds(20);
    options.link.backoff_max = absl::Milliseconds(200);
    options.link.connect_timeout = absl::Seconds(5);
    options.matcher.max_sources = 1024;
    absl::StatusOr<std::unique_ptr<ManagedAgent>> managed = ManagedAgent::Create(config_, std::move(options));
    EXPECT_TRUE(managed.ok()) << managed.status();
    managed_ = *std::move(managed);
    ManagedAgent* m = managed_.get();
    switch_ = std::make_unique<BackendSwitch>(config_, m->DoorConfigs(), firewall.Factory(),
                                              [m](BackendLookup l) { return m->Reporting(std::move(l)); });
    absl::StatusOr<BackendLookup> lookup = switch_->BuildInitial();
    EXPECT_TRUE(lookup.ok());
    absl::StatusOr<std::unique_ptr<GrantStore>> store = GrantStore::Open(dir + "/grants");
    EXPECT_TRUE(store.ok());
    grants_ = std::make_unique<GrantWorker>(
        std::make_unique<GrantBook>(*std::move(store), *std::move(lookup), RealClock::Instance()));
    switch_->Attach(grants_.get());
    BackendSwitch* sw = switch_.get();
    managed_->Start(*grants_, [sw](std::vector<DoorConfig> doors) { EXPECT_TRUE(sw->SetManaged(doors).ok()); });
  }
  ~Agent() {
    managed_->Stop();
    grants_.reset();
    managed_.reset();
  }

  ManagedAgent& managed() { return *managed_; }

  // The capture thread's part.
  void KnockOn(const std::vector<uint16_t>& ports, const IpAddress& source) {
    for (uint16_t p : ports) {
      Packet packet;
      packet.time = absl::Now();
      packet.source = source;
      packet.destination = *IpAddress::Parse("10.0.0.1");
      packet.protocol = Protocol::kTcp;
      packet.source_port = 40000;
      packet.destination_port = p;
      packet.tcp_flags = tcp_flags::kSyn;
      managed_->matcher().OnPacket(packet);
    }
  }
  bool WaitLive(uint64_t id, bool live) {
    const absl::Time deadline = absl::Now() + kPatience;
    while (absl::Now() < deadline) {
      managed_->matcher().Tick(absl::Now());
      if (managed_->matcher().IsLive(id) == live) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }
  bool WaitStatus(const std::function<bool(const ManagedStatus&)>& pred) {
    const absl::Time deadline = absl::Now() + kPatience;
    while (absl::Now() < deadline) {
      if (pred(managed_->status())) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

 private:
  AgentConfig config_;
  std::unique_ptr<ManagedAgent> managed_;
  std::unique_ptr<BackendSwitch> switch_;
  std::unique_ptr<GrantWorker> grants_;
};

// ---------------------------------------------------------------------------

}  // namespace sesame::managed_testing
