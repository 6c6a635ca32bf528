// Run-time switches from the command line (knockd's flags), shared by the
// daemon and the capture-file replay, and the command line's overrides of
// the configuration file, applied again after every reload.
#pragma once

#include <string>
#include <vector>

#include "agent/config/config.h"

namespace sesame {

struct DaemonOptions {
  bool daemonize = false;       // -d
  bool debug = false;           // -D
  bool verbose = false;         // -v: log every stage
  bool lookup_names = false;    // -l: resolve knockers' names in log lines
  bool only_ipv4 = false;       // -4
  bool salvage_grants = false;  // --salvage-grants
};

struct ConfigOverrides {
  std::vector<std::string> interfaces;  // -i, comma lists already split
  std::string pid_file;                 // -p
  std::string log_file;                 // -g
  std::string state_dir;                // --state-dir
};

inline void ApplyOverrides(const ConfigOverrides& o, AgentConfig& config) {
  if (!o.interfaces.empty()) config.options.interfaces = o.interfaces;
  if (config.options.interfaces.empty()) config.options.interfaces.push_back("eth0");  // knockd's default
  if (!o.pid_file.empty()) config.options.pid_file = o.pid_file;
  if (!o.log_file.empty()) config.options.log_file = o.log_file;
  if (!o.state_dir.empty()) config.options.state_dir = o.state_dir;
}

}  // namespace sesame
