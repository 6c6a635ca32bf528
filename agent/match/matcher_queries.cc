// KnockMatcher's read-only side: DoorSet::ToVector, event kind names, and
// the stage and ban of one source, for tests and diagnostics (never on the
// packet path).
#include "agent/match/matcher.h"

#include <vector>

#include "agent/match/internal/matcher_bits.h"

namespace sesame {

using matcher_internal::Bit;
using matcher_internal::kBanned;

std::vector<size_t> DoorSet::ToVector() const {
  std::vector<size_t> out;
  ForEach([&](size_t d) { out.push_back(d); });
  return out;
}

const char* MatcherEventKindName(MatcherEventKind kind) {
  switch (kind) {
    case MatcherEventKind::kStage:
      return "stage";
    case MatcherEventKind::kCompleted:
      return "completed";
    case MatcherEventKind::kTimeout:
      return "timeout";
    case MatcherEventKind::kReset:
      return "reset";
    case MatcherEventKind::kScannerFlagged:
      return "scanner flagged";
    case MatcherEventKind::kScannerReleased:
      return "scanner released";
  }
  return "?";
}

int KnockMatcher::StageOf(const IpAddress& source, size_t door) const {
  const SourceKey key = SourceKey::From(source);
  const int32_t index = table_->Find(key, table_->Hash(key));
  if (index == SourceTable::kNone || door >= kMaxDoors) return 0;
  const SourceEntry& e = table_->entry(index);
  for (int g = 0; g < kGroupsPerSource; ++g) {
    if (e.group_doors[g] & Bit(door)) return e.group_stage[g];
  }
  return 0;
}

bool KnockMatcher::IsBanned(const IpAddress& source) const {
  const SourceKey key = SourceKey::From(source);
  const int32_t index = table_->Find(key, table_->Hash(key));
  return index != SourceTable::kNone && (table_->entry(index).flags & kBanned) != 0;
}

}  // namespace sesame
