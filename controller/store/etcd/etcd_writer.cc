// EtcdStore::Writer (etcd_writer.h).
#include "controller/store/etcd/etcd_writer.h"

#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "controller/store/etcd/etcd_rows.h"

namespace sesame::controller {
namespace {

std::string NewMark() {
  static thread_local std::mt19937_64 random{std::random_device{}()};
  return absl::StrFormat("%016x%016x", random(), random());
}

bool StartsWithKnocks(const std::string& text, const std::string& under) {
  return text == under || (text.size() > under.size() && text.compare(0, under.size(), under) == 0 &&
                           text[under.size()] == ',');
}

}  // namespace

EtcdStore::Writer::Writer(EtcdClient& client, EtcdMirror& mirror, const EtcdKeys& keys, std::string controller,
                          absl::Duration sync_timeout)
    : client_(client), mirror_(mirror), keys_(keys), controller_(std::move(controller)), sync_timeout_(sync_timeout) {}

template <typename Map, typename Key>
void EtcdStore::Writer::Remember(Map& map, const Key& key) {
  auto it = map.find(key);
  if (it == map.end()) {
    OnUndo([&map, key] { map.erase(key); });
  } else {
    OnUndo([&map, key, old = it->second] { map[key] = old; });
  }
}

std::optional<Door> EtcdStore::Writer::FindDoor(const std::string& name) const {
  if (auto it = doors_.find(name); it != doors_.end()) return it->second;
  return mirror_.Read([&](const MirrorState& s) -> std::optional<Door> {
    auto it = s.doors.find(name);
    if (it == s.doors.end()) return std::nullopt;
    return it->second;
  });
}

std::optional<Sequence> EtcdStore::Writer::FindSequence(uint64_t id) const {
  if (auto it = sequences_.find(id); it != sequences_.end()) return it->second;
  return mirror_.Read([&](const MirrorState& s) -> std::optional<Sequence> {
    auto it = s.sequences.find(id);
    if (it == s.sequences.end()) return std::nullopt;
    return it->second;
  });
}

std::optional<uint64_t> EtcdStore::Writer::UnusedExactly(const std::string& text) const {
  if (auto it = unused_by_knocks_.find(text); it != unused_by_knocks_.end()) return it->second;
  std::optional<uint64_t> id = mirror_.Read([&](const MirrorState& s) -> std::optional<uint64_t> {
    auto it = s.unused_by_knocks.find(text);
    if (it == s.unused_by_knocks.end()) return std::nullopt;
    return it->second;
  });
  if (id && burnt_here_.count(*id) > 0) return std::nullopt;
  return id;
}

std::optional<uint64_t> EtcdStore::Writer::UnusedAtOrUnder(const std::string& text) const {
  for (auto it = unused_by_knocks_.lower_bound(text); it != unused_by_knocks_.end(); ++it) {
    if (!StartsWithKnocks(it->first, text)) break;
    return it->second;
  }
  return mirror_.Read([&](const MirrorState& s) -> std::optional<uint64_t> {
    for (auto it = s.unused_by_knocks.lower_bound(text); it != s.unused_by_knocks.end(); ++it) {
      if (it->first.compare(0, text.size(), text) != 0) break;
      if (!StartsWithKnocks(it->first, text) || burnt_here_.count(it->second) > 0) continue;
      return it->second;
    }
    return std::nullopt;
  });
}

std::optional<Sequence> EtcdStore::Writer::FindSequenceByKnocks(const std::string& text) const {
  if (std::optional<uint64_t> id = UnusedExactly(text)) return FindSequence(*id);
  uint64_t newest = 0;
  if (auto it = burnt_by_knocks_.find(text); it != burnt_by_knocks_.end()) newest = it->second;
  newest = std::max(newest, mirror_.Read([&](const MirrorState& s) -> uint64_t {
    auto it = s.burnt_by_knocks.find(text);
    return it == s.burnt_by_knocks.end() ? 0 : it->second;
  }));
  if (newest == 0) return std::nullopt;
  return FindSequence(newest);
}

std::optional<ConsumptionRecord> EtcdStore::Writer::BurnAnswerTo(uint64_t sequence_id, const std::string& agent,
                                                                 const std::string& request_id) const {
  if (burn_answers_.contains(sequence_id)) {  // burnt by this batch
    return BurnAnswer::Find(burn_answers_, sequences_, sequence_id, agent, request_id);
  }
  return mirror_.Read([&](const MirrorState& s) { return s.BurnAnswerTo(sequence_id, agent, request_id); });
}

std::optional<GrantRecord> EtcdStore::Writer::FindGrant(uint64_t id) const {
  if (auto it = grants_.find(id); it != grants_.end()) return it->second;
  return mirror_.Read([&](const MirrorState& s) -> std::optional<GrantRecord> {
    auto it = s.grants.find(id);
    if (it == s.grants.end()) return std::nullopt;
    return it->second;
  });
}

std::optional<AgentRecord> EtcdStore::Writer::FindAgent(const std::string& name) const {
  if (auto it = agents_.find(name); it != agents_.end()) return it->second;
  return mirror_.Read([&](const MirrorState& s) -> std::optional<AgentRecord> {
    auto it = s.agents.find(name);
    if (it == s.agents.end()) return std::nullopt;
    return it->second;
  });
}

absl::StatusOr<std::optional<std::string>> EtcdStore::Writer::Fetch(const std::string& key) {
  if (auto it = puts_.find(key); it != puts_.end()) return std::optional<std::string>(it->second);
  if (auto it = fetched_.find(key); it != fetched_.end()) return it->second.value;
  // The commit compares what was read: a member's own view is enough.
  ASSIGN_OR_RETURN(etcdserverpb::RangeResponse r, client_.Range(key, "", 0, 0, /*serializable=*/true));
  Remember(fetched_, key);
  Fetched& f = fetched_[key];
  if (!r.kvs().empty()) f = Fetched{r.kvs(0).value(), r.kvs(0).mod_revision()};
  return f.value;
}

void EtcdStore::Writer::Seed(const std::string& key, const etcdserverpb::RangeResponse& read) {
  if (retry_ || fetched_.count(key) > 0) return;
  Remember(fetched_, key);
  Fetched& f = fetched_[key];
  if (!read.kvs().empty()) f = Fetched{read.kvs(0).value(), read.kvs(0).mod_revision()};
}

void EtcdStore::Writer::PutRaw(const std::string& key, std::string value) {
  Remember(puts_, key);
  puts_[key] = std::move(value);
}

void EtcdStore::Writer::PutDoor(const Door& door) {
  Remember(doors_, door.name);
  doors_[door.name] = door;
  PutRaw(keys_.door(door.name), ToRow(door).SerializeAsString());
}

void EtcdStore::Writer::PutSequence(const Sequence& q) { PutSequenceRow(q, ToRow(q)); }

void EtcdStore::Writer::PutBurn(const Sequence& q, std::optional<BurnAnswer> answer,
                                std::optional<GrantRecord> opened) {
  store::etcd::SequenceRow row = ToRow(q);
  if (answer) {
    row.set_burn_request_id(answer->request_id);
    *row.mutable_burn_answer() = ToRow(answer->record, q.consumed_at);
    Remember(burn_answers_, q.id);
    burn_answers_[q.id] = *std::move(answer);
  }
  if (opened) *row.mutable_opened_grant() = ToRow(*opened);
  PutSequenceRow(q, row);
}

void EtcdStore::Writer::PutSequenceRow(const Sequence& q, const store::etcd::SequenceRow& row) {
  Remember(sequences_, q.id);
  sequences_[q.id] = q;
  const std::string text = KnocksToText(q.knocks);
  if (!q.unused()) {
    if (burnt_here_.insert(q.id).second) OnUndo([this, id = q.id] { burnt_here_.erase(id); });
    if (auto it = unused_by_knocks_.find(text); it != unused_by_knocks_.end() && it->second == q.id) {
      Remember(unused_by_knocks_, text);
      unused_by_knocks_.erase(text);
    }
    Remember(burnt_by_knocks_, text);
    uint64_t& newest = burnt_by_knocks_[text];
    newest = std::max(newest, q.id);
  }
  PutRaw(keys_.sequence(q.id), row.SerializeAsString());
}

void EtcdStore::Writer::AddSequence(const Sequence& q) {
  Remember(sequences_, q.id);
  sequences_[q.id] = q;
  const std::string text = KnocksToText(q.knocks);
  Remember(unused_by_knocks_, text);
  unused_by_knocks_[text] = q.id;
  new_sequences_.push_back(q);
  OnUndo([this] { new_sequences_.pop_back(); });
}

void EtcdStore::Writer::PutNewSequences() {
  if (new_sequences_.empty()) return;
  store::etcd::SequenceBatchRow batch;
  for (const Sequence& q : new_sequences_) *batch.add_sequences() = ToRow(q);
  PutRaw(keys_.sequence_batch(new_sequences_.front().id), batch.SerializeAsString());
  OnUndo([this, added = new_sequences_] { new_sequences_ = added; });
  new_sequences_.clear();
}

void EtcdStore::Writer::PutGrant(const GrantRecord& g) {
  OpenGrant(g);
  PutRaw(keys_.grant(g.id), ToRow(g).SerializeAsString());
}

void EtcdStore::Writer::OpenGrant(const GrantRecord& g) {
  Remember(grants_, g.id);
  grants_[g.id] = g;
}

void EtcdStore::Writer::PutAgent(const AgentRecord& a) {
  Remember(agents_, a.name);
  agents_[a.name] = a;
  PutRaw(keys_.agent(a.name), ToRow(a).SerializeAsString());
}

absl::StatusOr<AuditRecord> EtcdStore::Writer::Append(AuditEntry entry) {
  if (!entry.origin.empty()) {
    ASSIGN_OR_RETURN(std::optional<std::string> index_text, Fetch(keys_.origin(entry.origin)));
    if (index_text) {
      uint64_t index = 0;
      if (!absl::SimpleAtoi(*index_text, &index)) return RowDataLoss(keys_.origin(entry.origin));
      return RecordAt(index, entry.origin);
    }
  }
  AuditRecord r = SealRecord(head_.audit, std::move(entry));
  head_.audit = AuditHead{r.index + 1, r.hash};
  if (!r.entry.origin.empty()) PutRaw(keys_.origin(r.entry.origin), absl::StrCat(r.index));
  appended_.push_back(r);
  OnUndo([this] { appended_.pop_back(); });
  return r;
}

absl::StatusOr<AuditRecord> EtcdStore::Writer::RecordAt(uint64_t index, const std::string& origin) {
  if (!appended_.empty() && index >= appended_.front().index && index - appended_.front().index < appended_.size()) {
    return appended_[index - appended_.front().index];
  }
  // Committed (the origin key that names it was read and is compared), so
  // it stays as read.
  ASSIGN_OR_RETURN(std::vector<AuditRecord> read, ReadAuditFrom(client_, keys_, index, 1));
  if (read.empty() || read.front().index != index) {
    return absl::DataLossError(absl::StrCat("audit record ", index, " of origin ", origin, " is missing"));
  }
  return std::move(read.front());
}

absl::Status EtcdStore::Writer::AppendAll(std::vector<AuditEntry> entries) {
  for (AuditEntry& e : entries) {
    ASSIGN_OR_RETURN(AuditRecord r, Append(std::move(e)));
    (void)r;
  }
  return absl::OkStatus();
}

void EtcdStore::Writer::Clear() {
  puts_.clear();
  doors_.clear();
  sequences_.clear();
  unused_by_knocks_.clear();
  burnt_here_.clear();
  burnt_by_knocks_.clear();
  grants_.clear();
  agents_.clear();
  fetched_.clear();
  new_sequences_.clear();
  burn_answers_.clear();
  appended_.clear();
  undo_.clear();
  op_undo_ = 0;
}

absl::Status EtcdStore::Writer::Refetch() {
  std::vector<std::string> keys = std::move(refetch_);
  refetch_.clear();
  for (size_t i = 0; i < keys.size(); i += kMaxTxnOps) {
    etcdserverpb::TxnRequest reads;
    const size_t end = std::min(keys.size(), i + kMaxTxnOps);
    for (size_t j = i; j < end; ++j) {
      etcdserverpb::RangeRequest* read = reads.add_success()->mutable_request_range();
      read->set_key(keys[j]);
      read->set_serializable(true);
    }
    ASSIGN_OR_RETURN(etcdserverpb::TxnResponse r, client_.Txn(reads));
    for (size_t j = i; j < end && static_cast<int>(j - i) < r.responses_size(); ++j) {
      const etcdserverpb::RangeResponse& read = r.responses(static_cast<int>(j - i)).response_range();
      Fetched& f = fetched_[keys[j]];
      if (!read.kvs().empty()) f = Fetched{read.kvs(0).value(), read.kvs(0).mod_revision()};
    }
  }
  return absl::OkStatus();
}

absl::Status EtcdStore::Writer::Begin() {
  std::vector<std::string> again = std::move(refetch_);
  Clear();
  refetch_ = std::move(again);
  mirror_.AwaitTurn(controller_, absl::Milliseconds(20));
  RETURN_IF_ERROR(Refetch());
  mirror_.Read([&](const MirrorState& s) {
    base_mod_revision_ = s.head_mod_revision;
    head_ = s.head;
    return 0;
  });
  return absl::OkStatus();
}

absl::Status EtcdStore::Writer::BeginOperation() {
  op_undo_ = undo_.size();
  op_head_ = head_;
  return absl::OkStatus();
}

absl::Status EtcdStore::Writer::EndOperation(bool ok) {
  // Puts and compares each within etcd's bound (the head and the mark
  // besides the puts, the head besides the compares).
  const bool fits = PutCount() <= kMaxOperationOps && fetched_.size() < kMaxTxnOps;
  if (ok && fits) return absl::OkStatus();
  while (undo_.size() > op_undo_) {
    undo_.back()();
    undo_.pop_back();
  }
  head_ = op_head_;
  if (!fits) {
    return absl::ResourceExhaustedError(
        absl::StrCat("more writes than one etcd transaction holds (", kMaxTxnOps, " operations)"));
  }
  return absl::OkStatus();
}

absl::Status EtcdStore::Writer::Commit() {
  if (PutCount() == 0) return absl::OkStatus();  // nothing was written
  etcdserverpb::TxnRequest txn;
  etcdserverpb::Compare* compare = txn.add_compare();
  compare->set_key(keys_.head());
  compare->set_result(etcdserverpb::Compare::EQUAL);
  compare->set_target(etcdserverpb::Compare::MOD);
  compare->set_mod_revision(base_mod_revision_);  // 0: the head does not exist yet
  for (const auto& [key, f] : fetched_) {
    etcdserverpb::Compare* same = txn.add_compare();
    same->set_key(key);
    same->set_result(etcdserverpb::Compare::EQUAL);
    same->set_target(etcdserverpb::Compare::MOD);
    same->set_mod_revision(f.mod_revision);
  }
  auto put = [&](const std::string& key, const std::string& value) {
    etcdserverpb::PutRequest* p = txn.add_success()->mutable_request_put();
    p->set_key(key);
    p->set_value(value);
  };
  for (const auto& [key, value] : puts_) put(key, value);
  if (!appended_.empty()) put(keys_.audit(appended_.back().index), ToRow(appended_).SerializeAsString());
  put(keys_.head(), ToRow(head_).SerializeAsString());
  const std::string mark = NewMark();
  put(keys_.txn_mark(controller_), mark);
  // Failed: the head as it is now (the copy must reach it before deciding
  // again; the store's revision may belong to keys elsewhere in etcd).
  txn.add_failure()->mutable_request_range()->set_key(keys_.head());
  if (fence_ != 0) {
    etcdserverpb::Compare* leader = txn.add_compare();
    leader->set_key(keys_.leader());
    leader->set_result(etcdserverpb::Compare::EQUAL);
    leader->set_target(etcdserverpb::Compare::CREATE);
    leader->set_create_revision(fence_);
    txn.add_failure()->mutable_request_range()->set_key(keys_.leader());
  }

  absl::StatusOr<etcdserverpb::TxnResponse> response = client_.Txn(txn);
  if (!response.ok()) return Resolve(mark, response.status());
  retry_ = !response->succeeded();
  if (retry_) {
    for (const auto& [key, f] : fetched_) refetch_.push_back(key);
  }
  if (response->succeeded()) {
    // The copy must hold the commit, and the listener have it, before the
    // callers are answered.
    return mirror_.WaitFor(response->header().revision(), sync_timeout_);
  }
  const etcdserverpb::RangeResponse& head = response->responses(0).response_range();
  if (!head.kvs().empty()) RETURN_IF_ERROR(mirror_.WaitFor(head.kvs(0).mod_revision(), sync_timeout_));
  if (fence_ != 0) {
    const etcdserverpb::RangeResponse& leader = response->responses(1).response_range();
    if (leader.kvs().empty() || leader.kvs(0).create_revision() != fence_) {
      return absl::FailedPreconditionError("this controller no longer leads: the leader's writes are refused");
    }
  }
  // Said in etcd, so that the others count this one among those taking turns.
  etcdserverpb::TxnRequest lost;
  etcdserverpb::PutRequest* put_lost = lost.add_success()->mutable_request_put();
  put_lost->set_key(keys_.waiting(controller_));
  (void)client_.Txn(lost);
  return absl::AbortedError("another controller wrote first");
}

absl::Status EtcdStore::Writer::Resolve(const std::string& mark, const absl::Status& error) {
  // Refused outright (too big, bad request): nothing was committed.
  if (!absl::IsUnavailable(error) && !absl::IsDeadlineExceeded(error) && !absl::IsUnknown(error) &&
      !absl::IsCancelled(error) && !absl::IsInternal(error)) {
    return error;
  }
  absl::StatusOr<etcdserverpb::RangeResponse> r = client_.Range(keys_.txn_mark(controller_), "");
  if (r.ok() && !r->kvs().empty() && r->kvs(0).value() == mark) {
    LogInfo(absl::StrCat("etcd store: a transaction whose answer was lost (", error.message(), ") had committed"));
    return mirror_.WaitFor(r->kvs(0).mod_revision(), sync_timeout_);
  }
  return absl::UnavailableError(absl::StrCat("etcd store: ", error.message()));
}

void EtcdStore::Writer::Rollback() { Clear(); }

}  // namespace sesame::controller
