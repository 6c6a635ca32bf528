// --check-config: everything about a configuration file that can be known
// without running: the syntax (config.cc), each one-time file in strict mode,
// every file the configuration names that the agent reads (a regular file
// within its limit, config.h's kMax*Bytes; errors "CONFIG:LINE: KEY: ..."
// at the key that names it), and what the backends need (backend_factory).
// Ansible's `validate:` runs it. `notices` (if given) receives what is
// valid but worth saying, "CONFIG:LINE: notice: ..." (a door whose
// commands run through /bin/sh).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sesame {

absl::Status CheckConfigFile(const std::string& path, std::vector<std::string>* notices = nullptr);

}  // namespace sesame
