#include "agent/managed/tls_identity.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "grpcpp/security/credentials.h"

namespace sesame {
namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

X509Ptr ParseCertificate(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  absl::StatusOr<std::string> text = ReadSmallRegularFile(path, kMaxTlsFileBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat(what, " ", path, ": ", text.status().message()));
  }
  if (!absl::StrContains(*text, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": expected a PEM file"));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::string> AgentNameFromCertificate(const std::string& cert_pem) {
  X509Ptr cert = ParseCertificate(cert_pem);
  if (!cert) return absl::InvalidArgumentError("not a PEM certificate");
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  std::string from_uri;
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
      if (name->type != GEN_URI) continue;
      const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
      const std::string text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)), ASN1_STRING_length(uri));
      // spiffe://DOMAIN/agent/NAME
      if (!absl::StartsWith(text, "spiffe://")) continue;
      std::vector<std::string> parts = absl::StrSplit(text.substr(9), '/');
      if (parts.size() == 3 && parts[1] == "agent" && !parts[2].empty()) {
        from_uri = parts[2];
        break;
      }
    }
    GENERAL_NAMES_free(names);
  }
  if (!from_uri.empty()) return from_uri;
  char cn[256] = {0};
  const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn);
  if (n <= 0) return absl::InvalidArgumentError("the certificate names no agent (no spiffe URI SAN, no CN)");
  return std::string(cn, static_cast<size_t>(n));
}

absl::StatusOr<TlsIdentity> LoadTlsIdentity(const ManagedOptions& options) {
  TlsIdentity id;
  ASSIGN_OR_RETURN(id.ca_pem, ReadPem(options.ca_cert, "CaCert"));
  ASSIGN_OR_RETURN(id.cert_pem, ReadPem(options.cert, "Cert"));
  ASSIGN_OR_RETURN(id.key_pem, ReadPem(options.key, "Key"));
  if (!ParseCertificate(id.ca_pem)) {
    return absl::InvalidArgumentError(absl::StrCat("CaCert ", options.ca_cert, ": no certificate in it"));
  }
  X509Ptr cert = ParseCertificate(id.cert_pem);
  if (!cert) return absl::InvalidArgumentError(absl::StrCat("Cert ", options.cert, ": no certificate in it"));
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(id.key_pem.data(), static_cast<int>(id.key_pem.size())));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return absl::InvalidArgumentError(absl::StrCat("Key ", options.key, ": no readable private key in it"));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Key ", options.key, " does not belong to the certificate in ", options.cert));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
    return absl::FailedPreconditionError(absl::StrCat("Cert ", options.cert, ": the certificate has expired"));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    return absl::FailedPreconditionError(absl::StrCat("Cert ", options.cert, ": the certificate is not valid yet"));
  }
  absl::StatusOr<std::string> name = AgentNameFromCertificate(id.cert_pem);
  if (!name.ok()) return absl::InvalidArgumentError(absl::StrCat("Cert ", options.cert, ": ", name.status().message()));
  id.agent_name = *name;
  id.ca_path = options.ca_cert;
  id.cert_path = options.cert;
  id.key_path = options.key;
  if (!options.agent_name.empty() && options.agent_name != id.agent_name) {
    return absl::InvalidArgumentError(absl::StrCat("AgentName is \"", options.agent_name, "\" but the certificate ",
                                                   options.cert, " is for \"", id.agent_name, "\""));
  }
  return id;
}

std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(const TlsIdentity& identity) {
  if (!identity.cert_path.empty()) {
    constexpr unsigned kRefreshSeconds = 5;
    grpc::experimental::TlsChannelCredentialsOptions options;
    options.set_certificate_provider(std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        identity.key_path, identity.cert_path, identity.ca_path, kRefreshSeconds));
    options.watch_root_certs();
    options.watch_identity_key_cert_pairs();
    options.set_verify_server_certs(true);
    return grpc::experimental::TlsCredentials(options);
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = identity.ca_pem;
  ssl.pem_private_key = identity.key_pem;
  ssl.pem_cert_chain = identity.cert_pem;
  return grpc::SslCredentials(ssl);
}

}  // namespace sesame
