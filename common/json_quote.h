// Text as a JSON string: for the few places that write JSON by hand (the
// daemons' JSON log, sesamectl's output).
#pragma once

#include <string>
#include <string_view>

namespace sesame {

// Quotes included: '"' and '\\' escaped, control characters as \uXXXX
// (\n, \t, ... by name); other bytes as they are.
std::string JsonQuote(std::string_view text);

}  // namespace sesame
