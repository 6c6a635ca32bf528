// Private to controller/cli: what sesamectl.cc and the noun files
// (*_command.cc) share. sesamectl.cc makes one Context per run and has each
// noun add its subcommands to the app; the callback of the subcommand that is
// parsed sets the action, which sesamectl.cc runs once the connection is open.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "controller/cli/connection.h"
#include "controller/cli/output.h"
#include "sesame/v1/admin.grpc.pb.h"

namespace CLI {
class App;
}

namespace sesame::controller::cli {

struct GlobalOptions {
  ConnectionOptions connection;
  std::string output = "table";  // -o: table or json
};

class Context {
 public:
  Context(std::ostream& out, std::ostream& err) : out_(out), err_(err) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Bound to the global flags while the app is built; read after parsing.
  GlobalOptions options;

  // Set by the callback of the parsed subcommand. action talks to the
  // controller; offline_action does not, so no connection (and no
  // certificate) is needed for it.
  std::function<int(Context&)> action;
  std::function<int(Context&)> offline_action;

  std::ostream& out() { return out_; }  // data
  std::ostream& err() { return err_; }  // errors
  bool json() const { return options.output == "json"; }

  // Opens the connection from the global flags; kExitOk or an exit code.
  int Connect() { return connection_.Open(options.connection, err_); }
  // These need the connection open.
  v1::AdminService::Stub& stub() { return connection_.stub(); }
  grpc::Channel& channel() { return connection_.channel(); }
  std::unique_ptr<grpc::ClientContext> CallContext() const { return connection_.CallContext(); }
  absl::Duration timeout() const { return connection_.timeout(); }

  // The exit code of a failed call, its reason on err().
  int Fail(const grpc::Status& s) { return ReportRpcFailure(s, err_); }
  void Json(const google::protobuf::Message& m) { PrintJson(out_, m); }

  // Storage for a noun's flag values. CLI11 writes them while parsing, after
  // Add<Noun>Commands has returned, and the action reads them later still, so
  // they cannot be locals there: they live as long as the context.
  template <typename T>
  T& NewFlags() {
    auto flags = std::make_shared<T>();
    flags_.push_back(flags);
    return *flags;
  }

 private:
  std::ostream& out_;
  std::ostream& err_;
  Connection connection_;
  std::vector<std::shared_ptr<void>> flags_;
};

// One per noun, each in its <noun>_command.cc; sesamectl.cc calls them in
// the order help lists the nouns. health and stats have no verbs.
void AddHealthCommands(CLI::App& app, Context& ctx);
void AddAgentsCommands(CLI::App& app, Context& ctx);
void AddDoorsCommands(CLI::App& app, Context& ctx);
void AddSequencesCommands(CLI::App& app, Context& ctx);
void AddGrantsCommands(CLI::App& app, Context& ctx);
void AddAuditCommands(CLI::App& app, Context& ctx);
void AddStatsCommands(CLI::App& app, Context& ctx);

}  // namespace sesame::controller::cli
