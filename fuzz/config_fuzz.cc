// Feeds arbitrary bytes to the knockd.conf parser (and to the sequence
// syntax one-time files share). Beyond "no crash, no leak, no UB", checks the
// parser's promises: an error names the file, and an accepted configuration
// holds only what config.h says it can.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "agent/config/config.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

void CheckKnocks(const std::vector<sesame::Knock>& knocks) {
  Require(!knocks.empty() && knocks.size() <= sesame::kMaxSequenceLength);
  for (const sesame::Knock& k : knocks) {
    Require(k.port != 0);
    Require(k.protocol == sesame::Protocol::kTcp || k.protocol == sesame::Protocol::kUdp);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<sesame::AgentConfig> config = sesame::ParseConfig(text, "fuzz.conf");
  if (!config.ok()) {
    Require(config.status().code() == absl::StatusCode::kInvalidArgument);
    Require(std::string_view(config.status().message().data(), config.status().message().size())
                .substr(0, 10) == "fuzz.conf:");
  } else {
    Require(!config->doors.empty() && config->doors.size() <= sesame::kMaxDoors);
    for (const sesame::DoorConfig& door : config->doors) {
      Require(!door.name.empty() && door.line > 0);
      Require(door.sequence.empty() != door.one_time_sequences.empty());
      if (!door.sequence.empty()) CheckKnocks(door.sequence);
      CheckKnocks(door.ports);
      Require((door.tcp_flags_set & door.tcp_flags_clear) == 0);
      Require(door.seq_timeout > absl::ZeroDuration());
      Require(door.cmd_timeout >= absl::ZeroDuration());
      Require(!door.hosts_allow_file.empty() && door.hosts_allow_file[0] == '/');
      if (door.backend == sesame::BackendKind::kCommand) {
        Require(!door.start_command.empty() || !door.start_command_6.empty());
      }
    }
  }

  absl::StatusOr<std::vector<sesame::Knock>> knocks = sesame::ParseSequence(text);
  if (knocks.ok()) CheckKnocks(*knocks);
  return 0;
}
