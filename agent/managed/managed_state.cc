#include "agent/managed/managed_state.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>

#include "absl/strings/str_cat.h"
#include "agent/config/config.h"
#include "agent/managed/proto_convert.h"
#include "common/file_util.h"

namespace sesame {
namespace {

constexpr char kHeader[] = "sesame-managed-state 1\n";

// One length-delimited field: tag, length, the message.
void WriteField(int field, const google::protobuf::MessageLite& m, google::protobuf::io::CodedOutputStream& out) {
  using google::protobuf::internal::WireFormatLite;
  out.WriteTag(WireFormatLite::MakeTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
  out.WriteVarint32(static_cast<uint32_t>(m.ByteSizeLong()));  // also caches the sizes used next
  m.SerializeWithCachedSizes(&out);
}

bool SameGrant(const v1::Grant& a, const v1::Grant& b) {
  return a.door() == b.door() && a.address() == b.address() && a.expires_at().seconds() == b.expires_at().seconds() &&
         a.expires_at().nanos() == b.expires_at().nanos() && a.ports_size() == b.ports_size();
}

}  // namespace

absl::StatusOr<ManagedState> ManagedState::Load(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  ManagedState state;
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) return state;
    return text.status();
  }
  const std::string header(kHeader);
  if (text->compare(0, header.size(), header) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": not a managed state file of version 1"));
  }
  v1::Snapshot saved;
  if (!saved.ParseFromArray(text->data() + header.size(), static_cast<int>(text->size() - header.size()))) {
    return absl::DataLossError(absl::StrCat(path, ": unreadable managed state"));
  }
  (void)state.ApplySnapshot(saved, {});
  return state;
}

std::string ManagedState::Serialize() const {
  // A v1::Snapshot written field by field (the wire format of a repeated
  // field is its elements one after another), the sequences from their
  // ready bytes: no copy of what is held.
  using google::protobuf::internal::WireFormatLite;
  std::string bytes(kHeader);
  bytes.reserve(bytes.size() + sequence_fields_.size() * 48 + 4096);
  google::protobuf::io::StringOutputStream raw(&bytes);
  {
    google::protobuf::io::CodedOutputStream out(&raw);
    WireFormatLite::WriteUInt64(v1::Snapshot::kRevisionFieldNumber, revision_, &out);
    for (const auto& [name, door] : doors_) WriteField(v1::Snapshot::kDoorsFieldNumber, door, out);
    for (const auto& [id, field] : sequence_fields_) out.WriteRaw(field.data(), static_cast<int>(field.size()));
    for (const auto& [id, g] : grants_) WriteField(v1::Snapshot::kGrantsFieldNumber, g, out);
    WriteField(v1::Snapshot::kHeartbeatIntervalFieldNumber, ToProtoDuration(heartbeat_interval_), out);
  }
  return bytes;
}

absl::Status ManagedState::Save(const std::string& path) const {
  return WriteFileAtomically(path, Serialize(), 0600);
}

void ManagedState::PutSequence(const v1::HeldSequence& sequence) {
  sequences_.insert_or_assign(sequence.id(), sequence);
  std::string field;
  {
    google::protobuf::io::StringOutputStream raw(&field);
    google::protobuf::io::CodedOutputStream out(&raw);
    WriteField(v1::Snapshot::kSequencesFieldNumber, sequence, out);
  }
  sequence_fields_[sequence.id()] = std::move(field);
  reserve_count_ += sequence.reserve() ? 1 : 0;
}

size_t ManagedState::reserve_left() const { return reserve_count_; }

void ManagedState::EraseSequence(std::map<uint64_t, v1::HeldSequence>::iterator it) {
  if (it->second.reserve()) --reserve_count_;
  sequence_fields_.erase(it->first);
  sequences_.erase(it);
}

bool ManagedState::AcceptSequence(const v1::HeldSequence& sequence, Changes& changes) const {
  if (sequence.id() == 0) {
    changes.errors.push_back("a sequence without an id; ignored");
    return false;
  }
  if (!IsValidDoorName(sequence.door())) {
    changes.errors.push_back(absl::StrCat("sequence ", sequence.id(), ": invalid door name; ignored"));
    return false;
  }
  absl::StatusOr<std::vector<Knock>> knocks = FromProtoKnocks(sequence.knocks(), kMaxSequenceLength);
  if (!knocks.ok()) {
    changes.errors.push_back(absl::StrCat("sequence ", sequence.id(), ": ", knocks.status().message(), "; ignored"));
    return false;
  }
  return true;
}

ManagedState::Changes ManagedState::ApplySnapshot(const v1::Snapshot& snapshot,
                                                  const absl::flat_hash_set<uint64_t>& consumed) {
  Changes changes;
  std::map<std::string, v1::Door> doors;
  for (const v1::Door& door : snapshot.doors()) {
    if (!IsValidDoorName(door.name())) {
      changes.errors.push_back(absl::StrCat("door \"", door.name(), "\": invalid name; ignored"));
      continue;
    }
    doors[door.name()] = door;
  }
  auto same_doors = [&] {
    if (doors.size() != doors_.size()) return false;
    for (const auto& [name, door] : doors) {
      auto it = doors_.find(name);
      if (it == doors_.end() || it->second.SerializeAsString() != door.SerializeAsString()) return false;
    }
    return true;
  };
  changes.doors_changed = !same_doors();
  doors_ = std::move(doors);

  std::map<uint64_t, v1::HeldSequence> sequences;
  for (const v1::HeldSequence& s : snapshot.sequences()) {
    if (consumed.contains(s.id()) || !AcceptSequence(s, changes)) continue;
    sequences[s.id()] = s;
  }
  if (sequences.size() != sequences_.size()) {
    changes.sequences_changed = true;
  } else {
    for (const auto& [id, s] : sequences) {
      auto it = sequences_.find(id);
      if (it == sequences_.end() || it->second.SerializeAsString() != s.SerializeAsString()) {
        changes.sequences_changed = true;
        break;
      }
    }
  }
  changes.sequences_reset = changes.sequences_changed;
  if (changes.sequences_reset) {
    sequences_.clear();
    sequence_fields_.clear();
    reserve_count_ = 0;
    for (const auto& [id, q] : sequences) PutSequence(q);
  }

  std::map<uint64_t, v1::Grant> grants;
  for (const v1::Grant& g : snapshot.grants()) {
    if (g.id() == 0) continue;
    grants[g.id()] = g;
    auto held = grants_.find(g.id());
    if (held == grants_.end() || !SameGrant(held->second, g)) changes.grants_to_open.push_back(g);
  }
  for (const auto& [id, g] : grants_) {
    if (!grants.contains(id)) changes.grants_to_close.push_back(g);
  }
  grants_ = std::move(grants);

  revision_ = snapshot.revision();
  if (snapshot.has_heartbeat_interval()) {
    const absl::Duration d = FromProtoDuration(snapshot.heartbeat_interval());
    if (d >= absl::Milliseconds(100) && d <= absl::Hours(1)) heartbeat_interval_ = d;
  }
  return changes;
}

ManagedState::Changes ManagedState::ApplyDelta(const v1::Delta& delta, const absl::flat_hash_set<uint64_t>& consumed) {
  Changes changes;
  if (delta.revision() <= revision_) return changes;  // stale: seen already
  revision_ = delta.revision();
  switch (delta.change_case()) {
    case v1::Delta::kSequenceAdded: {
      const v1::HeldSequence& s = delta.sequence_added();
      if (consumed.contains(s.id()) || !AcceptSequence(s, changes)) break;
      if (auto held = sequences_.find(s.id()); held != sequences_.end()) EraseSequence(held);
      PutSequence(s);
      changes.sequences_changed = true;
      changes.sequences_touched.push_back(s.id());
      break;
    }
    case v1::Delta::kSequenceBurnt:
      if (auto held = sequences_.find(delta.sequence_burnt().sequence_id()); held != sequences_.end()) {
        EraseSequence(held);
        changes.sequences_changed = true;
        changes.sequences_touched.push_back(delta.sequence_burnt().sequence_id());
      }
      break;
    case v1::Delta::kGrant: {
      const v1::Grant& g = delta.grant();
      if (g.id() == 0) {
        changes.errors.push_back("a grant without an id; ignored");
        break;
      }
      if (g.state() == v1::GRANT_STATE_EXPIRED || g.state() == v1::GRANT_STATE_REVOKED) {
        auto held = grants_.find(g.id());
        changes.grants_to_close.push_back(held != grants_.end() ? held->second : g);
        grants_.erase(g.id());
        break;
      }
      auto held = grants_.find(g.id());
      if (held == grants_.end() || !SameGrant(held->second, g)) changes.grants_to_open.push_back(g);
      grants_[g.id()] = g;
      break;
    }
    case v1::Delta::kRevoke: {
      const v1::Revoke& r = delta.revoke();
      auto held = grants_.find(r.grant_id());
      if (held != grants_.end()) {
        changes.grants_to_close.push_back(held->second);
        grants_.erase(held);
      } else if (!r.address().empty() && !r.door().empty()) {
        v1::Grant g;
        g.set_id(r.grant_id());
        g.set_door(r.door());
        g.set_address(r.address());
        changes.grants_to_close.push_back(g);
      } else {
        break;
      }
      changes.grants_to_close.back().set_kill_sessions(r.kill_sessions());
      break;
    }
    case v1::Delta::kDoorChanged: {
      const v1::DoorChanged& c = delta.door_changed();
      const std::string& name = c.door().name();
      if (!IsValidDoorName(name)) {
        changes.errors.push_back(absl::StrCat("door \"", name, "\": invalid name; ignored"));
        break;
      }
      if (c.removed()) {
        changes.doors_changed = doors_.erase(name) > 0;
        for (auto it = sequences_.begin(); it != sequences_.end();) {
          if (it->second.door() == name) {
            changes.sequences_touched.push_back(it->first);
            EraseSequence(it++);
            changes.sequences_changed = true;
          } else {
            ++it;
          }
        }
        for (auto it = grants_.begin(); it != grants_.end();) {
          if (it->second.door() == name) {
            changes.grants_to_close.push_back(it->second);
            it = grants_.erase(it);
          } else {
            ++it;
          }
        }
      } else {
        doors_[name] = c.door();
        changes.doors_changed = true;
        // The door's seq_timeout is part of how its sequences are matched.
        changes.sequences_changed = true;
        changes.sequences_reset = true;
      }
      break;
    }
    case v1::Delta::CHANGE_NOT_SET:
      break;
  }
  return changes;
}

bool ManagedState::RemoveSequence(uint64_t id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return false;
  EraseSequence(it);
  return true;
}

bool ManagedState::RemoveGrant(uint64_t id) { return grants_.erase(id) > 0; }

bool ManagedState::PutGrant(const v1::Grant& grant) {
  auto held = grants_.find(grant.id());
  const bool open = held == grants_.end() || !SameGrant(held->second, grant);
  grants_[grant.id()] = grant;
  return open;
}

}  // namespace sesame
