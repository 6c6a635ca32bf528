#include "agent/config_check.h"

#include "agent/config/config.h"
#include "agent/grants/backends/backend_factory.h"
#include "agent/grants/process_runner.h"
#include "agent/match/one_time_sequences.h"
#include "common/status_macros.h"

namespace sesame {

absl::Status CheckConfigFile(const std::string& path) {
  ASSIGN_OR_RETURN(const AgentConfig config, LoadConfig(path));
  for (const DoorConfig& door : config.doors) {
    if (!door.one_time_sequences.empty()) RETURN_IF_ERROR(OneTimeSequences::Check(door.one_time_sequences));
  }
  // Builds the backends without preparing them: it checks what can be
  // checked without touching the firewall.
  ProcessRunner runner(ProcessRunnerOptions{});
  return BackendSet::Create(config, runner).status();
}

}  // namespace sesame
