#include "agent/grants/backends/hosts_allow_backend.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

// A rewrite that keeps losing the race against another editor gives up.
constexpr int kMaxEditAttempts = 5;
constexpr char kGrantMarker[] = " EXCEPT # sesame door=";

absl::Status ErrnoError(const std::string& what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// A file as read, with what identifies that version of it.
struct Snapshot {
  bool exists = false;
  struct stat st {};
  std::string contents;
};

bool SameVersion(const Snapshot& a, const Snapshot& b) {
  if (a.exists != b.exists) return false;
  if (!a.exists) return true;
  return a.st.st_dev == b.st.st_dev && a.st.st_ino == b.st.st_ino && a.st.st_size == b.st.st_size &&
         a.st.st_mtim.tv_sec == b.st.st_mtim.tv_sec && a.st.st_mtim.tv_nsec == b.st.st_mtim.tv_nsec;
}

// A table is read whole before each edit: bounded, and only a regular file
// (a FIFO or a device named as HostsAllow_Table is an error, not a hang).
absl::StatusOr<Snapshot> ReadSnapshot(const std::string& path) {
  Snapshot snap;
  absl::StatusOr<std::string> contents = ReadSmallRegularFile(path, kMaxHostsAllowTableBytes, &snap.st);
  if (absl::IsNotFound(contents.status())) return snap;
  if (!contents.ok()) return contents.status();
  snap.exists = true;
  snap.contents = *std::move(contents);
  return snap;
}

absl::StatusOr<Snapshot> StatOnly(const std::string& path) {
  Snapshot snap;
  if (stat(path.c_str(), &snap.st) != 0) {
    if (errno == ENOENT) return snap;
    return ErrnoError(absl::StrCat("cannot stat ", path));
  }
  snap.exists = true;
  return snap;
}

// Writes `contents` to a fresh temporary beside `path` with the mode and
// owner `like` has (0644 and ours when it does not exist), fsynced.
absl::StatusOr<std::string> WriteTemporary(const std::string& path, std::string_view contents, const Snapshot& like) {
  std::string tmp = path + ".sesame-tmpXXXXXX";
  const int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoError(absl::StrCat("cannot create a temporary beside ", path));
  bool keep = false;
  absl::Cleanup remove_tmp = [&] {
    if (!keep) unlink(tmp.c_str());
  };
  absl::Cleanup close_fd = [fd] { close(fd); };
  if (like.exists && fchown(fd, like.st.st_uid, like.st.st_gid) != 0) {
    return ErrnoError(absl::StrCat("cannot chown ", tmp));
  }
  const mode_t mode = like.exists ? (like.st.st_mode & 07777) : 0644;
  if (fchmod(fd, mode) != 0) return ErrnoError(absl::StrCat("cannot chmod ", tmp));
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(absl::StrCat("cannot write ", tmp));
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return ErrnoError(absl::StrCat("cannot fsync ", tmp));
  keep = true;
  return tmp;
}

void SyncDirectory(const std::string& path) {
  const int dir = open(DirName(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    close(dir);
  }
}

absl::Status RenameOver(const std::string& tmp, const std::string& path) {
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const absl::Status error = ErrnoError(absl::StrCat("cannot rename ", tmp, " over ", path));
    unlink(tmp.c_str());
    return error;
  }
  SyncDirectory(path);
  return absl::OkStatus();
}

// The file a path names, through a symlink (an /etc managed as a symlink
// farm keeps its link; the file behind it is what gets replaced).
std::string ResolvedPath(const std::string& path) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) != nullptr) return resolved;
  return path;
}

// Read-modify-replace of a table. `edit` returns the new content, or nullopt
// when nothing changes (then nothing is written). With `backup`, the old
// content goes to PATH.sesame~ first.
absl::Status EditTable(const std::string& table, bool backup,
                       absl::FunctionRef<std::optional<std::string>(const std::string&)> edit) {
  const std::string path = ResolvedPath(table);
  for (int attempt = 0; attempt < kMaxEditAttempts; ++attempt) {
    ASSIGN_OR_RETURN(const Snapshot before, ReadSnapshot(path));
    const std::optional<std::string> after = edit(before.contents);
    if (!after.has_value()) return absl::OkStatus();
    if (backup && before.exists) {
      const std::string backup_path = path + ".sesame~";
      ASSIGN_OR_RETURN(const std::string backup_tmp, WriteTemporary(backup_path, before.contents, before));
      RETURN_IF_ERROR(RenameOver(backup_tmp, backup_path));
    }
    ASSIGN_OR_RETURN(const std::string tmp, WriteTemporary(path, *after, before));
    // Someone else replaced or wrote the table meanwhile: start over from
    // their version rather than lose their edit.
    ASSIGN_OR_RETURN(const Snapshot now, StatOnly(path));
    if (!SameVersion(before, now)) {
      unlink(tmp.c_str());
      continue;
    }
    return RenameOver(tmp, path);
  }
  return absl::AbortedError(absl::StrCat(table, " kept changing while sesame rewrote it; gave up after ",
                                         kMaxEditAttempts, " attempts"));
}

// Calls `fn` with each line of `text`, without its '\n'.
template <typename Fn>
void ForEachLine(std::string_view text, Fn fn) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    fn(text.substr(start, end - start));
    start = end + 1;
  }
}

bool HasLine(std::string_view text, std::string_view line) {
  bool found = false;
  ForEachLine(text, [&](std::string_view l) { found = found || l == line; });
  return found;
}

std::string AppendLine(const std::string& text, std::string_view line) {
  std::string out = text;
  if (!out.empty() && out.back() != '\n') out.push_back('\n');
  absl::StrAppend(&out, absl::string_view(line.data(), line.size()), "\n");
  return out;
}

// `text` without the lines for which `drop` is true; every other byte kept.
template <typename Pred>
std::optional<std::string> RemoveLines(const std::string& text, Pred drop) {
  std::string out;
  out.reserve(text.size());
  bool changed = false;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    const size_t next = end == std::string::npos ? text.size() : end + 1;
    if (end == std::string::npos) end = text.size();
    if (drop(std::string_view(text).substr(start, end - start))) {
      changed = true;
    } else {
      out.append(text, start, next - start);
    }
    start = next;
  }
  if (!changed) return std::nullopt;
  return out;
}

absl::string_view Strip(std::string_view s) {
  return absl::StripAsciiWhitespace(absl::string_view(s.data(), s.size()));
}

// "SERVICE: /path", give or take whitespace.
bool IsIncludeLine(std::string_view line, const std::string& service, const std::string& file) {
  const absl::string_view l = Strip(line);
  if (l.empty() || l.front() == '#') return false;
  const size_t colon = l.find(':');
  if (colon == absl::string_view::npos) return false;
  return absl::StripAsciiWhitespace(l.substr(0, colon)) == service &&
         absl::StripAsciiWhitespace(l.substr(colon + 1)) == file;
}

std::string MarkerDoorName(const std::string& door) {
  std::string out = door;
  for (char& ch : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-') ch = '_';
  }
  return out;
}

}  // namespace

std::string HostsAccessPattern(const IpAddress& address) {
  if (address.is_v6()) return absl::StrCat("[", address.ToString(), "]");
  return address.ToString();
}

// ---------------------------------------------------------------------------

HostsAllowIncludeFile::HostsAllowIncludeFile(std::string table, std::string include_file, std::string service)
    : table_(std::move(table)), include_file_(std::move(include_file)), service_(std::move(service)) {}

std::string HostsAllowIncludeFile::IncludeLine() const { return absl::StrCat(service_, ": ", include_file_); }

absl::Status HostsAllowIncludeFile::WriteIncludeFile(
    const std::map<IpAddress, std::set<std::string>>& granted) const {
  std::string contents;
  for (const auto& [address, doors] : granted) absl::StrAppend(&contents, HostsAccessPattern(address), "\n");
  RETURN_IF_ERROR(MakeDirectories(DirName(include_file_), 0755));
  // Readable by every daemon that consults TCP Wrappers, whatever its user.
  return WriteFileAtomically(include_file_, contents, 0644);
}

absl::Status HostsAllowIncludeFile::Prepare() {
  absl::MutexLock lock(&mu_);
  const std::string line = IncludeLine();
  size_t count = 0;
  RETURN_IF_ERROR(EditTable(table_, /*backup=*/true, [&](const std::string& text) -> std::optional<std::string> {
    count = 0;
    ForEachLine(text, [&](std::string_view l) { count += IsIncludeLine(l, service_, include_file_) ? 1 : 0; });
    if (count > 0) return std::nullopt;
    return AppendLine(text, line);
  }));
  if (count > 1) LogWarning(absl::StrCat(table_, " holds the line \"", line, "\" ", count, " times"));
  return WriteIncludeFile(granted_);
}

absl::Status HostsAllowIncludeFile::Add(const std::string& door, const IpAddress& address) {
  absl::MutexLock lock(&mu_);
  const auto it = granted_.find(address);
  if (it != granted_.end()) {
    it->second.insert(door);
    return absl::OkStatus();
  }
  granted_[address].insert(door);
  const absl::Status written = WriteIncludeFile(granted_);
  if (!written.ok()) granted_.erase(address);
  return written;
}

absl::Status HostsAllowIncludeFile::Remove(const std::string& door, const IpAddress& address) {
  absl::MutexLock lock(&mu_);
  const auto it = granted_.find(address);
  if (it == granted_.end()) return absl::OkStatus();
  if (it->second.erase(door) == 0 || !it->second.empty()) return absl::OkStatus();
  std::set<std::string> doors = std::move(it->second);
  granted_.erase(it);
  const absl::Status written = WriteIncludeFile(granted_);
  if (!written.ok()) {
    doors.insert(door);
    granted_.emplace(address, std::move(doors));
  }
  return written;
}

// ---------------------------------------------------------------------------

HostsAllowInlineTable::HostsAllowInlineTable(std::string table) : table_(std::move(table)) {}

std::string HostsAllowInlineTable::GrantLine(const std::string& service, const std::string& door,
                                             const IpAddress& address) {
  return absl::StrCat(service, ": ", HostsAccessPattern(address), kGrantMarker, MarkerDoorName(door));
}

bool HostsAllowInlineTable::IsGrantLine(std::string_view line) {
  if (line.empty() || line.front() == '#') return false;
  const size_t colon = line.find(": ");
  const size_t marker = line.find(kGrantMarker);
  return colon != std::string_view::npos && marker != std::string_view::npos && colon < marker;
}

absl::Status HostsAllowInlineTable::Prepare() {
  // Every grant replaces the table by rename: find out now, not at the
  // first knock, when its directory is not writable (a read-only /etc under
  // systemd's ProtectSystem=, say).
  const std::string dir = DirName(ResolvedPath(table_));
  if (access(dir.c_str(), W_OK) != 0) {
    return ErrnoError(absl::StrCat("cannot replace ", table_, " (its directory ", dir, " is not writable)"));
  }
  absl::MutexLock lock(&mu_);
  return EditTable(table_, /*backup=*/true, [&](const std::string& text) {
    return RemoveLines(text, [&](std::string_view line) {
      return IsGrantLine(line) && granted_.find(std::string(line)) == granted_.end();
    });
  });
}

absl::Status HostsAllowInlineTable::Add(const std::string& service, const std::string& door,
                                        const IpAddress& address) {
  const std::string line = GrantLine(service, door, address);
  absl::MutexLock lock(&mu_);
  // The file is checked even when this process already holds the line: an
  // administrator may have removed it by hand.
  RETURN_IF_ERROR(EditTable(table_, /*backup=*/true, [&](const std::string& text) -> std::optional<std::string> {
    if (HasLine(text, line)) return std::nullopt;
    return AppendLine(text, line);
  }));
  granted_[line].insert(door);
  return absl::OkStatus();
}

absl::Status HostsAllowInlineTable::Remove(const std::string& service, const std::string& door,
                                           const IpAddress& address) {
  const std::string line = GrantLine(service, door, address);
  absl::MutexLock lock(&mu_);
  const auto it = granted_.find(line);
  if (it != granted_.end()) {
    it->second.erase(door);
    if (!it->second.empty()) return absl::OkStatus();  // another door holds the same line
  }
  RETURN_IF_ERROR(EditTable(table_, /*backup=*/true, [&](const std::string& text) {
    return RemoveLines(text, [&](std::string_view l) { return l == line; });
  }));
  granted_.erase(line);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------

HostsAllowBackend::HostsAllowBackend(std::string door, std::shared_ptr<HostsAllowIncludeFile> include_file)
    : door_(std::move(door)), service_(include_file->service()), include_file_(std::move(include_file)) {}

HostsAllowBackend::HostsAllowBackend(std::string door, std::string service,
                                     std::shared_ptr<HostsAllowInlineTable> table)
    : door_(std::move(door)), service_(std::move(service)), inline_table_(std::move(table)) {}

absl::Status HostsAllowBackend::Prepare() {
  return include_file_ ? include_file_->Prepare() : inline_table_->Prepare();
}

absl::Status HostsAllowBackend::Open(const Grant& grant) {
  return include_file_ ? include_file_->Add(door_, grant.address)
                       : inline_table_->Add(service_, door_, grant.address);
}

absl::Status HostsAllowBackend::Close(const Grant& grant) {
  return include_file_ ? include_file_->Remove(door_, grant.address)
                       : inline_table_->Remove(service_, door_, grant.address);
}

}  // namespace sesame
