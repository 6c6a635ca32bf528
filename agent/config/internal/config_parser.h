// Private to agent/config: the knockd.conf parser behind ParseConfig. One
// Parser reads one file; its members are defined by topic:
//
//   config_reader.cc      lines, [sections], KEY = VALUE, which handler a key goes to
//   option_keys.cc        [options] keys of knockd and sesame
//   managed_keys.cc       managed mode's [options] keys and a door's Managed key
//   door_keys.cc          door section keys, backend keys included
//   config_values.cc      typed values (durations, counts, paths...) and their messages
//   config_validation.cc  the checks that need the whole file, after its last line
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/config/config.h"
#include "common/knock.h"

namespace sesame::config_internal {

enum class Key {
  // [options]
  kUseSyslog,
  kLogFile,
  kLogFormat,
  kPidFile,
  kInterface,
  kStateDir,
  kOptionsResetMode,
  kMaxSources,
  kScanThreshold,
  kScanWindow,
  kScanBan,
  kScanReportWindow,
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
  kSpoolLimitMB,
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
  // doors, managed mode
  kManaged,
};

struct KeyName {
  const char* name;  // as documented; matched case-insensitively
  Key key;
};

// The keys of each group, in the order "expected one of ..." lists them.
// Managed mode's groups are listed in messages only once a file uses managed
// mode, so that a knockd.conf gets knockd's list.
std::span<const KeyName> OptionKeys();         // option_keys.cc
std::span<const KeyName> ManagedOptionKeys();  // managed_keys.cc
std::span<const KeyName> DoorKeys();           // door_keys.cc
std::span<const KeyName> ManagedDoorKeys();    // managed_keys.cc

// The entry of `table` whose name equals `key` ignoring case, or null.
const KeyName* FindKey(std::span<const KeyName> table, std::string_view key);
// "Name1, Name2, ...".
std::string KeyList(std::span<const KeyName> table);

// A door while its section is read: the config, plus the lines of the keys
// that later checks refer to (0: not given).
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
  // "FILE:LINE: message".
  absl::Status Error(int line, std::string_view message) const;

  // config_reader.cc
  absl::Status ParseLine(std::string_view line);
  absl::Status StartSection(std::string_view header);
  // "expected one of ...": managed keys only once the file is in managed mode.
  std::string OptionKeyList() const;
  std::string DoorKeyList() const;

  // One KEY = VALUE of the current section; `key` comes from the group the
  // handler's file lists.
  absl::Status OptionKey(const KeyName& key, std::string_view value);         // option_keys.cc
  absl::Status ManagedOptionKey(const KeyName& key, std::string_view value);  // managed_keys.cc
  absl::Status DoorKey(const KeyName& key, std::string_view value);           // door_keys.cc
  absl::Status ManagedDoorKey(const KeyName& key, std::string_view value);    // managed_keys.cc

  // option_keys.cc
  absl::StatusOr<std::vector<std::string>> Interfaces(std::string_view value) const;
  // managed_keys.cc
  absl::StatusOr<std::vector<std::string>> Controllers(std::string_view value) const;
  // door_keys.cc
  absl::Status BackendDoorKey(const KeyName& key, std::string_view value);
  absl::Status TcpFlags(DoorState& door, std::string_view value) const;

  // config_values.cc: a value of the current line, or an error naming `key`.
  absl::StatusOr<absl::Duration> Duration(const KeyName& key, std::string_view value, bool allow_zero) const;
  absl::StatusOr<int64_t> Count(const KeyName& key, std::string_view value, int64_t min, int64_t max) const;
  absl::StatusOr<std::vector<Knock>> Sequence(const KeyName& key, std::string_view value) const;
  absl::StatusOr<ResetMode> Mode(const KeyName& key, std::string_view value) const;
  absl::StatusOr<std::string> AbsolutePath(const KeyName& key, std::string_view value) const;
  absl::StatusOr<std::string> Command(const KeyName& key, std::string_view value) const;
  absl::StatusOr<BackendKind> Backend(const KeyName& key, std::string_view value) const;

  // config_validation.cc
  absl::Status Finish();
  absl::Status FinishManaged();

  std::string file_;
  int line_ = 0;
  enum class Section { kNone, kOptions, kDoor } section_ = Section::kNone;
  AgentOptions options_;
  std::vector<DoorState> doors_;
  bool reset_mode_set_ = false;  // ResetMode given in [options]
  int ca_cert_line_ = 0;         // first line of a managed key, for messages
};

}  // namespace sesame::config_internal
