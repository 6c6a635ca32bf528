#include "agent/config_check.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/config/config.h"
#include "agent/grants/backends/backend_factory.h"
#include "agent/grants/backends/command_backend.h"
#include "agent/grants/process_runner.h"
#include "agent/match/one_time_sequences.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

// "CONFIG:LINE: KEY: what is wrong with the file it names".
absl::Status AtKey(const AgentConfig& config, int line, const char* key, const absl::Status& error) {
  if (error.ok()) return error;
  return absl::Status(error.code(), absl::StrCat(config.path, ":", line, ": ", key, ": ", error.message()));
}

// A file the agent reads if it is there and creates otherwise.
absl::Status CheckIfPresent(const std::string& path, size_t max_bytes) {
  const absl::Status s = CheckSmallRegularFile(path, max_bytes);
  return absl::IsNotFound(s) ? absl::OkStatus() : s;
}

// Every file a configuration names that the agent reads (or replaces): a
// regular file within its limit. Log, pid and metrics files are only
// written (appended or replaced), so they are not checked here.
absl::Status CheckNamedFiles(const AgentConfig& config) {
  for (const DoorConfig& door : config.doors) {
    if (!door.one_time_sequences.empty()) {
      RETURN_IF_ERROR(AtKey(config, door.one_time_sequences_line, "One_Time_Sequences",
                            OneTimeSequences::Check(door.one_time_sequences)));
    }
    if (door.backend != BackendKind::kHostsAllow) continue;
    const std::string file = HostsAllowFileOf(config, door);
    // A key not written: its default, reported at the door's section.
    const bool file_given = door.hosts_allow_file_line != 0;
    const int file_line = file_given ? door.hosts_allow_file_line : door.line;
    const char* file_key = file_given ? "HostsAllow_File" : "HostsAllow_File (default)";
    if (door.hosts_allow_form == HostsAllowForm::kInline) {
      // The table itself: read whole and rewritten at each grant.
      RETURN_IF_ERROR(AtKey(config, file_line, file_key, CheckIfPresent(file, kMaxHostsAllowTableBytes)));
    } else {
      // The include file is only written, but replacing a directory or a
      // device there would fail at every grant.
      RETURN_IF_ERROR(AtKey(config, file_line, file_key, CheckIfPresent(file, SIZE_MAX)));
      const bool table_given = door.hosts_allow_table_line != 0;
      RETURN_IF_ERROR(AtKey(config, table_given ? door.hosts_allow_table_line : door.line,
                            table_given ? "HostsAllow_Table" : "HostsAllow_Table (default)",
                            CheckIfPresent(door.hosts_allow_table, kMaxHostsAllowTableBytes)));
    }
  }
  const ManagedOptions& managed = config.options.managed;
  if (managed.enabled()) {
    RETURN_IF_ERROR(
        AtKey(config, managed.ca_cert_line, "CaCert", CheckSmallRegularFile(managed.ca_cert, kMaxTlsFileBytes)));
    RETURN_IF_ERROR(AtKey(config, managed.cert_line, "Cert", CheckSmallRegularFile(managed.cert, kMaxTlsFileBytes)));
    RETURN_IF_ERROR(AtKey(config, managed.key_line, "Key", CheckSmallRegularFile(managed.key, kMaxTlsFileBytes)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckConfigFile(const std::string& path, std::vector<std::string>* notices) {
  ASSIGN_OR_RETURN(const AgentConfig config, LoadConfig(path));
  RETURN_IF_ERROR(CheckNamedFiles(config));
  if (notices != nullptr) {
    for (const DoorConfig& door : config.doors) {
      if (door.backend != BackendKind::kCommand) continue;
      if (std::optional<std::string> notice = CommandBackend::ShellNotice(door)) {
        notices->push_back(absl::StrCat(config.path, ":", door.line, ": notice: ", *notice));
      }
    }
  }
  // Builds the backends without preparing them: it checks what can be
  // checked without touching the firewall.
  ProcessRunner runner(ProcessRunnerOptions{});
  return BackendSet::Create(config, runner).status();
}

}  // namespace sesame
