// Configured commands (Start_Command, Stop_Command, ...). A command is run
// without a shell when it can be: its text is split into argv words the way
// sh would split it (quotes and backslashes only), then placeholders such as
// %IP% are substituted inside each word, so nothing a packet carries can
// add a word, a redirection or a second command. A command that uses what
// only a shell can do (a redirection, a pipe, a second command, `...`,
// $(...)) runs as knockd runs every command, through /bin/sh -c; then a
// placeholder is put into its text only when its value is plain text to a
// shell (SafeForShell): the values are sesame's own (the address as parsed
// and printed again, the door's name, ports, a number), never packet bytes.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace sesame {

// A configured command as the agent runs it.
struct CommandLine {
  // Run directly (execvp), placeholders substituted inside each word.
  std::vector<std::string> words;
  // Not empty: the text, run as /bin/sh -c; words is then empty.
  std::string shell_text;
  // What made it need a shell, for messages: "'>'", "$(...)".
  std::string shell_syntax;

  bool needs_shell() const { return !shell_text.empty(); }
  bool empty() const { return words.empty() && shell_text.empty(); }
};

// Splits `command` into words, or keeps it whole for /bin/sh -c when it uses
// shell syntax. Errors: an unbalanced quote, a trailing lone backslash, an
// empty command. A word starting with an unquoted # begins a comment, as in
// sh.
absl::StatusOr<CommandLine> ParseCommandLine(std::string_view command);

// Only the words: refuses shell syntax with an error that names it.
absl::StatusOr<std::vector<std::string>> SplitCommandLine(std::string_view command);

// Replaces each %NAME% in every word with its value; unknown %NAME% and a
// lone % are left as they are (knockd only knows %IP%).
using Substitutions = std::vector<std::pair<std::string, std::string>>;
std::vector<std::string> SubstituteWords(const std::vector<std::string>& words, const Substitutions& values);

// Text a shell reads as itself in any position, quoted or not: letters,
// digits and . , : _ / + = @ - only (an address, a port list, a number, a
// plain name).
bool SafeForShell(std::string_view value);

// The argv that runs `command` with `values` substituted: its words, or
// /bin/sh -c and its text. Fails, naming the placeholder, when a value that
// is not SafeForShell would go into a shell's text.
absl::StatusOr<std::vector<std::string>> CommandArgv(const CommandLine& command, const Substitutions& values);

}  // namespace sesame
