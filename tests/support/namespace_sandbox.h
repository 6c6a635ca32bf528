// Isolation for tests that touch the network stack or /etc: a private
// network namespace (loopback up, nothing else) and a private mount
// namespace, both gone when the process exits. Nothing reaches the host.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sesame::testing {

// Must run before the process starts any thread.
absl::Status EnterPrivateNamespaces();

// Bind-mounts `source` over `target` (both files, or both directories) in
// the private mount namespace.
absl::Status BindMount(const std::string& source, const std::string& target);

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or could not start
  std::string output;  // stdout and stderr, interleaved
};
// Runs argv (no shell) and waits. For test set-up and for asking real tools
// (nft, iptables, tcpdmatch) what the state is.
CommandResult RunCommand(const std::vector<std::string>& argv);

// True when `tool` is an executable somewhere on PATH.
bool HaveTool(const std::string& tool);

}  // namespace sesame::testing
