// What the managed agent holds, put to use on the worker thread: the
// managed doors (handed to the backends, and looked up by name for grants),
// the sequences published to the matcher, and the state file. DoorConfigs,
// for other threads, reads the copy kept under mu_.
#include "agent/managed/managed_agent.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/managed/managed_doors.h"
#include "agent/managed/proto_convert.h"

namespace sesame {

std::vector<DoorConfig> ManagedAgent::DoorConfigs() const {
  absl::MutexLock lock(&mu_);
  return door_configs_shared_;
}

void ManagedAgent::RecomputeDoors() {
  std::vector<std::string> errors;
  std::vector<DoorConfig> doors = ManagedDoorConfigs(config_, state_.doors(), &errors);
  for (const std::string& e : errors) NoteError(e);
  door_configs_ = doors;
  {
    absl::MutexLock lock(&mu_);
    door_configs_shared_ = doors;
  }
  if (doors_changed_) doors_changed_(std::move(doors));
}

const DoorConfig* ManagedAgent::DoorConfigFor(const std::string& door) const {
  for (const DoorConfig& d : door_configs_) {
    if (d.name == door) return &d;
  }
  return nullptr;
}

bool ManagedAgent::ServesDoor(const std::string& door) const {
  if (DoorConfigFor(door) != nullptr) return true;
  for (const DoorConfig& d : config_.doors) {
    if (!d.managed && d.name == door) return true;
  }
  return false;
}

std::vector<Knock> ManagedAgent::GrantPortsOf(const std::string& door) const {
  if (const DoorConfig* d = DoorConfigFor(door)) return d->ports;
  for (const DoorConfig& d : config_.doors) {
    if (d.name == door) return d.ports;
  }
  return {{22, Protocol::kTcp}};
}

absl::Duration ManagedAgent::GrantTtlOf(const std::string& door) const {
  if (const DoorConfig* d = DoorConfigFor(door)) return d->cmd_timeout;
  return absl::Seconds(10);
}

std::optional<LiveSequence> ManagedAgent::ToLive(uint64_t id, const v1::HeldSequence& s) const {
  const DoorConfig* door = DoorConfigFor(s.door());
  if (door == nullptr) return std::nullopt;  // a door this agent does not serve
  absl::StatusOr<std::vector<Knock>> knocks = FromProtoKnocks(s.knocks(), kMaxSequenceLength);
  if (!knocks.ok()) return std::nullopt;  // ManagedState let none of these in
  LiveSequence l;
  l.id = id;
  l.door = s.door();
  l.knocks = *std::move(knocks);
  l.reserve = s.reserve();
  l.params = MatchParamsFor(config_, *door);
  return l;
}

void ManagedAgent::PublishSequences() {
  std::vector<LiveSequence> live;
  live.reserve(state_.sequences().size());
  for (const auto& [id, s] : state_.sequences()) {
    if (std::optional<LiveSequence> l = ToLive(id, s)) live.push_back(*std::move(l));
  }
  matcher_->Publish(std::move(live));
}

void ManagedAgent::PublishChangedSequences() {
  std::vector<LiveSequence> upserts;
  std::vector<uint64_t> removed;
  for (uint64_t id : publish_ids_) {
    auto it = state_.sequences().find(id);
    std::optional<LiveSequence> l = it == state_.sequences().end() ? std::nullopt : ToLive(id, it->second);
    if (l.has_value()) {
      upserts.push_back(*std::move(l));
    } else {
      removed.push_back(id);
    }
  }
  matcher_->Update(std::move(upserts), removed);
}

void ManagedAgent::PublishToMatcher() {
  // A batch of burns and additions costs what it changed, not the size of
  // the fleet's live set; a snapshot or a door's new policy, everything.
  if (publish_all_) {
    PublishSequences();
  } else if (!publish_ids_.empty()) {
    PublishChangedSequences();
  }
  publish_all_ = false;
  publish_ids_.clear();
}

void ManagedAgent::SaveState() {
  save_due_ = absl::InfiniteFuture();
  const absl::Time started = absl::Now();
  std::string bytes = state_.Serialize();
  last_save_ = absl::Now();
  last_save_took_ = last_save_ - started;
  ++save_generation_;
  for (auto& [id, generation] : unsaved_consumptions_) {
    if (generation == 0) generation = save_generation_;  // this save holds its removal
  }
  writer_->Submit(std::move(bytes), save_generation_);
}

void ManagedAgent::SaveStateNow() {
  SaveState();
  HandleStateSaved(StateSaved{save_generation_, writer_->Flush()});
}

void ManagedAgent::HandleStateSaved(const StateSaved& e) {
  if (!e.status.ok()) {
    NoteError(absl::StrCat("managed state: ", e.status.message()));
    for (auto& [id, generation] : unsaved_consumptions_) {
      if (generation <= e.generation) generation = 0;  // to be saved again
    }
    dirty_ = true;
    return;
  }
  absl::erase_if(unsaved_consumptions_, [&](const auto& entry) {
    return entry.second != 0 && entry.second <= e.generation;
  });
  std::vector<std::string> ids;
  ids.swap(confirm_after_save_);
  Confirm(ids);  // those still unsaved wait again
}

}  // namespace sesame
