// The daemons' log: stderr, a log file (knockd's "[YYYY-MM-DD HH:MM] msg"
// form) and/or syslog, chosen at start-up and on reload. Thread-safe.
//
// LogFormat::kJson (LogFormat = json in either daemon's configuration)
// writes stderr and the log file as JSON Lines, one object a record, for
// journald and SIEM users:
//   {"time": "2026-12-03T23:08:40.123Z", "level": "info", "daemon":
//    "sesame-agent", "event": "knock.opened", "message": "...", "fields":
//    {"source": "198.51.100.7", "door": "openSSH"}}
// LogEvent names the event and its fields; a plain Log() is event "log",
// unless its message is "dotted.event {JSON object}" (the controller's
// audit.checkpoint lines), whose object becomes the fields. Syslog stays
// text (journald stores it as the message).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace sesame {

enum class LogLevel { kDebug = 0, kInfo, kWarning, kError };
enum class LogFormat { kText, kJson };

struct LogField {
  std::string key;
  std::string value;
};

struct LogOptions {
  std::string ident = "sesame";  // syslog ident and stderr prefix
  bool to_stderr = true;
  std::string file;              // empty: no log file
  bool syslog = false;
  LogLevel min_level = LogLevel::kInfo;
  LogFormat format = LogFormat::kText;
  // Sees every record at or above min_level; for tests.
  std::function<void(LogLevel, std::string_view)> observer;
};

// Replaces the current sinks. Opens the file first, so a bad path leaves the
// previous configuration in place and returns an error.
absl::Status ConfigureLogging(const LogOptions& options);
// Re-opens the log file (after logrotate moved it).
absl::Status ReopenLogFile();

void Log(LogLevel level, std::string_view message);
// A record with an event name and fields (JSON); text sinks get `message`.
void LogEvent(LogLevel level, std::string_view event, const std::vector<LogField>& fields, std::string_view message);
// "text" or "json" (either case) -> the format; nullopt otherwise.
std::optional<LogFormat> ParseLogFormat(std::string_view text);
inline void LogDebug(std::string_view m) { Log(LogLevel::kDebug, m); }
inline void LogInfo(std::string_view m) { Log(LogLevel::kInfo, m); }
inline void LogWarning(std::string_view m) { Log(LogLevel::kWarning, m); }
inline void LogError(std::string_view m) { Log(LogLevel::kError, m); }
bool LogEnabled(LogLevel level);

}  // namespace sesame
