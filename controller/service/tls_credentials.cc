#include "controller/service/tls_credentials.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "controller/service/client_certificates.h"

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

// The files are read again every kRefreshSeconds: a renewed certificate
// (or CA bundle, for a client) is used from the next handshake on. Files
// that do not load then leave the last good ones in use (gRPC logs it).
constexpr unsigned kRefreshSeconds = 5;

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files, std::shared_ptr<ClientCertificates> clients) {
  RETURN_IF_ERROR(Load(files).status());
  if (clients == nullptr) return absl::InvalidArgumentError("no client certificate check given");
  grpc::experimental::TlsServerCredentialsOptions options(
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(files.key, files.cert, kRefreshSeconds));
  options.watch_identity_key_cert_pairs();
  // The chain is judged by `clients` in the handshake (HandshakeVerifier),
  // revocation and validity at each call (ClientCertificates::CheckCall).
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  options.set_certificate_verifier(clients->HandshakeVerifier());
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::experimental::TlsServerCredentials(options);
  if (creds == nullptr) return absl::InternalError("gRPC refused the TLS server options");
  return creds;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(const TlsFiles& files) {
  RETURN_IF_ERROR(Load(files).status());
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key, files.cert, files.ca_cert, kRefreshSeconds));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::experimental::TlsCredentials(options);
  if (creds == nullptr) return absl::InternalError("gRPC refused the TLS channel options");
  return creds;
}

}  // namespace sesame::controller
