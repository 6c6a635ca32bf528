// knockd's way of opening a door: run the door's Start_Command when a grant
// opens and its Stop_Command when it closes. A command is split into words
// once, here, and run without a shell, placeholders substituted inside each
// word per grant; one that needs a shell (a redirection such as knockd's
// classic `/bin/echo "SSHD: %IP%" >> /etc/hosts.allow`, a pipe, a second
// command) runs as knockd runs it, through /bin/sh -c, with the values
// below put into its text only when a shell reads them as plain text
// (agent/config/command_line.h): they never carry packet bytes.
//
//   %IP%     the grant's address, re-printed canonically from IpAddress
//   %DOOR%   the door's name
//   %PORTS%  what the grant opens, e.g. 22:tcp,443:tcp
//   %TTL%    whole seconds until the grant expires, rounded up and at least
//            1; 0 when it never expires
//
// IPv6 sources use Start_Command_6 / Stop_Command_6 as DoorConfig holds
// them. knockd 0.8 falls back, for each of the two independently, to the
// IPv4 command when the _6 line is absent; the config parser resolves that
// fallback (config.h), so here an empty _6 command means "nothing to run for
// IPv6" (knockd runs nothing for an empty command either). A door whose
// Start_Command_6 differs from Start_Command while Stop_Command_6 is the
// IPv4 Stop_Command (Stop_Command_6 absent) closes IPv6 grants with the IPv4
// stop command: knockd does the same, it is rarely what was meant, and it is
// logged as a warning when the backend is built.
//
// Commands run through ProcessRunner::Start: Open and Close return once the
// command is started (or queued); its exit is logged by the runner. Commands
// for one address run one after another, in call order, so a Close issued
// while the start command still runs takes effect after it.
//
// Idempotence: an Open for an address this backend has opened (and not
// closed since) runs nothing: a re-knock must not add a second firewall rule.
// A start command that fails forgets that state, so the next Open retries.
// Close runs the stop command unless a Close for that address is already
// pending or running: after an agent restart the backend cannot know what is
// open, and a stop command that finds nothing to remove only logs a warning.
// Memory: one small entry per open address.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "agent/config/command_line.h"
#include "agent/config/config.h"
#include "agent/grants/firewall.h"
#include "agent/grants/process_runner.h"
#include "common/clock.h"
#include "common/ip_address.h"

namespace sesame {

class CommandBackend final : public FirewallBackend {
 public:
  CommandBackend(const DoorConfig& door, ProcessRunner& runner);
  // `clock` is what %TTL% is measured against.
  CommandBackend(const DoorConfig& door, ProcessRunner& runner, const Clock& clock);
  ~CommandBackend() override;

  // Whether the door's commands parse (balanced quotes; a shell command
  // using %DOOR% only for a door whose name is plain text to a shell); the
  // error names the door, its line and the key. For --check-config and the
  // backend factory.
  static absl::Status Check(const DoorConfig& door);
  // For a door whose commands run through /bin/sh: a notice saying so, and
  // that Backend = hosts_allow needs none (--check-config prints it, the
  // agent logs it).
  static std::optional<std::string> ShellNotice(const DoorConfig& door);

  std::string_view name() const override { return "command"; }
  // Returns Check()'s verdict: a door whose commands do not split never runs
  // anything, and Open/Close return the same error.
  absl::Status Prepare() override;
  absl::Status Open(const Grant& grant) override;
  absl::Status Close(const Grant& grant) override;
  // A start command may not be idempotent: after a restart its grants are
  // only closed on time, never started again.
  bool reapply_after_restart() const override { return false; }

  // Whether closing a grant runs anything at all (a stop command for either
  // family); without one the agent need not schedule a Close.
  bool closes() const;
  // Whether closing a grant for an address of this family runs a command.
  bool closes(IpAddress::Family family) const;

  // Exposed for tests and --check-config: the argv a grant would run, after
  // substitution; empty when there is no such command.
  std::vector<std::string> StartArgv(const Grant& grant) const;
  std::vector<std::string> StopArgv(const Grant& grant) const;

 private:
  struct Commands;  // parsed commands per family
  class Sequencer;  // per-address ordering and open/closed state

  const CommandLine& StartCommand(IpAddress::Family family) const;
  const CommandLine& StopCommand(IpAddress::Family family) const;
  absl::StatusOr<std::vector<std::string>> Argv(const CommandLine& command, const Grant& grant) const;

  const std::string door_name_;
  const std::vector<Knock> door_ports_;
  const Clock& clock_;
  absl::Status split_status_;
  std::unique_ptr<Commands> commands_;
  std::shared_ptr<Sequencer> sequencer_;  // shared with in-flight callbacks
};

}  // namespace sesame
