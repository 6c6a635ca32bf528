// sesamectl stats: the controller's counters.
#include <CLI/CLI.hpp>

#include "common/prometheus_text.h"
#include "controller/cli/cli_context.h"
#include "controller/cli/sesamectl.h"

namespace sesame::controller::cli {
namespace {

int Stats(Context& ctx) {
  v1::GetStatsResponse r;
  grpc::Status s = ctx.stub().GetStats(ctx.CallContext().get(), v1::GetStatsRequest(), &r);
  if (!s.ok()) return ctx.Fail(s);
  if (ctx.json()) return ctx.Json(r), kExitOk;
  Table t({"METRIC", "VALUE"});
  for (const v1::Metric& m : r.metrics()) t.Add({MetricName(m), FormatMetricValue(m.value())});
  t.Print(ctx.out());
  return kExitOk;
}

}  // namespace

void AddStatsCommands(CLI::App& app, Context& ctx) {
  app.add_subcommand("stats", "the controller's counters")->callback([&ctx] { ctx.action = Stats; });
}

}  // namespace sesame::controller::cli
