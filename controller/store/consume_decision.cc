// What a consumption decides, for every store (consume_decision.h).
#include "controller/store/consume_decision.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controller/store/knock_report_checks.h"

namespace sesame::controller {
namespace {

// The sequence as this report burns it; revision 0 until SetBurnRevision.
Sequence Burnt(Sequence q, const ConsumeRequest& request, absl::Time now) {
  q.state = SequenceState::kBurnt;
  q.consumed_by = request.agent;
  q.consumed_from = request.source;
  q.consumed_at = now;
  q.revision = 0;
  return q;
}

}  // namespace

ConsumeDecision DecideConsume(const ConsumeRequest& request, std::optional<Sequence> found, absl::Time now) {
  ConsumeDecision d;
  ConsumeResult& result = d.result;
  AuditEntry& entry = d.audit;
  entry.time = now;
  entry.who = request.source.ToString();
  entry.where = absl::StrCat("agent:", request.agent);
  // No origin: the store's ConsumptionRecord already answers resends, and an
  // origin would cost one more index page per consumption.
  if (!request.knocks.empty()) entry.details["knocks"] = KnocksToText(request.knocks);
  if (request.sequence_id != 0) entry.details["sequence"] = absl::StrCat(request.sequence_id);
  if (request.offline) entry.details["offline"] = "true";
  if (request.agent_time) entry.details["agent_time"] = AgentTimeText(*request.agent_time);

  // The agent's own reserve, reported as admitted offline: the door is open
  // there already, and the sequence must not come back to it.
  const bool own_offline_reserve = found && request.offline && found->reserve_agent == request.agent;
  std::optional<Refusal> refusal = CheckKnockerAddress(request.source, request.own_addresses.get());
  if (!refusal && request.agent_time) {
    refusal = CheckAgentTime(*request.agent_time, now, own_offline_reserve ? found->issued_at : now);
  }
  if (!found && !refusal) {
    result.outcome = ConsumeOutcome::kUnknown;
    entry.what = "knock.unknown";
    return d;
  }
  if (found) {
    result.sequence_id = found->id;
    result.door = found->door;
    entry.details["door"] = found->door;
    entry.details["sequence"] = absl::StrCat(found->id);
    if (!refusal) refusal = CheckSequenceScope(request, *found);
    if (!refusal) refusal = CheckKnocks(request, *found);
    if (!refusal) refusal = CheckExpiry(request, *found, now);
  }

  if (refusal) {
    result.outcome = ConsumeOutcome::kRefused;
    result.refused_reason = RefusalReasonName(refusal->reason);
    entry.what = "knock.refused";
    entry.details["reason"] = result.refused_reason;
    entry.details["why"] = refusal->why;
    if (found && !found->reserve_agent.empty() && found->reserve_agent != request.agent) {
      entry.details["reserve_of"] = found->reserve_agent;
    }
    if (found && found->unused() && request.knocks == found->knocks && !own_offline_reserve) {
      // Right knocks, refused all the same: the sequence stays usable, so
      // the log must not show them.
      entry.details["knocks"] = absl::StrCat("withheld: those of unused sequence ", found->id);
    }
    if (own_offline_reserve && found->unused()) {
      // Burnt without a grant: that sequence was valid on this agent alone.
      entry.details["burnt"] = "the agent's own reserve, spent there";
      d.burnt = Burnt(*std::move(found), request, now);
    }
    return d;
  }

  if (found->state == SequenceState::kBurnt) {
    result.outcome = ConsumeOutcome::kReplay;
    result.first_agent = found->consumed_by;
    result.first_source = found->consumed_from;
    result.consumed_at = found->consumed_at;
    entry.what = "knock.replay";
    entry.details["first_agent"] = found->consumed_by;
    if (request.spent_here) entry.details["spent_here"] = "true";
    return d;
  }
  if (request.spent_here) {
    // Used on this agent before, and that report is not in yet (a spool
    // resent after an outage is judged by several threads): it decides, and
    // this one is a replay. Never a win, or a sequence replayed on the agent
    // would open for the replayer.
    result.outcome = ConsumeOutcome::kReplay;
    result.first_agent = request.agent;
    entry.what = "knock.replay";
    entry.details["first_agent"] = request.agent;
    entry.details["spent_here"] = "true";
    return d;
  }

  result.outcome = ConsumeOutcome::kWon;
  result.first_agent = request.agent;
  result.first_source = request.source;
  result.consumed_at = now;
  entry.what = "knock.opened";
  d.burnt = Burnt(*std::move(found), request, now);
  d.open_grant = request.order_grant;
  return d;
}

void ConsumeDecision::SetBurnRevision(uint64_t revision) {
  result.revision = revision;
  if (burnt) burnt->revision = revision;
}

NewGrant ConsumeDecision::GrantOn(const Door& door) const {
  // Only a win opens a grant, and the winner is first_agent at first_source.
  NewGrant g;
  g.door = door.name;
  g.address = result.first_source.value_or(IpAddress());
  g.ports = door.policy.grant_ports;
  g.agent = result.first_agent;
  g.fleet_wide = door.policy.fleet_wide;
  g.expires_at = result.consumed_at + door.policy.grant_ttl;
  g.sequence_id = result.sequence_id;
  g.opened_by = absl::StrCat("agent:", result.first_agent);
  return g;
}

void ConsumeDecision::SetGrant(GrantRecord grant) {
  audit.details["grant"] = absl::StrCat(grant.id);
  result.grant = std::move(grant);
}

ConsumptionRecord ConsumptionRecordOf(const ConsumeResult& result) {
  ConsumptionRecord r;
  r.outcome = result.outcome;
  r.sequence_id = result.sequence_id;
  r.grant_id = result.grant ? result.grant->id : 0;
  r.audit_index = result.audit_index;
  return r;
}

ConsumeResult RepeatedConsumeResult(const ConsumptionRecord& record, const std::optional<Sequence>& sequence,
                                    std::optional<GrantRecord> grant) {
  ConsumeResult result;
  result.outcome = record.outcome;
  result.sequence_id = record.sequence_id;
  result.audit_index = record.audit_index;
  result.repeated = true;
  if (sequence) {
    result.door = sequence->door;
    result.first_agent = sequence->consumed_by;
    result.first_source = sequence->consumed_from;
    result.consumed_at = sequence->consumed_at;
    if (result.outcome == ConsumeOutcome::kWon) result.revision = sequence->revision;
  }
  result.grant = std::move(grant);
  return result;
}

}  // namespace sesame::controller
