// EtcdStore's Consume: the one-time burn. What a consumption decides is
// consume_decision.h's; this file finds what it decides from and applies the
// decision in the batch's etcd transaction, in the order that header gives.
// The answer to a report is kept for its resends in the row of the sequence
// it burnt, when it named that sequence by id (a win: no key of its own),
// else under consumption/AGENT/ID.
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/store/consume_decision.h"
#include "controller/store/etcd/etcd_rows.h"
#include "controller/store/etcd/etcd_store.h"
#include "controller/store/etcd/etcd_writer.h"
#include "controller/store/store_checks.h"

namespace sesame::controller {

absl::StatusOr<ConsumeResult> EtcdStore::Consume(const ConsumeRequest& request) {
  RETURN_IF_ERROR(ValidateConsumeRequest(request));
  // Where the answer to a resend is kept, found without a read when the
  // copy tells: a report of a sequence the copy holds unused is almost never
  // a resend (the report that won burnt it), so no answer is assumed kept,
  // and the commit's compare proves it (a resend found so has the batch
  // decided again, with the key read); a resend of a win has its answer in
  // the sequence's row. A read per report was the dearest part of a
  // consumption. Other reports read the key here, beside other callers'
  // reads; so do all of an agent's for a while once one of its resends was
  // found so, which bounds what an agent resending on purpose costs the
  // others' batches.
  std::optional<etcdserverpb::RangeResponse> kept;
  bool assumed_absent = false;
  if (!request.request_id.empty()) {
    enum class Kept { kRead, kAssumedAbsent, kInRow };
    Kept where = mirror_->Read([&](const MirrorState& s) {
      if (request.sequence_id == 0) {
        return s.unused_by_knocks.contains(KnocksToText(request.knocks)) ? Kept::kAssumedAbsent : Kept::kRead;
      }
      auto it = s.sequences.find(request.sequence_id);
      if (it == s.sequences.end()) return Kept::kRead;
      if (it->second.unused()) return Kept::kAssumedAbsent;
      return s.BurnAnswerTo(request.sequence_id, request.agent, request.request_id) ? Kept::kInRow : Kept::kRead;
    });
    if (where == Kept::kAssumedAbsent && ReadsKeptAnswers(request.agent)) where = Kept::kRead;
    assumed_absent = where == Kept::kAssumedAbsent;
    if (assumed_absent) {
      kept.emplace();  // absent: the commit compares the key's mod revision with 0
    } else if (where == Kept::kRead) {
      ASSIGN_OR_RETURN(kept, client_->Range(keys_.consumption(request.agent, request.request_id), "", 0, 0,
                                            /*serializable=*/true));
    }
  }
  ConsumeResult result;
  RETURN_IF_ERROR(Write([&](Writer& w) {
    if (kept) w.Seed(keys_.consumption(request.agent, request.request_id), *kept);
    RETURN_IF_ERROR(ConsumeInTransaction(w, request, result));
    if (assumed_absent && result.repeated) ReadKeptAnswersOf(request.agent);
    return absl::OkStatus();
  }));
  return result;
}

bool EtcdStore::ReadsKeptAnswers(const std::string& agent) {
  absl::MutexLock lock(&kept_mu_);
  auto it = read_kept_until_.find(agent);
  return it != read_kept_until_.end() && clock_.Now() < it->second;
}

void EtcdStore::ReadKeptAnswersOf(const std::string& agent) {
  absl::MutexLock lock(&kept_mu_);
  const absl::Time now = clock_.Now();
  if (read_kept_until_.size() >= kMaxAgentsReadingKept) {
    absl::erase_if(read_kept_until_, [now](const auto& entry) { return entry.second <= now; });
    if (read_kept_until_.size() >= kMaxAgentsReadingKept) return;  // they read anyway after the commit fails
  }
  read_kept_until_[agent] = now + kReadKeptFor;
}

absl::Status EtcdStore::ConsumeInTransaction(Writer& w, const ConsumeRequest& req, ConsumeResult& result) {
  result = ConsumeResult();
  const absl::Time now = TruncateToMicros(clock_.Now());
  const std::string kept_key = keys_.consumption(req.agent, req.request_id);

  // A resend: the first answer again.
  if (!req.request_id.empty()) {
    std::optional<ConsumptionRecord> earlier;
    if (req.sequence_id != 0) earlier = w.BurnAnswerTo(req.sequence_id, req.agent, req.request_id);
    if (!earlier) {
      ASSIGN_OR_RETURN(std::optional<std::string> kept, w.Fetch(kept_key));
      if (kept) {
        ASSIGN_OR_RETURN(store::etcd::ConsumptionRow row, ParseRow<store::etcd::ConsumptionRow>(kept_key, *kept));
        earlier = FromRow(row);
      }
    }
    if (earlier) {
      std::optional<Sequence> q;
      if (earlier->sequence_id != 0) {
        q = w.FindSequence(earlier->sequence_id);
        if (q) q = mirror_->Read([&](const MirrorState& s) { return s.Effective(*q); });
      }
      std::optional<GrantRecord> grant;
      if (earlier->grant_id != 0) grant = w.FindGrant(earlier->grant_id);
      result = RepeatedConsumeResult(*earlier, q, std::move(grant));
      return absl::OkStatus();
    }
  }

  std::optional<Sequence> q =
      req.sequence_id != 0 ? w.FindSequence(req.sequence_id) : w.FindSequenceByKnocks(KnocksToText(req.knocks));
  if (q) q = mirror_->Read([&](const MirrorState& s) { return s.Effective(*q); });
  ConsumeDecision decision = DecideConsume(req, std::move(q), now);

  if (decision.burnt) decision.SetBurnRevision(w.NextRevision());
  std::optional<GrantRecord> opened;
  if (decision.open_grant) {
    if (std::optional<Door> door = w.FindDoor(decision.result.door)) {
      const uint64_t id = w.NextGrantId();
      opened = OpenedGrant(decision.GrantOn(*door), id, w.NextRevision(), now);
      decision.SetGrant(*opened);
      w.OpenGrant(*opened);  // written with the burn, below
    }
  }
  result = std::move(decision.result);
  ASSIGN_OR_RETURN(AuditRecord record, w.Append(std::move(decision.audit)));
  result.audit_index = record.index;

  // The burn is one key, written once its answer is whole: the sequence,
  // the answer and the grant it opened.
  const bool answer_in_row = decision.burnt && !req.request_id.empty() && req.sequence_id != 0;
  if (decision.burnt) {
    std::optional<BurnAnswer> answer;
    if (answer_in_row) answer = BurnAnswer{req.request_id, ConsumptionRecordOf(result)};
    w.PutBurn(*decision.burnt, std::move(answer), std::move(opened));  // a grant opens with a win, a burn
  }
  if (!req.request_id.empty() && !answer_in_row) {
    w.PutRaw(kept_key, ToRow(ConsumptionRecordOf(result), now).SerializeAsString());
  }
  return absl::OkStatus();
}

}  // namespace sesame::controller
