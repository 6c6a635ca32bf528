#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"

namespace sesame {
namespace {

absl::Status ErrnoError(const char* what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
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
