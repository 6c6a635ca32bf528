// mTLS credentials from PEM files, for the controller (server: a client
// certificate is required and verified against the CA, revoked ones are
// refused through the CRL directory) and for its clients (sesamectl, agents,
// tests). Files are read and checked up front so that a wrong path or a key
// that does not match its certificate is a clear error at start-up, not a
// handshake failure later.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class ChannelCredentials;
class ServerCredentials;
}  // namespace grpc

namespace sesame::controller {

struct TlsFiles {
  std::string ca_cert;  // PEM: the fleet's CA
  std::string cert;     // PEM: our certificate
  std::string key;      // PEM: its private key
  // Server only: OpenSSL hashed directory of CRLs (HASH.r0), as sesame-pki
  // writes it; empty: no revocation check. The CA's CRL must be there,
  // signed by it and current (checked up front: gRPC would silently skip
  // the check without it). Read at the first handshake and kept: a new CRL
  // takes effect when the controller restarts.
  std::string crl_dir;
};

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const TlsFiles& files);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(const TlsFiles& files);

}  // namespace sesame::controller
