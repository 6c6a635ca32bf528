// sesamectl doors list: the doors and their policies.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "controller/cli/cli_context.h"
#include "controller/cli/sesamectl.h"
#include "controller/service/wire_convert.h"

namespace sesame::controller::cli {
namespace {

int DoorsList(Context& ctx) {
  v1::ListDoorsResponse r;
  grpc::Status s = ctx.stub().ListDoors(ctx.CallContext().get(), v1::ListDoorsRequest(), &r);
  if (!s.ok()) return ctx.Fail(s);
  if (ctx.json()) return ctx.Json(r), kExitOk;
  Table t({"DOOR", "LENGTH", "PROTOCOLS", "PORTS", "AVOID", "OPENS", "TTL", "FLEET-WIDE"});
  for (const v1::Door& d : r.doors()) {
    const v1::DoorPolicy& p = d.policy();
    std::vector<std::string> protocols;
    for (int proto : p.protocols()) protocols.push_back(proto == v1::PROTOCOL_UDP ? "udp" : "tcp");
    t.Add({d.name(), absl::StrCat(p.sequence_length()), absl::StrJoin(protocols, ","),
           absl::StrCat(p.port_range().first(), "-", p.port_range().last()),
           p.avoid_ports().empty() ? "-" : absl::StrJoin(p.avoid_ports(), ","), KnocksText(p.grant_ports()),
           absl::FormatDuration(FromWireDuration(p.grant_ttl())), p.fleet_wide() ? "yes" : "no"});
  }
  t.Print(ctx.out());
  return kExitOk;
}

}  // namespace

void AddDoorsCommands(CLI::App& app, Context& ctx) {
  CLI::App* doors = app.add_subcommand("doors", "doors and their policies")->require_subcommand(1);
  doors->add_subcommand("list", "every door")->callback([&ctx] { ctx.action = DoorsList; });
}

}  // namespace sesame::controller::cli
