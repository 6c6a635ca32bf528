// The agent's configuration: knockd.conf, read unchanged, plus a few keys of
// sesame's own. Keys are case-insensitive, as in knockd.
//
//   [options]                      [openSSH]
//     UseSyslog                      sequence    = 7000,8000:udp,9000
//     LogFile   = /var/log/knockd    seq_timeout = 5
//     PidFile   = /run/knockd.pid    tcpflags    = syn,!ack
//     Interface = eth0,eth1          command     = /usr/sbin/iptables -A INPUT -s %IP% -j ACCEPT
//
// sesame's own keys ([options]): StateDir, ResetMode (compat|strict),
// MaxSources, ScanThreshold, ScanWindow, ScanBan, ScanReportWindow, MaxChildren,
// CommandTimeLimit, MetricsFile, MetricsInterval. Per door: Backend (command|hosts_allow|nftables|iptables|
// ufw), Ports (what a grant opens, default 22:tcp), ResetMode, and the
// backend's options (HostsAllow_Form, HostsAllow_File, HostsAllow_Table,
// HostsAllow_Service,
// Nft_Table, Iptables_Chain).
//
// Managed mode (part of a fleet; agent/managed/), keys in [options]:
//
//   [options]
//     Controller     = ctl1.example.net:7443, ctl2.example.net:7443
//     CaCert         = /etc/sesame/tls/ca.crt
//     Cert           = /etc/sesame/tls/agent.crt
//     Key            = /etc/sesame/tls/agent.key
//     AgentName      = bastion1        (optional: must equal the certificate's)
//     ManagedBackend = nftables        (managed doors without a section of their own)
//     ReserveSize    = 5               (offline-reserve sequences wished for)
//     SpoolLimitMB   = 16              (the report spool's size limit, MiB)
//     Keepalive = 20s, BackoffMin = 1s, BackoffMax = 30s, ConnectTimeout = 5s,
//     AdvertiseHosts = bastion1.example.net
//
// Controller switches managed mode on: the controller names the doors and
// their policy (sequences, seq_timeout, the ports and TTL of a grant), and
// ResetMode defaults to strict. A door section with "Managed = yes" and no
// sequence says how the controller's door of that name is served here: its
// Backend and backend keys, TCPFlags, Target, ResetMode (Sequence,
// One_Time_Sequences, Seq_Timeout, Ports and Cmd_Timeout come from the
// controller and are refused there). Other door sections stay standalone
// doors and keep working beside the managed ones.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/ip_address.h"
#include "common/log.h"
#include "common/knock.h"

namespace sesame {

// compat: knockd's rule, only packets to ports of some sequence disturb
// progress. strict: any other knock-shaped packet from the source resets it
// (a repeat of the port just knocked never does).
enum class ResetMode { kCompat, kStrict };

enum class BackendKind { kCommand, kHostsAllow, kNftables, kIptables, kUfw };

enum class HostsAllowForm {
  kInclude,  // /etc/hosts.allow holds "SERVICE: /path/file"; the agent owns that file
  kInline,   // the agent appends "SERVICE: ADDR # sesame ..." to hosts.allow itself
};

inline constexpr size_t kMaxSequenceLength = 32;
inline constexpr size_t kMaxDoors = 64;
inline constexpr absl::Duration kMinMetricsInterval = absl::Seconds(1);

// The largest file accepted for each kind of file a configuration names
// (ReadSmallRegularFile): the reader and --check-config apply the same one.
inline constexpr size_t kMaxConfigFileBytes = size_t{1} << 20;       // knockd.conf itself
inline constexpr size_t kMaxOneTimeFileBytes = size_t{16} << 20;     // One_Time_Sequences (~500,000 lines)
inline constexpr size_t kMaxTlsFileBytes = size_t{1} << 20;          // CaCert, Cert, Key (PEM)
inline constexpr size_t kMaxHostsAllowTableBytes = size_t{16} << 20;  // a hosts.allow table

struct DoorConfig {
  std::string name;  // the [section] name
  int line = 0;      // line of the [section] header, for messages

  // Exactly one of these is set: a fixed sequence, or a one-time file whose
  // first unused line is the current sequence.
  std::vector<Knock> sequence;
  std::string one_time_sequences;
  int one_time_sequences_line = 0;  // of its key, for FILE:LINE messages

  absl::Duration seq_timeout = absl::Seconds(25);  // knockd's default
  // A TCP knock must have every bit of tcp_flags_set and none of
  // tcp_flags_clear. Without a tcpflags line: SYN without ACK (knockd takes
  // any flags, so the ACKs of an ordinary connection to a knock port count
  // as knocks there). A tcpflags line is taken exactly as written.
  uint8_t tcp_flags_set = tcp_flags::kSyn;
  uint8_t tcp_flags_clear = tcp_flags::kAck;

  // Each command has passed ParseCommandLine (one with shell syntax runs
  // through /bin/sh -c, command_line.h). Empty: nothing runs. The _6
  // forms are for IPv6 sources; without a _6 line they hold the IPv4 command
  // (knockd 0.8's fallback, resolved by the parser), so an empty _6 command
  // means "run nothing for IPv6", as in knockd.
  std::string start_command;    // Start_Command, alias Command
  std::string start_command_6;  // Start_Command_6, alias Command_6
  std::string stop_command;
  std::string stop_command_6;
  absl::Duration cmd_timeout = absl::Seconds(10);  // knockd's default

  std::optional<IpAddress> target;  // knocks must be sent to this address

  BackendKind backend = BackendKind::kCommand;
  std::vector<Knock> ports = {{22, Protocol::kTcp}};
  std::optional<ResetMode> reset_mode;  // unset: the [options] value

  HostsAllowForm hosts_allow_form = HostsAllowForm::kInclude;
  std::string hosts_allow_file;  // default: <StateDir>/hosts.allow (include), /etc/hosts.allow (inline)
  // include form: the TCP Wrappers table that gets the "SERVICE: FILE" line.
  std::string hosts_allow_table = "/etc/hosts.allow";
  int hosts_allow_file_line = 0;   // of each key, 0 when not given
  int hosts_allow_table_line = 0;
  std::string hosts_allow_service = "sshd";
  std::string nft_table = "sesame";
  std::string iptables_chain = "SESAME";

  // Managed = yes: the local half of a controller's door (see the top).
  bool managed = false;
};

// [options] keys of managed mode. Empty `controllers`: standalone.
struct ManagedOptions {
  std::vector<std::string> controllers;  // host:port, tried in turn
  std::string ca_cert;                   // CA of the controller's certificate
  std::string cert;                      // this agent's certificate and key
  std::string key;
  int ca_cert_line = 0;  // of each key, for FILE:LINE messages
  int cert_line = 0;
  int key_line = 0;
  std::string agent_name;  // empty: whatever the certificate says
  // Backend of a managed door that has no "Managed = yes" section.
  BackendKind backend = BackendKind::kNftables;
  int reserve_size = 0;  // 0: the controller's default
  // The spool of reports for the controller holds at most this much
  // (agent/managed/audit_spool.h says what happens at the limit).
  uint64_t spool_limit_bytes = uint64_t{16} << 20;
  absl::Duration keepalive = absl::Seconds(20);
  absl::Duration backoff_min = absl::Seconds(1);
  absl::Duration backoff_max = absl::Seconds(30);
  absl::Duration connect_timeout = absl::Seconds(5);
  std::vector<std::string> advertise_hosts;
  int line = 0;  // of the Controller key, for messages

  bool enabled() const { return !controllers.empty(); }
};

struct AgentOptions {
  bool use_syslog = false;
  std::string log_file;
  LogFormat log_format = LogFormat::kText;  // LogFormat = text | json (common/log.h)
  std::string pid_file;
  std::vector<std::string> interfaces;  // Interface = eth0[,eth1...]; -i overrides

  std::string state_dir = "/var/lib/sesame-agent";
  ResetMode reset_mode = ResetMode::kCompat;
  size_t max_sources = 65536;       // per-source table capacity
  int scan_threshold = 12;          // distinct wrong ports ...
  absl::Duration scan_window = absl::Seconds(5);  // ... within this window
  absl::Duration scan_ban = absl::Seconds(300);   // marked (judged strictly) this long after its last wrong knock
  // Scanner notices (log lines, reports to the controller): the first of
  // a window alone, the rest as one summary at its end; 0: each alone
  // (agent/match/scanner_aggregator.h).
  absl::Duration scan_report_window = absl::Seconds(60);
  int max_children = 16;            // commands running at once
  absl::Duration command_time_limit = absl::Seconds(60);  // a hung command is killed
  // Prometheus text file for node_exporter's textfile collector, rewritten
  // atomically every metrics_interval (at least kMinMetricsInterval).
  // Empty: none.
  std::string metrics_file;
  absl::Duration metrics_interval = absl::Seconds(5);

  ManagedOptions managed;
};

struct AgentConfig {
  std::string path;
  AgentOptions options;
  std::vector<DoorConfig> doors;
};

// Parses knockd.conf text. Errors read "FILE:LINE: what was expected". Pure:
// it opens no file (a one_time_sequences path is checked by
// OneTimeSequences). A file without any door is an error (knockd accepts it;
// an agent without a door does nothing), except in managed mode, where the
// doors come from the controller.
absl::StatusOr<AgentConfig> ParseConfig(std::string_view text, std::string_view file_name);
absl::StatusOr<AgentConfig> LoadConfig(const std::string& path);

// "7000,8000:udp,9000:tcp" (knockd's syntax; spaces allowed around commas).
absl::StatusOr<std::vector<Knock>> ParseSequence(std::string_view text);

ResetMode EffectiveResetMode(const AgentConfig& config, const DoorConfig& door);

}  // namespace sesame
