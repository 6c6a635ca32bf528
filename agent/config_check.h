// --check-config: everything about a configuration file that can be known
// without running: the syntax (config.cc), each one-time file in strict mode,
// and what the backends need (backend_factory). Ansible's `validate:` runs it.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace sesame {

absl::Status CheckConfigFile(const std::string& path);

}  // namespace sesame
