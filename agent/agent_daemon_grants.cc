// How the daemon builds its grant side: the doors' backends, the grant
// worker over the grants file, and in managed mode the backend switch, the
// audited sink and the managed agent's start.
#include "agent/internal/daemon.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame::daemon_internal {

BackendLookup LookupIn(std::shared_ptr<BackendSet> set) {
  return [set = std::move(set)](const std::string& door) { return set->ForDoor(door); };
}

absl::StatusOr<std::shared_ptr<BackendSet>> Daemon::MakeBackends(const AgentConfig& config) {
  ASSIGN_OR_RETURN(std::unique_ptr<BackendSet> set, BackendSet::Create(config, *runner_));
  return std::shared_ptr<BackendSet>(std::move(set));
}

void Daemon::StartGrants(std::unique_ptr<GrantStore> store, BackendLookup backends) {
  auto book = std::make_unique<GrantBook>(std::move(store), std::move(backends), RealClock::Instance());
  book->set_resolve_names(options_.lookup_names);
  grants_ = std::make_unique<GrantWorker>(std::move(book));
}

// Backends for standalone and managed doors alike, through one switch; the
// managed agent's reporting sees every grant the backends handle.
absl::Status Daemon::StartManaged(std::unique_ptr<GrantStore> store) {
  ManagedAgent* managed = managed_.get();
  backend_switch_ = std::make_unique<BackendSwitch>(
      config_, managed->DoorConfigs(),
      [this](const AgentConfig& doors) -> absl::StatusOr<BackendSwitch::Built> {
        ASSIGN_OR_RETURN(std::shared_ptr<BackendSet> set, MakeBackends(doors));
        return BackendSwitch::Built{LookupIn(set), [set] { return set->PrepareAll(); }};
      },
      [managed](BackendLookup lookup) { return managed->Reporting(std::move(lookup)); });
  ASSIGN_OR_RETURN(BackendLookup lookup, backend_switch_->BuildInitial());
  StartGrants(std::move(store), std::move(lookup));
  backend_switch_->Attach(grants_.get());
  audited_sink_ = std::make_unique<AuditedSink>(*grants_, *managed);
  ASSIGN_OR_RETURN(pipeline_, KnockPipeline::Create(config_, pipeline_options_, *audited_sink_));
  BackendSwitch* backend_switch = backend_switch_.get();
  managed->Start(*grants_, [backend_switch](std::vector<DoorConfig> doors) {
    if (absl::Status s = backend_switch->SetManaged(std::move(doors)); !s.ok()) {
      LogError(absl::StrCat("managed doors: ", s.message()));
    }
  });
  return absl::OkStatus();
}

}  // namespace sesame::daemon_internal
