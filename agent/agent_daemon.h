// The standalone daemon: capture on the configured interfaces, the knock
// pipeline, grants through the doors' backends, and the process around them
// (daemonising, pid file, signals, reload). One thread runs capture and
// matching; firewall work runs on the grant worker's thread; commands on the
// process runner's.
//
// Managed mode (a Controller in [options]): the same loop also feeds the
// managed sequences' matcher (agent/managed/managed_matcher.h), and the
// managed agent's own threads talk to the controller; see
// agent/managed/managed_agent.h. Switching between standalone and managed
// mode takes a restart; the controller link's settings too.
//
// Signals: SIGHUP reloads the configuration (a bad new one is refused and the
// old one keeps running); SIGTERM/SIGINT stop; SIGUSR1 logs statistics.
// Signals are read from a signalfd in the loop, never handled inside a
// signal handler.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "agent/agent_options.h"
#include "agent/config/config.h"

namespace sesame {

// Runs until SIGTERM/SIGINT. `config` already carries `overrides`;
// `config_path` is re-read on SIGHUP and the overrides applied again.
absl::Status RunAgentDaemon(AgentConfig config, const std::string& config_path, const ConfigOverrides& overrides,
                            const DaemonOptions& options);

}  // namespace sesame
