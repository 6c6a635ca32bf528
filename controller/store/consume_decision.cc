// What a consumption decides, for every store (consume_decision.h).
#include "controller/store/consume_decision.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sesame::controller {

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

  // Another bastion's reserve sequence is not valid here: unknown, and it
  // stays unused for its own bastion.
  const bool foreign_reserve = found && !found->reserve_agent.empty() && found->reserve_agent != request.agent;
  if (!found || foreign_reserve) {
    result.outcome = ConsumeOutcome::kUnknown;
    entry.what = "knock.unknown";
    if (foreign_reserve) entry.details["reserve_of"] = found->reserve_agent;
    return d;
  }

  result.sequence_id = found->id;
  result.door = found->door;
  entry.details["door"] = found->door;
  entry.details["sequence"] = absl::StrCat(found->id);
  if (found->state == SequenceState::kBurnt) {
    result.outcome = ConsumeOutcome::kReplay;
    result.first_agent = found->consumed_by;
    result.first_source = found->consumed_from;
    result.consumed_at = found->consumed_at;
    entry.what = "knock.replay";
    entry.details["first_agent"] = found->consumed_by;
    return d;
  }

  result.outcome = ConsumeOutcome::kWon;
  result.first_agent = request.agent;
  result.first_source = request.source;
  result.consumed_at = now;
  entry.what = "knock.opened";
  Sequence burnt = *std::move(found);
  burnt.state = SequenceState::kBurnt;
  burnt.consumed_by = request.agent;
  burnt.consumed_from = request.source;
  burnt.consumed_at = now;
  burnt.revision = 0;
  d.burnt = std::move(burnt);
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
