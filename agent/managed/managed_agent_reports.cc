// What the managed agent reports to the controller, on the worker thread:
// completed knocks (asked online, spooled offline, admitted here from the
// reserve, or flagged as replays), scanners, and the spool that keeps every
// report until the controller confirms it.
#include "agent/managed/managed_agent.h"

#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/managed/proto_convert.h"
#include "common/log.h"

namespace sesame {

void ManagedAgent::HandleCompleted(const CompletedKnock& k) {
  const absl::Time now = options_.clock->Now();
  if (state_.RemoveSequence(k.sequence_id)) dirty_ = true;
  v1::AgentMessage m;
  m.set_id(spool_->NewId());
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
    // like an online report (synced within kSaveDelay).
    LogWarning(absl::StrCat(k.source.ToString(), ": ", k.door, ": sequence ", k.sequence_id,
                            " knocked again after it was spent here: replay, reported to the controller"));
    if (session_ != 0) link_->Send(session_, m);
    if (absl::Status s = spool_->Append(m, /*sync=*/false); !s.ok()) NoteError(absl::StrCat("spool: ", s.message()));
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
  // Offline reserve: recorded durably before the door opens, so that no
  // crash can make this sequence usable a second time.
  km->set_offline(true);
  if (absl::Status s = spool_->Append(m); !s.ok()) {
    NoteError(absl::StrCat(k.source.ToString(), ": ", k.door, ": reserve sequence ", k.sequence_id,
                           " used but cannot be recorded (", s.message(), "); not opening"));
    return;
  }
  SaveState();
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

void ManagedAgent::HandleScanner(const ScannerReport& r) {
  auto [it, inserted] = scanners_reported_.try_emplace(r.source, r.ignored_until);
  if (!inserted) {
    if (it->second > r.at) return;  // reported by another shard already
    it->second = r.ignored_until;
  }
  if (scanners_reported_.size() > 4096) {
    for (auto i = scanners_reported_.begin(); i != scanners_reported_.end();) {
      auto next = std::next(i);
      if (i->second <= r.at) scanners_reported_.erase(i);
      i = next;
    }
  }
  v1::AgentMessage m;
  v1::ScannerSeen* s = m.mutable_scanner_seen();
  s->set_source(r.source.ToString());
  s->set_distinct_ports(static_cast<uint32_t>(r.distinct_ports));
  *s->mutable_window() = ToProtoDuration(r.window);
  *s->mutable_ignored_until() = ToProtoTime(r.ignored_until);
  *s->mutable_at() = ToProtoTime(r.at);
  Report(std::move(m));
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
