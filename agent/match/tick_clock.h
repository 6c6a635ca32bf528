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

#include <cstdint>

#include "absl/time/time.h"
#include "agent/match/source_table.h"

namespace sesame {

class TickClock {
 public:
  // The Tick for t. *shift is set (non-zero) when the epoch moved forward
  // by that many ticks: every stored Tick must be lowered by it (to 0 at
  // least).
  Tick ToTick(absl::Time t, Tick* shift);
  Tick latest() const { return latest_; }  // the latest Tick handed out

 private:
  bool epoch_set_ = false;
  int64_t epoch_ns_ = 0;
  Tick latest_ = 0;
};

}  // namespace sesame
