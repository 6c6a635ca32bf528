// The controller connection of sesamectl: global flags, credentials, channel,
// deadlines, and the exit code of a failed call.
#include "controller/cli/connection.h"

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>

#include "controller/cli/sesamectl.h"
#include "controller/service/tls_credentials.h"

namespace sesame::controller::cli {

void AddConnectionOptions(CLI::App& app, ConnectionOptions& options) {
  app.add_option("--controller", options.controller, "controller address HOST:PORT")->envname("SESAME_CONTROLLER");
  app.add_option("--ca-cert", options.ca_cert, "CA certificate (PEM)")->envname("SESAME_CA_CERT");
  app.add_option("--cert", options.cert, "operator certificate (PEM)")->envname("SESAME_CERT");
  app.add_option("--key", options.key, "operator private key (PEM)")->envname("SESAME_KEY");
  app.add_option("--timeout", options.timeout, "deadline of every call (e.g. 10s)")->envname("SESAME_TIMEOUT");
}

int Connection::Open(const ConnectionOptions& options, std::ostream& err) {
  if (!absl::ParseDuration(options.timeout, &timeout_) || timeout_ <= absl::ZeroDuration()) {
    err << "sesamectl: --timeout " << options.timeout << ": expected a duration like 10s\n";
    return kExitUsage;
  }
  if (options.ca_cert.empty() || options.cert.empty() || options.key.empty()) {
    err << "sesamectl: --ca-cert, --cert and --key (or SESAME_CA_CERT, SESAME_CERT, SESAME_KEY) are required\n";
    return kExitUsage;
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      MakeClientCredentials(TlsFiles{options.ca_cert, options.cert, options.key, ""});
  if (!creds.ok()) {
    err << "sesamectl: " << creds.status().message() << "\n";
    return absl::IsNotFound(creds.status()) ? kExitUsage : kExitFailure;
  }
  channel_ = grpc::CreateChannel(options.controller, *creds);
  stub_ = v1::AdminService::NewStub(channel_);
  return kExitOk;
}

std::unique_ptr<grpc::ClientContext> Connection::CallContext() const {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  return c;
}

int ReportRpcFailure(const grpc::Status& s, std::ostream& err) {
  int code = kExitFailure;
  const char* what = "failed";
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      // A TLS alert means the controller answered and refused the
      // certificate (unknown CA, revoked), or ours did not trust it.
      if (s.error_message().find("Ssl handshake failed") != std::string::npos ||
          s.error_message().find("SSL_ERROR_SSL") != std::string::npos) {
        code = kExitRefused;
        what = "refused in the TLS handshake (certificate)";
        break;
      }
      code = kExitUnreachable;
      what = "controller unreachable";
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      code = kExitRefused;
      what = "refused";
      break;
    case grpc::StatusCode::NOT_FOUND:
      code = kExitNotFound;
      what = "not found";
      break;
    case grpc::StatusCode::INVALID_ARGUMENT:
      code = kExitUsage;
      what = "invalid argument";
      break;
    default: break;
  }
  err << "sesamectl: " << what << ": " << s.error_message() << "\n";
  return code;
}

}  // namespace sesame::controller::cli
