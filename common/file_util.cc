#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"

namespace sesame {
namespace {

absl::Status ErrnoError(const char* what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status OpenError(int err, const std::string& path) {
  const std::string message = absl::StrCat("cannot open ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(absl::StrCat("no such file: ", path));
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
  return absl::UnavailableError(message);
}

// Whether a stat'ed file may be read as a small regular file.
absl::Status CheckStat(const std::string& path, const struct stat& st, size_t max_bytes) {
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a regular file (", FileTypeName(st.st_mode), ")"));
  }
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::OutOfRangeError(
        absl::StrCat(path, " is larger than the limit of ", max_bytes, " bytes (", st.st_size, " bytes)"));
  }
  return absl::OkStatus();
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, std::string_view contents, mode_t mode) {
  std::string tmp = path + ".tmpXXXXXX";
  const int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot create temporary for", path);
  bool keep = false;
  absl::Cleanup remove_tmp = [&] {
    if (!keep) unlink(tmp.c_str());
  };
  {
    absl::Cleanup close_fd = [fd] { close(fd); };
    if (fchmod(fd, mode) != 0) return ErrnoError("cannot chmod", tmp);
    size_t done = 0;
    while (done < contents.size()) {
      const ssize_t n = write(fd, contents.data() + done, contents.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("cannot write", tmp);
      }
      done += static_cast<size_t>(n);
    }
    if (fsync(fd) != 0) return ErrnoError("cannot fsync", tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("cannot rename over", path);
  keep = true;
  const int dir = open(DirName(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    close(dir);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no such file: ", path));
    return ErrnoError("cannot open", path);
  }
  absl::Cleanup close_fd = [fd] { close(fd); };
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

const char* FileTypeName(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "of an unknown type";
}

absl::StatusOr<std::string> ReadSmallRegularFile(const std::string& path, size_t max_bytes, struct stat* info) {
  // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
  // O_NOCTTY: a terminal device must not become the controlling terminal.
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return OpenError(errno, path);
  absl::Cleanup close_fd = [fd] { close(fd); };
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError("cannot stat", path);
  if (absl::Status s = CheckStat(path, st, max_bytes); !s.ok()) return s;
  std::string out;
  out.reserve(static_cast<size_t>(st.st_size));
  // One byte past the limit tells a file that grew meanwhile.
  const size_t read_limit = max_bytes == SIZE_MAX ? SIZE_MAX : max_bytes + 1;
  char buf[65536];
  for (;;) {
    const size_t want = std::min(sizeof buf, read_limit - out.size());
    const ssize_t n = read(fd, buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      return absl::OutOfRangeError(
          absl::StrCat(path, " is larger than the limit of ", max_bytes, " bytes (it grew while being read)"));
    }
  }
  if (info != nullptr) *info = st;
  return out;
}

absl::Status CheckSmallRegularFile(const std::string& path, size_t max_bytes) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return OpenError(errno, path);
  return CheckStat(path, st, max_bytes);
}

absl::Status MakeDirectories(const std::string& path, mode_t mode) {
  if (path.empty()) return absl::OkStatus();
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a directory"));
  }
  const std::string parent = DirName(path);
  if (parent != path) {
    absl::Status s = MakeDirectories(parent, mode);
    if (!s.ok()) return s;
  }
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return ErrnoError("cannot create directory", path);
  return absl::OkStatus();
}

}  // namespace sesame
