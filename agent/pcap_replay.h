// --pcap FILE: the capture file goes through the real pipeline (decoder,
// matcher, one-time sequences, cmd_timeout) with its own timestamps as the
// clock. Nothing on the host changes: no firewall call, no command, and
// one-time files are used from private copies. The result is a JSON summary.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "agent/agent_options.h"
#include "agent/config/config.h"

namespace sesame {

absl::StatusOr<std::string> ReplayCaptureFile(AgentConfig config, const DaemonOptions& options,
                                              const std::string& capture_path);

}  // namespace sesame
