// The checks that need the whole file, run after its last line: every door
// has a sequence and something to run, managed mode has its TLS files and
// its doors leave the controller's keys alone; and the defaults that depend
// on other keys (the _6 commands, HostsAllow_File; in managed mode, strict
// ResetMode and a managed door's Backend) are filled in.
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/config/internal/config_parser.h"
#include "common/status_macros.h"

namespace sesame::config_internal {

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

}  // namespace sesame::config_internal
