// What the managed agent reports to the controller, on the worker thread:
// completed knocks (asked online, spooled offline, admitted here from the
// reserve, or flagged as replays), scanners (aggregated per window), and the
// spool that keeps every report until the controller confirms it.
#include "agent/managed/managed_agent.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/managed/proto_convert.h"
#include "common/log.h"

namespace sesame {

void ManagedAgent::HandleCompleted(const CompletedKnock& k) {
  const absl::Time now = options_.clock->Now();
  absl::Time expires_at = absl::InfiniteFuture();
  if (auto it = state_.sequences().find(k.sequence_id);
      it != state_.sequences().end() && it->second.has_expires_at()) {
    expires_at = FromProtoTime(it->second.expires_at());
  }
  if (state_.RemoveSequence(k.sequence_id)) publish_ids_.insert(k.sequence_id);
  v1::AgentMessage m;
  m.set_id(spool_->NewId());
  // Until the state without it is saved, the spool must keep this report
  // (see unsaved_consumptions_); the save is due within kSaveDelay.
  unsaved_consumptions_.emplace(m.id(), 0);
  dirty_ = true;
  v1::KnockMatched* km = m.mutable_knock_matched();
  km->set_door(k.door);
  km->set_sequence_id(k.sequence_id);
  AppendProtoKnocks(k.knocks, km->mutable_knocks());
  km->set_source(k.source.ToString());
  *km->mutable_matched_at() = ToProtoTime(k.time);
  ++knocks_reported_;
  if (k.spent) {
    // A replay (the matcher's replay watch): the controller judges and
    // audits it; nothing opens here, online or not, reserve or not. Spooled
    // like an online report (synced within kSaveDelay). Marked, so that it
    // never wins even if the controller judges it before the first report.
    km->set_spent_here(true);
    LogWarning(absl::StrCat(k.source.ToString(), ": ", k.door, ": sequence ", k.sequence_id,
                            " knocked again after it was spent here: replay, reported to the controller"));
    if (session_ != 0) link_->Send(session_, m);
    // A record, not a consumption: it used nothing, and a replay loop must
    // not grow the spool past its limit.
    if (absl::Status s = spool_->Append(m, SpoolClass::kRecord, /*sync=*/false); !s.ok()) {
      NoteError(absl::StrCat("spool: ", s.message()));
    }
    return;
  }
  if (online_ && session_ != 0) {
    // The controller first: the knocker is waiting. The spool follows at
    // once; a crash in between loses a report the controller already has.
    link_->Send(session_, m);
    if (absl::Status s = spool_->Append(m, /*sync=*/false); !s.ok()) NoteError(absl::StrCat("spool: ", s.message()));
    LogInfo(absl::StrCat(k.source.ToString(), ": ", k.door, ": sequence ", k.sequence_id,
                         " complete, asking the controller"));
    return;
  }
  if (!k.reserve) {
    Report(m);  // sent now if a session is up without its snapshot yet
    LogWarning(absl::StrCat(k.source.ToString(), ": ", k.door, ": sequence ", k.sequence_id,
                            " complete while the controller is unreachable; it decides when the link is back"));
    return;
  }
  if (k.time >= expires_at) {
    // Expired: nothing opens here; the controller hears of it when the link
    // is back (and refuses it as expired).
    Report(m);
    LogWarning(absl::StrCat(k.source.ToString(), ": ", k.door, ": reserve sequence ", k.sequence_id,
                            " complete while the controller is unreachable, but it expired at ",
                            absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", expires_at, absl::UTCTimeZone()),
                            ": not opening"));
    return;
  }
  // Offline reserve: recorded durably before the door opens, so that no
  // crash can make this sequence usable a second time.
  km->set_offline(true);
  if (absl::Status s = spool_->Append(m); !s.ok()) {
    NoteError(absl::StrCat(k.source.ToString(), ": ", k.door, ": reserve sequence ", k.sequence_id,
                           " used but cannot be recorded (", s.message(), "); not opening"));
    return;
  }
  SaveStateNow();
  if (session_ != 0) link_->Send(session_, m);
  Grant grant;
  grant.door = k.door;
  grant.address = k.source;
  grant.ports = GrantPortsOf(k.door);
  grant.opened = now;
  grant.expires = now + GrantTtlOf(k.door);
  ++offline_admitted_;
  local_opens_[Key(grant.door, grant.address)] = "offline-reserve";
  LogInfo(absl::StrCat(k.source.ToString(), ": ", k.door, ": reserve sequence ", k.sequence_id,
                       " complete while the controller is unreachable: OPEN SESAME (offline)"));
  grants_->Open(std::move(grant));
}

void ManagedAgent::ReportScannerNotices(absl::Time now) {
  for (v1::ScannerSeen& notice : scanner_notices_.Take(now)) {
    v1::AgentMessage m;
    m.set_id(spool_->NewId());
    *m.mutable_scanner_seen() = std::move(notice);
    const absl::Status s = spool_->Append(m, SpoolClass::kNotice, /*sync=*/true);
    if (absl::IsResourceExhausted(s)) {
      // The spool is full of what matters more: the counts wait for the
      // next aggregate (retried once a window), not sent either, so that
      // nothing is counted twice.
      LogWarning(absl::StrCat(s.message(), "; counted into the next aggregate"));
      scanner_notices_.Return(m.scanner_seen(), now);
      continue;
    }
    if (!s.ok()) NoteError(absl::StrCat("spool: ", s.message(), " (a scanner notice is sent unspooled)"));
    if (session_ != 0) link_->Send(session_, std::move(m));
  }
}

absl::flat_hash_set<uint64_t> ManagedAgent::Consumed() const {
  absl::flat_hash_set<uint64_t> ids;
  for (const v1::AgentMessage* m : spool_->Pending()) {
    if (m->has_knock_matched()) ids.insert(m->knock_matched().sequence_id());
  }
  return ids;
}

void ManagedAgent::Report(v1::AgentMessage message) {
  if (message.id().empty()) message.set_id(spool_->NewId());
  if (absl::Status s = spool_->Append(message); !s.ok()) {
    NoteError(absl::StrCat("spool: ", s.message(), " (a report may be lost)"));
  }
  if (session_ != 0) link_->Send(session_, std::move(message));
}

}  // namespace sesame
