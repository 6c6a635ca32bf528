// sesamectl's entry point: the CLI11 app with the global flags, each noun's
// subcommands (from its <noun>_command.cc), and the dispatch from what was
// parsed to an exit code. See sesamectl.h for the commands and exit codes.
#include "controller/cli/sesamectl.h"

#include <CLI/CLI.hpp>

#include "controller/cli/cli_context.h"

namespace sesame::controller {

int RunSesamectl(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  // Declared before the app: it holds the flag values and the action the
  // app's options and callbacks write to.
  cli::Context ctx(out, err);
  CLI::App app{"sesamectl: manage a sesame fleet through sesame-controller"};
  app.require_subcommand(1);
  // Global flags anywhere on the line, as kubectl and etcdctl take them
  // (`sesamectl sequences issue --door d -o json`): a subcommand hands what
  // it does not know to its parent. Subcommands inherit this setting.
  app.fallthrough();
  cli::AddConnectionOptions(app, ctx.options.connection);
  app.add_option("-o,--output", ctx.options.output, "output format")->check(CLI::IsMember({"table", "json"}));
  // A global flag given twice (an alias, then the line): the last one wins.
  for (CLI::Option* option : app.get_options()) option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.footer(
      "Exit codes: 0 ok, 1 failure (or an audit log that does not verify), 2 usage, 3 controller unreachable, "
      "4 refused (certificate), 5 not found.");

  // Help lists the nouns in this order.
  cli::AddHealthCommands(app, ctx);
  cli::AddAgentsCommands(app, ctx);
  cli::AddDoorsCommands(app, ctx);
  cli::AddSequencesCommands(app, ctx);
  cli::AddGrantsCommands(app, ctx);
  cli::AddAuditCommands(app, ctx);
  cli::AddStatsCommands(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, out, err);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (ctx.offline_action) return ctx.offline_action(ctx);
  if (!ctx.action) return kExitUsage;
  if (int code = ctx.Connect(); code != kExitOk) return code;
  return ctx.action(ctx);
}

}  // namespace sesame::controller
