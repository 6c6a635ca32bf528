#include "agent/config/command_line.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace sesame {

absl::StatusOr<CommandLine> ParseCommandLine(std::string_view command) {
  CommandLine out;
  std::string word;
  bool in_word = false;
  bool comment = false;
  enum { kPlain, kSingle, kDouble } state = kPlain;
  // The first thing only a shell can do; scanning goes on to check quotes.
  auto shell_only = [&](const char* what) {
    if (out.shell_syntax.empty()) out.shell_syntax = what;
  };
  for (size_t i = 0; i < command.size() && !comment; ++i) {
    const char c = command[i];
    switch (state) {
      case kSingle:
        if (c == '\'') state = kPlain;
        else word.push_back(c);
        continue;
      case kDouble:
        if (c == '"') {
          state = kPlain;
        } else if (c == '\\' && i + 1 < command.size() &&
                   (command[i + 1] == '"' || command[i + 1] == '\\' || command[i + 1] == '$' || command[i + 1] == '`')) {
          word.push_back(command[++i]);
        } else if (c == '`' || (c == '$' && i + 1 < command.size() && command[i + 1] == '(')) {
          shell_only(c == '`' ? "`...`" : "$(...)");
        } else {
          word.push_back(c);
        }
        continue;
      case kPlain:
        break;
    }
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) out.words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    switch (c) {
      case '#':
        if (!in_word) comment = true;  // as sh reads it: the rest of the line
        else word.push_back(c);
        break;
      case '\'': state = kSingle; in_word = true; break;
      case '"': state = kDouble; in_word = true; break;
      case '\\':
        if (i + 1 >= command.size()) return absl::InvalidArgumentError("command ends with a lone backslash");
        word.push_back(command[++i]);
        in_word = true;
        break;
      case ';':
      case '&':
      case '|':
      case '<':
      case '>': {
        // An operator ends a word, as in sh.
        static constexpr const char* kNames[] = {"';'", "'&'", "'|'", "'<'", "'>'"};
        shell_only(kNames[std::string_view(";&|<>").find(c)]);
        if (in_word) out.words.push_back(std::move(word));
        word.clear();
        in_word = false;
        break;
      }
      case '`': shell_only("`...`"); break;
      case '$':
        if (i + 1 < command.size() && (command[i + 1] == '(' || command[i + 1] == '{')) shell_only("$(...)");
        word.push_back(c);
        in_word = true;
        break;
      default:
        word.push_back(c);
        in_word = true;
    }
  }
  if (state != kPlain) return absl::InvalidArgumentError("command has an unbalanced quote");
  if (in_word) out.words.push_back(std::move(word));
  if (out.words.empty()) return absl::InvalidArgumentError("command is empty");
  if (!out.shell_syntax.empty()) {
    out.words.clear();
    out.shell_text = std::string(command);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> SplitCommandLine(std::string_view command) {
  absl::StatusOr<CommandLine> parsed = ParseCommandLine(command);
  if (!parsed.ok()) return parsed.status();
  if (parsed->needs_shell()) {
    return absl::InvalidArgumentError(absl::StrCat("command uses shell syntax (", parsed->shell_syntax,
                                                   "); here commands run without a shell"));
  }
  return std::move(parsed->words);
}

std::vector<std::string> SubstituteWords(const std::vector<std::string>& words, const Substitutions& values) {
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(values.size());
  for (const auto& [name, value] : values) pairs.emplace_back(absl::StrCat("%", name, "%"), value);
  std::vector<std::string> out;
  out.reserve(words.size());
  for (const std::string& w : words) out.push_back(absl::StrReplaceAll(w, pairs));
  return out;
}

bool SafeForShell(std::string_view value) {
  for (const char c : value) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                       c == ',' || c == ':' || c == '_' || c == '/' || c == '+' || c == '=' || c == '@' || c == '-';
    if (!plain) return false;
  }
  return true;
}

absl::StatusOr<std::vector<std::string>> CommandArgv(const CommandLine& command, const Substitutions& values) {
  if (!command.needs_shell()) return SubstituteWords(command.words, values);
  for (const auto& [name, value] : values) {
    const std::string placeholder = absl::StrCat("%", name, "%");
    if (absl::StrContains(command.shell_text, placeholder) && !SafeForShell(value)) {
      return absl::InvalidArgumentError(absl::StrCat(placeholder, " is \"", value,
                                                     "\", which a shell would not read as plain text: not run"));
    }
  }
  return std::vector<std::string>{"/bin/sh", "-c", SubstituteWords({command.shell_text}, values)[0]};
}

}  // namespace sesame
