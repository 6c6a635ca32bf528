// The keys of a door section: knockd's (sequence, timeouts, tcpflags,
// commands, target) and sesame's (Backend, Ports, ResetMode), then the
// options of the backends. The Managed key is in managed_keys.cc.
#include <algorithm>
#include <cctype>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/config/internal/config_parser.h"
#include "agent/config/internal/config_text.h"
#include "common/ip_address.h"
#include "common/status_macros.h"

namespace sesame::config_internal {
namespace {

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

struct TcpFlagName {
  const char* name;
  uint8_t bit;
};
constexpr TcpFlagName kTcpFlagNames[] = {
    {"fin", tcp_flags::kFin}, {"syn", tcp_flags::kSyn}, {"rst", tcp_flags::kRst},
    {"psh", tcp_flags::kPsh}, {"ack", tcp_flags::kAck}, {"urg", tcp_flags::kUrg},
};

}  // namespace

std::span<const KeyName> DoorKeys() { return kDoorKeys; }

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
      c.one_time_sequences_line = line_;
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
    default:
      return BackendDoorKey(key, value);
  }
}

// The keys that configure one backend. Each is accepted whatever the door's
// Backend is.
absl::Status Parser::BackendDoorKey(const KeyName& key, std::string_view value) {
  DoorState& door = doors_.back();
  DoorConfig& c = door.config;
  switch (key.key) {
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
      c.hosts_allow_file_line = line_;
      door.hosts_allow_file_set = true;
      return absl::OkStatus();
    }
    case Key::kHostsAllowTable: {
      ASSIGN_OR_RETURN(c.hosts_allow_table, AbsolutePath(key, value));
      c.hosts_allow_table_line = line_;
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

}  // namespace sesame::config_internal
