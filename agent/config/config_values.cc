// The syntax of values: knock sequences (ParseSequence, public), durations,
// whole numbers, reset modes, absolute paths, commands and backend names.
// The Parser's readers add "FILE:LINE: Key: " to what is wrong.
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/config/command_line.h"
#include "agent/config/internal/config_parser.h"
#include "agent/config/internal/config_text.h"
#include "common/status_macros.h"

namespace sesame {
namespace config_internal {
namespace {

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

}  // namespace

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
  absl::StatusOr<CommandLine> command = ParseCommandLine(value);
  if (!command.ok()) return Error(line_, absl::StrCat(key.name, ": ", command.status().message()));
  return std::string(value);
}

}  // namespace config_internal

absl::StatusOr<std::vector<Knock>> ParseSequence(std::string_view text) {
  using config_internal::Quoted;
  using config_internal::SplitOn;
  using config_internal::Trim;
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
    ASSIGN_OR_RETURN(Knock knock, config_internal::ParseKnock(element));
    knocks.push_back(knock);
  }
  return knocks;
}

}  // namespace sesame
