// Unknown or revoked certificates are refused, and audited. A PKI made by
// the real deploy/pki/sesame-pki (init, controller, agent, operator,
// revoke), the controller configured with CRL_Directory = PKI/crl.d (the
// CRL under its OpenSSL hash name, HASH.r0, as sesame-pki writes it), real
// mutual TLS on loopback:
//  - after `sesame-pki revoke`, with no restart, the revoked agent's open
//    session ends, an agent's and an operator's next calls are refused
//    (UNAUTHENTICATED) while the good ones keep working; each refusal is
//    audited ("tls.refused": subject, serial, the caller's address,
//    "revoked");
//  - a certificate of another CA fails the TLS handshake (UNAVAILABLE) and
//    is audited there too, without an address (gRPC does not give one);
//    with Unknown_CA_Refused_At = call it is refused at its first call
//    (UNAUTHENTICATED) and audited with its address;
//  - a flood of such handshakes writes a bounded number of records, the
//    rest counted in one "audit.refusals_suppressed" record;
//  - a CA joining the bundle, a renewed controller certificate and a
//    renewed agent certificate (read again by the agent's credentials at
//    its next connection) all take effect with no restart;
//  - a CA bundle or CRL directory that would not do its job (no CRL of the
//    CA under its hash name, another CA's CRL, an expired one) stops the
//    start with a message, and is refused as a reload, the running
//    material staying in force.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/managed/tls_identity.h"
#include "common/file_util.h"
#include "controller/controller_config.h"
#include "controller/controller_daemon.h"
#include "controller/service/client_certificates.h"
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

using ::testing::HasSubstr;

const std::string kSesamePki = std::string(SESAME_SOURCE_DIR) + "/deploy/pki/sesame-pki";
constexpr absl::Duration kPatience = absl::Seconds(30);  // generous: a loaded 2-core machine

// Runs sesame-pki quietly; its output is kept for the failure message.
absl::Status Pki(const std::string& args, const std::string& log) {
  const std::string command = absl::StrCat("bash ", kSesamePki, " ", args, " >>", log, " 2>&1");
  if (std::system(command.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("failed: sesame-pki ", args, "\n", ReadFileToString(log).value_or("(no output)")));
  }
  return absl::OkStatus();
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
  return c;
}

class CertificateRevocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = dir_.File("pki");
    const std::string log = dir_.File("sesame-pki.log");
    for (const std::string& args :
         {absl::StrCat("init ", pki_), absl::StrCat("controller ", pki_, " 127.0.0.1 --dns localhost"),
          absl::StrCat("agent ", pki_, " bastion1"), absl::StrCat("agent ", pki_, " bastion2"),
          absl::StrCat("operator ", pki_, " alice"), absl::StrCat("operator ", pki_, " bob")}) {
      const absl::Status made = Pki(args, log);
      ASSERT_TRUE(made.ok()) << made;
    }
    // An agent certificate that names a sesame identity but comes from a CA
    // the controller does not know.
    ASSERT_TRUE(testing::MakeTestCa(dir_.path(), "stranger-ca").ok());
    testing::TestLeaf stranger("bastion9", "agent");
    stranger.ca = "stranger-ca";
    ASSERT_TRUE(testing::IssueTestLeaf(dir_.path(), stranger).ok());
    StartController("127.0.0.1:0");
    port_ = controller_->port();
  }

  void TearDown() override {
    if (controller_) controller_->Shutdown();
  }

  void StartController(const std::string& listen, const std::string& more_tls = "") {
    const std::string conf = absl::StrCat(
        "[controller]\n  Listen = ", listen, "\n  StateDir = ", dir_.File("state"), "\n",
        "[tls]\n  CA_Cert = ", pki_, "/ca.crt\n  Cert = ", pki_, "/controller/127.0.0.1.crt\n  Key = ", pki_,
        "/controller/127.0.0.1.key\n  CRL_Directory = ", pki_, "/crl.d\n", more_tls,
        "[door ssh]\n  Sequence_Length = 3\n  Port_Range = 20000-30000\n  Grant_Ports = 22\n");
    absl::StatusOr<ControllerConfig> config = ParseControllerConfig(conf, "controller.conf");
    ASSERT_TRUE(config.ok()) << config.status();
    ASSERT_EQ(config->tls.crl_dir, pki_ + "/crl.d");
    absl::StatusOr<std::unique_ptr<ControllerDaemon>> daemon = ControllerDaemon::Start(*config);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    controller_ = *std::move(daemon);
  }

  void RestartController() {
    controller_->Shutdown();
    controller_.reset();
    StartController(absl::StrCat("127.0.0.1:", port_));
  }

  // A fresh channel (no connection shared with an earlier check) presenting
  // CERT/KEY and trusting CA.
  std::shared_ptr<grpc::Channel> Channel(const std::string& cert, const std::string& key,
                                         const std::string& ca = "") {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
        MakeClientCredentials(TlsFiles{ca.empty() ? pki_ + "/ca.crt" : ca, cert, key, ""});
    EXPECT_TRUE(creds.ok()) << creds.status();
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_), *creds, args);
  }

  // An operator's call: the code it ends with.
  grpc::StatusCode OperatorCall(const std::string& name) {
    auto stub = v1::AdminService::NewStub(
        Channel(absl::StrCat(pki_, "/operator/", name, ".crt"), absl::StrCat(pki_, "/operator/", name, ".key")));
    v1::ListDoorsResponse doors;
    const grpc::Status s = stub->ListDoors(Context().get(), v1::ListDoorsRequest(), &doors);
    if (s.ok()) {
      EXPECT_EQ(doors.doors_size(), 1);
    }
    return s.error_code();
  }

  // An agent's session: OK once its Hello got a Snapshot, otherwise the code
  // the stream ended with.
  grpc::StatusCode AgentSession(const std::string& cert, const std::string& key, const std::string& ca = "") {
    return AgentSessionOver(Channel(cert, key, ca));
  }
  static v1::AgentMessage Hello() {
    v1::AgentMessage hello;
    hello.set_id("hello");
    hello.mutable_hello()->set_version("0.1.0");
    return hello;
  }
  grpc::StatusCode AgentSessionOver(const std::shared_ptr<grpc::Channel>& channel) {
    auto stub = v1::AgentService::NewStub(channel);
    std::unique_ptr<grpc::ClientContext> context = Context();
    auto stream = stub->Session(context.get());
    v1::ControllerMessage first;
    if (stream->Write(Hello()) && stream->Read(&first) && first.has_snapshot()) {
      context->TryCancel();
      (void)stream->Finish();
      return grpc::StatusCode::OK;
    }
    const grpc::Status s = stream->Finish();
    return s.ok() ? grpc::StatusCode::UNKNOWN : s.error_code();
  }
  // HASH.r0 of the CA, as sesame-pki names it.
  // The first line a shell command prints, trimmed; "" when none.
  static std::string FirstLineOf(const std::string& command) {
    FILE* p = popen(command.c_str(), "r");
    char line[256] = {};
    if (p == nullptr || std::fgets(line, sizeof(line), p) == nullptr) line[0] = '\0';
    if (p != nullptr) pclose(p);
    return std::string(absl::StripAsciiWhitespace(line));
  }

  std::string CrlName(const std::string& ca_cert = "") {
    const std::string hash =
        FirstLineOf(absl::StrCat("openssl x509 -noout -hash -in ", ca_cert.empty() ? pki_ + "/ca.crt" : ca_cert));
    EXPECT_FALSE(hash.empty()) << "openssl x509 -hash";
    return absl::StrCat(hash, ".r0");
  }

  static bool CopyFile(const std::string& from, const std::string& to) {
    absl::StatusOr<std::string> text = ReadFileToString(from);
    return text.ok() && WriteFileAtomically(to, *text, 0644).ok();
  }

  // The audit records of kind `what`, read by alice.
  std::vector<v1::AuditRecord> AuditOf(const std::string& what) {
    // Refusals are appended off gRPC's thread: give them a moment.
    absl::SleepFor(absl::Milliseconds(300));
    auto stub = v1::AdminService::NewStub(Channel(pki_ + "/operator/alice.crt", pki_ + "/operator/alice.key"));
    std::unique_ptr<grpc::ClientContext> context = Context();
    auto reader = stub->TailAudit(context.get(), v1::TailAuditRequest());
    std::vector<v1::AuditRecord> out;
    v1::AuditRecord r;
    while (reader->Read(&r)) {
      if (r.what() == what) out.push_back(r);
    }
    EXPECT_TRUE(reader->Finish().ok());
    return out;
  }

  // The same from the stopped controller's store (its last records too).
  std::vector<v1::AuditRecord> AuditOfStopped(const std::string& what) {
    SqliteStoreOptions options;
    options.state_dir = dir_.File("state");
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    std::vector<v1::AuditRecord> out;
    if (!store.ok()) return out;
    absl::StatusOr<std::vector<AuditRecord>> records = (*store)->ReadAudit(0, 100000);
    EXPECT_TRUE(records.ok()) << records.status();
    for (const AuditRecord& record : records.value_or(std::vector<AuditRecord>{})) {
      if (record.entry.what != what) continue;
      v1::AuditRecord r;
      r.set_what(record.entry.what);
      r.set_who(record.entry.who);
      for (const auto& [k, v] : record.entry.details) (*r.mutable_details())[k] = v;
      out.push_back(std::move(r));
    }
    return out;
  }

  grpc::StatusCode Agent(const std::string& name) {
    return AgentSession(absl::StrCat(pki_, "/agent/", name, ".crt"), absl::StrCat(pki_, "/agent/", name, ".key"));
  }

  testing::TempDir dir_;
  std::string pki_;
  std::unique_ptr<ControllerDaemon> controller_;
  int port_ = 0;
};

TEST_F(CertificateRevocationTest, RevokedAgentAndOperatorAreRefusedWithoutARestartAndAudited) {
  // Before: the CRL (from init) is empty, everyone of this CA gets in.
  EXPECT_EQ(Agent("bastion1"), grpc::StatusCode::OK);
  EXPECT_EQ(Agent("bastion2"), grpc::StatusCode::OK);
  EXPECT_EQ(OperatorCall("alice"), grpc::StatusCode::OK);
  EXPECT_EQ(OperatorCall("bob"), grpc::StatusCode::OK);

  // bastion2's session, open before the revocation.
  auto stub = v1::AgentService::NewStub(Channel(pki_ + "/agent/bastion2.crt", pki_ + "/agent/bastion2.key"));
  std::unique_ptr<grpc::ClientContext> open_context = Context();
  auto open_session = stub->Session(open_context.get());
  v1::ControllerMessage first;
  ASSERT_TRUE(open_session->Write(Hello()) && open_session->Read(&first) && first.has_snapshot());

  const std::string log = dir_.File("sesame-pki.log");
  ASSERT_TRUE(Pki(absl::StrCat("revoke ", pki_, " bastion2 --reason keyCompromise"), log).ok());
  ASSERT_TRUE(Pki(absl::StrCat("revoke ", pki_, " bob"), log).ok());

  // The daemon's tick (every second in sesame-controller) sees the new CRL
  // and judges the open sessions again: bastion2's ends.
  std::atomic<bool> ended = false;
  std::thread ticker([&] {
    for (int i = 0; i < 150 && !ended; ++i) {
      controller_->Tick();
      absl::SleepFor(absl::Milliseconds(200));
    }
  });
  v1::ControllerMessage m;
  while (open_session->Read(&m)) {
  }
  ended = true;
  ticker.join();
  const grpc::Status cut = open_session->Finish();
  EXPECT_EQ(cut.error_code(), grpc::StatusCode::UNAUTHENTICATED) << cut.error_message();
  EXPECT_THAT(cut.error_message(), HasSubstr("revoked"));

  // New calls: the running controller sees the new CRL within a second.
  const absl::Time deadline = absl::Now() + kPatience;
  while (Agent("bastion2") == grpc::StatusCode::OK && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(Agent("bastion2"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(OperatorCall("bob"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Agent("bastion1"), grpc::StatusCode::OK);
  EXPECT_EQ(OperatorCall("alice"), grpc::StatusCode::OK);

  // Who, from where, why.
  std::vector<v1::AuditRecord> refused = AuditOf("tls.refused");
  auto find = [&refused](const std::string& subject_part) -> const v1::AuditRecord* {
    for (const v1::AuditRecord& r : refused) {
      if (r.details().at("subject").find(subject_part) != std::string::npos) return &r;
    }
    return nullptr;
  };
  for (const char* name : {"bastion2", "bob"}) {
    const v1::AuditRecord* r = find(name);
    ASSERT_NE(r, nullptr) << name << " refused but not audited";
    EXPECT_EQ(r->details().at("reason"), "revoked");
    EXPECT_EQ(r->details().at("stage"), "call");
    EXPECT_THAT(r->details().at("peer"), HasSubstr("127.0.0.1"));
    EXPECT_FALSE(r->details().at("serial").empty());
    EXPECT_THAT(r->details().at("claimed"), HasSubstr(name));
    EXPECT_EQ(r->who(), "unidentified");
  }
  EXPECT_EQ(find("bastion1"), nullptr);
  EXPECT_EQ(find("alice"), nullptr);

  // A re-signed CRL (`sesame-pki crl`) keeps the revocations.
  ASSERT_TRUE(Pki(absl::StrCat("crl ", pki_, " --days 30"), log).ok());
  EXPECT_EQ(Agent("bastion2"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(OperatorCall("bob"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Agent("bastion1"), grpc::StatusCode::OK);
  EXPECT_EQ(OperatorCall("alice"), grpc::StatusCode::OK);
}

TEST_F(CertificateRevocationTest, ACertificateOfAnotherCaIsRefusedInTheHandshakeAndAuditedWithinBounds) {
  EXPECT_EQ(AgentSession(dir_.File("bastion9.crt"), dir_.File("bastion9.key")), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Agent("bastion1"), grpc::StatusCode::OK);
  std::vector<v1::AuditRecord> refused = AuditOf("tls.refused");
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].details().at("stage"), "handshake");
  EXPECT_EQ(refused[0].details().at("reason"), "unknown CA");
  EXPECT_EQ(refused[0].details().at("peer"), "unknown");
  EXPECT_THAT(refused[0].details().at("issuer"), HasSubstr("stranger-ca"));

  // A flood: 60 more handshakes (a fresh connection each). The audit's
  // budget (20 at once) records some; the rest are counted, and summed up
  // in one record when the controller stops.
  for (int i = 0; i < 60; ++i) {
    ASSERT_EQ(AgentSession(dir_.File("bastion9.crt"), dir_.File("bastion9.key")), grpc::StatusCode::UNAVAILABLE);
  }
  controller_->Shutdown();
  std::vector<v1::AuditRecord> audited = AuditOfStopped("tls.refused");
  EXPECT_LE(audited.size(), 25u);  // 20 at once, plus 10 a minute while the test ran
  std::vector<v1::AuditRecord> summary = AuditOfStopped("audit.refusals_suppressed");
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].details().at("refusal"), "tls.refused");
  int count = 0;
  ASSERT_TRUE(absl::SimpleAtoi(summary[0].details().at("count"), &count));
  // Every refusal is recorded or counted (gRPC may try a refused connection more than once).
  EXPECT_GE(audited.size() + count, 61u);
  controller_.reset();
}

TEST_F(CertificateRevocationTest, RefusedAtTheCallAStrangerIsAuditedWithItsAddress) {
  controller_->Shutdown();
  controller_.reset();
  StartController(absl::StrCat("127.0.0.1:", port_), "  Unknown_CA_Refused_At = call\n");
  EXPECT_EQ(AgentSession(dir_.File("bastion9.crt"), dir_.File("bastion9.key")), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Agent("bastion1"), grpc::StatusCode::OK);
  EXPECT_EQ(OperatorCall("alice"), grpc::StatusCode::OK);
  std::vector<v1::AuditRecord> refused = AuditOf("tls.refused");
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].details().at("stage"), "call");
  EXPECT_EQ(refused[0].details().at("reason"), "unknown CA");
  EXPECT_THAT(refused[0].details().at("peer"), ::testing::StartsWith("ipv4:127.0.0.1:"));
  EXPECT_THAT(refused[0].details().at("issuer"), HasSubstr("stranger-ca"));
  EXPECT_THAT(refused[0].details().at("subject"), HasSubstr("bastion9"));
  EXPECT_FALSE(refused[0].details().at("serial").empty());
}

TEST_F(CertificateRevocationTest, ANewCaBundleTakesEffectWithoutARestart) {
  // The stranger's CA joins the bundle (as in a CA rotation), its CRL beside
  // ours: its agent gets in. The bundle goes back, and it is refused again.
  const std::string ca = pki_ + "/ca.crt";
  const std::string original = ReadFileToString(ca).value();
  const std::string stranger_ca = ReadFileToString(dir_.File("stranger-ca.crt")).value();
  const std::string b9_cert = dir_.File("bastion9.crt");
  const std::string b9_key = dir_.File("bastion9.key");
  EXPECT_EQ(AgentSession(b9_cert, b9_key), grpc::StatusCode::UNAVAILABLE);

  // A CA without its CRL is refused as a reload: the bundle in force stays.
  ASSERT_TRUE(WriteFileAtomically(ca, original + stranger_ca, 0644).ok());
  absl::Status reload = controller_->ReloadClientCertificates();
  EXPECT_THAT(reload.message(), HasSubstr("holds no CRL of the CA"));
  EXPECT_EQ(AgentSession(b9_cert, b9_key), grpc::StatusCode::UNAVAILABLE);

  ASSERT_TRUE(testing::MakeTestCrl(dir_.path(), "stranger-ca",
                                   absl::StrCat(pki_, "/crl.d/", CrlName(dir_.File("stranger-ca.crt")))).ok());
  ASSERT_TRUE(controller_->ReloadClientCertificates().ok());
  EXPECT_EQ(AgentSession(b9_cert, b9_key), grpc::StatusCode::OK);
  EXPECT_EQ(Agent("bastion1"), grpc::StatusCode::OK);

  // A broken bundle is refused as a reload; the one in force stays. (The
  // client trusts a copy of the CA: it reads the file too.)
  const std::string trusted = dir_.File("trusted-ca.crt");
  ASSERT_TRUE(WriteFileAtomically(trusted, original, 0644).ok());
  ASSERT_TRUE(WriteFileAtomically(ca, "-----BEGIN CERTIFICATE-----\ntruncated\n", 0644).ok());
  EXPECT_FALSE(controller_->ReloadClientCertificates().ok());
  EXPECT_EQ(AgentSession(b9_cert, b9_key, trusted), grpc::StatusCode::OK);

  ASSERT_TRUE(WriteFileAtomically(ca, original, 0644).ok());
  ASSERT_TRUE(controller_->ReloadClientCertificates().ok());
  EXPECT_EQ(AgentSession(b9_cert, b9_key), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Agent("bastion1"), grpc::StatusCode::OK);
}

TEST_F(CertificateRevocationTest, ARenewedAgentCertificateIsUsedFromTheNextConnectionWithoutARestart) {
  // The agent's credentials, as sesame-agent makes them from its files.
  ManagedOptions files;
  files.ca_cert = pki_ + "/ca.crt";
  files.cert = pki_ + "/agent/bastion1.crt";
  files.key = pki_ + "/agent/bastion1.key";
  absl::StatusOr<TlsIdentity> identity = LoadTlsIdentity(files);
  ASSERT_TRUE(identity.ok()) << identity.status();
  const std::shared_ptr<grpc::ChannelCredentials> agent_creds = MakeChannelCredentials(*identity);
  auto connect = [&](const std::shared_ptr<grpc::ChannelCredentials>& creds) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a new connection, as the agent's reconnect
    return AgentSessionOver(grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_), creds, args));
  };
  EXPECT_EQ(connect(agent_creds), grpc::StatusCode::OK);

  // Renewed in place: the old certificate is revoked (superseded).
  ASSERT_TRUE(Pki(absl::StrCat("agent ", pki_, " bastion1 --renew"), dir_.File("sesame-pki.log")).ok());
  TlsIdentity old_pem = *identity;
  old_pem.ca_path = old_pem.cert_path = old_pem.key_path = "";
  const absl::Time deadline = absl::Now() + kPatience;
  while (connect(MakeChannelCredentials(old_pem)) == grpc::StatusCode::OK && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(connect(MakeChannelCredentials(old_pem)), grpc::StatusCode::UNAUTHENTICATED);
  // The same credentials read the renewed files (within 5 s) and get in.
  grpc::StatusCode renewed = connect(agent_creds);
  while (renewed != grpc::StatusCode::OK && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(500));
    renewed = connect(agent_creds);
  }
  EXPECT_EQ(renewed, grpc::StatusCode::OK);
}

TEST_F(CertificateRevocationTest, ARenewedControllerCertificateIsServedWithoutARestart) {
  // The serial of the certificate the controller presents, as openssl sees it.
  auto served = [&]() {
    return FirstLineOf(absl::StrCat(
        "openssl s_client -connect 127.0.0.1:", port_, " -alpn h2 -CAfile ", pki_, "/ca.crt -cert ", pki_,
        "/operator/alice.crt -key ", pki_, "/operator/alice.key </dev/null 2>/dev/null | openssl x509 -noout -serial"));
  };
  auto on_disk = [&]() {
    return FirstLineOf(absl::StrCat("openssl x509 -noout -serial -in ", pki_, "/controller/127.0.0.1.crt"));
  };
  const std::string before = served();
  ASSERT_THAT(before, ::testing::StartsWith("serial="));
  ASSERT_EQ(before, on_disk());

  ASSERT_TRUE(Pki(absl::StrCat("controller ", pki_, " 127.0.0.1 --dns localhost --renew"), dir_.File("sesame-pki.log"))
                  .ok());
  const std::string renewed = on_disk();
  ASSERT_NE(renewed, before);
  const absl::Time deadline = absl::Now() + kPatience;
  std::string now = served();
  while (now != renewed && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(500));
    now = served();
  }
  EXPECT_EQ(now, renewed) << "the controller still serves " << before;
  EXPECT_EQ(OperatorCall("alice"), grpc::StatusCode::OK);
}

TEST_F(CertificateRevocationTest, ACrlDirectoryWithoutTheCurrentCrlIsAClearErrorAtStart) {
  // Without HASH.r0 OpenSSL would refuse every client of the CA (gRPC used
  // to let them all through), and an expired CRL would refuse everyone:
  // both stop the start with a message.
  auto files = [&](const std::string& crl_dir) {
    return TlsFiles{pki_ + "/ca.crt", pki_ + "/controller/127.0.0.1.crt", pki_ + "/controller/127.0.0.1.key",
                    crl_dir};
  };
  auto check = [&](const TlsFiles& f) -> absl::Status {
    absl::StatusOr<std::shared_ptr<ClientCertificates>> clients = ClientCertificates::Load(f.ca_cert, f.crl_dir);
    return clients.ok() ? MakeServerCredentials(f, *clients).status() : clients.status();
  };
  ASSERT_TRUE(check(files(pki_ + "/crl.d")).ok());

  testing::TempDir empty;
  absl::Status s = check(files(empty.path()));
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("holds no CRL of the CA"));

  // The CRL is there, but not under the name OpenSSL looks for.
  testing::TempDir misnamed;
  ASSERT_TRUE(CopyFile(pki_ + "/crl.pem", misnamed.File("crl.pem")));
  s = check(files(misnamed.path()));
  EXPECT_THAT(s.message(), HasSubstr(".r0"));

  // Another CA's CRL under our CA's name.
  testing::TempDir foreign;
  ASSERT_TRUE(Pki(absl::StrCat("init ", dir_.File("other-pki")), dir_.File("sesame-pki.log")).ok());
  ASSERT_TRUE(CopyFile(dir_.File("other-pki/crl.pem"), foreign.File(CrlName())));
  s = check(files(foreign.path()));
  EXPECT_THAT(s.message(), HasSubstr("not signed by the CA"));

  // An expired CRL, signed by the right CA with sesame-pki's own settings.
  testing::TempDir expired;
  const std::string gencrl = absl::StrCat(
      "SESAME_PKI_DIR=", pki_, " SESAME_PKI_SAN=URI:spiffe://sesame/none openssl ca -config ", pki_,
      "/db/openssl.cnf -gencrl -crl_lastupdate 20200101000000Z -crl_nextupdate 20200102000000Z -out ",
      expired.File(CrlName()), " >/dev/null 2>&1");
  ASSERT_EQ(std::system(gencrl.c_str()), 0) << gencrl;
  s = check(files(expired.path()));
  EXPECT_THAT(s.message(), HasSubstr("expired"));
}

}  // namespace
}  // namespace sesame::controller
