// The [options] keys of a standalone agent: knockd's (UseSyslog, LogFile,
// PidFile, Interface) and sesame's own (StateDir, ResetMode, the limits and
// the metrics file). Managed mode's keys are in managed_keys.cc.
#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/config/internal/config_parser.h"
#include "agent/config/internal/config_text.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame::config_internal {
namespace {

constexpr KeyName kOptionKeys[] = {
    {"UseSyslog", Key::kUseSyslog},
    {"LogFile", Key::kLogFile},
    {"LogFormat", Key::kLogFormat},
    {"PidFile", Key::kPidFile},
    {"Interface", Key::kInterface},
    {"StateDir", Key::kStateDir},
    {"ResetMode", Key::kOptionsResetMode},
    {"MaxSources", Key::kMaxSources},
    {"ScanThreshold", Key::kScanThreshold},
    {"ScanWindow", Key::kScanWindow},
    {"ScanBan", Key::kScanBan},
    {"ScanReportWindow", Key::kScanReportWindow},
    {"MaxChildren", Key::kMaxChildren},
    {"CommandTimeLimit", Key::kCommandTimeLimit},
    {"MetricsFile", Key::kMetricsFile},
    {"MetricsInterval", Key::kMetricsInterval},
};

constexpr int64_t kMaxMaxSources = int64_t{1} << 24;

}  // namespace

std::span<const KeyName> OptionKeys() { return kOptionKeys; }

absl::Status Parser::OptionKey(const KeyName& key, std::string_view value) {
  switch (key.key) {
    case Key::kUseSyslog:
      return Error(line_, "UseSyslog takes no value; write it alone on its line");
    case Key::kLogFile:
      options_.log_file = std::string(value);
      return absl::OkStatus();
    case Key::kLogFormat: {
      const std::optional<LogFormat> format = ParseLogFormat(value);
      if (!format) return Error(line_, absl::StrCat("LogFormat: expected text or json, got ", Quoted(value)));
      options_.log_format = *format;
      return absl::OkStatus();
    }
    case Key::kPidFile:
      options_.pid_file = std::string(value);
      return absl::OkStatus();
    case Key::kInterface: {
      ASSIGN_OR_RETURN(options_.interfaces, Interfaces(value));
      return absl::OkStatus();
    }
    case Key::kStateDir: {
      ASSIGN_OR_RETURN(options_.state_dir, AbsolutePath(key, value));
      while (options_.state_dir.size() > 1 && options_.state_dir.back() == '/') options_.state_dir.pop_back();
      return absl::OkStatus();
    }
    case Key::kOptionsResetMode: {
      ASSIGN_OR_RETURN(options_.reset_mode, Mode(key, value));
      reset_mode_set_ = true;
      return absl::OkStatus();
    }
    case Key::kMaxSources: {
      ASSIGN_OR_RETURN(const int64_t n, Count(key, value, 1, kMaxMaxSources));
      options_.max_sources = static_cast<size_t>(n);
      return absl::OkStatus();
    }
    case Key::kScanThreshold: {
      ASSIGN_OR_RETURN(const int64_t n, Count(key, value, 1, 65535));
      options_.scan_threshold = static_cast<int>(n);
      return absl::OkStatus();
    }
    case Key::kScanWindow: {
      ASSIGN_OR_RETURN(options_.scan_window, Duration(key, value, /*allow_zero=*/false));
      return absl::OkStatus();
    }
    case Key::kScanBan: {
      ASSIGN_OR_RETURN(options_.scan_ban, Duration(key, value, /*allow_zero=*/true));
      return absl::OkStatus();
    }
    case Key::kScanReportWindow: {
      ASSIGN_OR_RETURN(options_.scan_report_window, Duration(key, value, /*allow_zero=*/true));
      if (options_.scan_report_window > absl::Hours(24)) {
        return Error(line_, absl::StrCat("ScanReportWindow: expected at most 24h, got ", Quoted(value)));
      }
      return absl::OkStatus();
    }
    case Key::kMaxChildren: {
      ASSIGN_OR_RETURN(const int64_t n, Count(key, value, 1, 1024));
      options_.max_children = static_cast<int>(n);
      return absl::OkStatus();
    }
    case Key::kCommandTimeLimit: {
      ASSIGN_OR_RETURN(options_.command_time_limit, Duration(key, value, /*allow_zero=*/false));
      return absl::OkStatus();
    }
    case Key::kMetricsFile: {
      ASSIGN_OR_RETURN(options_.metrics_file, AbsolutePath(key, value));
      if (options_.metrics_file.back() == '/') {
        return Error(line_, absl::StrCat("MetricsFile: expected a file name, got the directory ", Quoted(value)));
      }
      return absl::OkStatus();
    }
    case Key::kMetricsInterval: {
      ASSIGN_OR_RETURN(options_.metrics_interval, Duration(key, value, /*allow_zero=*/false));
      if (options_.metrics_interval < kMinMetricsInterval) {
        return Error(line_, absl::StrCat("MetricsInterval: expected at least ", absl::FormatDuration(kMinMetricsInterval),
                                         ", got ", Quoted(value)));
      }
      return absl::OkStatus();
    }
    default:
      return Error(line_, absl::StrCat(key.name, " is not an [options] key"));
  }
}

absl::StatusOr<std::vector<std::string>> Parser::Interfaces(std::string_view value) const {
  std::vector<std::string> names;
  if (value.empty()) return names;  // knockd: empty means the default
  for (std::string_view item : SplitOn(value, ',')) {
    item = Trim(item);
    // IFNAMSIZ is 16 with the terminating NUL.
    const bool ok = !item.empty() && item.size() <= 15 && item != "." && item != ".." && IsPrintable(item) &&
                    std::none_of(item.begin(), item.end(), [](char ch) { return ch == '/' || IsSpace(ch); });
    if (!ok) {
      return Error(line_, absl::StrCat("Interface: expected interface names separated by commas (eth0,eth1), got ",
                                       Quoted(item)));
    }
    names.emplace_back(item);
  }
  return names;
}

}  // namespace sesame::config_internal
