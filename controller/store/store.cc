#include "controller/store/store.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace sesame::controller {

const char* ConsumeOutcomeName(ConsumeOutcome outcome) {
  switch (outcome) {
    case ConsumeOutcome::kWon: return "won";
    case ConsumeOutcome::kReplay: return "replay";
    case ConsumeOutcome::kUnknown: return "unknown";
    case ConsumeOutcome::kRefused: return "refused";
  }
  return "?";
}

Sequence IssuedSequence(const NewSequence& n, uint64_t id, uint64_t revision, absl::Time now) {
  Sequence q;
  q.id = id;
  q.door = n.door;
  q.knocks = n.knocks;
  q.state = SequenceState::kIssued;
  q.issued_to = n.issued_to;
  q.issued_at = TruncateToMicros(now);
  q.reserve_agent = n.reserve_agent;
  q.expires_at = TruncateToMicros(n.expires_at);
  q.revision = revision;
  return q;
}

Sequence ExpiredSequence(Sequence q, uint64_t revision, absl::Time now) {
  q.state = SequenceState::kBurnt;
  q.expired = true;
  q.consumed_by.clear();
  q.consumed_from.reset();
  q.consumed_at = TruncateToMicros(now);
  q.revision = revision;
  return q;
}

AuditEntry ExpiredAudit(const Sequence& q, absl::Time now) {
  AuditEntry e;
  e.time = now;
  e.who = "controller";
  e.what = "sequence.expired";
  e.where = "controller";
  e.details = {{"sequence", absl::StrCat(q.id)},
               {"door", q.door},
               {"issued_to", q.issued_to},
               {"expires_at", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", q.expires_at, absl::UTCTimeZone())}};
  if (!q.reserve_agent.empty()) e.details["reserve_of"] = q.reserve_agent;
  return e;
}

GrantRecord OpenedGrant(const NewGrant& g, uint64_t id, uint64_t revision, absl::Time now) {
  GrantRecord out;
  out.id = id;
  out.door = g.door;
  out.address = g.address;
  out.ports = g.ports;
  out.agent = g.fleet_wide ? std::string() : g.agent;
  out.fleet_wide = g.fleet_wide;
  out.opened_at = TruncateToMicros(now);
  out.expires_at = TruncateToMicros(g.expires_at);
  out.sequence_id = g.sequence_id;
  out.opened_by = g.opened_by;
  out.revision = revision;
  return out;
}

}  // namespace sesame::controller
