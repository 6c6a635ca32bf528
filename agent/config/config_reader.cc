// The parser's reading of the file itself: lines, comments, [section]
// headers and KEY = VALUE, each key handed to the handler of its group (the
// rules are listed at the top of config.cc). FILE:LINE errors are made here.
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/config/internal/config_parser.h"
#include "agent/config/internal/config_text.h"
#include "common/status_macros.h"

namespace sesame::config_internal {
namespace {

constexpr size_t kMaxDoorNameLength = 127;  // knockd keeps 127 bytes of a name

}  // namespace

const KeyName* FindKey(std::span<const KeyName> table, std::string_view key) {
  for (const KeyName& k : table) {
    if (EqualsIgnoreCase(key, k.name)) return &k;
  }
  return nullptr;
}

std::string KeyList(std::span<const KeyName> table) {
  std::vector<std::string> names;
  for (const KeyName& k : table) names.emplace_back(k.name);
  return absl::StrJoin(names, ", ");
}

absl::Status Parser::Error(int line, std::string_view message) const {
  return absl::InvalidArgumentError(absl::StrCat(file_, ":", line, ": ", AV(message)));
}

absl::StatusOr<AgentConfig> Parser::Parse(std::string_view text) {
  // A UTF-8 byte order mark left by an editor is not part of the first line.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    ++line_;
    RETURN_IF_ERROR(ParseLine(text.substr(pos, end - pos)));
    pos = end + 1;
  }
  RETURN_IF_ERROR(Finish());
  AgentConfig config;
  config.options = std::move(options_);
  config.doors.reserve(doors_.size());
  for (DoorState& d : doors_) config.doors.push_back(std::move(d.config));
  return config;
}

absl::Status Parser::ParseLine(std::string_view raw) {
  if (raw.find('\0') != std::string_view::npos) return Error(line_, "line contains a NUL byte; expected text");
  const std::string_view line = Trim(raw);
  if (line.empty() || line.front() == '#') return absl::OkStatus();
  if (line.front() == '[') return StartSection(line);

  const size_t eq = line.find('=');
  const std::string_view key_text = Trim(line.substr(0, eq));
  if (section_ == Section::kNone) {
    return Error(line_, absl::StrCat(Quoted(key_text),
                                     " is outside any section; expected [options] or a [door name] header first"));
  }
  if (eq == std::string_view::npos) {
    // knockd: the only directive without a value, accepted in any section.
    if (EqualsIgnoreCase(key_text, "UseSyslog")) {
      options_.use_syslog = true;
      return absl::OkStatus();
    }
    return Error(line_, absl::StrCat("expected KEY = VALUE, got ", Quoted(line)));
  }
  if (key_text.empty()) return Error(line_, "missing key before '='; expected KEY = VALUE");
  const std::string_view value = Trim(line.substr(eq + 1));

  // A key of the other kind of section gets a message saying where it goes.
  if (section_ == Section::kOptions) {
    if (const KeyName* key = FindKey(OptionKeys(), key_text)) return OptionKey(*key, value);
    if (const KeyName* key = FindKey(ManagedOptionKeys(), key_text)) return ManagedOptionKey(*key, value);
    const KeyName* key = FindKey(DoorKeys(), key_text);
    if (key == nullptr) key = FindKey(ManagedDoorKeys(), key_text);
    if (key != nullptr) return Error(line_, absl::StrCat(key->name, " belongs in a door section, not in [options]"));
    return Error(line_, absl::StrCat("unknown key ", Quoted(key_text), " in [options]; expected one of ",
                                     OptionKeyList()));
  }
  const std::string& door = doors_.back().config.name;
  if (const KeyName* key = FindKey(DoorKeys(), key_text)) return DoorKey(*key, value);
  if (const KeyName* key = FindKey(ManagedDoorKeys(), key_text)) return ManagedDoorKey(*key, value);
  const KeyName* key = FindKey(OptionKeys(), key_text);
  if (key == nullptr) key = FindKey(ManagedOptionKeys(), key_text);
  if (key != nullptr) return Error(line_, absl::StrCat(key->name, " belongs in [options], not in door [", door, "]"));
  return Error(line_, absl::StrCat("unknown key ", Quoted(key_text), " in door [", door, "]; expected one of ",
                                   DoorKeyList()));
}

std::string Parser::OptionKeyList() const {
  if (!options_.managed.enabled()) return KeyList(OptionKeys());
  return absl::StrCat(KeyList(OptionKeys()), ", ", KeyList(ManagedOptionKeys()));
}

std::string Parser::DoorKeyList() const {
  if (!options_.managed.enabled()) return KeyList(DoorKeys());
  return absl::StrCat(KeyList(DoorKeys()), ", ", KeyList(ManagedDoorKeys()));
}

absl::Status Parser::StartSection(std::string_view header) {
  if (header.size() < 2 || header.back() != ']') {
    return Error(line_, absl::StrCat("expected a section header [name], got ", Quoted(header)));
  }
  const std::string_view name = Trim(header.substr(1, header.size() - 2));
  if (name.empty()) return Error(line_, "empty section name; expected [options] or [door name]");
  if (EqualsIgnoreCase(name, "options")) {
    section_ = Section::kOptions;
    return absl::OkStatus();
  }
  if (!IsPrintable(name)) return Error(line_, "door name contains a control character");
  if (name.size() > kMaxDoorNameLength) {
    return Error(line_, absl::StrCat("door name is ", name.size(), " bytes long; at most ", kMaxDoorNameLength,
                                     " are allowed"));
  }
  for (const DoorState& d : doors_) {
    // Case-insensitive: door names become audit keys and %DOOR%.
    if (EqualsIgnoreCase(d.config.name, name)) {
      return Error(line_, absl::StrCat("duplicate door name [", AV(name), "]; [", d.config.name,
                                       "] is already defined at line ", d.config.line));
    }
  }
  if (doors_.size() >= kMaxDoors) {
    return Error(line_, absl::StrCat("too many doors: at most ", kMaxDoors, " are allowed"));
  }
  DoorState door;
  door.config.name = std::string(name);
  door.config.line = line_;
  doors_.push_back(std::move(door));
  section_ = Section::kDoor;
  return absl::OkStatus();
}

}  // namespace sesame::config_internal
