// Matcher time: a Tick is milliseconds since an epoch set by the first time
// seen, so that per-source state holds 32-bit times.
//
// It never runs backwards: a time up to 5 s older than the latest seen
// (packets from another interface, a capture delivered late next to the
// periodic Expire's clock) counts as the latest; further back, the clock
// was stepped back, and matcher time carries on from the latest. Long
// before a Tick could overflow, the epoch moves forward and the owner
// lowers every Tick it stores by the shift ToTick reports.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/time/time.h"
#include "agent/match/source_table.h"

namespace sesame {

class TickClock {
 public:
  // The Tick for t. *shift is set (non-zero) when the epoch moved forward
  // by that many ticks: every stored Tick must be lowered by it (to 0 at
  // least).
  // Inline: the packet path calls it for every knock, and the build has no
  // LTO.
  Tick ToTick(absl::Time t, Tick* shift) {
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
  Tick latest() const { return latest_; }  // the latest Tick handed out

 private:
  // Ticks stay below kRebaseAt: past it the epoch moves so that now is
  // kRebaseKeep (12 days, more than any duration the matchers accept).
  static constexpr uint64_t kRebaseAt = uint64_t{1} << 31;
  static constexpr uint64_t kRebaseKeep = uint64_t{1} << 30;
  // The epoch is this long before the first time seen.
  static constexpr int64_t kEpochMarginNs = int64_t{3600} * 1000 * 1000 * 1000;
  // How far back a time may be and still count as reordering, not a step.
  static constexpr uint64_t kReorderMs = 5000;

  bool epoch_set_ = false;
  int64_t epoch_ns_ = 0;
  Tick latest_ = 0;
};

}  // namespace sesame
