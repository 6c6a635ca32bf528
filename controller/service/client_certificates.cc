#include "controller/service/client_certificates.h"

#include <dirent.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame::controller {
namespace {

// CA bundles and CRLs are small; a bigger file is a mistake, not material.
constexpr size_t kMaxPemBytes = 4 << 20;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

std::vector<X509Ptr> ParseCertificates(std::string_view pem) {
  std::vector<X509Ptr> out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  while (X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) out.emplace_back(x);
  BIO_free(bio);
  ERR_clear_error();  // the end of the text reads as an error
  return out;
}

std::string NameText(const X509_NAME* name) {
  if (name == nullptr) return "";
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n > 0 ? static_cast<size_t>(n) : 0);
  BIO_free(bio);
  return out.substr(0, 512);
}

std::string SerialText(const X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn);
  std::string out = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

std::string SpiffeId(const X509* cert) {
  std::string out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    std::string text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)), ASN1_STRING_length(uri));
    if (absl::StartsWith(text, "spiffe://")) {
      out = text.substr(0, 256);
      break;
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

// OpenSSL's verdict in the words an operator searches the audit for.
std::string ReasonText(int error) {
  switch (error) {
    case X509_V_ERR_CERT_REVOKED: return "revoked";
    case X509_V_ERR_CERT_HAS_EXPIRED: return "expired";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "not yet valid";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: return "unknown CA";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: return "bad signature";
    case X509_V_ERR_UNABLE_TO_GET_CRL: return "no CRL of its CA";
    case X509_V_ERR_CRL_HAS_EXPIRED: return "the CA's CRL has expired";
    default: return X509_verify_cert_error_string(error);
  }
}

void Describe(X509* cert, CertificateRefusal& refusal) {
  refusal.subject = NameText(X509_get_subject_name(cert));
  refusal.serial = SerialText(cert);
  refusal.issuer = NameText(X509_get_issuer_name(cert));
  refusal.claimed = SpiffeId(cert);
}

// The CRL files of an OpenSSL hashed directory: HASH.rN, N a number.
bool IsCrlFileName(std::string_view name) {
  const size_t dot = name.find('.');
  if (dot != 8 || name.size() < 11 || name[9] != 'r') return false;
  return std::all_of(name.begin(), name.begin() + 8, [](char c) { return std::isxdigit(c); }) &&
         std::all_of(name.begin() + 10, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

const char* CertificateRefusalStageName(CertificateRefusal::Stage stage) {
  return stage == CertificateRefusal::Stage::kHandshake ? "handshake" : "call";
}

ClientCertificates::ClientCertificates(std::string ca_cert, std::string crl_dir)
    : ca_cert_(std::move(ca_cert)), crl_dir_(std::move(crl_dir)) {}

ClientCertificates::~ClientCertificates() = default;

absl::StatusOr<std::shared_ptr<ClientCertificates>> ClientCertificates::Load(std::string ca_cert,
                                                                            std::string crl_dir) {
  std::shared_ptr<ClientCertificates> c(new ClientCertificates(std::move(ca_cert), std::move(crl_dir)));
  std::vector<FileStamp> stamps;
  ASSIGN_OR_RETURN(X509_STORE * store, c->Read(stamps));
  absl::MutexLock lock(&c->mu_);
  c->store_.reset(store, X509_STORE_free);
  c->stamps_ = std::move(stamps);
  c->checked_ = absl::Now();
  return c;
}

std::vector<ClientCertificates::FileStamp> ClientCertificates::Stamps() const {
  std::vector<FileStamp> out;
  auto add = [&out](const std::string& path) {
    struct stat st {};
    FileStamp s{path};
    if (stat(path.c_str(), &st) == 0) {
      s.inode = st.st_ino;
      s.size = st.st_size;
      s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    }
    out.push_back(std::move(s));
  };
  add(ca_cert_);
  if (crl_dir_.empty()) return out;
  std::vector<std::string> names;
  if (DIR* dir = opendir(crl_dir_.c_str())) {
    while (const dirent* e = readdir(dir)) {
      if (IsCrlFileName(e->d_name)) names.push_back(e->d_name);
    }
    closedir(dir);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) add(absl::StrCat(crl_dir_, "/", name));
  return out;
}

absl::StatusOr<X509_STORE*> ClientCertificates::Read(std::vector<FileStamp>& stamps) const {
  stamps = Stamps();
  ASSIGN_OR_RETURN(std::string ca_pem, ReadSmallRegularFile(ca_cert_, kMaxPemBytes));
  std::vector<X509Ptr> cas = ParseCertificates(ca_pem);
  if (cas.empty()) return absl::InvalidArgumentError(absl::StrCat(ca_cert_, ": no PEM certificate in it"));
  X509_STORE* store = X509_STORE_new();
  for (const X509Ptr& ca : cas) X509_STORE_add_cert(store, ca.get());
  absl::Status status;
  if (!crl_dir_.empty()) {
    struct stat st {};
    if (stat(crl_dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      status = absl::InvalidArgumentError(absl::StrCat("CRL directory ", crl_dir_, ": not a directory"));
    }
    // Every CA's CRL, under its hash name, signed by it and current.
    for (size_t i = 0; status.ok() && i < cas.size(); ++i) {
      X509* ca = cas[i].get();
      const unsigned long hash = X509_NAME_hash_ex(X509_get_subject_name(ca), nullptr, nullptr, nullptr);
      const std::string path = absl::StrFormat("%s/%08lx.r0", crl_dir_, hash);
      absl::StatusOr<std::string> text = ReadSmallRegularFile(path, kMaxPemBytes);
      if (!text.ok()) {
        status = absl::InvalidArgumentError(absl::StrCat("CRL directory ", crl_dir_, " holds no CRL of the CA ",
                                                         NameText(X509_get_subject_name(ca)), " (expected ", path,
                                                         ", as `sesame-pki crl` writes it): ",
                                                         text.status().message()));
        break;
      }
      BIO* bio = BIO_new_mem_buf(text->data(), static_cast<int>(text->size()));
      X509_CRL* crl = PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr);
      BIO_free(bio);
      if (crl == nullptr) {
        status = absl::InvalidArgumentError(absl::StrCat(path, ": not a PEM CRL"));
      } else if (X509_CRL_verify(crl, X509_get0_pubkey(ca)) != 1) {
        status = absl::InvalidArgumentError(absl::StrCat(path, ": not signed by the CA"));
      } else if (const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl);
                 next != nullptr && X509_cmp_current_time(next) <= 0) {
        status = absl::InvalidArgumentError(
            absl::StrCat(path, ": the CRL has expired (past its nextUpdate; re-sign it with `sesame-pki crl`)"));
      } else {
        X509_STORE_add_crl(store, crl);
      }
      X509_CRL_free(crl);
    }
  }
  ERR_clear_error();
  if (!status.ok()) {
    X509_STORE_free(store);
    return status;
  }
  return store;
}

void ClientCertificates::SetRefusalSink(CertificateRefusalSink sink) {
  absl::MutexLock lock(&mu_);
  sink_ = std::move(sink);
}

absl::Status ClientCertificates::Reload() {
  std::vector<FileStamp> stamps;
  absl::StatusOr<X509_STORE*> store = Read(stamps);
  absl::MutexLock lock(&mu_);
  checked_ = absl::Now();
  if (!store.ok()) {
    stamps_ = std::move(stamps);  // said once, until the files change again
    if (store.status().message() != load_error_) {
      LogEvent(LogLevel::kError, "tls.reload_refused", {{"error", std::string(store.status().message())}},
               absl::StrCat("client certificates: keeping the CA and CRLs in force: ", store.status().message()));
    }
    load_error_ = std::string(store.status().message());
    return store.status();
  }
  store_.reset(*store, X509_STORE_free);
  stamps_ = std::move(stamps);
  load_error_.clear();
  ++reloads_;
  LogEvent(LogLevel::kInfo, "tls.reloaded", {{"ca_cert", ca_cert_}, {"crl_dir", crl_dir_}},
           absl::StrCat("client certificates: ", ca_cert_, crl_dir_.empty() ? "" : " and the CRLs of ", crl_dir_,
                        " read again"));
  return absl::OkStatus();
}

uint64_t ClientCertificates::reloads() const {
  absl::MutexLock lock(&mu_);
  return reloads_;
}

void ClientCertificates::ReloadIfChanged() {
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    if (now - checked_ < absl::Seconds(1)) return;
    checked_ = now;
  }
  const std::vector<FileStamp> now = Stamps();
  {
    absl::MutexLock lock(&mu_);
    if (now == stamps_) return;
  }
  (void)Reload();
}

std::shared_ptr<X509_STORE> ClientCertificates::Current() {
  ReloadIfChanged();
  absl::MutexLock lock(&mu_);
  return store_;
}

absl::Status ClientCertificates::Check(std::string_view leaf_pem, std::string_view chain_pem, bool full,
                                       CertificateRefusal::Stage stage, const std::string& peer) {
  std::shared_ptr<X509_STORE> store = Current();
  std::vector<X509Ptr> leaf = ParseCertificates(leaf_pem);
  std::vector<X509Ptr> chain = ParseCertificates(chain_pem);
  CertificateRefusal refusal;
  refusal.stage = stage;
  refusal.peer = peer;
  if (leaf.empty()) {
    refusal.reason = "no client certificate";
  } else {
    X509* cert = leaf.front().get();
    STACK_OF(X509)* untrusted = sk_X509_new_null();
    for (const X509Ptr& c : chain) {
      if (X509_cmp(c.get(), cert) != 0) sk_X509_push(untrusted, c.get());
    }
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    int error = X509_V_ERR_UNSPECIFIED;
    if (ctx != nullptr && X509_STORE_CTX_init(ctx, store.get(), cert, untrusted) == 1) {
      X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
      X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
      if (!full) {
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_NO_CHECK_TIME);
      } else if (!crl_dir_.empty()) {
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK);
      }
      error = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    }
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    ERR_clear_error();
    if (error == X509_V_OK) return absl::OkStatus();
    Describe(cert, refusal);
    refusal.reason = ReasonText(error);
  }
  Tell(refusal);
  return absl::UnauthenticatedError(
      absl::StrCat("client certificate refused: ", refusal.reason,
                   refusal.serial.empty() ? "" : absl::StrCat(" (serial ", refusal.serial, ")")));
}

void ClientCertificates::Tell(const CertificateRefusal& refusal) {
  CertificateRefusalSink sink;
  {
    absl::MutexLock lock(&mu_);
    sink = sink_;
  }
  if (sink) sink(refusal);
}

void ClientCertificates::ReportRefused(std::string_view leaf_pem, const std::string& peer, std::string reason) {
  CertificateRefusal refusal;
  refusal.stage = CertificateRefusal::Stage::kCall;
  refusal.peer = peer;
  refusal.reason = std::move(reason);
  std::vector<X509Ptr> leaf = ParseCertificates(leaf_pem);
  if (!leaf.empty()) Describe(leaf.front().get(), refusal);
  Tell(refusal);
}

absl::Status ClientCertificates::CheckCall(std::string_view leaf_pem, std::string_view chain_pem,
                                           const std::string& peer) {
  return Check(leaf_pem, chain_pem, /*full=*/true, CertificateRefusal::Stage::kCall, peer);
}

absl::Status ClientCertificates::CheckChain(std::string_view leaf_pem, std::string_view chain_pem) {
  // gRPC has already required a certificate and its key's signature.
  if (unknown_ca_at_call_.load()) return absl::OkStatus();
  return Check(leaf_pem, chain_pem, /*full=*/false, CertificateRefusal::Stage::kHandshake, "");
}

namespace {

// gRPC's handshake hook; owned by gRPC, holds the material it judges with.
class ChainVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit ChainVerifier(std::shared_ptr<ClientCertificates> certificates)
      : certificates_(std::move(certificates)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request, std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    const grpc::string_ref leaf = request->peer_cert();
    const grpc::string_ref chain = request->peer_cert_full_chain();
    const absl::Status s = certificates_->CheckChain(std::string_view(leaf.data(), leaf.size()),
                                                     std::string_view(chain.data(), chain.size()));
    *sync_status = s.ok() ? grpc::Status::OK
                          : grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(s.message()));
    return true;
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::shared_ptr<ClientCertificates> certificates_;
};

}  // namespace

std::shared_ptr<grpc::experimental::CertificateVerifier> ClientCertificates::HandshakeVerifier() {
  // gRPC keeps the verifier past any one call; it shares this object.
  return grpc::experimental::ExternalCertificateVerifier::Create<ChainVerifier>(shared_from_this());
}

}  // namespace sesame::controller
