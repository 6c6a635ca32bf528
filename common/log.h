// The daemons' log: stderr, a log file (knockd's "[YYYY-MM-DD HH:MM] msg"
// form) and/or syslog, chosen at start-up and on reload. Thread-safe.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace sesame {

enum class LogLevel { kDebug = 0, kInfo, kWarning, kError };

struct LogOptions {
  std::string ident = "sesame";  // syslog ident and stderr prefix
  bool to_stderr = true;
  std::string file;              // empty: no log file
  bool syslog = false;
  LogLevel min_level = LogLevel::kInfo;
  // Sees every record at or above min_level; for tests.
  std::function<void(LogLevel, std::string_view)> observer;
};

// Replaces the current sinks. Opens the file first, so a bad path leaves the
// previous configuration in place and returns an error.
absl::Status ConfigureLogging(const LogOptions& options);
// Re-opens the log file (after logrotate moved it).
absl::Status ReopenLogFile();

void Log(LogLevel level, std::string_view message);
inline void LogDebug(std::string_view m) { Log(LogLevel::kDebug, m); }
inline void LogInfo(std::string_view m) { Log(LogLevel::kInfo, m); }
inline void LogWarning(std::string_view m) { Log(LogLevel::kWarning, m); }
inline void LogError(std::string_view m) { Log(LogLevel::kError, m); }
bool LogEnabled(LogLevel level);

}  // namespace sesame
