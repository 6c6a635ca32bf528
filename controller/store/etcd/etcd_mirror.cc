#include "controller/store/etcd/etcd_mirror.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "controller/store/etcd/etcd_rows.h"
#include "grpcpp/grpcpp.h"

namespace sesame::controller {
namespace {

using store::etcd::AgentRow;
using store::etcd::DoorRow;
using store::etcd::GrantRow;
using store::etcd::HeadRow;
using store::etcd::SequenceBatchRow;
using store::etcd::SequenceRow;

constexpr int64_t kPageKeys = 500;

void IndexSequence(MirrorState& s, const Sequence& q) {
  const std::string text = KnocksToText(q.knocks);
  if (q.unused()) {
    s.unused_by_knocks[text] = q.id;
  } else {
    auto it = s.unused_by_knocks.find(text);
    if (it != s.unused_by_knocks.end() && it->second == q.id) s.unused_by_knocks.erase(it);
    uint64_t& newest = s.burnt_by_knocks[text];
    newest = std::max(newest, q.id);
  }
}

// What agents learn of a sequence or a grant as it is now.
StoreChange SequenceChange(const Sequence& q) {
  return StoreChange{q.unused() ? StoreChange::Kind::kSequenceAdded : StoreChange::Kind::kSequenceBurnt, q.revision,
                     q, {}, {}};
}
StoreChange GrantChange(const GrantRecord& g) {
  return StoreChange{g.state == GrantState::kOpen ? StoreChange::Kind::kGrantOpened : StoreChange::Kind::kGrantClosed,
                     g.revision, {}, g, {}};
}

// The changes that turn before into after (a reload after compaction).
std::vector<StoreChange> Differences(const MirrorState& before, const MirrorState& after) {
  std::vector<StoreChange> out;
  for (const auto& [id, q] : after.sequences) {
    auto it = before.sequences.find(id);
    if (it != before.sequences.end() && it->second.revision == q.revision) continue;
    out.push_back(SequenceChange(q));
  }
  for (const auto& [id, g] : after.grants) {
    auto it = before.grants.find(id);
    if (it != before.grants.end() && it->second.revision == g.revision) continue;
    out.push_back(GrantChange(g));
  }
  for (const auto& [name, d] : after.doors) {
    auto it = before.doors.find(name);
    if (it != before.doors.end() && it->second.revision == d.revision) continue;
    out.push_back(StoreChange{StoreChange::Kind::kDoorChanged, d.revision, {}, {}, d});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const StoreChange& a, const StoreChange& b) { return a.revision < b.revision; });
  return out;
}

}  // namespace

store::etcd::HeadRow ToRow(const EtcdHead& head) {
  HeadRow row;
  row.set_revision(head.revision);
  row.set_last_sequence_id(head.last_sequence_id);
  row.set_last_grant_id(head.last_grant_id);
  row.set_audit_count(head.audit.record_count);
  if (head.audit.record_count > 0) {
    row.set_audit_hash(std::string(reinterpret_cast<const char*>(head.audit.hash.data()), head.audit.hash.size()));
  }
  return row;
}

absl::StatusOr<EtcdHead> FromRow(const store::etcd::HeadRow& row) {
  EtcdHead head;
  head.revision = row.revision();
  head.last_sequence_id = row.last_sequence_id();
  head.last_grant_id = row.last_grant_id();
  head.audit.record_count = row.audit_count();
  if (row.audit_count() > 0) {
    if (row.audit_hash().size() != head.audit.hash.size()) return absl::DataLossError("head: bad audit hash");
    std::copy(row.audit_hash().begin(), row.audit_hash().end(), head.audit.hash.begin());
  }
  return head;
}

std::optional<ConsumptionRecord> MirrorState::BurnAnswerTo(uint64_t sequence_id, const std::string& agent,
                                                           const std::string& request_id) const {
  return BurnAnswer::Find(burn_answers, sequences, sequence_id, agent, request_id);
}

Sequence MirrorState::Effective(const Sequence& stored) const {
  Sequence q = stored;
  if (!q.unused()) return q;
  for (const auto& [name, agent] : agents) {
    if ((q.reserve_agent.empty() || q.reserve_agent == name) && agent.acked_revision >= q.revision) {
      q.state = SequenceState::kLive;
      break;
    }
  }
  return q;
}

EtcdMirror::EtcdMirror(EtcdClient& client, EtcdKeys keys) : client_(client), keys_(std::move(keys)) {}

EtcdMirror::~EtcdMirror() {
  stopping_ = true;
  {
    absl::MutexLock lock(&context_mu_);
    if (stream_context_ != nullptr) stream_context_->TryCancel();
  }
  if (watcher_.joinable()) watcher_.join();
}

absl::Status EtcdMirror::Start() {
  ASSIGN_OR_RETURN(MirrorState loaded, LoadSnapshot());
  {
    absl::MutexLock lock(&mu_);
    state_ = std::move(loaded);
  }
  watcher_ = std::thread([this] { WatchLoop(); });
  return absl::OkStatus();
}

void EtcdMirror::SetListener(ChangeListener* listener) { listener_ = listener; }

absl::StatusOr<MirrorState> EtcdMirror::LoadSnapshot() {
  MirrorState s;
  // The first read fixes the revision every other page is read at.
  ASSIGN_OR_RETURN(etcdserverpb::RangeResponse head, client_.Range(keys_.head(), ""));
  s.etcd_revision = head.header().revision();
  std::vector<Event> events;
  for (const auto& kv : head.kvs()) events.push_back(Event{true, kv.key(), kv.value(), kv.mod_revision()});
  for (const std::string& folder : {keys_.door_prefix(), keys_.sequence_batch_prefix(), keys_.sequence_prefix(),
                                    keys_.grant_prefix(), keys_.agent_prefix()}) {
    const std::string end = EtcdPrefixEnd(folder);
    std::string from = folder;
    for (;;) {
      ASSIGN_OR_RETURN(etcdserverpb::RangeResponse page, client_.Range(from, end, kPageKeys, s.etcd_revision));
      for (const auto& kv : page.kvs()) events.push_back(Event{true, kv.key(), kv.value(), kv.mod_revision()});
      if (!page.more() || page.kvs().empty()) break;
      from = page.kvs(page.kvs_size() - 1).key() + std::string(1, '\0');
    }
  }
  // Batches before the sequence rows that override them.
  std::vector<StoreChange> ignored;
  for (const Event& e : events) RETURN_IF_ERROR(ApplyOne(s, e, ignored));
  return s;
}

absl::Status EtcdMirror::ApplyOne(MirrorState& s, const Event& e, std::vector<StoreChange>& changes) {
  const std::string& key = e.key;
  if (key == keys_.head()) {
    if (!e.put) return absl::OkStatus();
    ASSIGN_OR_RETURN(HeadRow row, ParseRow<HeadRow>(key, e.value));
    ASSIGN_OR_RETURN(s.head, FromRow(row));
    s.head_mod_revision = e.mod_revision;
  } else if (absl::StartsWith(key, keys_.door_prefix())) {
    if (!e.put) return absl::OkStatus();
    ASSIGN_OR_RETURN(DoorRow row, ParseRow<DoorRow>(key, e.value));
    ASSIGN_OR_RETURN(Door door, FromRow(row));
    auto it = s.doors.find(door.name);
    if (it == s.doors.end() || it->second.revision != door.revision) {
      changes.push_back(StoreChange{StoreChange::Kind::kDoorChanged, door.revision, {}, {}, door});
    }
    s.doors[door.name] = std::move(door);
  } else if (absl::StartsWith(key, keys_.sequence_batch_prefix())) {
    if (!e.put) return absl::OkStatus();
    ASSIGN_OR_RETURN(SequenceBatchRow batch, ParseRow<SequenceBatchRow>(key, e.value));
    for (const SequenceRow& row : batch.sequences()) {
      if (s.sequences.count(row.id()) > 0) continue;  // changed since: its own row says how
      ASSIGN_OR_RETURN(Sequence q, FromRow(row));
      IndexSequence(s, q);
      changes.push_back(SequenceChange(q));
      s.sequences[q.id] = std::move(q);
    }
  } else if (absl::StartsWith(key, keys_.sequence_prefix())) {
    if (!e.put) return absl::OkStatus();
    ASSIGN_OR_RETURN(SequenceRow row, ParseRow<SequenceRow>(key, e.value));
    ASSIGN_OR_RETURN(Sequence q, FromRow(row));
    if (!row.burn_request_id().empty()) {
      s.burn_answers[q.id] = BurnAnswer{row.burn_request_id(), FromRow(row.burn_answer())};
    }
    if (row.has_opened_grant()) {
      // As opened: grant/ID, once written, is newer (whichever comes first).
      ASSIGN_OR_RETURN(GrantRecord g, FromRow(row.opened_grant()));
      auto held = s.grants.find(g.id);
      if (held == s.grants.end() || held->second.revision < g.revision) {
        changes.push_back(GrantChange(g));
        s.grants[g.id] = std::move(g);
      }
    }
    auto it = s.sequences.find(q.id);
    if (it == s.sequences.end() || it->second.revision != q.revision) {
      changes.push_back(SequenceChange(q));
    }
    IndexSequence(s, q);
    s.sequences[q.id] = std::move(q);
  } else if (absl::StartsWith(key, keys_.grant_prefix())) {
    if (!e.put) return absl::OkStatus();
    ASSIGN_OR_RETURN(GrantRow row, ParseRow<GrantRow>(key, e.value));
    ASSIGN_OR_RETURN(GrantRecord g, FromRow(row));
    auto it = s.grants.find(g.id);
    if (it == s.grants.end() || it->second.revision != g.revision) {
      changes.push_back(GrantChange(g));
    }
    s.grants[g.id] = std::move(g);
  } else if (absl::StartsWith(key, keys_.txn_mark_prefix())) {
    MirrorState::Activity& a = s.activity[key.substr(keys_.txn_mark_prefix().size())];
    a.commit_revision = e.mod_revision;
    a.committed_before = a.committed;
    a.committed = absl::Now();
  } else if (absl::StartsWith(key, keys_.waiting_prefix())) {
    s.activity[key.substr(keys_.waiting_prefix().size())].lost = absl::Now();
  } else if (absl::StartsWith(key, keys_.agent_prefix())) {
    if (!e.put) return absl::OkStatus();
    ASSIGN_OR_RETURN(AgentRow row, ParseRow<AgentRow>(key, e.value));
    AgentRecord a = FromRow(row);
    s.agents[a.name] = std::move(a);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoreChange>> EtcdMirror::ApplyLocked(const std::vector<Event>& events) {
  std::vector<StoreChange> changes;
  // Batches first: a sequence added and changed in one transaction is
  // added by its batch, then changed by its own row.
  for (int pass = 0; pass < 2; ++pass) {
    for (const Event& e : events) {
      const bool batch = absl::StartsWith(e.key, keys_.sequence_batch_prefix());
      if (batch == (pass == 0)) RETURN_IF_ERROR(ApplyOne(state_, e, changes));
    }
  }
  std::stable_sort(changes.begin(), changes.end(),
                   [](const StoreChange& a, const StoreChange& b) { return a.revision < b.revision; });
  return changes;
}

void EtcdMirror::Deliver(std::vector<StoreChange> changes) {
  ChangeListener* listener = listener_.load();
  if (!changes.empty() && listener != nullptr) listener->OnCommitted(changes);
}

absl::Status EtcdMirror::WaitFor(int64_t revision, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto caught_up = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return state_.etcd_revision >= revision; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&caught_up), timeout)) {
    return absl::UnavailableError(absl::StrCat("the controller's copy of the etcd store is behind (at revision ",
                                               state_.etcd_revision, ", waiting for ", revision, ")"));
  }
  return absl::OkStatus();
}

absl::Status EtcdMirror::Sync(absl::Duration timeout) {
  ASSIGN_OR_RETURN(etcdserverpb::RangeResponse head, client_.Range(keys_.head(), ""));
  if (head.kvs().empty()) return absl::OkStatus();
  return WaitFor(head.kvs(0).mod_revision(), timeout);
}

void EtcdMirror::AwaitTurn(const std::string& controller, absl::Duration patience) {
  absl::MutexLock lock(&mu_);
  for (;;) {
    const absl::Time now = absl::Now();
    // Who writes now: committed twice, or lost, within kBusyWindow.
    std::vector<std::string> ring;
    for (const auto& [other, a] : state_.activity) {
      const bool busy = now - a.committed_before < kBusyWindow || (a.lost > a.committed && now - a.lost < kBusyWindow);
      if (other == controller || busy) ring.push_back(other);
    }
    if (state_.activity.count(controller) == 0) ring.push_back(controller);
    if (ring.size() < 2) return;
    std::sort(ring.begin(), ring.end());
    // The turn is the next one's after the last commit's.
    std::string last;
    int64_t last_revision = -1;
    for (const auto& [other, a] : state_.activity) {
      if (a.commit_revision > last_revision) std::tie(last, last_revision) = std::tie(other, a.commit_revision);
    }
    auto next = std::upper_bound(ring.begin(), ring.end(), last);
    if (next == ring.end()) next = ring.begin();
    if (*next == controller) return;
    const int64_t head = state_.head_mod_revision;
    auto moved = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return state_.head_mod_revision != head; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&moved), patience)) return;  // it had nothing to write
  }
}

void EtcdMirror::Reload() {
  absl::StatusOr<MirrorState> fresh = LoadSnapshot();
  if (!fresh.ok()) {
    LogWarning(absl::StrCat("etcd store: reloading after a compaction failed: ", fresh.status().message()));
    return;
  }
  std::vector<StoreChange> changes;
  int64_t revision = 0;
  {
    absl::MutexLock lock(&mu_);
    changes = Differences(state_, *fresh);
    revision = fresh->etcd_revision;
    fresh->etcd_revision = state_.etcd_revision;  // published once delivered
    state_ = *std::move(fresh);
  }
  Deliver(std::move(changes));
  absl::MutexLock lock(&mu_);
  state_.etcd_revision = std::max(state_.etcd_revision, revision);
}

void EtcdMirror::WatchLoop() {
  absl::Duration backoff = absl::Milliseconds(50);
  while (!stopping_) {
    const bool compacted = WatchOnce();
    if (stopping_) return;
    if (compacted) {
      LogWarning("etcd store: the watch fell behind a compaction; reloading the state");
      Reload();
      continue;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
}

bool EtcdMirror::WatchOnce() {
  std::string endpoint;
  etcdserverpb::Watch::Stub& stub = client_.WatchStub(&endpoint);
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&context_mu_);
    if (stopping_) return false;
    stream_context_ = &context;
  }
  auto clear_context = [&] {
    absl::MutexLock lock(&context_mu_);
    stream_context_ = nullptr;
  };
  auto stream = stub.Watch(&context);
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(keys_.prefix());
  create->set_range_end(EtcdPrefixEnd(keys_.prefix()));
  create->set_progress_notify(true);
  {
    absl::MutexLock lock(&mu_);
    create->set_start_revision(state_.etcd_revision + 1);
  }
  bool compacted = false;
  if (stream->Write(request)) {
    etcdserverpb::WatchResponse response;
    // Events of one transaction share a revision and arrive together.
    std::vector<Event> pending;
    int64_t pending_revision = 0;
    auto flush = [&]() -> bool {
      if (pending.empty()) return true;
      absl::StatusOr<std::vector<StoreChange>> changes;
      {
        absl::MutexLock lock(&mu_);
        changes = ApplyLocked(pending);
      }
      if (!changes.ok()) {
        LogError(absl::StrCat("etcd store: revision ", pending_revision, ": ", changes.status().message()));
        return false;
      }
      Deliver(*std::move(changes));
      absl::MutexLock lock(&mu_);
      state_.etcd_revision = pending_revision;
      pending.clear();
      return true;
    };
    while (!stopping_ && stream->Read(&response)) {
      if (response.created()) continue;
      if (response.canceled()) {
        compacted = response.compact_revision() > 0;
        break;
      }
      for (const mvccpb::Event& e : response.events()) {
        if (e.kv().mod_revision() != pending_revision && !flush()) break;
        pending_revision = e.kv().mod_revision();
        pending.push_back(Event{e.type() == mvccpb::Event::PUT, e.kv().key(), e.kv().value(), e.kv().mod_revision()});
      }
      // A response ends on a transaction's boundary unless it is a fragment.
      if (!response.fragment() && !flush()) break;
      if (response.events().empty() && response.header().revision() > 0) {
        // Progress: nothing under the prefix changed up to this revision.
        absl::MutexLock lock(&mu_);
        state_.etcd_revision = std::max(state_.etcd_revision, response.header().revision());
      }
    }
  }
  context.TryCancel();
  grpc::Status finished = stream->Finish();
  clear_context();
  if (!stopping_ && !compacted) {
    LogWarning(absl::StrCat("etcd store: the watch on ", endpoint, " ended (", finished.error_message(),
                            "); resuming on the next member"));
    client_.Failed(endpoint);
  }
  return compacted;
}

}  // namespace sesame::controller
