// The agent's side of mutual TLS: its certificate and key, the CA that
// signed the controller's certificate, and the name the certificate gives
// the agent. The controller takes the agent's identity from the certificate
// alone; AgentName in the configuration is only a check that the right
// certificate was installed.
//
// The name: the last path segment of a URI SAN spiffe://DOMAIN/agent/NAME
// (what deploy/pki/sesame-pki writes), else the subject's CN.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/config/config.h"
#include "grpcpp/security/credentials.h"

namespace sesame {

struct TlsIdentity {
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  std::string agent_name;  // from the certificate
  // The files they were read from (LoadTlsIdentity); empty: PEM only.
  std::string ca_path, cert_path, key_path;
};

// Reads the three files and checks what can be checked locally: PEM that
// parses, a key that belongs to the certificate, a certificate within its
// validity period, and AgentName (when set) equal to the certificate's name.
// Errors name the file.
absl::StatusOr<TlsIdentity> LoadTlsIdentity(const ManagedOptions& options);

// The agent name a PEM certificate carries (see the top).
absl::StatusOr<std::string> AgentNameFromCertificate(const std::string& cert_pem);

// With the identity's files: they are read again every 5 s, so a renewed
// certificate or CA is used from the next connection on (a new handshake)
// without a restart; files that do not load then keep the last good ones.
// Without files: the PEM as given.
std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(const TlsIdentity& identity);

}  // namespace sesame
