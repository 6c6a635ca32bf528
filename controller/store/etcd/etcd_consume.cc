// EtcdStore's Consume: the one-time burn. What a consumption decides is
// consume_decision.h's; this file finds what it decides from and applies the
// decision in the batch's etcd transaction, in the order that header gives,
// with consumption/AGENT/ID answering resent request ids.
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
  // The answer kept for a resend. A report of a sequence the copy holds
  // unused is almost never one (the report that won burnt it): no answer is
  // assumed kept, unread, and the commit's compare proves it (a resend found
  // so has the batch decided again, with the key read). A read per report
  // was the dearest part of a consumption: about half of what etcd spent.
  // Others are read here, beside other callers' reads; so are all of an
  // agent's for a while once one of its resends was found so, which bounds
  // what an agent resending on purpose costs the others' batches.
  std::optional<etcdserverpb::RangeResponse> kept;
  bool assumed_absent = false;
  if (!request.request_id.empty()) {
    assumed_absent = !ReadsKeptAnswers(request.agent) && mirror_->Read([&](const MirrorState& s) {
      if (request.sequence_id == 0) return s.unused_by_knocks.contains(KnocksToText(request.knocks));
      auto it = s.sequences.find(request.sequence_id);
      return it != s.sequences.end() && it->second.unused();
    });
    if (assumed_absent) {
      kept.emplace();  // absent: the commit compares the key's mod revision with 0
    } else {
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
    ASSIGN_OR_RETURN(std::optional<std::string> kept, w.Fetch(kept_key));
    if (kept) {
      ASSIGN_OR_RETURN(store::etcd::ConsumptionRow row, ParseRow<store::etcd::ConsumptionRow>(kept_key, *kept));
      const ConsumptionRecord earlier = FromRow(row);
      std::optional<Sequence> q;
      if (earlier.sequence_id != 0) {
        q = w.FindSequence(earlier.sequence_id);
        if (q) q = mirror_->Read([&](const MirrorState& s) { return s.Effective(*q); });
      }
      std::optional<GrantRecord> grant;
      if (earlier.grant_id != 0) grant = w.FindGrant(earlier.grant_id);
      result = RepeatedConsumeResult(earlier, q, std::move(grant));
      return absl::OkStatus();
    }
  }

  std::optional<Sequence> q =
      req.sequence_id != 0 ? w.FindSequence(req.sequence_id) : w.FindSequenceByKnocks(KnocksToText(req.knocks));
  if (q) q = mirror_->Read([&](const MirrorState& s) { return s.Effective(*q); });
  ConsumeDecision decision = DecideConsume(req, std::move(q), now);

  if (decision.burnt) {
    decision.SetBurnRevision(w.NextRevision());
    w.PutSequence(*decision.burnt);
  }
  if (decision.open_grant) {
    if (std::optional<Door> door = w.FindDoor(decision.result.door)) {
      const uint64_t id = w.NextGrantId();
      GrantRecord grant = OpenedGrant(decision.GrantOn(*door), id, w.NextRevision(), now);
      w.PutGrant(grant);
      decision.SetGrant(std::move(grant));
    }
  }
  result = std::move(decision.result);
  ASSIGN_OR_RETURN(AuditRecord record, w.Append(std::move(decision.audit)));
  result.audit_index = record.index;

  if (!req.request_id.empty()) {
    w.PutRaw(kept_key, ToRow(ConsumptionRecordOf(result), now).SerializeAsString());
  }
  return absl::OkStatus();
}

}  // namespace sesame::controller
