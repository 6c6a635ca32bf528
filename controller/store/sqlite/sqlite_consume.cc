// SqliteStore's Consume: the one-time burn. What a consumption decides is
// consume_decision.h's; this file finds what it decides from and applies the
// decision in one group-committed transaction, in the order that header
// gives, with the consumptions table answering resent request ids.
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/store/consume_decision.h"
#include "controller/store/sqlite/internal/sqlite_queries.h"
#include "controller/store/sqlite/internal/sqlite_rows.h"
#include "controller/store/sqlite/internal/sqlite_writer.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "controller/store/store_checks.h"

namespace sesame::controller {
using internal::ConsumeOutcomeFromText;
using internal::FindDoor;
using internal::FindGrant;
using internal::FindSequence;
using internal::FindSequenceByKnocks;
using internal::InsertGrant;
using internal::Micros;

absl::StatusOr<ConsumeResult> SqliteStore::Consume(const ConsumeRequest& request) {
  RETURN_IF_ERROR(ValidateConsumeRequest(request));
  ConsumeResult result;
  RETURN_IF_ERROR(Write([&](Writer& w) { return ConsumeInTransaction(w, request, result); }));
  return result;
}

absl::Status SqliteStore::ConsumeInTransaction(Writer& w, const ConsumeRequest& req, ConsumeResult& result) {
  SqliteDb& db = w.db();
  result = ConsumeResult();
  const absl::Time now = TruncateToMicros(clock_.Now());

  // A resend: the first answer again.
  if (!req.request_id.empty()) {
    ASSIGN_OR_RETURN(SqliteStatement s,
                     db.Prepare("SELECT outcome, sequence_id, grant_id, audit_index FROM consumptions "
                                "WHERE agent = ? AND request_id = ?"));
    s.BindAll(req.agent, req.request_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      ConsumptionRecord earlier;
      earlier.outcome = ConsumeOutcomeFromText(s.Text(0));
      earlier.sequence_id = static_cast<uint64_t>(s.Int(1));
      earlier.grant_id = static_cast<uint64_t>(s.Int(2));
      earlier.audit_index = static_cast<uint64_t>(s.Int(3));
      std::optional<Sequence> q;
      if (earlier.sequence_id != 0) {
        ASSIGN_OR_RETURN(q, FindSequence(db, earlier.sequence_id));
      }
      std::optional<GrantRecord> grant;
      if (earlier.grant_id != 0) {
        ASSIGN_OR_RETURN(grant, FindGrant(db, earlier.grant_id));
      }
      result = RepeatedConsumeResult(earlier, q, std::move(grant));
      return absl::OkStatus();
    }
  }

  std::optional<Sequence> q;
  if (req.sequence_id != 0) {
    ASSIGN_OR_RETURN(q, FindSequence(db, req.sequence_id));
  } else {
    ASSIGN_OR_RETURN(q, FindSequenceByKnocks(db, KnocksToText(req.knocks)));
  }
  ConsumeDecision decision = DecideConsume(req, std::move(q), now);

  if (decision.burnt) {
    decision.SetBurnRevision(w.NextRevision());
    const Sequence& burnt = *decision.burnt;
    ASSIGN_OR_RETURN(SqliteStatement s,
                     db.Prepare("UPDATE sequences SET state = 'burnt', consumed_by = ?, consumed_from = ?, "
                                "consumed_at_us = ?, revision = ? WHERE id = ? AND state != 'burnt'"));
    s.BindAll(burnt.consumed_by, burnt.consumed_from->ToString(), Micros(burnt.consumed_at),
              static_cast<int64_t>(burnt.revision), static_cast<int64_t>(burnt.id));
    RETURN_IF_ERROR(s.Run());
    if (db.Changes() != 1) return absl::InternalError(absl::StrCat("sequence ", burnt.id, " changed under the writer"));
    w.Changed(StoreChange{StoreChange::Kind::kSequenceBurnt, decision.result.revision, *std::move(decision.burnt), {},
                          {}});
  }
  if (decision.open_grant) {
    ASSIGN_OR_RETURN(std::optional<Door> door, FindDoor(db, decision.result.door));
    if (door) {
      ASSIGN_OR_RETURN(GrantRecord grant, InsertGrant(db, w.NextRevision(), decision.GrantOn(*door), now));
      w.Changed(StoreChange{StoreChange::Kind::kGrantOpened, grant.revision, {}, grant, {}});
      decision.SetGrant(std::move(grant));
    }
  }
  result = std::move(decision.result);
  ASSIGN_OR_RETURN(AuditRecord record, w.Append(std::move(decision.audit)));
  result.audit_index = record.index;

  if (!req.request_id.empty()) {
    const ConsumptionRecord kept = ConsumptionRecordOf(result);
    ASSIGN_OR_RETURN(SqliteStatement s,
                     db.Prepare("INSERT INTO consumptions (agent, request_id, outcome, sequence_id, grant_id, "
                                "audit_index, at_us) VALUES (?, ?, ?, ?, ?, ?, ?)"));
    s.BindAll(req.agent, req.request_id, ConsumeOutcomeName(kept.outcome), static_cast<int64_t>(kept.sequence_id),
              static_cast<int64_t>(kept.grant_id), static_cast<int64_t>(kept.audit_index), Micros(now));
    RETURN_IF_ERROR(s.Run());
  }
  return absl::OkStatus();
}

}  // namespace sesame::controller
