// sesamectl grants list | grants open | grants revoke: access opened for
// addresses.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "controller/cli/cli_context.h"
#include "controller/cli/sesamectl.h"
#include "controller/service/wire_convert.h"

namespace sesame::controller::cli {
namespace {

// The three verbs' flags; only one verb runs.
struct GrantsFlags {
  bool all = false, fleet = false, kill_sessions = false;
  std::string ip, agent, door, ttl, id;
};

const char* GrantStateText(v1::GrantState s) {
  switch (s) {
    case v1::GRANT_STATE_OPEN: return "open";
    case v1::GRANT_STATE_EXPIRED: return "expired";
    case v1::GRANT_STATE_REVOKED: return "revoked";
    default: return "?";
  }
}

void GrantsTable(Context& ctx, const google::protobuf::RepeatedPtrField<v1::Grant>& grants) {
  Table t({"ID", "ADDRESS", "DOOR", "OPENS", "WHERE", "STATE", "EXPIRES", "BY", "APPLIED"});
  for (const v1::Grant& g : grants) {
    std::vector<std::string> applied;
    for (const v1::GrantAgentStatus& a : g.agents()) {
      applied.push_back(absl::StrCat(a.agent(), "=",
                                     a.state() == v1::GRANT_AGENT_STATE_APPLIED   ? "ok"
                                     : a.state() == v1::GRANT_AGENT_STATE_FAILED  ? "failed"
                                     : a.state() == v1::GRANT_AGENT_STATE_REMOVED ? "removed"
                                                                                  : "pending"));
    }
    t.Add({absl::StrCat(g.id()), g.address(), g.door(), KnocksText(g.ports()), g.fleet_wide() ? "fleet" : g.agent(),
           GrantStateText(g.state()), TimeText(g.expires_at()), g.opened_by(),
           applied.empty() ? "pending" : absl::StrJoin(applied, ",")});
  }
  t.Print(ctx.out());
}

int GrantsList(Context& ctx, bool all, const std::string& ip) {
  v1::ListGrantsRequest request;
  request.set_all(all);
  request.set_address(ip);
  v1::ListGrantsResponse r;
  grpc::Status s = ctx.stub().ListGrants(ctx.CallContext().get(), request, &r);
  if (!s.ok()) return ctx.Fail(s);
  if (ctx.json()) return ctx.Json(r), kExitOk;
  GrantsTable(ctx, r.grants());
  return kExitOk;
}

int GrantsOpen(Context& ctx, const std::string& agent, bool fleet, const std::string& ip, const std::string& door,
               const std::string& ttl) {
  if (agent.empty() == !fleet) {
    ctx.err() << "sesamectl: grants open: give --agent NAME or --fleet\n";
    return kExitUsage;
  }
  v1::OpenGrantRequest request;
  request.set_agent(agent);
  request.set_fleet_wide(fleet);
  request.set_address(ip);
  request.set_door(door);
  if (!ttl.empty()) {
    absl::Duration d;
    if (!absl::ParseDuration(ttl, &d)) {
      ctx.err() << "sesamectl: --ttl " << ttl << ": expected a duration like 30s or 10m\n";
      return kExitUsage;
    }
    *request.mutable_ttl() = ToWireDuration(d);
  }
  v1::Grant g;
  grpc::Status s = ctx.stub().OpenGrant(ctx.CallContext().get(), request, &g);
  if (!s.ok()) return ctx.Fail(s);
  if (ctx.json()) return ctx.Json(g), kExitOk;
  google::protobuf::RepeatedPtrField<v1::Grant> one;
  *one.Add() = g;
  GrantsTable(ctx, one);
  return kExitOk;
}

int GrantsRevoke(Context& ctx, const std::string& id, const std::string& ip, bool kill_sessions) {
  v1::RevokeGrantsRequest request;
  request.set_kill_sessions(kill_sessions);
  if (!id.empty() == !ip.empty()) {
    ctx.err() << "sesamectl: grants revoke: give a grant ID or --ip ADDR\n";
    return kExitUsage;
  }
  if (!id.empty()) {
    uint64_t value = 0;
    if (!absl::SimpleAtoi(id, &value) || value == 0) {
      ctx.err() << "sesamectl: grants revoke: \"" << id << "\" is not a grant id\n";
      return kExitUsage;
    }
    request.set_grant_id(value);
  } else {
    request.set_address(ip);
  }
  v1::RevokeGrantsResponse r;
  grpc::Status s = ctx.stub().RevokeGrants(ctx.CallContext().get(), request, &r);
  if (!s.ok()) return ctx.Fail(s);
  if (ctx.json()) return ctx.Json(r), kExitOk;
  if (r.grant_ids().empty()) {
    ctx.out() << "nothing to revoke: no open grant\n";
  } else {
    ctx.out() << "revoked " << absl::StrJoin(r.grant_ids(), ", ")
              << (kill_sessions ? "; the bastions end the live sessions too (audit: grant.sessions_killed)\n"
                                : "; sessions already in stay up (--kill-sessions ends them)\n");
  }
  return kExitOk;
}

}  // namespace

void AddGrantsCommands(CLI::App& app, Context& ctx) {
  CLI::App* grants = app.add_subcommand("grants", "access opened for addresses")->require_subcommand(1);
  GrantsFlags& f = ctx.NewFlags<GrantsFlags>();
  CLI::App* list = grants->add_subcommand("list", "open grants (--all: every grant)");
  list->add_flag("--all", f.all, "include expired and revoked grants");
  list->add_option("--ip", f.ip, "only this address");
  list->callback([&ctx, &f] { ctx.action = [&f](Context& c) { return GrantsList(c, f.all, f.ip); }; });
  CLI::App* open = grants->add_subcommand("open", "open access without a knock");
  open->add_option("--agent", f.agent, "the bastion");
  open->add_flag("--fleet", f.fleet, "every bastion");
  open->add_option("--ip", f.ip, "address to let in")->required();
  open->add_option("--door", f.door, "door")->required();
  open->add_option("--ttl", f.ttl, "how long (default: the door's)");
  open->callback([&ctx, &f] {
    ctx.action = [&f](Context& c) { return GrantsOpen(c, f.agent, f.fleet, f.ip, f.door, f.ttl); };
  });
  CLI::App* revoke = grants->add_subcommand("revoke", "remove access on every bastion");
  revoke->add_option("id", f.id, "grant id");
  revoke->add_option("--ip", f.ip, "every open grant of this address");
  revoke->add_flag("--kill-sessions", f.kill_sessions,
                   "also end the address's live connections to the grant's ports (sockets and conntrack entries)");
  revoke->callback([&ctx, &f] {
    ctx.action = [&f](Context& c) { return GrantsRevoke(c, f.id, f.ip, f.kill_sessions); };
  });
}

}  // namespace sesame::controller::cli
