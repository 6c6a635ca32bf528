#include "agent/grants/backends/command_backend.h"

#include <algorithm>
#include <array>
#include <deque>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "agent/config/command_line.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {

struct CommandBackend::Commands {
  CommandLine start, start_6, stop, stop_6;
};

// Runs the commands for one address strictly one after another, and
// remembers which state this backend last asked for, so that a repeated Open
// runs nothing. Shared with the runner's callbacks, which may outlive the
// backend (they run on the runner's thread; the runner outlives them).
class CommandBackend::Sequencer : public std::enable_shared_from_this<Sequencer> {
 public:
  Sequencer(ProcessRunner& runner, std::string label) : runner_(runner), label_(std::move(label)) {}

  absl::Status Request(const IpAddress& address, bool open, std::vector<std::string> argv) {
    {
      absl::MutexLock lock(&mu_);
      Entry& e = entries_[address];
      const Wanted wanted = open ? Wanted::kOpen : Wanted::kClosed;
      if (e.wanted == wanted) {
        LogDebug(absl::StrCat(label_, ": ", address.ToString(), " is already ", open ? "open" : "closed"));
        return absl::OkStatus();
      }
      e.wanted = wanted;
      if (argv.empty()) {  // no command for this step: the state is all there is
        EraseIfIdle(address);
        return absl::OkStatus();
      }
      if (e.busy || !e.pending.empty()) {
        e.pending.push_back(Step{open, std::move(argv)});
        return absl::OkStatus();
      }
      e.busy = true;
    }
    absl::Status started = Launch(address, open, std::move(argv));
    if (!started.ok()) {
      StepEnded(address, open, /*succeeded=*/false);
    }
    return started;
  }

 private:
  enum class Wanted { kUnknown, kOpen, kClosed };
  struct Step {
    bool open;
    std::vector<std::string> argv;
  };
  struct Entry {
    Wanted wanted = Wanted::kUnknown;
    bool busy = false;  // a command for this address is running or queued in the runner
    std::deque<Step> pending;
  };

  absl::Status Launch(const IpAddress& address, bool open, std::vector<std::string> argv) {
    return runner_.Start(std::move(argv), label_, [self = shared_from_this(), address, open](const ProcessResult& r) {
      const bool ok = r.exit_code == 0 && r.signal == 0 && !r.timed_out;
      self->StepEnded(address, open, ok);
    });
  }

  // A step is over (or could not start): forget a failed open, then start
  // the next pending step for this address, if any.
  void StepEnded(const IpAddress& address, bool open, bool succeeded) {
    for (;;) {
      Step next;
      {
        absl::MutexLock lock(&mu_);
        auto it = entries_.find(address);
        if (it == entries_.end()) return;
        Entry& e = it->second;
        e.busy = false;
        // A failed start leaves the address in an unknown state: the next
        // Open must run the start command again.
        if (open && !succeeded && e.wanted == Wanted::kOpen && e.pending.empty()) e.wanted = Wanted::kUnknown;
        if (e.pending.empty()) {
          EraseIfIdle(address);
          return;
        }
        next = std::move(e.pending.front());
        e.pending.pop_front();
        e.busy = true;
      }
      absl::Status started = Launch(address, next.open, std::move(next.argv));
      if (started.ok()) return;
      LogWarning(absl::StrCat(label_, ": ", next.open ? "start" : "stop", " command for ", address.ToString(),
                              " not run: ", started.message()));
      open = next.open;
      succeeded = false;
    }
  }

  void EraseIfIdle(const IpAddress& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = entries_.find(address);
    if (it == entries_.end()) return;
    const Entry& e = it->second;
    // Open addresses are remembered (that is what makes Open idempotent);
    // closed ones are forgotten, which keeps the map as small as the set of
    // open grants.
    if (!e.busy && e.pending.empty() && e.wanted != Wanted::kOpen) entries_.erase(it);
  }

  ProcessRunner& runner_;
  const std::string label_;
  absl::Mutex mu_;
  absl::flat_hash_map<IpAddress, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

namespace {

struct NamedCommand {
  const char* key;
  const std::string* text;
};

// Each IPv4 command before its _6 form.
std::array<NamedCommand, 4> NamedCommands(const DoorConfig& door) {
  return {NamedCommand{"Start_Command", &door.start_command}, NamedCommand{"Start_Command_6", &door.start_command_6},
          NamedCommand{"Stop_Command", &door.stop_command}, NamedCommand{"Stop_Command_6", &door.stop_command_6}};
}

absl::StatusOr<CommandLine> ParseOne(const DoorConfig& door, const NamedCommand& c) {
  if (c.text->empty()) return CommandLine{};
  absl::StatusOr<CommandLine> command = ParseCommandLine(*c.text);
  // The door's name is the one value of ours a configuration chooses freely.
  if (command.ok() && command->needs_shell() && absl::StrContains(command->shell_text, "%DOOR%") &&
      !SafeForShell(door.name)) {
    command = absl::InvalidArgumentError(absl::StrCat("the command runs through /bin/sh and uses %DOOR%, but the "
                                                      "door's name is not plain text to a shell"));
  }
  if (!command.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("door [", door.name, "] (line ", door.line, "): ", c.key, ": ", command.status().message()));
  }
  return command;
}

}  // namespace

CommandBackend::CommandBackend(const DoorConfig& door, ProcessRunner& runner)
    : CommandBackend(door, runner, RealClock::Instance()) {}

CommandBackend::CommandBackend(const DoorConfig& door, ProcessRunner& runner, const Clock& clock)
    : door_name_(door.name),
      door_ports_(door.ports),
      clock_(clock),
      commands_(std::make_unique<Commands>()),
      sequencer_(std::make_shared<Sequencer>(runner, door.name)) {
  CommandLine* const out[] = {&commands_->start, &commands_->start_6, &commands_->stop, &commands_->stop_6};
  const std::array<NamedCommand, 4> commands = NamedCommands(door);
  for (size_t i = 0; i < commands.size(); ++i) {
    absl::StatusOr<CommandLine> command = ParseOne(door, commands[i]);
    if (!command.ok()) {
      split_status_ = command.status();
      LogError(std::string(split_status_.message()));
      *commands_ = Commands{};  // a door half understood runs nothing
      return;
    }
    *out[i] = *std::move(command);
  }
  if (!door.start_command_6.empty() && door.start_command_6 != door.start_command && !door.stop_command.empty() &&
      door.stop_command_6 == door.stop_command) {
    LogWarning(absl::StrCat("door [", door.name, "]: Start_Command_6 is set but Stop_Command_6 is not; IPv6 grants ",
                            "will be closed with Stop_Command (knockd's fallback)"));
  }
}

CommandBackend::~CommandBackend() = default;

absl::Status CommandBackend::Check(const DoorConfig& door) {
  for (const NamedCommand& c : NamedCommands(door)) {
    absl::StatusOr<CommandLine> command = ParseOne(door, c);
    if (!command.ok()) return command.status();
  }
  return absl::OkStatus();
}

std::optional<std::string> CommandBackend::ShellNotice(const DoorConfig& door) {
  std::vector<std::string> keys;
  std::string syntax;
  const std::array<NamedCommand, 4> commands = NamedCommands(door);
  for (size_t i = 0; i < commands.size(); ++i) {
    // A _6 command not written holds the IPv4 text (config.h): named once.
    if (i % 2 == 1 && *commands[i].text == *commands[i - 1].text) continue;
    absl::StatusOr<CommandLine> command = ParseOne(door, commands[i]);
    if (!command.ok() || !command->needs_shell()) continue;
    keys.push_back(commands[i].key);
    if (syntax.empty()) syntax = command->shell_syntax;
  }
  if (keys.empty()) return std::nullopt;
  return absl::StrCat("door [", door.name, "]: ", absl::StrJoin(keys, " and "), keys.size() == 1 ? " runs" : " run",
                      " through /bin/sh -c, as knockd runs commands (it uses ", syntax,
                      "); only sesame's own values go into it (%IP% as parsed and printed again, %DOOR%, %PORTS%, "
                      "%TTL%), never packet bytes. For TCP Wrappers, Backend = hosts_allow opens the door without a "
                      "shell and without rewriting hosts.allow");
}

absl::Status CommandBackend::Prepare() { return split_status_; }

const CommandLine& CommandBackend::StartCommand(IpAddress::Family family) const {
  return family == IpAddress::Family::kV6 ? commands_->start_6 : commands_->start;
}

const CommandLine& CommandBackend::StopCommand(IpAddress::Family family) const {
  return family == IpAddress::Family::kV6 ? commands_->stop_6 : commands_->stop;
}

absl::StatusOr<std::vector<std::string>> CommandBackend::Argv(const CommandLine& command, const Grant& grant) const {
  if (command.empty()) return std::vector<std::string>{};
  int64_t ttl = 0;
  if (grant.expires != absl::InfiniteFuture()) {
    // Rounded up and at least 1: 0 means "never expires" to the command.
    ttl = std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(grant.expires - clock_.Now(), absl::Seconds(1))));
  }
  const Substitutions values = {
      {"IP", grant.address.ToString()},  // canonical text, never packet bytes
      {"DOOR", door_name_},
      {"PORTS", KnocksToString(grant.ports.empty() ? door_ports_ : grant.ports)},
      {"TTL", absl::StrCat(ttl)},
  };
  return CommandArgv(command, values);
}

std::vector<std::string> CommandBackend::StartArgv(const Grant& grant) const {
  return Argv(StartCommand(grant.address.family()), grant).value_or(std::vector<std::string>{});
}

std::vector<std::string> CommandBackend::StopArgv(const Grant& grant) const {
  return Argv(StopCommand(grant.address.family()), grant).value_or(std::vector<std::string>{});
}

absl::Status CommandBackend::Open(const Grant& grant) {
  if (!split_status_.ok()) return split_status_;
  ASSIGN_OR_RETURN(std::vector<std::string> argv, Argv(StartCommand(grant.address.family()), grant));
  return sequencer_->Request(grant.address, /*open=*/true, std::move(argv));
}

absl::Status CommandBackend::Close(const Grant& grant) {
  if (!split_status_.ok()) return split_status_;
  ASSIGN_OR_RETURN(std::vector<std::string> argv, Argv(StopCommand(grant.address.family()), grant));
  return sequencer_->Request(grant.address, /*open=*/false, std::move(argv));
}

bool CommandBackend::closes(IpAddress::Family family) const { return !StopCommand(family).empty(); }

bool CommandBackend::closes() const { return closes(IpAddress::Family::kV4) || closes(IpAddress::Family::kV6); }

}  // namespace sesame
