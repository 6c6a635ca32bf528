// The controller connection of sesamectl: global flags, credentials, channel,
// deadlines, and the exit code of a failed call.
#include "controller/cli/connection.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"

#include "controller/cli/sesamectl.h"
#include "controller/service/tls_credentials.h"

namespace sesame::controller::cli {

void AddConnectionOptions(CLI::App& app, ConnectionOptions& options) {
  app.add_option("--controller", options.controller,
                 "controller address HOST:PORT, or several comma-separated (the first serving one is used)")
      ->envname("SESAME_CONTROLLER");
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
  std::vector<std::string> addresses;
  for (absl::string_view a : absl::StrSplit(options.controller, ',', absl::SkipWhitespace())) {
    addresses.emplace_back(absl::StripAsciiWhitespace(a));
  }
  if (addresses.empty()) {
    err << "sesamectl: --controller: expected HOST:PORT[,HOST:PORT...]\n";
    return kExitUsage;
  }
  address_ = addresses.front();
  channel_ = grpc::CreateChannel(address_, *creds);
  if (addresses.size() > 1) {
    // Several controllers share one store: the first that is SERVING, else
    // the first that answers (its calls then say why), else the first.
    const absl::Duration each = std::min(timeout_, absl::Seconds(2));
    std::shared_ptr<grpc::Channel> answering;
    std::vector<std::string> tried;
    for (const std::string& a : addresses) {
      std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(a, *creds);
      bool serving = false;
      const grpc::Status s = CheckHealth(*channel, each, &serving);
      if (s.ok() && serving) {
        address_ = a;
        channel_ = channel;
        answering = nullptr;
        tried.clear();
        break;
      }
      tried.push_back(a + (s.ok() ? " NOT_SERVING" : " unreachable"));
      if (s.ok() && answering == nullptr) {
        answering = channel;
        address_ = a;
      }
    }
    if (answering != nullptr) channel_ = answering;
    if (!tried.empty()) err << "sesamectl: no controller is serving (" << absl::StrJoin(tried, ", ") << ")\n";
  }
  stub_ = v1::AdminService::NewStub(channel_);
  return kExitOk;
}

grpc::Status CheckHealth(grpc::Channel& channel, absl::Duration deadline, bool* serving) {
  grpc::GenericStub generic(channel.shared_from_this());
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  absl::Mutex mu;
  bool done = false;
  grpc::Status status;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      absl::MutexLock lock(&mu);
                      status = std::move(s);
                      done = true;
                    });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&done));  // the deadline bounds it
  }
  if (!status.ok()) return status;
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status = 1}: SERVING.
  *serving = bytes == std::string("\x08\x01", 2);
  return status;
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
