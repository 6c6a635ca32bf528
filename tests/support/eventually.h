// Polls a condition until it holds or a generous deadline passes (tests run
// on a loaded 2-core machine: a deadline is a bound, never a measurement).
#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sesame::testing {

inline constexpr absl::Duration kEventuallyPatience = absl::Seconds(30);

template <typename F>
bool Eventually(F&& condition, absl::Duration patience = kEventuallyPatience,
                absl::Duration poll = absl::Milliseconds(20)) {
  const absl::Time deadline = absl::Now() + patience;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(poll);
  }
  return condition();
}

}  // namespace sesame::testing
