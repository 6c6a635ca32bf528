#include "agent/managed/backoff.h"

#include <algorithm>

namespace sesame {

absl::Duration Backoff::Ceiling(int attempt) const {
  absl::Duration c = min_;
  for (int i = 0; i < attempt && c < max_; ++i) c *= 2;
  return std::min(c, max_);
}

absl::Duration Backoff::Next() {
  const absl::Duration ceiling = Ceiling(attempts_);
  if (attempts_ < 64) ++attempts_;
  const int64_t hi = absl::ToInt64Microseconds(ceiling);
  const int64_t lo = hi / 2;
  if (hi <= lo) return ceiling;
  return absl::Microseconds(absl::Uniform<int64_t>(absl::IntervalClosedClosed, random_, lo, hi));
}

}  // namespace sesame
