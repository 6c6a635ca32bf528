// Where sesamectl finds the controller and who it is there: the global flags
// for address, certificates and deadline (each also from a SESAME_*
// environment variable), the mTLS channel and AdminService stub made from
// them, and what a failed call means to the operator (message, exit code).
#pragma once

#include <memory>
#include <ostream>
#include <string>

#include "absl/time/time.h"
#include "sesame/v1/admin.grpc.pb.h"

namespace CLI {
class App;
}

namespace sesame::controller::cli {

struct ConnectionOptions {
  // HOST:PORT, or several comma-separated (controllers sharing one store):
  // the first one SERVING is used.
  std::string controller = "localhost:7443";
  std::string ca_cert, cert, key;
  std::string timeout = "10s";
};

// --controller, --ca-cert, --cert, --key and --timeout, with their
// environment variables.
void AddConnectionOptions(CLI::App& app, ConnectionOptions& options);

class Connection {
 public:
  // Checks the timeout, reads the certificate files and makes the channel;
  // kExitOk, or an exit code after saying why on err.
  int Open(const ConnectionOptions& options, std::ostream& err);

  // Only once Open succeeded.
  v1::AdminService::Stub& stub() { return *stub_; }
  grpc::Channel& channel() { return *channel_; }

  // For one call: its deadline is the timeout from now.
  std::unique_ptr<grpc::ClientContext> CallContext() const;
  absl::Duration timeout() const { return timeout_; }
  // The controller chosen (one of --controller).
  const std::string& address() const { return address_; }

 private:
  absl::Duration timeout_ = absl::Seconds(10);
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AdminService::Stub> stub_;
};

// Says on err why a call failed and returns the exit code for it (see
// sesamectl.h).
int ReportRpcFailure(const grpc::Status& s, std::ostream& err);

// The standard health service (grpc.health.v1) of the controller behind
// channel: the call's status, and *serving when it answered SERVING.
grpc::Status CheckHealth(grpc::Channel& channel, absl::Duration deadline, bool* serving);

}  // namespace sesame::controller::cli
