// knockd's one-time sequences file (the door's One_Time_Sequences), kept
// interchangeable with knockd 0.8:
//
//   - one sequence per line, in the Sequence syntax ("7000,8000:udp,9000");
//   - blank lines are ignored; a line whose first non-blank character is '#'
//     is a comment or a used sequence;
//   - the current sequence is the first unused line;
//   - using it overwrites the line's first byte with '#'. That byte is
//     replaced, not shifted, exactly as knockd does: " 7000,8000" becomes
//     "#7000,8000", and "7000,8000" becomes "#000,8000" (knockd's manual
//     recommends a leading space for that reason).
//
// Where sesame differs from knockd:
//   - the consumption is an atomic replace of the whole file (temporary,
//     fsync, rename; the file's mode is kept, a symlink is followed), so a
//     crash never leaves a torn file; ownership becomes the agent's user,
//     and the directory must be writable (Check verifies that);
//   - the file may be edited while the agent runs: ReloadIfChanged notices a
//     new inode, size, mtime or ctime and re-reads it;
//   - running out of sequences is a normal state (exhausted()), not a crash;
//   - a malformed unused line is reported as "FILE:LINE: ..." and, in the
//     lenient mode the agent runs with, skipped with a warning (knockd skips
//     it silently); Check and the strict mode refuse it.
//
// Not thread-safe: one owner (the door) calls it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/knock.h"

namespace sesame {

class OneTimeSequences {
 public:
  enum class Mode {
    kLenient,  // malformed unused lines are skipped, logged and listed in warnings()
    kStrict,   // a malformed unused line makes Load / ReloadIfChanged fail
  };

  // Reads the file. A missing or unreadable file is an error; a file without
  // an unused line is not (exhausted() is then true).
  static absl::StatusOr<OneTimeSequences> Load(const std::string& path, Mode mode = Mode::kLenient);

  // For --check-config: Load in strict mode, and the checks a later
  // consumption depends on (a regular file whose directory is writable).
  static absl::Status Check(const std::string& path);

  OneTimeSequences(OneTimeSequences&&) = default;
  OneTimeSequences& operator=(OneTimeSequences&&) = default;

  const std::string& path() const { return path_; }

  // The first unused sequence; empty when the file is exhausted.
  const std::vector<Knock>& current() const;
  bool exhausted() const { return unused_.empty(); }
  // Unused, well-formed lines, the current one included.
  size_t remaining() const { return unused_.size(); }
  // "FILE:LINE: ..." for each malformed line skipped by the last (re)load.
  const std::vector<std::string>& warnings() const { return warnings_; }

  // Re-reads the file if it changed on disk since the last read or write
  // (one stat() when it did not). Returns whether it re-read. When the file
  // cannot be read (removed, unreadable, or malformed in strict mode) the
  // state becomes empty, so no stale sequence is accepted, and the error is
  // returned on every call until the file is back.
  absl::StatusOr<bool> ReloadIfChanged();

  // Marks `sequence` used: re-reads the file, overwrites the first byte of the
  // first unused line equal to `sequence` with '#', and atomically replaces
  // the file. Call it when a knock completed, before granting: on any error
  // nothing on disk changed and the caller must not grant. NotFound when no
  // unused line holds `sequence` any more (used or removed meanwhile).
  absl::Status Consume(const std::vector<Knock>& sequence);

 private:
  struct Entry {
    std::vector<Knock> sequence;
    size_t offset = 0;  // of the line's first byte in the file
    int line = 0;
  };
  struct Fingerprint {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = -1;
    int64_t mtime_ns = -1;
    int64_t ctime_ns = -1;
    friend bool operator==(const Fingerprint&, const Fingerprint&) = default;
  };

  OneTimeSequences(std::string path, Mode mode) : path_(std::move(path)), mode_(mode) {}

  // Stats, reads and parses the file, and adopts the result; on failure the
  // state is cleared. Hands the bytes read and the file's mode to Consume.
  absl::Status Reload(std::string* content = nullptr, mode_t* file_mode = nullptr);
  void Clear();
  // Parses `content`; in strict mode the first malformed unused line is an
  // error, in lenient mode it goes to `warnings`.
  static absl::StatusOr<std::vector<Entry>> ParseContent(const std::string& content, const std::string& path,
                                                         Mode mode, std::vector<std::string>* warnings);
  static absl::StatusOr<Fingerprint> Stat(const std::string& path, mode_t* mode = nullptr);

  std::string path_;
  Mode mode_;
  Fingerprint fingerprint_;
  bool loaded_ = false;
  std::vector<Entry> unused_;
  std::vector<std::string> warnings_;
};

}  // namespace sesame
