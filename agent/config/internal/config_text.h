// Private to agent/config: the small string tools the knockd.conf parser is
// built from. Everything works on std::string_view and allocates nothing,
// except Quoted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"

namespace sesame::config_internal {

// absl::string_view is not std::string_view in Debian's Abseil.
inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// The C locale's isspace, without the locale.
bool IsSpace(char c);

// `s` without leading and trailing whitespace.
std::string_view Trim(std::string_view s);

// ASCII case-insensitive equality (keys, section "options", enum values).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// The pieces between each `sep`, untrimmed: "a,,b" gives "a", "", "b"; an
// empty `s` gives one empty piece.
std::vector<std::string_view> SplitOn(std::string_view s, char sep);

// At least one character, and all of them 0-9.
bool AllDigits(std::string_view s);

// Digits only, at most 9 of them (no overflow possible).
std::optional<int64_t> ParseDigits(std::string_view s);

// `s` in double quotes, for messages.
std::string Quoted(std::string_view s);

// No control character (below 0x20, or DEL).
bool IsPrintable(std::string_view s);

}  // namespace sesame::config_internal
