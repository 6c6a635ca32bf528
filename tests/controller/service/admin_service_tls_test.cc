// AdminService over real mutual TLS on loopback: an operator's certificate
// works; an agent's certificate is refused (PERMISSION_DENIED); a
// certificate from another CA, one without a sesame identity, and no
// certificate at all never get a call through.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "controller/audit/audit_export.h"
#include "controller/audit/audit_verifier.h"
#include "controller/service/admin_service.h"
#include "controller/service/client_certificates.h"
#include "controller/service/tls_credentials.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;

class AdminServiceTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new testing::TempDir;
    const std::string d = pki_->path();
    testing::TestLeaf anon("anon", "");  // says admin, but has no SPIFFE identity
    anon.ou = "admin";
    const absl::Status made = testing::MakeTestPki(
        d, {{"ctl", "controller", {"localhost"}, {"127.0.0.1"}},
            {"alice", "admin"},
            {"b1", "agent"},
            anon});
    ASSERT_TRUE(made.ok()) << made;
    // mallory claims admin, but another CA signed her certificate.
    ASSERT_TRUE(testing::MakeTestCa(d, "other-ca").ok());
    testing::TestLeaf mallory("mallory", "admin");
    mallory.ca = "other-ca";
    ASSERT_TRUE(testing::IssueTestLeaf(d, mallory).ok());
  }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }

  void SetUp() override {
    SqliteStoreOptions options;
    options.state_dir = state_.path();
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    Door door;
    door.name = "ssh";
    ASSERT_TRUE(store_->PutDoor(door, {}).ok());
    AgentRecord b1;
    b1.name = "b1";
    b1.advertise_hosts = {"b1.example.net"};
    ASSERT_TRUE(store_->PutAgent(b1, {}).ok());
    audit_ = std::make_unique<AuditLog>(*store_, AuditSigningKey::Generate());
    work_ = std::make_unique<WorkQueue>(2);
    absl::StatusOr<std::shared_ptr<ClientCertificates>> clients = ClientCertificates::Load(Files("ctl").ca_cert, "");
    ASSERT_TRUE(clients.ok()) << clients.status();
    service_ = std::make_unique<AdminServiceImpl>(*store_, *audit_, *work_, TlsIdentityResolver(*clients));

    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds = MakeServerCredentials(Files("ctl"), *clients);
    ASSERT_TRUE(creds.ok()) << creds.status();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_.reset();
    service_.reset();
    work_.reset();
    audit_.reset();
    store_.reset();
  }

  static TlsFiles Files(const std::string& name, const std::string& ca = "ca") {
    const std::string d = pki_->path();
    return TlsFiles{absl::StrCat(d, "/", ca, ".crt"), absl::StrCat(d, "/", name, ".crt"),
                    absl::StrCat(d, "/", name, ".key"), ""};
  }

  std::unique_ptr<v1::AdminService::Stub> Client(const std::string& name) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = MakeClientCredentials(Files(name));
    EXPECT_TRUE(creds.ok()) << creds.status();
    return v1::AdminService::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), *creds));
  }

  static std::unique_ptr<grpc::ClientContext> Context() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return c;
  }

  static testing::TempDir* pki_;
  testing::TempDir state_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<WorkQueue> work_;
  std::unique_ptr<AdminServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

testing::TempDir* AdminServiceTlsTest::pki_ = nullptr;

TEST_F(AdminServiceTlsTest, OperatorIssuesSequencesOnceAndTheyAreAudited) {
  auto admin = Client("alice");
  v1::IssueSequencesRequest request;
  request.set_door("ssh");
  request.set_count(3);
  v1::IssueSequencesResponse issued;
  grpc::Status status = admin->IssueSequences(Context().get(), request, &issued);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(issued.sequences_size(), 3);
  EXPECT_EQ(issued.sequences(0).knocks_size(), 3);
  ASSERT_EQ(issued.sequences(0).commands_size(), 1);
  EXPECT_EQ(issued.sequences(0).commands(0).command().rfind("knock b1.example.net ", 0), 0u);

  // Listing never shows the knocks again.
  v1::ListSequencesResponse listed;
  ASSERT_TRUE(admin->ListSequences(Context().get(), v1::ListSequencesRequest(), &listed).ok());
  ASSERT_EQ(listed.sequences_size(), 3);
  EXPECT_EQ(listed.sequences(0).state(), v1::SEQUENCE_STATE_ISSUED);
  EXPECT_EQ(listed.sequences(0).issued_to(), "alice");
  EXPECT_EQ(v1::SequenceInfo::descriptor()->FindFieldByName("knocks"), nullptr);

  absl::StatusOr<std::vector<AuditRecord>> records = store_->ReadAudit(0, 10);
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].entry.who, "admin:alice");
  EXPECT_EQ((*records)[0].entry.what, "sequences.issued");
}

TEST_F(AdminServiceTlsTest, OperatorOpensAndRevokesGrants) {
  auto admin = Client("alice");
  v1::OpenGrantRequest open;
  open.set_agent("b1");
  open.set_address("192.0.2.44");
  open.set_door("ssh");
  open.mutable_ttl()->set_seconds(120);
  v1::Grant grant;
  grpc::Status status = admin->OpenGrant(Context().get(), open, &grant);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(grant.address(), "192.0.2.44");
  EXPECT_EQ(grant.opened_by(), "admin:alice");

  open.set_address("not an address");
  EXPECT_EQ(admin->OpenGrant(Context().get(), open, &grant).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  open.set_address("192.0.2.45");
  open.set_door("nope");
  EXPECT_EQ(admin->OpenGrant(Context().get(), open, &grant).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::RevokeGrantsRequest revoke;
  revoke.set_address("192.0.2.44");
  v1::RevokeGrantsResponse revoked;
  ASSERT_TRUE(admin->RevokeGrants(Context().get(), revoke, &revoked).ok());
  ASSERT_EQ(revoked.grant_ids_size(), 1);
  ASSERT_TRUE(admin->RevokeGrants(Context().get(), revoke, &revoked).ok());
  EXPECT_EQ(revoked.grant_ids_size(), 0);  // nothing open any more

  v1::ListGrantsRequest all;
  all.set_all(true);
  v1::ListGrantsResponse grants;
  ASSERT_TRUE(admin->ListGrants(Context().get(), all, &grants).ok());
  ASSERT_EQ(grants.grants_size(), 1);
  EXPECT_EQ(grants.grants(0).state(), v1::GRANT_STATE_REVOKED);
}

TEST_F(AdminServiceTlsTest, AuditTailExportAndVerify) {
  auto admin = Client("alice");
  for (int i = 0; i < 3; ++i) {
    v1::IssueSequencesRequest request;
    request.set_door("ssh");
    request.set_count(1);
    v1::IssueSequencesResponse issued;
    ASSERT_TRUE(admin->IssueSequences(Context().get(), request, &issued).ok());
  }
  {
    v1::TailAuditRequest tail;
    tail.set_from_end(true);
    tail.set_from_index(2);
    auto context = Context();
    auto reader = admin->TailAudit(context.get(), tail);
    std::vector<uint64_t> indexes;
    v1::AuditRecord record;
    while (reader->Read(&record)) indexes.push_back(record.index());
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(indexes, (std::vector<uint64_t>{1, 2}));
  }
  {
    // follow: gets what is there, then keeps waiting until cancelled.
    v1::TailAuditRequest tail;
    tail.set_follow(true);
    auto context = Context();
    auto reader = admin->TailAudit(context.get(), tail);
    v1::AuditRecord record;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(reader->Read(&record));
    context->TryCancel();
    while (reader->Read(&record)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  std::string exported;
  {
    auto context = Context();
    auto reader = admin->ExportAudit(context.get(), v1::ExportAuditRequest());
    v1::ExportAuditChunk chunk;
    while (reader->Read(&chunk)) exported += chunk.data();
    ASSERT_TRUE(reader->Finish().ok());
  }
  v1::GetAuditPublicKeyResponse key;
  ASSERT_TRUE(admin->GetAuditPublicKey(Context().get(), v1::GetAuditPublicKeyRequest(), &key).ok());
  absl::StatusOr<AuditPublicKey> pub = AuditPublicKey::FromPem(key.public_key_pem());
  ASSERT_TRUE(pub.ok());
  absl::StatusOr<AuditExport> parsed = ParseAuditExport(exported, "export");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  AuditVerification offline = VerifyAuditExport(parsed->records, parsed->checkpoints, *pub);
  EXPECT_TRUE(offline.ok) << offline.problem;
  EXPECT_EQ(offline.records, 3u);

  v1::VerifyAuditResponse verified;
  ASSERT_TRUE(admin->VerifyAudit(Context().get(), v1::VerifyAuditRequest(), &verified).ok());
  EXPECT_TRUE(verified.ok()) << verified.problem();
  EXPECT_EQ(verified.records(), 4u);  // plus the export's own record
}

TEST_F(AdminServiceTlsTest, AgentCertificateCannotCallAdminService) {
  auto agent = Client("b1");
  v1::ListDoorsResponse doors;
  grpc::Status status = agent->ListDoors(Context().get(), v1::ListDoorsRequest(), &doors);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("agent:b1"));
  auto context = Context();
  auto reader = agent->TailAudit(context.get(), v1::TailAuditRequest());
  v1::AuditRecord record;
  EXPECT_FALSE(reader->Read(&record));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AdminServiceTlsTest, CertificateWithoutSesameIdentityIsRefused) {
  auto anon = Client("anon");
  v1::ListDoorsResponse doors;
  grpc::Status status = anon->ListDoors(Context().get(), v1::ListDoorsRequest(), &doors);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
}

TEST_F(AdminServiceTlsTest, OtherCaAndNoCertificateNeverGetThrough) {
  // mallory's certificate says admin, but another CA signed it.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      MakeClientCredentials(TlsFiles{Files("ctl").ca_cert, Files("mallory").cert, Files("mallory").key, ""});
  ASSERT_TRUE(creds.ok()) << creds.status();
  auto mallory = v1::AdminService::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), *creds));
  v1::ListDoorsResponse doors;
  grpc::Status status = mallory->ListDoors(Context().get(), v1::ListDoorsRequest(), &doors);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();

  // TLS that trusts the CA but presents no certificate.
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = *ReadFileToString(Files("ctl").ca_cert);
  auto nobody = v1::AdminService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::SslCredentials(ssl)));
  status = nobody->ListDoors(Context().get(), v1::ListDoorsRequest(), &doors);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();

  // Plain text.
  auto plain = v1::AdminService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials()));
  status = plain->ListDoors(Context().get(), v1::ListDoorsRequest(), &doors);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST(TlsCredentialsTest, BadFilesAreClearErrors) {
  testing::TempDir dir;
  TlsFiles files{dir.File("ca.crt"), dir.File("x.crt"), dir.File("x.key"), ""};
  absl::StatusOr<std::shared_ptr<ClientCertificates>> clients = ClientCertificates::Load(files.ca_cert, "");
  EXPECT_TRUE(absl::IsNotFound(clients.status())) << clients.status();
  EXPECT_THAT(clients.status().message(), HasSubstr("ca.crt"));
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds = MakeServerCredentials(files, nullptr);
  EXPECT_TRUE(absl::IsNotFound(creds.status())) << creds.status();
  EXPECT_THAT(creds.status().message(), HasSubstr("ca.crt"));
}

TEST(PeerIdentityTest, SpiffeIds) {
  absl::StatusOr<PeerIdentity> agent = IdentityFromSpiffeId("spiffe://sesame/agent/bastion-1");
  ASSERT_TRUE(agent.ok());
  EXPECT_EQ(agent->role, PeerRole::kAgent);
  EXPECT_EQ(agent->principal(), "agent:bastion-1");
  EXPECT_EQ(IdentityFromSpiffeId("spiffe://sesame/admin/alice")->role, PeerRole::kAdmin);
  for (const char* bad : {"spiffe://other/agent/b1", "spiffe://sesame/agent", "spiffe://sesame/root/b1",
                          "spiffe://sesame/agent/b1/x", "spiffe://sesame/agent/", "https://sesame/agent/b1"}) {
    EXPECT_TRUE(absl::IsUnauthenticated(IdentityFromSpiffeId(bad).status())) << bad;
  }
}

}  // namespace
}  // namespace sesame::controller
