// The conversation with the controller, on the worker thread: Hello and
// the unconfirmed spool sent again when a session opens, Snapshot and Delta
// applied to the held state (and what they change carried out), verdicts on
// reported knocks, receipts that confirm spooled reports. Acks and
// heartbeats go out unspooled (SendNow).
#include "agent/managed/managed_agent.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/managed/proto_convert.h"
#include "common/log.h"

namespace sesame {
namespace {

const char* OutcomeName(v1::KnockOutcome outcome) {
  switch (outcome) {
    case v1::KNOCK_OUTCOME_OPENED:
      return "opened";
    case v1::KNOCK_OUTCOME_REPLAY:
      return "replay";
    case v1::KNOCK_OUTCOME_UNKNOWN:
      return "unknown";
    case v1::KNOCK_OUTCOME_REFUSED:
      return "refused";
    default:
      return "unspecified";
  }
}

}  // namespace

v1::AgentMessage ManagedAgent::MakeHello() {
  v1::AgentMessage m;
  m.set_id(spool_->NewId());
  v1::Hello* h = m.mutable_hello();
  h->set_version(options_.version);
  h->set_accepts_snapshot_parts(true);
  h->set_last_revision(state_.revision());
  for (const auto& [id, s] : state_.sequences()) h->add_sequence_ids(id);
  for (const auto& [id, g] : state_.grants()) h->add_grant_ids(id);
  h->set_spool_depth(static_cast<uint32_t>(spool_->depth()));
  *h->mutable_started_at() = ToProtoTime(started_at_);
  for (const std::string& host : options_.advertise_hosts) h->add_advertise_hosts(host);
  *h->mutable_agent_time() = ToProtoTime(options_.clock->Now());
  return m;
}

void ManagedAgent::HandleSessionStarted(const SessionStarted& e) {
  session_ = e.session;
  online_ = false;
  acked_ = 0;
  snapshot_parts_.reset();  // a new session sends a new snapshot
  std::vector<v1::AgentMessage> batch;
  batch.push_back(MakeHello());
  for (const v1::AgentMessage* m : spool_->Pending()) batch.push_back(*m);
  LogInfo(absl::StrCat("controller session open with ", e.address,
                       spool_->depth() > 0 ? absl::StrCat("; resending ", spool_->depth(), " report(s)") : ""));
  link_->Send(session_, std::move(batch));
}

void ManagedAgent::HandleMessage(v1::ControllerMessage& m) {
  switch (m.body_case()) {
    case v1::ControllerMessage::kSnapshot:
      HandleSnapshot(*m.mutable_snapshot());
      break;
    case v1::ControllerMessage::kDelta:
      Carry(state_.ApplyDelta(m.delta(), Consumed()));
      dirty_ = true;
      break;
    case v1::ControllerMessage::kKnockVerdict:
      HandleVerdict(m.knock_verdict());
      break;
    case v1::ControllerMessage::kReceipt: {
      Confirm(std::vector<std::string>(m.receipt().ids().begin(), m.receipt().ids().end()));
      break;
    }
    case v1::ControllerMessage::BODY_NOT_SET:
      break;
  }
}

void ManagedAgent::HandleSnapshot(v1::Snapshot& part) {
  if (part.more() || snapshot_parts_.has_value()) {
    // Bounded: a controller cannot make the agent hold more than any fleet
    // of sane size would send (ten times the matcher's capacity).
    const size_t limit = 10 * options_.max_sequences;
    const bool wrong_revision = snapshot_parts_.has_value() && snapshot_parts_->revision() != part.revision();
    const size_t items = snapshot_parts_.has_value()
                             ? static_cast<size_t>(snapshot_parts_->sequences_size() + snapshot_parts_->grants_size())
                             : 0;
    if (wrong_revision || items + part.sequences_size() + part.grants_size() > limit) {
      const std::string why =
          wrong_revision ? "parts of different revisions" : absl::StrCat("more than ", limit, " items");
      NoteError(absl::StrCat("controller snapshot in parts refused: ", why, "; ending the session"));
      snapshot_parts_.reset();
      if (link_) link_->EndSession(session_);
      return;
    }
    if (!snapshot_parts_.has_value()) snapshot_parts_.emplace();
    const bool last = !part.more();
    snapshot_parts_->MergeFrom(part);
    if (!last) return;
    v1::Snapshot whole = std::move(*snapshot_parts_);
    snapshot_parts_.reset();
    whole.set_more(false);
    return HandleSnapshot(whole);
  }
  const v1::Snapshot& s = part;
  Carry(state_.ApplySnapshot(s, Consumed()));
  dirty_ = true;
  if (!online_) {
    LogInfo(absl::StrCat("controller snapshot at revision ", s.revision(), ": ", state_.doors().size(),
                         " door(s), ", state_.sequences().size(), " sequence(s) (", state_.reserve_left(),
                         " in reserve), ", state_.grants().size(), " grant(s)"));
  }
  online_ = true;
  acked_ = 0;  // a snapshot is always acknowledged
  next_heartbeat_ = options_.clock->Now();
}

void ManagedAgent::HandleVerdict(const v1::KnockVerdict& v) {
  Confirm({v.reply_to()});
  switch (v.outcome()) {
    case v1::KNOCK_OUTCOME_OPENED:
      LogInfo(absl::StrCat("controller: sequence ", v.sequence_id(), " won, ",
                           v.has_grant() ? absl::StrCat("grant ", v.grant().id()) : std::string("no grant here")));
      // Held from now on, so that the Delta carrying the same grant does not
      // open it a second time (which would change nothing anyway).
      if (v.has_grant() && v.grant().id() != 0 && state_.PutGrant(v.grant())) {
        dirty_ = true;
        OpenGrant(v.grant());
      }
      break;
    case v1::KNOCK_OUTCOME_REPLAY:
      ++replays_;
      LogWarning(absl::StrCat("controller: sequence ", v.sequence_id(), " is a replay",
                              v.first_agent().empty() ? "" : absl::StrCat(" (first used on ", v.first_agent(), ")")));
      break;
    default:
      if (v.outcome() == v1::KNOCK_OUTCOME_UNKNOWN) ++unknown_verdicts_;
      LogWarning(absl::StrCat("controller: knock ", v.reply_to(), ": ", OutcomeName(v.outcome()),
                              v.outcome() == v1::KNOCK_OUTCOME_REFUSED ? " (see the controller's audit log)"
                                                                     : " sequence"));
      break;
  }
}

void ManagedAgent::Carry(const ManagedState::Changes& changes) {
  for (const std::string& e : changes.errors) NoteError(absl::StrCat("from the controller: ", e));
  // Order matters on the grant worker's queue: closes while a removed
  // door's backend still exists, opens once a new door's backend does.
  for (const v1::Grant& g : changes.grants_to_close) CloseGrant(g);
  if (changes.doors_changed) RecomputeDoors();
  if (changes.sequences_changed) dirty_ = true;
  if (changes.sequences_reset || changes.doors_changed) publish_all_ = true;
  publish_ids_.insert(changes.sequences_touched.begin(), changes.sequences_touched.end());
  for (const v1::Grant& g : changes.grants_to_open) OpenGrant(g);
}

void ManagedAgent::SendNow(v1::AgentMessage message) {
  if (session_ != 0) link_->Send(session_, std::move(message));
}

void ManagedAgent::Confirm(const std::vector<std::string>& ids) {
  std::vector<std::string> now;
  now.reserve(ids.size());
  for (const std::string& id : ids) {
    if (unsaved_consumptions_.contains(id)) {
      confirm_after_save_.push_back(id);  // dropped from the spool once the state is saved
    } else {
      now.push_back(id);
    }
  }
  if (now.empty()) return;
  const size_t before = spool_->depth();
  if (absl::Status s = spool_->Confirm(now); !s.ok()) NoteError(absl::StrCat("spool: ", s.message()));
  confirmed_ += before - spool_->depth();
}

}  // namespace sesame
