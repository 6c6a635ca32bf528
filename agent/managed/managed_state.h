// What a managed agent holds from the controller — doors with their policy,
// unused sequences (fleet and offline reserve), open grants — at which
// revision, and the rules by which a Snapshot or a Delta changes it.
//
// Pure bookkeeping: applying a change returns what the caller must carry
// out (sequences to recognise, grants to open or close, doors whose
// backends change); nothing here touches the matcher or the firewall.
//
// Rules (protos/sesame/v1/agent.proto):
// - A Snapshot replaces everything: sequences not listed are dropped, grants
//   not listed are closed. Its revision becomes the agent's, even a lower one
//   (a controller restored from a backup is still the authority).
// - A Delta at or below the current revision is stale and changes nothing.
// - `consumed`: ids of sequences this agent has seen completed and reported,
//   with no answer yet. They are never added back, whatever a Snapshot or a
//   Delta computed before the report says.
// - Bad input (a knock without a protocol, an invalid door name) is skipped
//   and reported in Changes::errors; the rest of the change applies.
//
// Persistence: Save() writes the state atomically (write, fsync, rename) as
// a header line and a serialized Snapshot; Load() reads it back, so an agent
// restarted while the controller is down still knows its doors and its
// offline reserve. Not thread-safe: one owner.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sesame/v1/agent.pb.h"

namespace sesame {

class ManagedState {
 public:
  struct Changes {
    bool doors_changed = false;
    bool sequences_changed = false;
    // Which: every sequence may have changed (a snapshot, a door's policy),
    // or only these ids were added or removed.
    bool sequences_reset = false;
    std::vector<uint64_t> sequences_touched;
    std::vector<v1::Grant> grants_to_open;
    // Revoked, dropped by a snapshot, or of a removed door. A revoke for a
    // grant the agent does not hold carries only id, door and address.
    std::vector<v1::Grant> grants_to_close;
    std::vector<std::string> errors;
    bool changed() const {
      return doors_changed || sequences_changed || !grants_to_open.empty() || !grants_to_close.empty();
    }
  };

  ManagedState() = default;

  // A missing file is the empty state at revision 0. An unreadable one is an
  // error (the caller may start empty: the controller sends everything again).
  static absl::StatusOr<ManagedState> Load(const std::string& path);
  absl::Status Save(const std::string& path) const;
  // What Save writes. A few milliseconds at 100,000 sequences: each one's
  // bytes are kept ready as it is added.
  std::string Serialize() const;

  Changes ApplySnapshot(const v1::Snapshot& snapshot, const absl::flat_hash_set<uint64_t>& consumed);
  Changes ApplyDelta(const v1::Delta& delta, const absl::flat_hash_set<uint64_t>& consumed);
  // A sequence completed here: spent, whatever the controller answers.
  bool RemoveSequence(uint64_t id);
  // A grant closed here (expired or revoked).
  bool RemoveGrant(uint64_t id);
  // A grant learnt outside a Delta (a KnockVerdict): true when it is new or
  // changed, i.e. must be opened.
  bool PutGrant(const v1::Grant& grant);

  uint64_t revision() const { return revision_; }
  const std::map<std::string, v1::Door>& doors() const { return doors_; }
  const std::map<uint64_t, v1::HeldSequence>& sequences() const { return sequences_; }
  const std::map<uint64_t, v1::Grant>& grants() const { return grants_; }
  // The controller's wish, or 10 s when it expressed none.
  absl::Duration heartbeat_interval() const { return heartbeat_interval_; }
  size_t reserve_left() const;

 private:
  void EraseSequence(std::map<uint64_t, v1::HeldSequence>::iterator it);
  void PutSequence(const v1::HeldSequence& sequence);
  // Checks a sequence; false (with an error) when it cannot be recognised.
  bool AcceptSequence(const v1::HeldSequence& sequence, Changes& changes) const;

  uint64_t revision_ = 0;
  std::map<std::string, v1::Door> doors_;
  std::map<uint64_t, v1::HeldSequence> sequences_;
  size_t reserve_count_ = 0;  // of sequences_, reserve ones
  // Each sequence as its field of a serialized v1::Snapshot (tag, length,
  // bytes): Serialize concatenates them.
  absl::flat_hash_map<uint64_t, std::string> sequence_fields_;
  std::map<uint64_t, v1::Grant> grants_;
  absl::Duration heartbeat_interval_ = absl::Seconds(10);
};

}  // namespace sesame
