// Commands are run without a shell: the configured text is split into words
// the way sh would split it (quotes and backslashes only), then placeholders
// such as %IP% are substituted inside each word. Nothing a packet carries can
// add a word, a redirection or a second command.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace sesame {

// Splits `command` into argv words. Rejects what only a shell could do
// (;, &, |, <, >, `, $(, unbalanced quotes) with an error that names it, so a
// knockd.conf that relied on /bin/sh fails at --check-config, not at 3 a.m.
// A word starting with an unquoted # begins a comment, as in sh.
absl::StatusOr<std::vector<std::string>> SplitCommandLine(std::string_view command);

// Replaces each %NAME% in every word with its value; unknown %NAME% and a
// lone % are left as they are (knockd only knows %IP%).
using Substitutions = std::vector<std::pair<std::string, std::string>>;
std::vector<std::string> SubstituteWords(const std::vector<std::string>& words, const Substitutions& values);

}  // namespace sesame
