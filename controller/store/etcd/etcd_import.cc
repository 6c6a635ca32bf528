#include "controller/store/etcd/etcd_import.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/store/etcd/etcd_mirror.h"
#include "controller/store/etcd/etcd_rows.h"

namespace sesame::controller {
namespace {

constexpr size_t kPutsPerTxn = 120;  // within etcd's 128 operations

// The transaction goes through only while no controller owns the prefix.
void RequireNoHead(etcdserverpb::TxnRequest& txn, const EtcdKeys& keys) {
  etcdserverpb::Compare* no_head = txn.add_compare();
  no_head->set_key(keys.head());
  no_head->set_target(etcdserverpb::Compare::CREATE);
  no_head->set_result(etcdserverpb::Compare::EQUAL);
  no_head->set_create_revision(0);
}

// Puts in transactions of their own, each while the head is absent.
absl::Status PutAll(EtcdClient& client, const EtcdKeys& keys, std::vector<std::pair<std::string, std::string>> puts) {
  for (size_t i = 0; i < puts.size(); i += kPutsPerTxn) {
    etcdserverpb::TxnRequest txn;
    RequireNoHead(txn, keys);
    for (size_t j = i; j < std::min(puts.size(), i + kPutsPerTxn); ++j) {
      etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
      put->set_key(puts[j].first);
      put->set_value(std::move(puts[j].second));
    }
    ASSIGN_OR_RETURN(etcdserverpb::TxnResponse r, client.Txn(txn));
    if (!r.succeeded()) return absl::AbortedError(absl::StrCat("a controller started on ", keys.prefix(), " meanwhile"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ImportStoreImage(EtcdClient& client, const EtcdKeys& keys, const StoreImage& image) {
  ASSIGN_OR_RETURN(etcdserverpb::RangeResponse existing, client.Range(keys.prefix(), EtcdPrefixEnd(keys.prefix()), 1));
  if (!existing.kvs().empty()) {
    return absl::FailedPreconditionError(absl::StrCat("etcd already holds keys under ", keys.prefix(),
                                                      ": migrate only into an empty prefix"));
  }
  EtcdHead head;
  head.revision = image.revision;
  std::vector<std::pair<std::string, std::string>> puts;
  for (const Door& d : image.doors) {
    puts.emplace_back(keys.door(d.name), ToRow(d).SerializeAsString());
    head.revision = std::max(head.revision, d.revision);
  }
  for (const Sequence& q : image.sequences) {
    puts.emplace_back(keys.sequence(q.id), ToRow(q).SerializeAsString());
    head.last_sequence_id = std::max(head.last_sequence_id, q.id);
    head.revision = std::max(head.revision, q.revision);
  }
  for (const AgentRecord& a : image.agents) puts.emplace_back(keys.agent(a.name), ToRow(a).SerializeAsString());
  for (const GrantRecord& g : image.grants) {
    puts.emplace_back(keys.grant(g.id), ToRow(g).SerializeAsString());
    head.last_grant_id = std::max(head.last_grant_id, g.id);
    head.revision = std::max(head.revision, g.revision);
  }
  for (const AuditRecord& r : image.audit) {
    if (r.index != head.audit.record_count) {
      return absl::DataLossError(absl::StrCat("audit record ", r.index, " where ", head.audit.record_count,
                                              " was expected: the source chain has a gap"));
    }
    puts.emplace_back(keys.audit(r.index), ToRow(std::vector<AuditRecord>{r}).SerializeAsString());
    if (!r.entry.origin.empty()) puts.emplace_back(keys.origin(r.entry.origin), absl::StrCat(r.index));
    head.audit = AuditHead{r.index + 1, r.hash};
  }
  for (const AuditCheckpoint& c : image.checkpoints) {
    puts.emplace_back(keys.checkpoint(c.record_count), ToRow(c).SerializeAsString());
  }
  absl::Status status = PutAll(client, keys, std::move(puts));
  if (status.ok()) status = PutAll(client, keys, {{keys.head(), ToRow(head).SerializeAsString()}});
  if (!status.ok()) {
    // Leave the prefix empty for another attempt, unless a controller owns it now.
    etcdserverpb::TxnRequest undo;
    RequireNoHead(undo, keys);
    etcdserverpb::DeleteRangeRequest* del = undo.add_success()->mutable_request_delete_range();
    del->set_key(keys.prefix());
    del->set_range_end(EtcdPrefixEnd(keys.prefix()));
    (void)client.Txn(undo);
  }
  return status;
}

}  // namespace sesame::controller
