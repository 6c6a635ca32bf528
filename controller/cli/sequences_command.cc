// sesamectl sequences issue | sequences list: one-time knock sequences. Their
// knocks are shown once, by issue; list shows ids and states only.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "controller/cli/cli_context.h"
#include "controller/cli/sesamectl.h"

namespace sesame::controller::cli {
namespace {

// Both verbs' flags; only one verb runs.
struct SequencesFlags {
  std::string door, for_name, reserve, state;
  int count = 1, limit = 0;
};

const char* StateName(v1::SequenceState s) {
  switch (s) {
    case v1::SEQUENCE_STATE_ISSUED: return "issued";
    case v1::SEQUENCE_STATE_LIVE: return "live";
    case v1::SEQUENCE_STATE_BURNT: return "burnt";
    default: return "?";
  }
}

int SequencesIssue(Context& ctx, const std::string& door, int count, const std::string& for_name,
                   const std::string& reserve) {
  v1::IssueSequencesRequest request;
  request.set_door(door);
  request.set_count(static_cast<uint32_t>(count));
  request.set_issued_to(for_name);
  request.set_reserve_agent(reserve);
  v1::IssueSequencesResponse r;
  grpc::Status s = ctx.stub().IssueSequences(ctx.CallContext().get(), request, &r);
  if (!s.ok()) return ctx.Fail(s);
  if (ctx.json()) return ctx.Json(r), kExitOk;
  std::ostream& o = ctx.out();
  for (const v1::IssuedSequence& q : r.sequences()) {
    o << "sequence " << q.id() << " (door " << q.door() << "): " << KnocksText(q.knocks()) << "\n";
    if (q.commands().empty()) o << "  knock HOST " << KnocksText(q.knocks()) << "\n";
    for (const v1::KnockCommand& c : q.commands()) o << "  " << c.command() << "\n";
  }
  o << "# shown once: the controller never shows these sequences again\n";
  return kExitOk;
}

int SequencesList(Context& ctx, const std::string& door, const std::string& state, const std::string& reserve,
                  int limit) {
  v1::ListSequencesRequest request;
  request.set_door(door);
  if (state == "issued") request.set_state(v1::SEQUENCE_STATE_ISSUED);
  if (state == "live") request.set_state(v1::SEQUENCE_STATE_LIVE);
  if (state == "burnt") request.set_state(v1::SEQUENCE_STATE_BURNT);
  request.set_reserve_agent(reserve);
  request.set_limit(static_cast<uint32_t>(std::max(0, limit)));
  v1::ListSequencesResponse r;
  grpc::Status s = ctx.stub().ListSequences(ctx.CallContext().get(), request, &r);
  if (!s.ok()) return ctx.Fail(s);
  if (ctx.json()) return ctx.Json(r), kExitOk;
  Table t({"ID", "DOOR", "STATE", "ISSUED TO", "ISSUED AT", "RESERVE OF", "USED ON", "USED FROM", "USED AT"});
  for (const v1::SequenceInfo& q : r.sequences()) {
    const bool burnt = q.state() == v1::SEQUENCE_STATE_BURNT;
    t.Add({absl::StrCat(q.id()), q.door(), StateName(q.state()), q.issued_to(), TimeText(q.issued_at()),
           q.reserve_agent().empty() ? "-" : q.reserve_agent(), burnt ? q.consumed_by() : "-",
           burnt ? q.consumed_from() : "-", burnt ? TimeText(q.consumed_at()) : "-"});
  }
  t.Print(ctx.out());
  return kExitOk;
}

}  // namespace

void AddSequencesCommands(CLI::App& app, Context& ctx) {
  CLI::App* sequences = app.add_subcommand("sequences", "one-time knock sequences")->require_subcommand(1);
  SequencesFlags& f = ctx.NewFlags<SequencesFlags>();
  CLI::App* issue = sequences->add_subcommand("issue", "new sequences, shown once");
  issue->add_option("--door", f.door, "door")->required();
  issue->add_option("--count", f.count, "how many (1-1000)")->check(CLI::Range(1, 1000));
  issue->add_option("--for", f.for_name, "who receives them (default: you)");
  issue->add_option("--reserve", f.reserve, "offline-reserve sequences valid on this agent alone");
  issue->callback([&ctx, &f] {
    ctx.action = [&f](Context& c) { return SequencesIssue(c, f.door, f.count, f.for_name, f.reserve); };
  });
  CLI::App* list = sequences->add_subcommand("list", "ids and states, never the knocks");
  list->add_option("--door", f.door, "only this door");
  list->add_option("--state", f.state, "only this state")->check(CLI::IsMember({"issued", "live", "burnt"}));
  list->add_option("--reserve", f.reserve, "only the reserve of this agent");
  list->add_option("--limit", f.limit, "at most this many, newest first");
  list->callback([&ctx, &f] {
    ctx.action = [&f](Context& c) { return SequencesList(c, f.door, f.state, f.reserve, f.limit); };
  });
}

}  // namespace sesame::controller::cli
