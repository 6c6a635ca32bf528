// knockd.conf, read the way knockd 0.8 reads it (src/knockd.c, parseconfig):
//
//  - one directive per line; leading and trailing whitespace is ignored; a
//    line whose first non-blank character is '#' is a comment (there are no
//    comments after a value: "command = a # b" keeps "# b");
//  - "[name]" starts a section: "[options]" holds the global options, any
//    other name starts a door. sesame matches "options" case-insensitively
//    (knockd would make "[Options]" a door and then fail on its keys);
//  - "KEY = VALUE" splits at the first '=', both sides trimmed; keys are
//    case-insensitive, section names are not (except "options");
//  - "UseSyslog" is the one directive without '=', accepted in any section;
//  - a key repeated in one section: the last value wins, except TCPFlags,
//    whose lines add up (as knockd's flag fields do).
//
// Where sesame is stricter than knockd it says so with FILE:LINE: knockd takes
// atoi() of anything, so "seq_timeout = 5x" or a port "7OOO" silently become
// 5 and 7; here they are errors. Where it is more lenient it only accepts
// more: spaces inside "tcpflags = syn, !ack" (knockd rejects " !ACK"), and
// the duration suffixes ms, s, m, h.
#include "agent/config/config.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/config/command_line.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

// absl::string_view is not std::string_view in Debian's Abseil.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::vector<std::string_view> SplitOn(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(sep, start);
    if (at == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, at - start));
    start = at + 1;
  }
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Digits only, at most 9 of them (no overflow possible).
std::optional<int64_t> ParseDigits(std::string_view s) {
  if (!AllDigits(s) || s.size() > 9) return std::nullopt;
  int64_t v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return v;
}

std::string Quoted(std::string_view s) { return absl::StrCat("\"", AV(s), "\""); }

absl::StatusOr<Knock> ParseKnock(std::string_view element) {
  const std::vector<std::string_view> parts = SplitOn(element, ':');
  if (parts.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(Quoted(element), " has more than one ':'; expected PORT or PORT:tcp or PORT:udp"));
  }
  const std::string_view port_text = Trim(parts[0]);
  const std::optional<int64_t> port = ParseDigits(port_text);
  if (!port.has_value()) {
    if (AllDigits(port_text)) {
      return absl::InvalidArgumentError(absl::StrCat("port ", AV(port_text), " is out of range (1-65535)"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(Quoted(port_text), " is not a port number; expected PORT[:tcp|udp] with PORT in 1-65535"));
  }
  if (*port < 1 || *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port ", *port, " is out of range (1-65535)"));
  }
  Knock knock;
  knock.port = static_cast<uint16_t>(*port);
  if (parts.size() == 2) {
    const std::string_view proto = Trim(parts[1]);
    if (EqualsIgnoreCase(proto, "tcp")) {
      knock.protocol = Protocol::kTcp;
    } else if (EqualsIgnoreCase(proto, "udp")) {
      knock.protocol = Protocol::kUdp;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown protocol ", Quoted(proto), " in ", Quoted(Trim(element)), "; expected tcp or udp"));
    }
  }
  return knock;
}

// Whole seconds (knockd), or a number followed by ms, s, m or h.
std::optional<absl::Duration> ParseDurationText(std::string_view text) {
  text = Trim(text);
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::optional<int64_t> n = ParseDigits(text.substr(0, digits));
  if (!n.has_value()) return std::nullopt;
  const std::string_view unit = Trim(text.substr(digits));
  if (unit.empty() || EqualsIgnoreCase(unit, "s")) return absl::Seconds(*n);
  if (EqualsIgnoreCase(unit, "ms")) return absl::Milliseconds(*n);
  if (EqualsIgnoreCase(unit, "m")) return absl::Minutes(*n);
  if (EqualsIgnoreCase(unit, "h")) return absl::Hours(*n);
  return std::nullopt;
}

bool IsPrintable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f; });
}

// ---------------------------------------------------------------------------
// Keys.

enum class Key {
  // [options]
  kUseSyslog,
  kLogFile,
  kPidFile,
  kInterface,
  kStateDir,
  kOptionsResetMode,
  kMaxSources,
  kScanThreshold,
  kScanWindow,
  kScanBan,
  kMaxChildren,
  kCommandTimeLimit,
  kMetricsFile,
  kMetricsInterval,
  // [options], managed mode
  kController,
  kCaCert,
  kCert,
  kKey,
  kAgentName,
  kManagedBackend,
  kReserveSize,
  kKeepalive,
  kBackoffMin,
  kBackoffMax,
  kConnectTimeout,
  kAdvertiseHosts,
  // doors
  kSequence,
  kOneTimeSequences,
  kSeqTimeout,
  kTcpFlags,
  kStartCommand,
  kStartCommand6,
  kStopCommand,
  kStopCommand6,
  kCmdTimeout,
  kTarget,
  kBackend,
  kPorts,
  kDoorResetMode,
  kHostsAllowForm,
  kHostsAllowFile,
  kHostsAllowTable,
  kHostsAllowService,
  kNftTable,
  kIptablesChain,
  kManaged,
};

struct KeyName {
  const char* name;  // as documented; matched case-insensitively
  Key key;
};

constexpr KeyName kOptionKeys[] = {
    {"UseSyslog", Key::kUseSyslog},
    {"LogFile", Key::kLogFile},
    {"PidFile", Key::kPidFile},
    {"Interface", Key::kInterface},
    {"StateDir", Key::kStateDir},
    {"ResetMode", Key::kOptionsResetMode},
    {"MaxSources", Key::kMaxSources},
    {"ScanThreshold", Key::kScanThreshold},
    {"ScanWindow", Key::kScanWindow},
    {"ScanBan", Key::kScanBan},
    {"MaxChildren", Key::kMaxChildren},
    {"CommandTimeLimit", Key::kCommandTimeLimit},
    {"MetricsFile", Key::kMetricsFile},
    {"MetricsInterval", Key::kMetricsInterval},
};

// Managed mode's keys are listed in messages only once a file uses managed
// mode, so that a knockd.conf gets knockd's list.
constexpr KeyName kManagedOptionKeys[] = {
    {"Controller", Key::kController},
    {"CaCert", Key::kCaCert},
    {"Cert", Key::kCert},
    {"Key", Key::kKey},
    {"AgentName", Key::kAgentName},
    {"ManagedBackend", Key::kManagedBackend},
    {"ReserveSize", Key::kReserveSize},
    {"Keepalive", Key::kKeepalive},
    {"BackoffMin", Key::kBackoffMin},
    {"BackoffMax", Key::kBackoffMax},
    {"ConnectTimeout", Key::kConnectTimeout},
    {"AdvertiseHosts", Key::kAdvertiseHosts},
};

constexpr KeyName kManagedDoorKeys[] = {
    {"Managed", Key::kManaged},
};

constexpr KeyName kDoorKeys[] = {
    {"Sequence", Key::kSequence},
    {"One_Time_Sequences", Key::kOneTimeSequences},
    {"Seq_Timeout", Key::kSeqTimeout},
    {"Timeout", Key::kSeqTimeout},
    {"TCPFlags", Key::kTcpFlags},
    {"Start_Command", Key::kStartCommand},
    {"Command", Key::kStartCommand},
    {"Start_Command_6", Key::kStartCommand6},
    {"Command_6", Key::kStartCommand6},
    {"Stop_Command", Key::kStopCommand},
    {"Stop_Command_6", Key::kStopCommand6},
    {"Cmd_Timeout", Key::kCmdTimeout},
    {"Target", Key::kTarget},
    {"Backend", Key::kBackend},
    {"Ports", Key::kPorts},
    {"ResetMode", Key::kDoorResetMode},
    {"HostsAllow_Form", Key::kHostsAllowForm},
    {"HostsAllow_File", Key::kHostsAllowFile},
    {"HostsAllow_Table", Key::kHostsAllowTable},
    {"HostsAllow_Service", Key::kHostsAllowService},
    {"Nft_Table", Key::kNftTable},
    {"Iptables_Chain", Key::kIptablesChain},
};

template <size_t N>
const KeyName* FindKey(const KeyName (&table)[N], std::string_view key) {
  for (const KeyName& k : table) {
    if (EqualsIgnoreCase(key, k.name)) return &k;
  }
  return nullptr;
}

template <size_t N>
std::string KeyList(const KeyName (&table)[N]) {
  std::vector<std::string> names;
  for (const KeyName& k : table) names.emplace_back(k.name);
  return absl::StrJoin(names, ", ");
}

struct TcpFlagName {
  const char* name;
  uint8_t bit;
};
constexpr TcpFlagName kTcpFlagNames[] = {
    {"fin", tcp_flags::kFin}, {"syn", tcp_flags::kSyn}, {"rst", tcp_flags::kRst},
    {"psh", tcp_flags::kPsh}, {"ack", tcp_flags::kAck}, {"urg", tcp_flags::kUrg},
};

constexpr size_t kMaxDoorNameLength = 127;  // knockd keeps 127 bytes of a name
constexpr int64_t kMaxMaxSources = int64_t{1} << 24;

// ---------------------------------------------------------------------------

struct DoorState {
  DoorConfig config;
  int sequence_line = 0;
  int one_time_line = 0;
  // Keys a managed door must not have: they come from the controller.
  int seq_timeout_line = 0;
  int ports_line = 0;
  int cmd_timeout_line = 0;
  int backend_line = 0;
  bool tcp_flags_seen = false;
  bool start_command_6_set = false;
  bool stop_command_6_set = false;
  bool hosts_allow_file_set = false;
};

class Parser {
 public:
  explicit Parser(std::string_view file_name) : file_(file_name) {}

  absl::StatusOr<AgentConfig> Parse(std::string_view text);

 private:
  absl::Status Error(int line, std::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ":", line, ": ", AV(message)));
  }

  absl::Status ParseLine(std::string_view line);
  absl::Status StartSection(std::string_view header);
  absl::Status OptionsKey(const KeyName& key, std::string_view value);
  absl::Status DoorKey(const KeyName& key, std::string_view value);
  absl::Status Finish();

  absl::StatusOr<absl::Duration> Duration(const KeyName& key, std::string_view value, bool allow_zero) const;
  absl::StatusOr<int64_t> Count(const KeyName& key, std::string_view value, int64_t min, int64_t max) const;
  absl::StatusOr<std::vector<Knock>> Sequence(const KeyName& key, std::string_view value) const;
  absl::StatusOr<ResetMode> Mode(const KeyName& key, std::string_view value) const;
  absl::StatusOr<std::string> AbsolutePath(const KeyName& key, std::string_view value) const;
  absl::StatusOr<std::string> Command(const KeyName& key, std::string_view value) const;
  absl::Status TcpFlags(DoorState& door, std::string_view value) const;
  absl::StatusOr<std::vector<std::string>> Interfaces(std::string_view value) const;
  absl::StatusOr<std::vector<std::string>> Controllers(std::string_view value) const;
  absl::StatusOr<BackendKind> Backend(const KeyName& key, std::string_view value) const;
  absl::Status FinishManaged();
  // "expected one of ...": managed keys only once the file is in managed mode.
  std::string OptionKeyList() const;
  std::string DoorKeyList() const;

  std::string file_;
  int line_ = 0;
  enum class Section { kNone, kOptions, kDoor } section_ = Section::kNone;
  AgentOptions options_;
  std::vector<DoorState> doors_;
  bool reset_mode_set_ = false;  // ResetMode given in [options]
  int ca_cert_line_ = 0;         // first line of a managed key, for messages
};

absl::StatusOr<AgentConfig> Parser::Parse(std::string_view text) {
  // A UTF-8 byte order mark left by an editor is not part of the first line.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    ++line_;
    RETURN_IF_ERROR(ParseLine(text.substr(pos, end - pos)));
    pos = end + 1;
  }
  RETURN_IF_ERROR(Finish());
  AgentConfig config;
  config.options = std::move(options_);
  config.doors.reserve(doors_.size());
  for (DoorState& d : doors_) config.doors.push_back(std::move(d.config));
  return config;
}

absl::Status Parser::ParseLine(std::string_view raw) {
  if (raw.find('\0') != std::string_view::npos) return Error(line_, "line contains a NUL byte; expected text");
  const std::string_view line = Trim(raw);
  if (line.empty() || line.front() == '#') return absl::OkStatus();
  if (line.front() == '[') return StartSection(line);

  const size_t eq = line.find('=');
  const std::string_view key_text = Trim(line.substr(0, eq));
  if (section_ == Section::kNone) {
    return Error(line_, absl::StrCat(Quoted(key_text),
                                     " is outside any section; expected [options] or a [door name] header first"));
  }
  if (eq == std::string_view::npos) {
    // knockd: the only directive without a value, accepted in any section.
    if (EqualsIgnoreCase(key_text, "UseSyslog")) {
      options_.use_syslog = true;
      return absl::OkStatus();
    }
    return Error(line_, absl::StrCat("expected KEY = VALUE, got ", Quoted(line)));
  }
  if (key_text.empty()) return Error(line_, "missing key before '='; expected KEY = VALUE");
  const std::string_view value = Trim(line.substr(eq + 1));

  if (section_ == Section::kOptions) {
    if (const KeyName* key = FindKey(kOptionKeys, key_text)) return OptionsKey(*key, value);
    if (const KeyName* key = FindKey(kManagedOptionKeys, key_text)) return OptionsKey(*key, value);
    const KeyName* key = FindKey(kDoorKeys, key_text);
    if (key == nullptr) key = FindKey(kManagedDoorKeys, key_text);
    if (key != nullptr) return Error(line_, absl::StrCat(key->name, " belongs in a door section, not in [options]"));
    return Error(line_, absl::StrCat("unknown key ", Quoted(key_text), " in [options]; expected one of ",
                                     OptionKeyList()));
  }
  const std::string& door = doors_.back().config.name;
  if (const KeyName* key = FindKey(kDoorKeys, key_text)) return DoorKey(*key, value);
  if (const KeyName* key = FindKey(kManagedDoorKeys, key_text)) return DoorKey(*key, value);
  const KeyName* key = FindKey(kOptionKeys, key_text);
  if (key == nullptr) key = FindKey(kManagedOptionKeys, key_text);
  if (key != nullptr) return Error(line_, absl::StrCat(key->name, " belongs in [options], not in door [", door, "]"));
  return Error(line_, absl::StrCat("unknown key ", Quoted(key_text), " in door [", door, "]; expected one of ",
                                   DoorKeyList()));
}

std::string Parser::OptionKeyList() const {
  if (!options_.managed.enabled()) return KeyList(kOptionKeys);
  return absl::StrCat(KeyList(kOptionKeys), ", ", KeyList(kManagedOptionKeys));
}

std::string Parser::DoorKeyList() const {
  if (!options_.managed.enabled()) return KeyList(kDoorKeys);
  return absl::StrCat(KeyList(kDoorKeys), ", ", KeyList(kManagedDoorKeys));
}

absl::Status Parser::StartSection(std::string_view header) {
  if (header.size() < 2 || header.back() != ']') {
    return Error(line_, absl::StrCat("expected a section header [name], got ", Quoted(header)));
  }
  const std::string_view name = Trim(header.substr(1, header.size() - 2));
  if (name.empty()) return Error(line_, "empty section name; expected [options] or [door name]");
  if (EqualsIgnoreCase(name, "options")) {
    section_ = Section::kOptions;
    return absl::OkStatus();
  }
  if (!IsPrintable(name)) return Error(line_, "door name contains a control character");
  if (name.size() > kMaxDoorNameLength) {
    return Error(line_, absl::StrCat("door name is ", name.size(), " bytes long; at most ", kMaxDoorNameLength,
                                     " are allowed"));
  }
  for (const DoorState& d : doors_) {
    // Case-insensitive: door names become audit keys and %DOOR%.
    if (EqualsIgnoreCase(d.config.name, name)) {
      return Error(line_, absl::StrCat("duplicate door name [", AV(name), "]; [", d.config.name,
                                       "] is already defined at line ", d.config.line));
    }
  }
  if (doors_.size() >= kMaxDoors) {
    return Error(line_, absl::StrCat("too many doors: at most ", kMaxDoors, " are allowed"));
  }
  DoorState door;
  door.config.name = std::string(name);
  door.config.line = line_;
  doors_.push_back(std::move(door));
  section_ = Section::kDoor;
  return absl::OkStatus();
}

absl::Status Parser::OptionsKey(const KeyName& key, std::string_view value) {
  switch (key.key) {
    case Key::kUseSyslog:
      return Error(line_, "UseSyslog takes no value; write it alone on its line");
    case Key::kLogFile:
      options_.log_file = std::string(value);
      return absl::OkStatus();
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
    case Key::kController: {
      ASSIGN_OR_RETURN(options_.managed.controllers, Controllers(value));
      options_.managed.line = line_;
      return absl::OkStatus();
    }
    case Key::kCaCert:
    case Key::kCert:
    case Key::kKey: {
      ASSIGN_OR_RETURN(std::string path, AbsolutePath(key, value));
      if (ca_cert_line_ == 0) ca_cert_line_ = line_;
      (key.key == Key::kCaCert ? options_.managed.ca_cert
       : key.key == Key::kCert ? options_.managed.cert
                               : options_.managed.key) = std::move(path);
      return absl::OkStatus();
    }
    case Key::kAgentName: {
      // What the PKI puts in a certificate: [A-Za-z0-9_.-]{1,64}.
      const bool ok = !value.empty() && value.size() <= 64 && std::all_of(value.begin(), value.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.';
      });
      if (!ok) {
        return Error(line_, absl::StrCat("AgentName: expected a name of letters, digits, _ - . (at most 64), got ",
                                         Quoted(value)));
      }
      options_.managed.agent_name = std::string(value);
      return absl::OkStatus();
    }
    case Key::kManagedBackend: {
      ASSIGN_OR_RETURN(const BackendKind kind, Backend(key, value));
      if (kind == BackendKind::kCommand) {
        return Error(line_, "ManagedBackend: the command backend needs commands; expected hosts_allow, nftables, "
                            "iptables or ufw (or a door section with Managed = yes and Backend = command)");
      }
      options_.managed.backend = kind;
      return absl::OkStatus();
    }
    case Key::kReserveSize: {
      ASSIGN_OR_RETURN(const int64_t n, Count(key, value, 0, 64));
      options_.managed.reserve_size = static_cast<int>(n);
      return absl::OkStatus();
    }
    case Key::kKeepalive: {
      ASSIGN_OR_RETURN(options_.managed.keepalive, Duration(key, value, /*allow_zero=*/false));
      if (options_.managed.keepalive < absl::Seconds(1)) return Error(line_, "Keepalive: expected at least 1s");
      return absl::OkStatus();
    }
    case Key::kBackoffMin: {
      ASSIGN_OR_RETURN(options_.managed.backoff_min, Duration(key, value, /*allow_zero=*/false));
      return absl::OkStatus();
    }
    case Key::kBackoffMax: {
      ASSIGN_OR_RETURN(options_.managed.backoff_max, Duration(key, value, /*allow_zero=*/false));
      return absl::OkStatus();
    }
    case Key::kConnectTimeout: {
      ASSIGN_OR_RETURN(options_.managed.connect_timeout, Duration(key, value, /*allow_zero=*/false));
      return absl::OkStatus();
    }
    case Key::kAdvertiseHosts: {
      options_.managed.advertise_hosts.clear();
      for (std::string_view item : SplitOn(value, ',')) {
        item = Trim(item);
        const bool ok = !item.empty() && item.size() <= 253 && IsPrintable(item) &&
                        std::none_of(item.begin(), item.end(), [](char ch) { return IsSpace(ch); });
        if (!ok) {
          return Error(line_, absl::StrCat("AdvertiseHosts: expected host names or addresses separated by commas, "
                                           "got ",
                                           Quoted(item)));
        }
        options_.managed.advertise_hosts.emplace_back(item);
      }
      return absl::OkStatus();
    }
    default:
      return Error(line_, absl::StrCat(key.name, " is not an [options] key"));
  }
}

absl::Status Parser::DoorKey(const KeyName& key, std::string_view value) {
  DoorState& door = doors_.back();
  DoorConfig& c = door.config;
  switch (key.key) {
    case Key::kSequence: {
      if (door.one_time_line != 0) {
        return Error(line_, absl::StrCat("door [", c.name, "] already has One_Time_Sequences (line ",
                                         door.one_time_line, "); expected either Sequence or One_Time_Sequences"));
      }
      ASSIGN_OR_RETURN(c.sequence, Sequence(key, value));
      door.sequence_line = line_;
      return absl::OkStatus();
    }
    case Key::kOneTimeSequences:
      if (door.sequence_line != 0) {
        return Error(line_, absl::StrCat("door [", c.name, "] already has a Sequence (line ", door.sequence_line,
                                         "); expected either Sequence or One_Time_Sequences"));
      }
      if (value.empty()) return Error(line_, "One_Time_Sequences: expected the path of a one-time sequences file");
      c.one_time_sequences = std::string(value);
      door.one_time_line = line_;
      return absl::OkStatus();
    case Key::kSeqTimeout: {
      ASSIGN_OR_RETURN(c.seq_timeout, Duration(key, value, /*allow_zero=*/false));
      door.seq_timeout_line = line_;
      return absl::OkStatus();
    }
    case Key::kCmdTimeout: {
      ASSIGN_OR_RETURN(c.cmd_timeout, Duration(key, value, /*allow_zero=*/true));
      door.cmd_timeout_line = line_;
      return absl::OkStatus();
    }
    case Key::kManaged:
      if (EqualsIgnoreCase(value, "yes") || EqualsIgnoreCase(value, "true")) {
        c.managed = true;
      } else if (EqualsIgnoreCase(value, "no") || EqualsIgnoreCase(value, "false")) {
        c.managed = false;
      } else {
        return Error(line_, absl::StrCat("Managed: expected yes or no, got ", Quoted(value)));
      }
      return absl::OkStatus();
    case Key::kTcpFlags:
      return TcpFlags(door, value);
    case Key::kStartCommand: {
      ASSIGN_OR_RETURN(c.start_command, Command(key, value));
      return absl::OkStatus();
    }
    case Key::kStartCommand6: {
      ASSIGN_OR_RETURN(c.start_command_6, Command(key, value));
      door.start_command_6_set = true;
      return absl::OkStatus();
    }
    case Key::kStopCommand: {
      ASSIGN_OR_RETURN(c.stop_command, Command(key, value));
      return absl::OkStatus();
    }
    case Key::kStopCommand6: {
      ASSIGN_OR_RETURN(c.stop_command_6, Command(key, value));
      door.stop_command_6_set = true;
      return absl::OkStatus();
    }
    case Key::kTarget: {
      const std::optional<IpAddress> target = IpAddress::Parse(value);
      if (!target.has_value()) {
        return Error(line_, absl::StrCat("Target: expected an IPv4 or IPv6 address, got ", Quoted(value)));
      }
      c.target = *target;
      return absl::OkStatus();
    }
    case Key::kBackend: {
      ASSIGN_OR_RETURN(c.backend, Backend(key, value));
      door.backend_line = line_;
      return absl::OkStatus();
    }
    case Key::kPorts: {
      ASSIGN_OR_RETURN(c.ports, Sequence(key, value));
      door.ports_line = line_;
      return absl::OkStatus();
    }
    case Key::kDoorResetMode: {
      ASSIGN_OR_RETURN(c.reset_mode, Mode(key, value));
      return absl::OkStatus();
    }
    case Key::kHostsAllowForm:
      if (EqualsIgnoreCase(value, "include")) {
        c.hosts_allow_form = HostsAllowForm::kInclude;
      } else if (EqualsIgnoreCase(value, "inline")) {
        c.hosts_allow_form = HostsAllowForm::kInline;
      } else {
        return Error(line_, absl::StrCat("HostsAllow_Form: expected include or inline, got ", Quoted(value)));
      }
      return absl::OkStatus();
    case Key::kHostsAllowFile: {
      ASSIGN_OR_RETURN(c.hosts_allow_file, AbsolutePath(key, value));
      door.hosts_allow_file_set = true;
      return absl::OkStatus();
    }
    case Key::kHostsAllowTable: {
      ASSIGN_OR_RETURN(c.hosts_allow_table, AbsolutePath(key, value));
      return absl::OkStatus();
    }
    case Key::kHostsAllowService: {
      // One daemon name of hosts_access(5): it is written into hosts.allow.
      const bool ok = !value.empty() && value.size() <= 64 && std::all_of(value.begin(), value.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.' || ch == '@' ||
               ch == '+';
      });
      if (!ok) {
        return Error(line_, absl::StrCat("HostsAllow_Service: expected one daemon name such as sshd, got ",
                                         Quoted(value)));
      }
      c.hosts_allow_service = std::string(value);
      return absl::OkStatus();
    }
    case Key::kNftTable: {
      const bool ok = !value.empty() && value.size() <= 64 && std::isalpha(static_cast<unsigned char>(value[0])) &&
                      std::all_of(value.begin(), value.end(), [](char ch) {
                        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.';
                      });
      if (!ok) {
        return Error(line_, absl::StrCat("Nft_Table: expected an nftables table name (a letter, then letters, "
                                         "digits, _ - .; at most 64), got ",
                                         Quoted(value)));
      }
      c.nft_table = std::string(value);
      return absl::OkStatus();
    }
    case Key::kIptablesChain: {
      const bool ok = !value.empty() && value.size() <= 28 && value[0] != '-' &&
                      std::all_of(value.begin(), value.end(), [](char ch) {
                        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
                      });
      if (!ok) {
        return Error(line_, absl::StrCat("Iptables_Chain: expected an iptables chain name (letters, digits, _ -; "
                                         "at most 28), got ",
                                         Quoted(value)));
      }
      c.iptables_chain = std::string(value);
      return absl::OkStatus();
    }
    default:
      return Error(line_, absl::StrCat(key.name, " is not a door key"));
  }
}

absl::Status Parser::Finish() {
  RETURN_IF_ERROR(FinishManaged());
  if (doors_.empty() && !options_.managed.enabled()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_, ": no door defined; expected at least one [door name] section with a Sequence or "
                            "One_Time_Sequences (an agent without a door has nothing to do)"));
  }
  for (DoorState& door : doors_) {
    DoorConfig& c = door.config;
    if (door.sequence_line == 0 && door.one_time_line == 0 && !c.managed) {
      return Error(c.line, absl::StrCat("door [", c.name,
                                        "] has no knock sequence; expected a Sequence or One_Time_Sequences line"));
    }
    // knockd 0.8: an absent _6 command falls back to the IPv4 one; an empty
    // one means "run nothing for IPv6". Resolved here once.
    if (!door.start_command_6_set) c.start_command_6 = c.start_command;
    if (!door.stop_command_6_set) c.stop_command_6 = c.stop_command;
    if (c.backend == BackendKind::kCommand && c.start_command.empty() && c.start_command_6.empty()) {
      return Error(c.line, absl::StrCat("door [", c.name,
                                        "] uses the command backend but has no Start_Command (alias Command); "
                                        "expected a command, or a Backend line"));
    }
    if (!door.hosts_allow_file_set) {
      const std::string& dir = options_.state_dir;
      c.hosts_allow_file = c.hosts_allow_form == HostsAllowForm::kInline ? std::string("/etc/hosts.allow")
                           : dir == "/"                                  ? std::string("/hosts.allow")
                                                                         : dir + "/hosts.allow";
    }
  }
  return absl::OkStatus();
}

absl::Status Parser::FinishManaged() {
  ManagedOptions& m = options_.managed;
  if (!m.enabled()) {
    if (ca_cert_line_ != 0) {
      return Error(ca_cert_line_, "CaCert, Cert and Key are for managed mode; expected a Controller line as well");
    }
    for (const DoorState& door : doors_) {
      if (door.config.managed) {
        return Error(door.config.line, absl::StrCat("door [", door.config.name,
                                                    "] says Managed = yes, but there is no Controller in "
                                                    "[options]; expected Controller = HOST:PORT"));
      }
    }
    return absl::OkStatus();
  }
  const std::pair<const std::string*, const char*> files[] = {{&m.ca_cert, "CaCert"}, {&m.cert, "Cert"}, {&m.key, "Key"}};
  for (const auto& [path, name] : files) {
    if (path->empty()) {
      return Error(m.line, absl::StrCat("managed mode needs ", name,
                                        " in [options] (CaCert: the CA of the controller's certificate; Cert and "
                                        "Key: this agent's certificate and private key)"));
    }
  }
  if (m.backoff_max < m.backoff_min) {
    return Error(m.line, absl::StrCat("BackoffMax (", absl::FormatDuration(m.backoff_max),
                                      ") is shorter than BackoffMin (", absl::FormatDuration(m.backoff_min), ")"));
  }
  // DESIGN: strict is the default in managed mode.
  if (!reset_mode_set_) options_.reset_mode = ResetMode::kStrict;
  for (DoorState& door : doors_) {
    DoorConfig& c = door.config;
    if (!c.managed) continue;
    if (door.backend_line == 0) c.backend = m.backend;
    const std::pair<int, const char*> refused[] = {{door.sequence_line, "Sequence"},
                                                   {door.one_time_line, "One_Time_Sequences"},
                                                   {door.seq_timeout_line, "Seq_Timeout"},
                                                   {door.ports_line, "Ports"},
                                                   {door.cmd_timeout_line, "Cmd_Timeout"}};
    for (const auto& [line, what] : refused) {
      if (line != 0) {
        return Error(line, absl::StrCat("door [", c.name, "] is managed: its ", what,
                                        " comes from the controller; remove this line (or Managed = yes)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<BackendKind> Parser::Backend(const KeyName& key, std::string_view value) const {
  static constexpr std::pair<const char*, BackendKind> kBackends[] = {
      {"command", BackendKind::kCommand},   {"hosts_allow", BackendKind::kHostsAllow},
      {"nftables", BackendKind::kNftables}, {"iptables", BackendKind::kIptables},
      {"ufw", BackendKind::kUfw},
  };
  for (const auto& [name, kind] : kBackends) {
    if (EqualsIgnoreCase(value, name)) return kind;
  }
  const std::string prefix = key.key == Key::kBackend ? "unknown Backend " : absl::StrCat(key.name, ": unknown backend ");
  return Error(line_, absl::StrCat(prefix, Quoted(value), "; expected command, hosts_allow, nftables, iptables or ufw"));
}

absl::StatusOr<std::vector<std::string>> Parser::Controllers(std::string_view value) const {
  std::vector<std::string> out;
  for (std::string_view item : SplitOn(value, ',')) {
    item = Trim(item);
    const auto bad = [&] {
      return Error(line_, absl::StrCat("Controller: expected HOST:PORT[, HOST:PORT...] (an IPv6 address in "
                                       "brackets: [2001:db8::1]:7443), got ",
                                       Quoted(item)));
    };
    const size_t colon = item.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return bad();
    std::string_view host = item.substr(0, colon);
    const std::optional<int64_t> port = ParseDigits(item.substr(colon + 1));
    if (!port.has_value() || *port < 1 || *port > 65535) return bad();
    if (host.front() == '[') {
      if (host.size() < 3 || host.back() != ']') return bad();
      const std::optional<IpAddress> v6 = IpAddress::Parse(host.substr(1, host.size() - 2));
      if (!v6.has_value() || !v6->is_v6()) return bad();
    } else {
      const bool ok = host.size() <= 253 && std::all_of(host.begin(), host.end(), [](char ch) {
                        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' || ch == '_';
                      });
      if (!ok) return bad();
    }
    out.emplace_back(item);
  }
  return out;
}

absl::StatusOr<absl::Duration> Parser::Duration(const KeyName& key, std::string_view value, bool allow_zero) const {
  const std::optional<absl::Duration> d = ParseDurationText(value);
  if (!d.has_value()) {
    return Error(line_, absl::StrCat(key.name, ": expected a duration (whole seconds, or a number with ms, s, m or "
                                               "h), got ",
                                     Quoted(value)));
  }
  if (!allow_zero && *d == absl::ZeroDuration()) {
    return Error(line_, absl::StrCat(key.name, ": expected a duration greater than zero"));
  }
  return *d;
}

absl::StatusOr<int64_t> Parser::Count(const KeyName& key, std::string_view value, int64_t min, int64_t max) const {
  const std::optional<int64_t> n = ParseDigits(value);
  if (!n.has_value() || *n < min || *n > max) {
    return Error(line_, absl::StrCat(key.name, ": expected a whole number from ", min, " to ", max, ", got ",
                                     Quoted(value)));
  }
  return *n;
}

absl::StatusOr<std::vector<Knock>> Parser::Sequence(const KeyName& key, std::string_view value) const {
  absl::StatusOr<std::vector<Knock>> knocks = ParseSequence(value);
  if (!knocks.ok()) return Error(line_, absl::StrCat(key.name, ": ", knocks.status().message()));
  return knocks;
}

absl::StatusOr<ResetMode> Parser::Mode(const KeyName& key, std::string_view value) const {
  if (EqualsIgnoreCase(value, "compat")) return ResetMode::kCompat;
  if (EqualsIgnoreCase(value, "strict")) return ResetMode::kStrict;
  return Error(line_, absl::StrCat(key.name, ": expected compat or strict, got ", Quoted(value)));
}

absl::StatusOr<std::string> Parser::AbsolutePath(const KeyName& key, std::string_view value) const {
  if (value.empty() || value.front() != '/') {
    return Error(line_, absl::StrCat(key.name, ": expected an absolute path, got ", Quoted(value)));
  }
  return std::string(value);
}

absl::StatusOr<std::string> Parser::Command(const KeyName& key, std::string_view value) const {
  // Empty: run nothing (knockd's way to silence the IPv6 fallback).
  if (value.empty()) return std::string();
  absl::StatusOr<std::vector<std::string>> words = SplitCommandLine(value);
  if (!words.ok()) return Error(line_, absl::StrCat(key.name, ": ", words.status().message()));
  return std::string(value);
}

absl::Status Parser::TcpFlags(DoorState& door, std::string_view value) const {
  DoorConfig& c = door.config;
  if (!door.tcp_flags_seen) {
    // A TCPFlags line replaces sesame's default (SYN without ACK) entirely.
    c.tcp_flags_set = 0;
    c.tcp_flags_clear = 0;
    door.tcp_flags_seen = true;
  }
  for (std::string_view item : SplitOn(value, ',')) {
    item = Trim(item);
    const bool forbidden = !item.empty() && item.front() == '!';
    const std::string_view name = forbidden ? Trim(item.substr(1)) : item;
    const TcpFlagName* flag = nullptr;
    for (const TcpFlagName& f : kTcpFlagNames) {
      if (EqualsIgnoreCase(name, f.name)) flag = &f;
    }
    if (flag == nullptr) {
      return Error(line_, absl::StrCat("TCPFlags: unknown flag ", Quoted(item),
                                       "; expected fin, syn, rst, psh, ack or urg, each optionally prefixed by !"));
    }
    uint8_t& mine = forbidden ? c.tcp_flags_clear : c.tcp_flags_set;
    const uint8_t other = forbidden ? c.tcp_flags_set : c.tcp_flags_clear;
    if (other & flag->bit) {
      return Error(line_, absl::StrCat("TCPFlags: flag ", flag->name, " is both required and forbidden (!",
                                       flag->name, ")"));
    }
    mine |= flag->bit;
  }
  return absl::OkStatus();
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

}  // namespace

absl::StatusOr<std::vector<Knock>> ParseSequence(std::string_view text) {
  text = Trim(text);
  if (text.empty()) return absl::InvalidArgumentError("empty sequence; expected PORT[:tcp|udp],... such as 7000,8000:udp");
  const std::vector<std::string_view> elements = SplitOn(text, ',');
  if (elements.size() > kMaxSequenceLength) {
    return absl::InvalidArgumentError(absl::StrCat("sequence has ", elements.size(), " ports; at most ",
                                                   kMaxSequenceLength, " are allowed"));
  }
  std::vector<Knock> knocks;
  knocks.reserve(elements.size());
  for (std::string_view element : elements) {
    if (Trim(element).empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("empty element in sequence ", Quoted(text), "; expected PORT[:tcp|udp] between the commas"));
    }
    ASSIGN_OR_RETURN(Knock knock, ParseKnock(element));
    knocks.push_back(knock);
  }
  return knocks;
}

absl::StatusOr<AgentConfig> ParseConfig(std::string_view text, std::string_view file_name) {
  Parser parser(file_name);
  ASSIGN_OR_RETURN(AgentConfig config, parser.Parse(text));
  config.path = std::string(file_name);
  return config;
}

absl::StatusOr<AgentConfig> LoadConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("cannot read configuration: ", text.status().message()));
  }
  return ParseConfig(*text, path);
}

ResetMode EffectiveResetMode(const AgentConfig& config, const DoorConfig& door) {
  return door.reset_mode.value_or(config.options.reset_mode);
}

}  // namespace sesame
