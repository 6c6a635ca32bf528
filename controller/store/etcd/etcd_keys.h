// Where EtcdStore keeps what, under its prefix (Etcd_Prefix, "/sesame/"):
//
//   head                    HeadRow: fleet revision, last ids, audit head;
//                           every write transaction compares and rewrites it
//   door/NAME               DoorRow
//   seqs/ID                 SequenceBatchRow: the sequences one AddSequences
//                           added (ID: the first), as added
//   seq/ID                  SequenceRow: a sequence since it last changed
//                           (overrides its entry in seqs/); a burnt one also
//                           holds the grant the burn opened, as opened
//   grant/ID                GrantRow: a grant since it last changed (the
//                           newer revision wins over the burn's copy)
//   agent/NAME              AgentRow
//   audit/INDEX             AuditBatchRow: the records one transaction
//                           appended, INDEX the last one's
//   origin/ORIGIN           the audit index recorded for that origin
//   consumption/AGENT/ID    ConsumptionRow: an answered knock report, unless
//                           it burnt a sequence it named by id (the answer is
//                           then in that sequence's row)
//   checkpoint/COUNT        CheckpointRow
//   txn/CONTROLLER          the id of that controller's last transaction
//   waiting/CONTROLLER      rewritten each time that controller's commit lost
//                           to another's (etcd_mirror.h, AwaitTurn)
//   leader                  LeaderRow, on the leader's lease
//
// Numbers are zero-padded to 20 digits, so keys sort as numbers do.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sesame::controller {

class EtcdKeys {
 public:
  explicit EtcdKeys(std::string prefix) : prefix_(std::move(prefix)) {}

  const std::string& prefix() const { return prefix_; }
  std::string head() const { return prefix_ + "head"; }
  std::string door(std::string_view name) const { return Join("door/", name); }
  std::string door_prefix() const { return prefix_ + "door/"; }
  std::string sequence_batch(uint64_t first_id) const { return Join("seqs/", Number(first_id)); }
  std::string sequence_batch_prefix() const { return prefix_ + "seqs/"; }
  std::string sequence(uint64_t id) const { return Join("seq/", Number(id)); }
  std::string sequence_prefix() const { return prefix_ + "seq/"; }
  std::string grant(uint64_t id) const { return Join("grant/", Number(id)); }
  std::string grant_prefix() const { return prefix_ + "grant/"; }
  std::string agent(std::string_view name) const { return Join("agent/", name); }
  std::string agent_prefix() const { return prefix_ + "agent/"; }
  std::string audit(uint64_t index) const { return Join("audit/", Number(index)); }
  std::string audit_prefix() const { return prefix_ + "audit/"; }
  std::string origin(std::string_view origin) const { return Join("origin/", origin); }
  std::string consumption(std::string_view agent, std::string_view request_id) const {
    return Join("consumption/", std::string(agent) + "/" + std::string(request_id));
  }
  std::string checkpoint(uint64_t count) const { return Join("checkpoint/", Number(count)); }
  std::string checkpoint_prefix() const { return prefix_ + "checkpoint/"; }
  std::string txn_mark(std::string_view controller) const { return Join("txn/", controller); }
  std::string txn_mark_prefix() const { return prefix_ + "txn/"; }
  std::string waiting(std::string_view controller) const { return Join("waiting/", controller); }
  std::string waiting_prefix() const { return prefix_ + "waiting/"; }
  std::string leader() const { return prefix_ + "leader"; }

  static std::string Number(uint64_t n);

 private:
  std::string Join(std::string_view folder, std::string_view rest) const {
    std::string key = prefix_;
    key.append(folder);
    key.append(rest);
    return key;
  }

  std::string prefix_;
};

}  // namespace sesame::controller
