#include "agent/config/command_line.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace sesame {

absl::StatusOr<std::vector<std::string>> SplitCommandLine(std::string_view command) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  enum { kPlain, kSingle, kDouble } state = kPlain;
  auto shell_only = [](const char* what) {
    return absl::InvalidArgumentError(
        absl::StrCat("command uses shell syntax (", what,
                     "); sesame runs commands without a shell: put the pipeline in a script and call that"));
  };
  for (size_t i = 0; i < command.size(); ++i) {
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
          return shell_only(c == '`' ? "`...`" : "$(...)");
        } else {
          word.push_back(c);
        }
        continue;
      case kPlain:
        break;
    }
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    if (c == '#' && !in_word) break;  // a comment, as sh reads it: the rest of the line
    switch (c) {
      case '\'': state = kSingle; in_word = true; break;
      case '"': state = kDouble; in_word = true; break;
      case '\\':
        if (i + 1 >= command.size()) return absl::InvalidArgumentError("command ends with a lone backslash");
        word.push_back(command[++i]);
        in_word = true;
        break;
      case ';': return shell_only("';'");
      case '&': return shell_only("'&'");
      case '|': return shell_only("'|'");
      case '<': return shell_only("'<'");
      case '>': return shell_only("'>'");
      case '`': return shell_only("`...`");
      case '$':
        if (i + 1 < command.size() && (command[i + 1] == '(' || command[i + 1] == '{')) return shell_only("$(...)");
        word.push_back(c);
        in_word = true;
        break;
      default:
        word.push_back(c);
        in_word = true;
    }
  }
  if (state != kPlain) return absl::InvalidArgumentError("command has an unbalanced quote");
  if (in_word) words.push_back(std::move(word));
  if (words.empty()) return absl::InvalidArgumentError("command is empty");
  return words;
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

}  // namespace sesame
