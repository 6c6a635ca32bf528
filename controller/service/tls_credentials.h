// mTLS credentials from PEM files, for the controller (server: a client
// certificate is required and judged by ClientCertificates: its chain in
// the handshake, revocation and validity at each call) and for its clients
// (sesamectl, agents, the etcd store, tests). Files are read and checked up
// front so that a wrong path or a key that does not match its certificate
// is a clear error at start-up, not a handshake failure later; then they
// are read again every few seconds, so a renewed certificate or CA bundle
// is used from the next handshake on without a restart.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class ChannelCredentials;
class ServerCredentials;
}  // namespace grpc

namespace sesame::controller {

class ClientCertificates;

struct TlsFiles {
  std::string ca_cert;  // PEM: the fleet's CA
  std::string cert;     // PEM: our certificate
  std::string key;      // PEM: its private key
  // Server only: OpenSSL hashed directory of CRLs (HASH.r0), as sesame-pki
  // writes it; empty: no revocation check (ClientCertificates::Load).
  std::string crl_dir;
};

// `clients` judges the client certificates (made from files.ca_cert and
// files.crl_dir); the services must call its CheckCall too (the identity
// resolver does, peer_identity.h).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files, std::shared_ptr<ClientCertificates> clients);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(const TlsFiles& files);

}  // namespace sesame::controller
