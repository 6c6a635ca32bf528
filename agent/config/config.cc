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
//
// This file holds the entry points; the parser itself is
// internal/config_parser.h, whose header lists the files that implement it.
#include "agent/config/config.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/config/internal/config_parser.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace sesame {

absl::StatusOr<AgentConfig> ParseConfig(std::string_view text, std::string_view file_name) {
  config_internal::Parser parser(file_name);
  ASSIGN_OR_RETURN(AgentConfig config, parser.Parse(text));
  config.path = std::string(file_name);
  return config;
}

absl::StatusOr<AgentConfig> LoadConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSmallRegularFile(path, kMaxConfigFileBytes);
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
