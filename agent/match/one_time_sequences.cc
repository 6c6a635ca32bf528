#include "agent/match/one_time_sequences.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "agent/config/config.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

absl::Status ErrnoStatus(int err, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(err));
  if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(message);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
  return absl::UnavailableError(message);
}

std::string SequenceText(const std::vector<Knock>& sequence) {
  std::string out;
  for (const Knock& k : sequence) absl::StrAppend(&out, out.empty() ? "" : ",", KnockToString(k));
  return out;
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// The file a write must replace: the target of a symlink, not the link.
absl::StatusOr<std::string> ResolvedPath(const std::string& path) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return ErrnoStatus(errno, absl::StrCat("cannot resolve ", path));
  std::string out(resolved);
  std::free(resolved);
  return out;
}

}  // namespace

absl::StatusOr<OneTimeSequences> OneTimeSequences::Load(const std::string& path, Mode mode) {
  OneTimeSequences sequences(path, mode);
  RETURN_IF_ERROR(sequences.Reload());
  return sequences;
}

absl::Status OneTimeSequences::Check(const std::string& path) {
  RETURN_IF_ERROR(Load(path, Mode::kStrict).status());
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("cannot stat ", path));
  if (!S_ISREG(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(path, ": not a regular file"));
  ASSIGN_OR_RETURN(const std::string resolved, ResolvedPath(path));
  const std::string dir = DirName(resolved);
  if (access(resolved.c_str(), R_OK) != 0) {
    return ErrnoStatus(errno, absl::StrCat(path, ": cannot be read"));
  }
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": directory ", dir, " is not writable (", std::strerror(err),
                     "); a used sequence is marked by atomically replacing the file, which needs a temporary "
                     "file beside it"));
  }
  return absl::OkStatus();
}

const std::vector<Knock>& OneTimeSequences::current() const {
  static const std::vector<Knock> kNone;
  return unused_.empty() ? kNone : unused_.front().sequence;
}

absl::StatusOr<bool> OneTimeSequences::ReloadIfChanged() {
  absl::StatusOr<Fingerprint> now = Stat(path_);
  if (!now.ok()) {
    Clear();
    return now.status();
  }
  if (loaded_ && *now == fingerprint_) return false;
  RETURN_IF_ERROR(Reload());
  return true;
}

absl::Status OneTimeSequences::Consume(const std::vector<Knock>& sequence) {
  if (sequence.empty()) return absl::InvalidArgumentError("cannot consume an empty sequence");
  // Always from the bytes on disk now: an edit since the last reload must
  // neither be lost nor let a removed sequence through.
  std::string content;
  mode_t file_mode = 0600;
  RETURN_IF_ERROR(Reload(&content, &file_mode));
  const auto used = std::find_if(unused_.begin(), unused_.end(),
                                 [&](const Entry& e) { return e.sequence == sequence; });
  if (used == unused_.end()) {
    return absl::NotFoundError(
        absl::StrCat(path_, ": sequence ", SequenceText(sequence), " is not an unused line (used or removed)"));
  }
  content[used->offset] = '#';
  ASSIGN_OR_RETURN(const std::string target, ResolvedPath(path_));
  RETURN_IF_ERROR(WriteFileAtomically(target, content, file_mode & 07777));
  // One byte replaced, none moved: the other entries' offsets still hold.
  unused_.erase(used);
  absl::StatusOr<Fingerprint> written = Stat(path_);
  if (written.ok()) {
    fingerprint_ = *written;
  } else {
    loaded_ = false;  // re-read at the next ReloadIfChanged
  }
  return absl::OkStatus();
}

absl::Status OneTimeSequences::Reload(std::string* content_out, mode_t* file_mode) {
  absl::Status status = [&]() -> absl::Status {
    // Stat before reading: a change after the stat shows at the next check.
    ASSIGN_OR_RETURN(const Fingerprint fingerprint, Stat(path_, file_mode));
    // Bounded, and only a regular file: One_Time_Sequences = /dev/zero must
    // be an error, not an allocation of everything the device yields.
    ASSIGN_OR_RETURN(std::string content, ReadSmallRegularFile(path_, kMaxOneTimeFileBytes));
    std::vector<std::string> warnings;
    ASSIGN_OR_RETURN(std::vector<Entry> entries, ParseContent(content, path_, mode_, &warnings));
    // Once per version of the file, not at every consumption's re-read.
    if (!loaded_ || !(fingerprint == fingerprint_)) {
      for (const std::string& w : warnings) LogWarning(absl::StrCat(w, " (line skipped)"));
    }
    unused_ = std::move(entries);
    warnings_ = std::move(warnings);
    fingerprint_ = fingerprint;
    loaded_ = true;
    if (content_out != nullptr) *content_out = std::move(content);
    return absl::OkStatus();
  }();
  if (!status.ok()) Clear();
  return status;
}

void OneTimeSequences::Clear() {
  unused_.clear();
  warnings_.clear();
  fingerprint_ = Fingerprint();
  loaded_ = false;
}

absl::StatusOr<std::vector<OneTimeSequences::Entry>> OneTimeSequences::ParseContent(
    const std::string& content, const std::string& path, Mode mode, std::vector<std::string>* warnings) {
  std::vector<Entry> entries;
  const std::string_view text(content);
  size_t pos = 0;
  int line = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    ++line;
    const std::string_view raw = text.substr(pos, end - pos);
    const std::string_view trimmed = Trim(raw);
    if (!trimmed.empty() && trimmed.front() != '#') {
      std::string problem;
      absl::StatusOr<std::vector<Knock>> sequence;
      if (raw.find('\0') != std::string_view::npos) {
        problem = "line contains a NUL byte";
      } else {
        sequence = ParseSequence(trimmed);
        if (!sequence.ok()) problem = std::string(sequence.status().message());
      }
      if (problem.empty()) {
        entries.push_back(Entry{std::move(*sequence), pos, line});
      } else {
        std::string message = absl::StrCat(path, ":", line, ": ", problem,
                                           "; each line holds one sequence such as 7000,8000:udp,9000, or "
                                           "starts with # when used or a comment");
        if (mode == Mode::kStrict) return absl::InvalidArgumentError(message);
        if (warnings != nullptr) warnings->push_back(std::move(message));
      }
    }
    pos = end + 1;
  }
  return entries;
}

absl::StatusOr<OneTimeSequences::Fingerprint> OneTimeSequences::Stat(const std::string& path, mode_t* mode) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("cannot stat ", path));
  if (mode != nullptr) *mode = st.st_mode;
  Fingerprint f;
  f.device = st.st_dev;
  f.inode = st.st_ino;
  f.size = st.st_size;
  f.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  f.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec;
  return f;
}

}  // namespace sesame
