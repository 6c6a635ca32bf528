#include "agent/managed/backend_switch.h"

#include "absl/strings/str_cat.h"
#include "agent/managed/managed_doors.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {

BackendSwitch::BackendSwitch(AgentConfig config, std::vector<DoorConfig> managed, Factory factory, Wrap wrap)
    : factory_(std::move(factory)), wrap_(std::move(wrap)), config_(std::move(config)), managed_(std::move(managed)) {}

absl::StatusOr<BackendSwitch::Built> BackendSwitch::BuildLocked() {
  absl::StatusOr<Built> built = factory_(WithManagedDoors(config_, managed_));
  if (built.ok() || managed_.empty()) return built;
  // Find the managed doors at fault; the standalone ones must build alone.
  ASSIGN_OR_RETURN(Built standalone, factory_(StandaloneOnly(config_)));
  (void)standalone;
  std::vector<DoorConfig> good;
  for (const DoorConfig& door : managed_) {
    std::vector<DoorConfig> trial = good;
    trial.push_back(door);
    absl::StatusOr<Built> t = factory_(WithManagedDoors(config_, trial));
    if (t.ok()) {
      good.push_back(door);
    } else {
      LogError(absl::StrCat("managed door ", door.name, " is not served here: ", t.status().message()));
    }
  }
  return factory_(WithManagedDoors(config_, good));
}

absl::StatusOr<BackendLookup> BackendSwitch::BuildInitial() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Built built, BuildLocked());
  RETURN_IF_ERROR(built.prepare());
  return wrap_ ? wrap_(std::move(built.lookup)) : std::move(built.lookup);
}

void BackendSwitch::Attach(GrantWorker* worker) {
  absl::MutexLock lock(&mu_);
  worker_ = worker;
}

absl::Status BackendSwitch::HandOverLocked() {
  ASSIGN_OR_RETURN(Built built, BuildLocked());
  if (worker_ == nullptr) return absl::OkStatus();
  worker_->Reconfigure([built = std::move(built), wrap = wrap_](GrantBook& book) {
    if (absl::Status s = built.prepare(); !s.ok()) LogError(absl::StrCat("firewall backends: ", s.ToString()));
    book.SetBackends(wrap ? wrap(built.lookup) : built.lookup);
  });
  return absl::OkStatus();
}

absl::Status BackendSwitch::SetConfig(AgentConfig config) {
  absl::MutexLock lock(&mu_);
  AgentConfig previous = std::move(config_);
  config_ = std::move(config);
  absl::Status s = HandOverLocked();
  if (!s.ok()) config_ = std::move(previous);
  return s;
}

absl::Status BackendSwitch::SetManaged(std::vector<DoorConfig> managed) {
  absl::MutexLock lock(&mu_);
  managed_ = std::move(managed);
  return HandOverLocked();
}

}  // namespace sesame
