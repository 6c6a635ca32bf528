// Capped exponential backoff with jitter, for reconnecting to the controller
// (after Envoy's JitteredExponentialBackOffStrategy). The n-th consecutive
// failure waits a random time in [c/2, c], where c = min * 2^n capped at
// max: a fleet of agents cut off together does not come back in lockstep.
// Reset() after a session proved healthy (Envoy resets on the first message
// received, not on connect, so a server that accepts and drops at once is
// still backed off).
#pragma once

#include <cstdint>

#include "absl/random/random.h"
#include "absl/time/time.h"

namespace sesame {

class Backoff {
 public:
  // min > 0, max >= min.
  Backoff(absl::Duration min, absl::Duration max) : min_(min), max_(max) {}

  absl::Duration Next();
  void Reset() { attempts_ = 0; }
  int attempts() const { return attempts_; }

  // The cap for the n-th attempt, without jitter (for tests).
  absl::Duration Ceiling(int attempt) const;

 private:
  absl::Duration min_;
  absl::Duration max_;
  int attempts_ = 0;
  absl::BitGen random_;
};

}  // namespace sesame
