// What a consumption decides, written once for every Store: whether the
// report is what the reporting agent could have seen, won / replay /
// unknown / refused, the row as burnt, the grant a win opens, the audit
// record of the outcome, and the answer to a resent request. Pure functions
// of what the store found: no I/O, no clock (now is the store's).
//
// What a report must be (knock_report_checks.h), else it is refused
// (knock.refused, with the reason and why; nothing consumed, no grant):
//   - the knocker's address is unicast and not the controller's or a known
//     bastion's own (request.own_addresses);
//   - the agent's time, when sent, is within a day of the store's clock (an
//     offline report of the agent's own reserve: not before the sequence
//     was issued, less a day); the record's time is always the store's;
//   - the sequence is not another bastion's reserve, and one reported as
//     admitted offline is a reserve sequence;
//   - a report by id carries exactly the sequence's knocks;
//   - the sequence had not expired when it was knocked (CheckExpiry).
// A refused report whose knocks are those of a sequence that stays unused
// does not show them in the record. One exception burns on a refusal: an
// offline report of the agent's own unused reserve sequence (the door is
// open there already; it must not come back to that agent), without grant.
//
// A store only makes the decision atomic; in one transaction it:
//   1. answers a request_id it kept before with RepeatedConsumeResult, and
//      does nothing else;
//   2. finds the sequence the request names: by id, or by its knocks (the
//      unused sequence with those knocks, else the newest burnt one);
//   3. decides: DecideConsume(request, found, now);
//   4. if burnt is set, burns the sequence at the next revision
//      (SetBurnRevision);
//   5. if open_grant is set, looks the door up and, when it exists, inserts
//      GrantOn(door) at the next revision (SetGrant);
//   6. appends audit, whose index is the answer's audit_index;
//   7. keeps ConsumptionRecordOf(answer) under (agent, request_id) when the
//      request has an id.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "controller/audit/audit_record.h"
#include "controller/model/model.h"
#include "controller/store/store.h"

namespace sesame::controller {

struct ConsumeDecision {
  // Outcome, sequence_id, door, first_agent, first_source and consumed_at.
  // The store adds revision (SetBurnRevision), grant (SetGrant) and
  // audit_index (once audit is appended).
  ConsumeResult result;
  // kWon (and the refused own offline reserve above): the sequence as this
  // consumption burns it; revision 0 until SetBurnRevision.
  std::optional<Sequence> burnt;
  // kWon with request.order_grant: open the grant of door result.door, if
  // that door exists.
  bool open_grant = false;
  // The record of this knock's outcome, appended after the burn and the
  // grant. It has no origin: the store's ConsumptionRecord answers resends.
  AuditEntry audit;

  // The store burnt the sequence at this revision.
  void SetBurnRevision(uint64_t revision);
  // With open_grant: the grant to insert, as door says (its grant ports and
  // TTL from the burn, on the winning bastion or fleet-wide).
  NewGrant GrantOn(const Door& door) const;
  // The store inserted that grant: it goes in the answer and the audit
  // record names it.
  void SetGrant(GrantRecord grant);
};

// found: the sequence the request names (step 2 above), nullopt when none.
ConsumeDecision DecideConsume(const ConsumeRequest& request, std::optional<Sequence> found, absl::Time now);

// What a store keeps of an answered request id, to answer its resends.
struct ConsumptionRecord {
  ConsumeOutcome outcome = ConsumeOutcome::kUnknown;
  uint64_t sequence_id = 0;  // 0: unknown
  uint64_t grant_id = 0;     // 0: no grant
  uint64_t audit_index = 0;
};

ConsumptionRecord ConsumptionRecordOf(const ConsumeResult& result);

// The first answer again (repeated = true), from what was kept, the
// sequence it names as it is now and the grant it opened (nullopt when the
// record names none, or the row is gone).
ConsumeResult RepeatedConsumeResult(const ConsumptionRecord& record, const std::optional<Sequence>& sequence,
                                    std::optional<GrantRecord> grant);

}  // namespace sesame::controller
