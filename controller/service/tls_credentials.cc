#include "controller/service/tls_credentials.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace sesame::controller {
namespace {

struct Pems {
  std::string ca, cert, key;
};

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat("no ", what, " file given"));
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat(what, ": ", text.status().message()));
  return text;
}

// The certificate parses, and the key is the certificate's.
absl::Status CheckPair(const Pems& p, const TlsFiles& files) {
  BIO* cert_bio = BIO_new_mem_buf(p.cert.data(), static_cast<int>(p.cert.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  BIO_free(cert_bio);
  BIO* key_bio = BIO_new_mem_buf(p.key.data(), static_cast<int>(p.key.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
  BIO_free(key_bio);
  BIO* ca_bio = BIO_new_mem_buf(p.ca.data(), static_cast<int>(p.ca.size()));
  X509* ca = PEM_read_bio_X509(ca_bio, nullptr, nullptr, nullptr);
  BIO_free(ca_bio);
  absl::Status status;
  if (cert == nullptr) {
    status = absl::InvalidArgumentError(absl::StrCat(files.cert, ": not a PEM certificate"));
  } else if (key == nullptr) {
    status = absl::InvalidArgumentError(absl::StrCat(files.key, ": not a PEM private key"));
  } else if (ca == nullptr) {
    status = absl::InvalidArgumentError(absl::StrCat(files.ca_cert, ": not a PEM certificate"));
  } else if (X509_check_private_key(cert, key) != 1) {
    status = absl::InvalidArgumentError(absl::StrCat(files.key, " is not the key of ", files.cert));
  }
  ERR_clear_error();
  X509_free(cert);
  X509_free(ca);
  EVP_PKEY_free(key);
  return status;
}

absl::StatusOr<Pems> Load(const TlsFiles& files) {
  Pems p;
  ASSIGN_OR_RETURN(p.ca, ReadPem(files.ca_cert, "CA certificate"));
  ASSIGN_OR_RETURN(p.cert, ReadPem(files.cert, "certificate"));
  ASSIGN_OR_RETURN(p.key, ReadPem(files.key, "private key"));
  RETURN_IF_ERROR(CheckPair(p, files));
  return p;
}

// gRPC lets a handshake through when OpenSSL finds no CRL for the CA (its
// verify callback ignores X509_V_ERR_UNABLE_TO_GET_CRL), so a CRL under the
// wrong name would silently turn revocation off; and an expired CRL makes
// OpenSSL refuse every client. OpenSSL's hashed-directory lookup reads
// DIR/HASH.r0 as PEM, HASH being the CA subject's hash (`openssl x509
// -hash`): that file must exist, be a CRL the CA signed, and be current.
absl::Status CheckCrlDirectory(const std::string& dir, const Pems& p) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("CRL directory ", dir, ": not a directory"));
  }
  BIO* ca_bio = BIO_new_mem_buf(p.ca.data(), static_cast<int>(p.ca.size()));
  X509* ca = PEM_read_bio_X509(ca_bio, nullptr, nullptr, nullptr);
  BIO_free(ca_bio);
  if (ca == nullptr) return absl::InvalidArgumentError("CA certificate: not PEM");  // CheckPair said so already
  const unsigned long hash = X509_NAME_hash_ex(X509_get_subject_name(ca), nullptr, nullptr, nullptr);
  const std::string path = absl::StrFormat("%s/%08lx.r0", dir, hash);
  absl::Status status;
  absl::StatusOr<std::string> text = ReadFileToString(path);
  X509_CRL* crl = nullptr;
  if (!text.ok()) {
    status = absl::InvalidArgumentError(absl::StrCat("CRL directory ", dir, " holds no CRL of the CA (expected ", path,
                                                     ", as `sesame-pki crl` writes it): ", text.status().message()));
  } else {
    BIO* bio = BIO_new_mem_buf(text->data(), static_cast<int>(text->size()));
    crl = PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (crl == nullptr) {
      status = absl::InvalidArgumentError(absl::StrCat(path, ": not a PEM CRL"));
    } else if (X509_CRL_verify(crl, X509_get0_pubkey(ca)) != 1) {
      status = absl::InvalidArgumentError(absl::StrCat(path, ": not signed by the CA"));
    } else if (const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl);
               next != nullptr && X509_cmp_current_time(next) <= 0) {
      status = absl::InvalidArgumentError(
          absl::StrCat(path, ": the CRL has expired (past its nextUpdate; re-sign it with `sesame-pki crl`)"));
    }
  }
  ERR_clear_error();
  X509_CRL_free(crl);
  X509_free(ca);
  return status;
}

std::shared_ptr<grpc::experimental::StaticDataCertificateProvider> Provider(const Pems& p) {
  std::vector<grpc::experimental::IdentityKeyCertPair> pairs = {{p.key, p.cert}};
  return std::make_shared<grpc::experimental::StaticDataCertificateProvider>(p.ca, pairs);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const TlsFiles& files) {
  ASSIGN_OR_RETURN(Pems pems, Load(files));
  grpc::experimental::TlsServerCredentialsOptions options(Provider(pems));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  if (!files.crl_dir.empty()) {
    RETURN_IF_ERROR(CheckCrlDirectory(files.crl_dir, pems));
    options.set_crl_directory(files.crl_dir);
  }
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::experimental::TlsServerCredentials(options);
  if (creds == nullptr) return absl::InternalError("gRPC refused the TLS server options");
  return creds;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(const TlsFiles& files) {
  ASSIGN_OR_RETURN(Pems pems, Load(files));
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(pems));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::experimental::TlsCredentials(options);
  if (creds == nullptr) return absl::InternalError("gRPC refused the TLS channel options");
  return creds;
}

}  // namespace sesame::controller
