// sesamectl sequences issue | claim | list: one-time knock sequences. Their
// knocks are shown once, by issue (or, for the reserve sequences the
// controller keeps for a bastion, by claim); list shows ids and states only.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "controller/cli/cli_context.h"
#include "controller/cli/sesamectl.h"
#include "controller/model/model.h"
#include "controller/service/wire_convert.h"

namespace sesame::controller::cli {
namespace {

// Both verbs' flags; only one verb runs.
struct SequencesFlags {
  std::string door, for_name, reserve, state, expires;
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

// --expires: a lifetime from now ("12h", "7d") or a time (RFC 3339).
std::optional<absl::Time> ExpiryFrom(const std::string& text) {
  if (std::optional<absl::Duration> d = ParseLifetime(text)) return absl::Now() + *d;
  absl::Time t;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &error)) return t;
  return std::nullopt;
}

// Sequences shown to their holder, once: their knocks and where to knock.
int ShowSequences(Context& ctx, const v1::IssueSequencesResponse& r) {
  if (ctx.json()) return ctx.Json(r), kExitOk;
  std::ostream& o = ctx.out();
  for (const v1::IssuedSequence& q : r.sequences()) {
    o << "sequence " << q.id() << " (door " << q.door() << ", expires " << TimeText(q.expires_at())
      << "): " << KnocksText(q.knocks()) << "\n";
    if (q.commands().empty()) o << "  knock HOST " << KnocksText(q.knocks()) << "\n";
    for (const v1::KnockCommand& c : q.commands()) o << "  " << c.command() << "\n";
  }
  o << "# shown once: the controller never shows these sequences again\n";
  return kExitOk;
}

int SequencesIssue(Context& ctx, const SequencesFlags& f) {
  v1::IssueSequencesRequest request;
  request.set_door(f.door);
  request.set_count(static_cast<uint32_t>(f.count));
  request.set_issued_to(f.for_name);
  request.set_reserve_agent(f.reserve);
  if (!f.expires.empty()) {
    const std::optional<absl::Time> expires = ExpiryFrom(f.expires);
    if (!expires) {
      ctx.err() << "sesamectl: --expires " << f.expires
                << ": expected a lifetime like 12h or 7d, or a time like 2027-01-31T18:00:00Z\n";
      return kExitUsage;
    }
    *request.mutable_expires_at() = ToWireTime(*expires);
  }
  v1::IssueSequencesResponse r;
  grpc::Status s = ctx.stub().IssueSequences(ctx.CallContext().get(), request, &r);
  if (!s.ok()) return ctx.Fail(s);
  return ShowSequences(ctx, r);
}

int SequencesClaim(Context& ctx, const SequencesFlags& f) {
  v1::ClaimReserveRequest request;
  request.set_agent(f.reserve);
  request.set_door(f.door);
  request.set_count(static_cast<uint32_t>(f.count));
  request.set_claimed_by(f.for_name);
  v1::IssueSequencesResponse r;
  grpc::Status s = ctx.stub().ClaimReserve(ctx.CallContext().get(), request, &r);
  if (!s.ok()) return ctx.Fail(s);
  if (r.sequences().empty() && !ctx.json()) {
    ctx.err() << "sesamectl: bastion " << f.reserve << " has no unclaimed reserve sequence"
              << (f.door.empty() ? "" : " of door " + f.door) << " (its Offline_Reserve is kept by the leader)\n";
    return kExitNotFound;
  }
  return ShowSequences(ctx, r);
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
  Table t({"ID", "DOOR", "STATE", "ISSUED TO", "ISSUED AT", "EXPIRES", "RESERVE OF", "USED ON", "USED FROM",
           "USED AT"});
  for (const v1::SequenceInfo& q : r.sequences()) {
    const bool burnt = q.state() == v1::SEQUENCE_STATE_BURNT;
    // A sequence burnt by its expiry was used nowhere.
    const bool used = burnt && !q.expired();
    t.Add({absl::StrCat(q.id()), q.door(), q.expired() ? "burnt (expired)" : StateName(q.state()), q.issued_to(),
           TimeText(q.issued_at()), q.has_expires_at() ? TimeText(q.expires_at()) : "never",
           q.reserve_agent().empty() ? "-" : q.reserve_agent(), used ? q.consumed_by() : "-",
           used ? q.consumed_from() : "-", burnt ? TimeText(q.consumed_at()) : "-"});
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
  issue->add_option("--expires", f.expires,
                    "when they expire: a lifetime (12h, 7d) or a time (RFC 3339); default: the controller's");
  issue->callback([&ctx, &f] {
    ctx.action = [&f](Context& c) { return SequencesIssue(c, f); };
  });
  CLI::App* claim =
      sequences->add_subcommand("claim", "reserve sequences the controller keeps for a bastion, shown once");
  claim->add_option("--reserve", f.reserve, "the bastion whose reserve")->required();
  claim->add_option("--door", f.door, "only this door");
  claim->add_option("--count", f.count, "how many (1-1000)")->check(CLI::Range(1, 1000));
  claim->add_option("--for", f.for_name, "who receives them (default: you)");
  claim->callback([&ctx, &f] {
    ctx.action = [&f](Context& c) { return SequencesClaim(c, f); };
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
