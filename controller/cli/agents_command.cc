// sesamectl agents list | agents show NAME: the bastions' agents.
#include <CLI/CLI.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/prometheus_text.h"
#include "controller/cli/cli_context.h"
#include "controller/cli/sesamectl.h"

namespace sesame::controller::cli {
namespace {

// Held/capacity as of the agent's last heartbeat to this controller.
std::string SequencesText(const v1::AgentInfo& a) {
  if (a.sequences_capacity() == 0) return a.sequences_held() == 0 ? "-" : absl::StrCat(a.sequences_held());
  return absl::StrCat(a.sequences_held(), "/", a.sequences_capacity());
}

void AgentRow(Table& t, const v1::AgentInfo& a) {
  t.Add({a.name(), a.connected() ? "yes" : "no", a.version().empty() ? "-" : a.version(),
         TimeText(a.last_heartbeat()), absl::StrCat(a.acked_revision(), "/", a.revision()), SequencesText(a),
         a.reserve_left() == 0 ? "0 (EMPTY)" : absl::StrCat(a.reserve_left()), absl::StrCat(a.spool_depth()),
         a.last_error().empty() ? "-" : a.last_error()});
}

// An empty offline reserve is a lockout waiting for the next controller
// outage: said on stderr, the exit status unchanged.
void WarnEmptyReserves(std::ostream& err, const v1::ListAgentsResponse& r) {
  for (const v1::AgentInfo& a : r.agents()) {
    if (a.reserve_left() != 0) continue;
    err << "sesamectl: warning: " << a.name()
        << " holds no offline-reserve sequence: while no controller answers, nobody can knock it open "
           "(sesamectl sequences issue --door DOOR --reserve "
        << a.name() << ")\n";
  }
}

int AgentsList(Context& ctx) {
  v1::ListAgentsResponse r;
  grpc::Status s = ctx.stub().ListAgents(ctx.CallContext().get(), v1::ListAgentsRequest(), &r);
  if (!s.ok()) return ctx.Fail(s);
  if (ctx.json()) return ctx.Json(r), kExitOk;
  Table t({"NAME", "CONNECTED", "VERSION", "LAST HEARTBEAT", "REVISION", "SEQUENCES", "RESERVE", "SPOOL",
           "LAST ERROR"});
  for (const v1::AgentInfo& a : r.agents()) AgentRow(t, a);
  t.Print(ctx.out());
  WarnEmptyReserves(ctx.err(), r);
  return kExitOk;
}

int AgentsShow(Context& ctx, const std::string& name) {
  v1::GetAgentRequest request;
  request.set_name(name);
  v1::AgentInfo a;
  grpc::Status s = ctx.stub().GetAgent(ctx.CallContext().get(), request, &a);
  if (!s.ok()) return ctx.Fail(s);
  if (ctx.json()) return ctx.Json(a), kExitOk;
  std::ostream& o = ctx.out();
  o << "name:            " << a.name() << "\n"
    << "connected:       " << (a.connected() ? "yes" : "no") << "\n"
    << "version:         " << (a.version().empty() ? "-" : a.version()) << "\n"
    << "connected at:    " << TimeText(a.connected_at()) << "\n"
    << "disconnected at: " << TimeText(a.disconnected_at()) << "\n"
    << "last heartbeat:  " << TimeText(a.last_heartbeat()) << "\n"
    << "revision:        " << a.acked_revision() << " acknowledged of " << a.revision() << "\n"
    << "sequences:       " << SequencesText(a) << " (held/capacity)\n"
    << "reserve left:    " << a.reserve_left() << "\n"
    << "spool depth:     " << a.spool_depth() << "\n"
    << "last error:      " << (a.last_error().empty() ? "-" : a.last_error()) << "\n"
    << "knock hosts:     " << (a.advertise_hosts().empty() ? "-" : absl::StrJoin(a.advertise_hosts(), ", ")) << "\n";
  if (a.metrics().empty()) {
    o << "metrics:         - (none since the controller started; heartbeats bring them)\n";
    return kExitOk;
  }
  o << "metrics (last heartbeat):\n";
  Table t({"  METRIC", "VALUE"});
  for (const v1::Metric& m : a.metrics()) t.Add({absl::StrCat("  ", MetricName(m)), FormatMetricValue(m.value())});
  t.Print(o);
  return kExitOk;
}

}  // namespace

void AddAgentsCommands(CLI::App& app, Context& ctx) {
  CLI::App* agents = app.add_subcommand("agents", "the bastions' agents")->require_subcommand(1);
  agents->add_subcommand("list", "every agent")->callback([&ctx] { ctx.action = AgentsList; });
  std::string& name = ctx.NewFlags<std::string>();
  CLI::App* show = agents->add_subcommand("show", "one agent");
  show->add_option("name", name, "agent name")->required();
  show->callback([&ctx, &name] { ctx.action = [&name](Context& c) { return AgentsShow(c, name); }; });
}

}  // namespace sesame::controller::cli
