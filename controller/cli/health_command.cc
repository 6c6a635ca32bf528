// sesamectl health: is the controller serving? (the standard gRPC health
// service, connection.h's CheckHealth).
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <string>
#include <utility>
#include <vector>

#include "controller/cli/cli_context.h"
#include "controller/cli/connection.h"
#include "controller/cli/sesamectl.h"

namespace sesame::controller::cli {
namespace {

int Health(Context& ctx) {
  bool serving = false;
  const grpc::Status status = CheckHealth(ctx.channel(), ctx.timeout(), &serving);
  if (!status.ok()) return ctx.Fail(status);
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
