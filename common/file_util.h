// Files that must never be seen half-written: write a temporary beside the
// target, fsync it, rename it over the target, fsync the directory.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sesame {

absl::Status WriteFileAtomically(const std::string& path, std::string_view contents, mode_t mode = 0644);
absl::StatusOr<std::string> ReadFileToString(const std::string& path);
// mkdir -p with the given mode for directories it creates.
absl::Status MakeDirectories(const std::string& path, mode_t mode = 0755);

}  // namespace sesame
