#include "controller/service/peer_identity.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>
#include <grpcpp/server_context.h>

#include "absl/strings/str_cat.h"
#include "controller/model/model.h"
#include "controller/service/client_certificates.h"

namespace sesame::controller {
namespace {

constexpr std::string_view kPrefix = "spiffe://sesame/";

absl::Status Refused(std::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("client certificate refused: ", std::string(why)));
}

}  // namespace

const char* PeerRoleName(PeerRole role) {
  switch (role) {
    case PeerRole::kAgent: return "agent";
    case PeerRole::kAdmin: return "admin";
    case PeerRole::kController: return "controller";
  }
  return "?";
}

absl::StatusOr<PeerIdentity> IdentityFromSpiffeId(std::string_view id) {
  if (id.substr(0, kPrefix.size()) != kPrefix) return Refused("its SPIFFE ID is not in the sesame trust domain");
  const std::string_view rest = id.substr(kPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return Refused("its SPIFFE ID has no role/name path");
  const std::string_view role = rest.substr(0, slash);
  const std::string_view name = rest.substr(slash + 1);
  PeerIdentity out;
  if (role == "agent") {
    out.role = PeerRole::kAgent;
  } else if (role == "admin") {
    out.role = PeerRole::kAdmin;
  } else if (role == "controller") {
    out.role = PeerRole::kController;
  } else {
    return Refused(absl::StrCat("unknown role \"", std::string(role), "\""));
  }
  if (!IsValidName(name)) return Refused("the name in its SPIFFE ID is not a valid name");
  out.name = std::string(name);
  return out;
}

absl::StatusOr<PeerIdentity> IdentityFromAuthContext(const grpc::AuthContext& context) {
  if (!context.IsPeerAuthenticated()) return Refused("no verified client certificate");
  const std::vector<grpc::string_ref> ids = context.FindPropertyValues("peer_spiffe_id");
  if (ids.size() != 1) return Refused("expected exactly one spiffe://sesame/ROLE/NAME URI SAN");
  return IdentityFromSpiffeId(std::string_view(ids[0].data(), ids[0].size()));
}

PeerCertificate PeerCertificateOf(const grpc::AuthContext& context) {
  auto first = [&context](const char* property) {
    const std::vector<grpc::string_ref> values = context.FindPropertyValues(property);
    return values.empty() ? std::string() : std::string(values[0].data(), values[0].size());
  };
  return PeerCertificate{first(GRPC_X509_PEM_CERT_PROPERTY_NAME), first(GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME)};
}

IdentityResolver TlsIdentityResolver(std::shared_ptr<ClientCertificates> clients) {
  return [clients = std::move(clients)](const grpc::CallbackServerContext& context) -> absl::StatusOr<PeerIdentity> {
    std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
    if (auth == nullptr) return Refused("no TLS");
    const PeerCertificate cert = PeerCertificateOf(*auth);
    const absl::Status current = clients->CheckCall(cert.leaf_pem, cert.chain_pem, context.peer());
    if (!current.ok()) return current;
    absl::StatusOr<PeerIdentity> who = IdentityFromAuthContext(*auth);
    if (!who.ok()) clients->ReportRefused(cert.leaf_pem, context.peer(), std::string(who.status().message()));
    return who;
  };
}

}  // namespace sesame::controller
