// Time source. Everything that reads the time takes a Clock so that tests
// (and --pcap replays, which run on the capture's timestamps) control it.
#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sesame {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  static RealClock& Instance() {
    static RealClock clock;
    return clock;
  }
};

// A clock that only moves when told to: tests and capture-file replay.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::UnixEpoch()) : now_(start) {}
  absl::Time Now() const override { return now_; }
  void Set(absl::Time t) { now_ = t; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_;
};

}  // namespace sesame
