// How the controller judges its clients' certificates: against the fleet's
// CA bundle and its CRLs, read from their files and read again when the
// files change, so that a new CRL or CA bundle takes effect without a
// restart (`sesame-pki revoke`, then the next call is refused).
//
// The judgement has two steps, because gRPC tells the TLS handshake's
// verifier who is calling but not from where:
//  - in the handshake (HandshakeVerifier): the chain must lead to the CA.
//    A stranger's certificate never gets further than that, and its
//    refusal is audited without an address;
//  - at every call (CheckCall, through the identity resolver): the whole
//    check, the chain again, not revoked, not expired, not yet valid. A
//    refusal there has the caller's address.
// SetUnknownCaAtCall(true) leaves the chain to the call too (the config's
// Unknown_CA_Refused_At = call): a stranger's refusal then has its address,
// at the price of letting it through the handshake to its first call.
// Each refusal goes to the refusal sink (who, from where, why), which audits
// it within bounds (refusal_audit.h).
//
// Files are checked for changes at most once a second, when a certificate
// is judged; Reload() reads them at once (SIGHUP). Files that do not load
// (a truncated CA, a CRL that is not the CA's or has expired) leave the
// material in force unchanged and are reported once through the log.
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

typedef struct x509_store_st X509_STORE;

namespace grpc::experimental {
class CertificateVerifier;
}  // namespace grpc::experimental

namespace sesame::controller {

// A certificate refused, as the audit tells it.
struct CertificateRefusal {
  enum class Stage { kHandshake, kCall };
  Stage stage = Stage::kHandshake;
  std::string peer;     // "ipv4:ADDR:PORT"; empty in the handshake (gRPC does not say)
  std::string subject;  // RFC 2253, or "" when the certificate did not parse
  std::string serial;   // hex
  std::string issuer;   // RFC 2253
  std::string claimed;  // the spiffe:// URI it carries, unverified
  std::string reason;   // "revoked", "expired", "unknown CA", ...
};
const char* CertificateRefusalStageName(CertificateRefusal::Stage stage);  // "handshake", "call"

using CertificateRefusalSink = std::function<void(const CertificateRefusal&)>;

class ClientCertificates : public std::enable_shared_from_this<ClientCertificates> {
 public:
  // Reads CA_CERT (PEM, one CA or a bundle) and CRL_DIR (OpenSSL hashed
  // directory, HASH.rN; empty: no revocation check). Every CA of the bundle
  // must have its current CRL there: without one OpenSSL would refuse all of
  // its certificates, and gRPC used to let them all through.
  static absl::StatusOr<std::shared_ptr<ClientCertificates>> Load(std::string ca_cert, std::string crl_dir);

  // Refusals from now on go to `sink` (set before serving).
  void SetRefusalSink(CertificateRefusalSink sink);
  // Whether the handshake lets a chain of an unknown CA through, for the
  // call to refuse (false: the handshake refuses it).
  void SetUnknownCaAtCall(bool at_call) { unknown_ca_at_call_.store(at_call); }

  // The check of a client's certificate at a call: `leaf_pem` (and the rest
  // of the chain it sent) is the CA's, current and not revoked. `peer` names
  // the caller for the refusal sink.
  absl::Status CheckCall(std::string_view leaf_pem, std::string_view chain_pem, const std::string& peer);
  // A certificate that passed CheckCall but is refused all the same (it
  // names no sesame identity): to the refusal sink.
  void ReportRefused(std::string_view leaf_pem, const std::string& peer, std::string reason);
  // The handshake's check: the chain leads to the CA (signatures only),
  // unless SetUnknownCaAtCall(true).
  absl::Status CheckChain(std::string_view leaf_pem, std::string_view chain_pem);

  // For TlsServerCredentialsOptions::set_certificate_verifier: CheckChain
  // in the handshake.
  std::shared_ptr<grpc::experimental::CertificateVerifier> HandshakeVerifier();

  // Reads the files again now; an error leaves the material in force.
  absl::Status Reload();
  // Reads them again when they changed (at most one look a second).
  void ReloadIfChanged();
  // How many times new material took effect (0 after Load).
  uint64_t reloads() const;

  ~ClientCertificates();

 private:
  struct FileStamp {
    std::string path;
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    friend bool operator==(const FileStamp&, const FileStamp&) = default;
  };
  ClientCertificates(std::string ca_cert, std::string crl_dir);
  std::vector<FileStamp> Stamps() const;
  // Reads the files into a new store; `stamps` are those read.
  absl::StatusOr<X509_STORE*> Read(std::vector<FileStamp>& stamps) const;
  std::shared_ptr<X509_STORE> Current();
  void Tell(const CertificateRefusal& refusal);
  absl::Status Check(std::string_view leaf_pem, std::string_view chain_pem, bool full,
                     CertificateRefusal::Stage stage, const std::string& peer);

  const std::string ca_cert_;
  const std::string crl_dir_;
  mutable absl::Mutex mu_;
  std::shared_ptr<X509_STORE> store_ ABSL_GUARDED_BY(mu_);
  std::vector<FileStamp> stamps_ ABSL_GUARDED_BY(mu_);
  absl::Time checked_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string load_error_ ABSL_GUARDED_BY(mu_);  // the last failed reload's, said once
  uint64_t reloads_ ABSL_GUARDED_BY(mu_) = 0;
  CertificateRefusalSink sink_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> unknown_ca_at_call_{false};
};

}  // namespace sesame::controller
