// Who is calling, from the client certificate alone (deploy/pki/README.md):
// every leaf the fleet's CA signs carries one URI SAN
// spiffe://sesame/ROLE/NAME, which gRPC exposes as the auth context's
// "peer_spiffe_id". The role decides what the caller may do: an agent
// speaks for NAME on AgentService only; an admin calls AdminService, and
// NAME goes into the audit log. Nothing in a request can change either.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace grpc {
class AuthContext;
class CallbackServerContext;
}  // namespace grpc

namespace sesame::controller {

class ClientCertificates;

enum class PeerRole { kAgent, kAdmin, kController };
const char* PeerRoleName(PeerRole role);  // "agent", "admin", "controller"

struct PeerIdentity {
  PeerRole role = PeerRole::kAgent;
  std::string name;
  // "agent:NAME" / "admin:NAME": the form used in audit records.
  std::string principal() const { return std::string(PeerRoleName(role)) + ":" + name; }
  friend bool operator==(const PeerIdentity&, const PeerIdentity&) = default;
};

// Parses "spiffe://sesame/ROLE/NAME"; anything else (other trust domain,
// unknown role, bad name, extra path) is Unauthenticated.
absl::StatusOr<PeerIdentity> IdentityFromSpiffeId(std::string_view id);

// From an authenticated TLS peer: Unauthenticated without a verified client
// certificate or with a certificate that has no (or no single) sesame SPIFFE
// ID.
absl::StatusOr<PeerIdentity> IdentityFromAuthContext(const grpc::AuthContext& context);

// The client certificate a TLS caller sent, PEM: its leaf and the chain it
// came with; empty without one.
struct PeerCertificate {
  std::string leaf_pem;
  std::string chain_pem;
};
PeerCertificate PeerCertificateOf(const grpc::AuthContext& context);

// How services learn the caller; production reads the auth context, tests
// over an in-process channel may inject something else.
using IdentityResolver = std::function<absl::StatusOr<PeerIdentity>(const grpc::CallbackServerContext&)>;
// The TLS caller whose certificate `clients` finds current and not revoked
// (ClientCertificates::CheckCall, which reports a refusal with the
// caller's address).
IdentityResolver TlsIdentityResolver(std::shared_ptr<ClientCertificates> clients);

}  // namespace sesame::controller
