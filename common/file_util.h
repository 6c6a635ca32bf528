// Files that must never be seen half-written: write a temporary beside the
// target, fsync it, rename it over the target, fsync the directory. Files
// that must never be read without a bound: ReadSmallRegularFile.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sesame {

absl::Status WriteFileAtomically(const std::string& path, std::string_view contents, mode_t mode = 0644);
// Reads all of a file, whatever its size or type: only for files sesame
// wrote itself and bounds itself. Anything a configuration names, or that
// another program may have put in place, goes through ReadSmallRegularFile.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Reads a file that must be a regular file of at most `max_bytes`. It opens
// without blocking (a FIFO never hangs the caller), checks the type before
// reading, and never reads more than max_bytes + 1 bytes (a file that grows
// meanwhile is still refused), so /dev/zero, a directory or a huge file
// costs nothing. Errors start with the path and say what was wrong:
//   NotFound            no such file ("no such file: PATH", as ReadFileToString)
//   FailedPrecondition  "PATH is not a regular file (a directory)", or a
//                       FIFO, a character device, a block device, a socket
//   OutOfRange          "PATH is larger than the limit of N bytes (M bytes)"
//   PermissionDenied, Unavailable   cannot open or read it (with strerror)
// `info`, when given, receives the open file's fstat().
absl::StatusOr<std::string> ReadSmallRegularFile(const std::string& path, size_t max_bytes,
                                                 struct stat* info = nullptr);
// The same checks without reading: the type and size of what `path` names
// (through symlinks). Same error codes and messages.
absl::Status CheckSmallRegularFile(const std::string& path, size_t max_bytes);
// "a regular file", "a directory", "a FIFO", "a character device", ...
const char* FileTypeName(mode_t mode);

// mkdir -p with the given mode for directories it creates.
absl::Status MakeDirectories(const std::string& path, mode_t mode = 0755);

}  // namespace sesame
