#include "common/log.h"

#include <syslog.h>

#include <cstdio>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/json_quote.h"

namespace sesame {
namespace {

struct LogState {
  absl::Mutex mu;
  LogOptions options ABSL_GUARDED_BY(mu);
  FILE* file ABSL_GUARDED_BY(mu) = nullptr;
  bool syslog_open ABSL_GUARDED_BY(mu) = false;
};

LogState& State() {
  static LogState* state = new LogState();
  return *state;
}

int SyslogPriority(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return LOG_DEBUG;
    case LogLevel::kInfo: return LOG_INFO;
    case LogLevel::kWarning: return LOG_WARNING;
    case LogLevel::kError: return LOG_ERR;
  }
  return LOG_INFO;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

absl::Status OpenAppend(const std::string& path, FILE** out) {
  FILE* f = std::fopen(path.c_str(), "ae");
  if (f == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot open log file ", path, ": ", std::strerror(errno)));
  }
  std::setvbuf(f, nullptr, _IOLBF, 0);
  *out = f;
  return absl::OkStatus();
}

}  // namespace

absl::Status ConfigureLogging(const LogOptions& options) {
  FILE* file = nullptr;
  if (!options.file.empty()) {
    absl::Status s = OpenAppend(options.file, &file);
    if (!s.ok()) return s;
  }
  LogState& st = State();
  absl::MutexLock lock(&st.mu);
  if (st.file != nullptr) std::fclose(st.file);
  st.file = file;
  if (st.syslog_open) closelog();
  st.options = options;
  if (options.syslog) openlog(st.options.ident.c_str(), LOG_PID, LOG_DAEMON);
  st.syslog_open = options.syslog;
  return absl::OkStatus();
}

absl::Status ReopenLogFile() {
  LogState& st = State();
  absl::MutexLock lock(&st.mu);
  if (st.options.file.empty()) return absl::OkStatus();
  FILE* file = nullptr;
  absl::Status s = OpenAppend(st.options.file, &file);
  if (!s.ok()) return s;
  if (st.file != nullptr) std::fclose(st.file);
  st.file = file;
  return absl::OkStatus();
}

bool LogEnabled(LogLevel level) {
  LogState& st = State();
  absl::MutexLock lock(&st.mu);
  return level >= st.options.min_level;
}

std::optional<LogFormat> ParseLogFormat(std::string_view text) {
  const absl::string_view t(text.data(), text.size());
  if (absl::EqualsIgnoreCase(t, "text")) return LogFormat::kText;
  if (absl::EqualsIgnoreCase(t, "json")) return LogFormat::kJson;
  return std::nullopt;
}

namespace {

// "audit.checkpoint {...}": the event and its JSON object, as the message
// says them.
bool SplitEventMessage(std::string_view message, std::string_view* event, std::string_view* object) {
  const size_t space = message.find(' ');
  if (space == std::string_view::npos || space + 1 >= message.size() || message[space + 1] != '{' ||
      message.back() != '}') {
    return false;
  }
  const std::string_view name = message.substr(0, space);
  if (name.find('.') == std::string_view::npos) return false;
  for (const char c : name) {
    if (!absl::ascii_islower(c) && c != '.' && c != '_') return false;
  }
  *event = name;
  *object = message.substr(space + 1);
  return true;
}

std::string JsonLine(absl::Time now, LogLevel level, std::string_view daemon, std::string_view event,
                     const std::vector<LogField>& fields, std::string_view raw_fields, std::string_view message) {
  const std::string time = absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", now, absl::UTCTimeZone());
  std::string line = absl::StrCat("{\"time\": ", JsonQuote(time), ", \"level\": ", JsonQuote(LevelName(level)),
                                  ", \"daemon\": ", JsonQuote(daemon), ", \"event\": ", JsonQuote(event),
                                  ", \"message\": ", JsonQuote(message), ", \"fields\": ");
  if (!raw_fields.empty()) {
    line.append(raw_fields);
  } else {
    line += "{";
    for (size_t i = 0; i < fields.size(); ++i) {
      absl::StrAppend(&line, i == 0 ? "" : ", ", JsonQuote(fields[i].key), ": ", JsonQuote(fields[i].value));
    }
    line += "}";
  }
  line += "}\n";
  return line;
}

void Write(LogLevel level, std::string_view event, const std::vector<LogField>& fields, std::string_view message) {
  LogState& st = State();
  absl::MutexLock lock(&st.mu);
  if (level < st.options.min_level) return;
  const absl::Time now = absl::Now();
  std::string json;
  if (st.options.format == LogFormat::kJson) {
    std::string_view raw_fields;
    if (event.empty() && !SplitEventMessage(message, &event, &raw_fields)) event = "log";
    json = JsonLine(now, level, st.options.ident, event, fields, raw_fields, message);
  }
  if (st.options.to_stderr) {
    if (!json.empty()) {
      std::fputs(json.c_str(), stderr);
    } else {
      const std::string stamp = absl::FormatTime("%Y-%m-%d %H:%M:%E3S", now, absl::LocalTimeZone());
      std::fprintf(stderr, "%s %s[%s]: %.*s\n", stamp.c_str(), st.options.ident.c_str(), LevelName(level),
                   static_cast<int>(message.size()), message.data());
    }
  }
  if (st.file != nullptr) {
    if (!json.empty()) {
      std::fputs(json.c_str(), st.file);
    } else {
      // knockd's log file format, so existing log watchers keep working.
      const std::string stamp = absl::FormatTime("[%Y-%m-%d %H:%M] ", now, absl::LocalTimeZone());
      std::fprintf(st.file, "%s%.*s\n", stamp.c_str(), static_cast<int>(message.size()), message.data());
    }
  }
  if (st.syslog_open) {
    syslog(SyslogPriority(level), "%.*s", static_cast<int>(message.size()), message.data());
  }
  if (st.options.observer) st.options.observer(level, message);
}

}  // namespace

void Log(LogLevel level, std::string_view message) { Write(level, "", {}, message); }

void LogEvent(LogLevel level, std::string_view event, const std::vector<LogField>& fields, std::string_view message) {
  Write(level, event, fields, message);
}

}  // namespace sesame
