#include "agent/match/tick_clock.h"

#include <algorithm>
#include <limits>

namespace sesame {
namespace {

// Ticks stay below kRebaseAt: past it the epoch moves so that now is
// kRebaseKeep (12 days, more than any duration the matchers accept).
constexpr uint64_t kRebaseAt = uint64_t{1} << 31;
constexpr uint64_t kRebaseKeep = uint64_t{1} << 30;
// The epoch is this long before the first time seen.
constexpr int64_t kEpochMarginNs = int64_t{3600} * 1000 * 1000 * 1000;
// How far back a time may be and still count as reordering, not a step.
constexpr uint64_t kReorderMs = 5000;

}  // namespace

Tick TickClock::ToTick(absl::Time t, Tick* shift) {
  *shift = 0;
  const int64_t ns = absl::ToUnixNanos(t);
  if (!epoch_set_) {
    epoch_ns_ = ns - kEpochMarginNs;
    epoch_set_ = true;
  }
  uint64_t ms = ns <= epoch_ns_ ? 0 : (static_cast<uint64_t>(ns) - static_cast<uint64_t>(epoch_ns_)) / 1000000;
  if (ms < latest_) {
    if (latest_ - ms <= kReorderMs) return latest_;  // reordered or delayed: time stands still
    // The clock was stepped back: carry on from where matcher time was.
    epoch_ns_ -= static_cast<int64_t>(latest_ - ms) * 1000000;
    return latest_;
  }
  if (ms >= kRebaseAt) {
    const uint64_t moved = ms - kRebaseKeep;
    epoch_ns_ += static_cast<int64_t>(moved) * 1000000;
    ms -= moved;
    *shift = static_cast<Tick>(std::min<uint64_t>(moved, std::numeric_limits<Tick>::max()));
  }
  latest_ = static_cast<Tick>(ms);
  return latest_;
}

}  // namespace sesame
