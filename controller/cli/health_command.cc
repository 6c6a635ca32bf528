// sesamectl health: is the controller serving? Calls the standard gRPC health
// service (grpc.health.v1) through a generic stub and reads its reply by hand.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "controller/cli/cli_context.h"
#include "controller/cli/sesamectl.h"

namespace sesame::controller::cli {
namespace {

int Health(Context& ctx) {
  grpc::GenericStub generic(ctx.channel().shared_from_this());
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  absl::Mutex mu;
  bool done = false;
  grpc::Status status;
  auto context = ctx.CallContext();
  generic.UnaryCall(context.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      absl::MutexLock lock(&mu);
                      status = std::move(s);
                      done = true;
                    });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&done));  // the deadline bounds it
  }
  if (!status.ok()) return ctx.Fail(status);
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status = 1}: SERVING.
  const bool serving = bytes == std::string("\x08\x01", 2);
  if (ctx.json()) {
    ctx.out() << "{\"status\": \"" << (serving ? "SERVING" : "NOT_SERVING") << "\"}\n";
  } else {
    ctx.out() << (serving ? "SERVING" : "NOT_SERVING") << "\n";
  }
  return serving ? kExitOk : kExitFailure;
}

}  // namespace

void AddHealthCommands(CLI::App& app, Context& ctx) {
  app.add_subcommand("health", "is the controller serving?")->callback([&ctx] { ctx.action = Health; });
}

}  // namespace sesame::controller::cli
