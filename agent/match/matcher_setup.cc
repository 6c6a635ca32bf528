// Creating a KnockMatcher and changing its doors: validation, the tables
// the packet path reads (Rebuild: door bits by shape, destination and
// length, the port bitmap and the knock index), the local addresses, and
// dropping progress when a door changes (a reload, a one-time sequence
// replaced or used up). None of this runs per packet.
#include "agent/match/matcher.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/match/internal/matcher_bits.h"

namespace sesame {

using matcher_internal::Bit;
using matcher_internal::KnockKey;
using matcher_internal::Mix;

namespace {

constexpr absl::Duration kMaxDuration = kMaxMatcherDuration;
constexpr int kMaxScanThreshold = 32;

Tick ToMillis(absl::Duration d) { return ToMatcherMillis(d); }

}  // namespace

absl::StatusOr<std::unique_ptr<KnockMatcher>> KnockMatcher::Create(const MatcherOptions& options,
                                                                   std::vector<MatcherDoor> doors) {
  if (options.max_sources == 0 || options.max_sources > kMaxSources) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_sources must be between 1 and ", kMaxSources, ", not ", options.max_sources));
  }
  if (options.scan_threshold > 0) {
    if (options.scan_window <= absl::ZeroDuration() || options.scan_window > kMaxDuration) {
      return absl::InvalidArgumentError("scan window must be positive and at most 10 days");
    }
    if (options.scan_ban < absl::ZeroDuration() || options.scan_ban > kMaxDuration) {
      return absl::InvalidArgumentError("scan ban must be between 0 and 10 days");
    }
  }
  std::unique_ptr<SourceTable> table = SourceTable::Create(options.max_sources, options.hash_seed);
  if (table == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("no memory for a table of ", options.max_sources, " sources"));
  }
  std::unique_ptr<KnockMatcher> matcher(new KnockMatcher(options, std::move(table)));
  if (absl::Status s = matcher->SetDoors(std::move(doors)); !s.ok()) return s;
  return matcher;
}

ScanSettings ScanSettings::From(const MatcherOptions& options) {
  ScanSettings s;
  if (options.scan_threshold > 0) {
    // A sketch bit per distinct wrong knock (collisions aside): asking for
    // threshold bits never flags a source below the threshold, and flags it
    // after about threshold + threshold^2 / 128 distinct knocks.
    s.threshold_bits = std::min(options.scan_threshold, kMaxScanThreshold);
    s.window = ToMillis(options.scan_window);
    s.ban = ToMillis(options.scan_ban);
  }
  if (options.hash_seed == 0) {
    absl::BitGen gen;  // keyed like the table, so a sweep cannot pick ports that share sketch bits
    s.key = absl::Uniform<uint64_t>(gen);
  } else {
    s.key = Mix(options.hash_seed ^ 0x5ca77e4ULL);
  }
  return s;
}

KnockMatcher::KnockMatcher(const MatcherOptions& options, std::unique_ptr<SourceTable> table)
    : options_(options), table_(std::move(table)), scan_(ScanSettings::From(options)) {}

absl::Status KnockMatcher::Validate(const MatcherDoor& door, size_t index) {
  const std::string name = door.name.empty() ? absl::StrCat("#", index) : absl::StrCat("'", door.name, "'");
  if (door.enabled && door.sequence.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("door ", name, ": an enabled door needs a knock sequence"));
  }
  if (door.sequence.size() > kMaxSequenceLength) {
    return absl::InvalidArgumentError(absl::StrCat("door ", name, ": sequence has ", door.sequence.size(),
                                                   " knocks, at most ", kMaxSequenceLength, " are allowed"));
  }
  for (const Knock& k : door.sequence) {
    if (k.protocol != Protocol::kTcp && k.protocol != Protocol::kUdp) {
      return absl::InvalidArgumentError(
          absl::StrCat("door ", name, ": knock on port ", k.port, " has a protocol other than tcp or udp"));
    }
  }
  if (door.seq_timeout < absl::Milliseconds(1) || door.seq_timeout > kMaxDuration) {
    return absl::InvalidArgumentError(absl::StrCat(
        "door ", name, ": seq_timeout must be between 1 ms and 10 days, not ", absl::FormatDuration(door.seq_timeout)));
  }
  if ((door.tcp_flags_set & door.tcp_flags_clear) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("door %s: tcp flags 0x%02x are both required and forbidden", name,
                                                      door.tcp_flags_set & door.tcp_flags_clear));
  }
  return absl::OkStatus();
}

absl::Status KnockMatcher::SetDoors(std::vector<MatcherDoor> doors) {
  if (doors.size() > kMaxDoors) {
    return absl::InvalidArgumentError(absl::StrCat(doors.size(), " doors, at most ", kMaxDoors, " are allowed"));
  }
  for (size_t i = 0; i < doors.size(); ++i) {
    if (absl::Status s = Validate(doors[i], i); !s.ok()) return s;
  }
  doors_ = std::move(doors);
  Rebuild();
  DropProgress(~uint64_t{0});
  return absl::OkStatus();
}

absl::Status KnockMatcher::SetSequence(size_t door, std::vector<Knock> sequence) {
  if (door >= doors_.size()) return absl::OutOfRangeError(absl::StrCat("no door ", door));
  MatcherDoor changed = doors_[door];
  changed.sequence = std::move(sequence);
  if (absl::Status s = Validate(changed, door); !s.ok()) return s;
  doors_[door] = std::move(changed);
  Rebuild();
  DropProgress(Bit(door));
  return absl::OkStatus();
}

absl::Status KnockMatcher::SetDoorEnabled(size_t door, bool enabled) {
  if (door >= doors_.size()) return absl::OutOfRangeError(absl::StrCat("no door ", door));
  MatcherDoor changed = doors_[door];
  changed.enabled = enabled;
  if (absl::Status s = Validate(changed, door); !s.ok()) return s;
  doors_[door].enabled = enabled;
  Rebuild();
  if (!enabled) DropProgress(Bit(door));
  return absl::OkStatus();
}

void KnockMatcher::SetLocalAddresses(const std::vector<IpAddress>& addresses) {
  any_destination_ = false;
  local_.clear();
  local_.insert(addresses.begin(), addresses.end());
  dst_cache_valid_ = false;
}

void KnockMatcher::AcceptAnyDestination() {
  any_destination_ = true;
  local_.clear();
  dst_cache_valid_ = false;
}

void KnockMatcher::Rebuild() {
  enabled_ = strict_ = untargeted_ = udp_shape_ = 0;
  single_ = 0;
  std::fill(std::begin(length_doors_), std::end(length_doors_), 0);
  targets_.clear();
  std::fill(std::begin(tcp_shape_), std::end(tcp_shape_), 0);
  in_sequences_.clear();
  min_timeout_ = std::numeric_limits<Tick>::max();
  door_state_.assign(doors_.size(), DoorState{});

  absl::flat_hash_map<uint32_t, IndexSlot> index;
  for (size_t i = 0; i < doors_.size(); ++i) {
    const MatcherDoor& door = doors_[i];
    DoorState& state = door_state_[i];
    state.length = static_cast<uint32_t>(door.sequence.size());
    for (size_t k = 0; k < door.sequence.size(); ++k) {
      state.knocks[k] = KnockKey(door.sequence[k].protocol, door.sequence[k].port);
    }
    state.timeout = ToMillis(door.seq_timeout);
    state.strict = door.reset_mode == ResetMode::kStrict;
    if (!door.enabled || door.sequence.empty()) continue;

    const uint64_t bit = Bit(i);
    enabled_ |= bit;
    if (state.strict) strict_ |= bit;
    if (state.length == 1) single_ |= bit;
    length_doors_[state.length] |= bit;
    min_timeout_ = std::min(min_timeout_, state.timeout);
    if (door.target.has_value()) {
      auto it = std::find_if(targets_.begin(), targets_.end(), [&](const auto& t) { return t.first == *door.target; });
      if (it == targets_.end()) {
        targets_.emplace_back(*door.target, bit);
      } else {
        it->second |= bit;
      }
    } else {
      untargeted_ |= bit;
    }
    udp_shape_ |= bit;  // UDP knocks carry no flags
    for (int flags = 0; flags < 256; ++flags) {
      if ((flags & door.tcp_flags_set) == door.tcp_flags_set && (flags & door.tcp_flags_clear) == 0) {
        tcp_shape_[flags] |= bit;
      }
    }
    for (size_t k = 0; k < door.sequence.size(); ++k) {
      const Knock& knock = door.sequence[k];
      in_sequences_.insert(KnockIndex(knock.protocol, knock.port));
      IndexSlot& slot = index[state.knocks[k]];
      slot.key = state.knocks[k];
      slot.in_sequence |= bit;
      if (k == 0) slot.first |= bit;
    }
  }
  if (min_timeout_ == std::numeric_limits<Tick>::max()) min_timeout_ = 0;

  size_t size = 16;
  while (size < 2 * index.size()) size *= 2;
  index_.assign(size, IndexSlot{});
  for (const auto& [key, slot] : index) {
    size_t i = Mix(key) & (size - 1);
    while (index_[i].key != 0) i = (i + 1) & (size - 1);
    index_[i] = slot;
  }
  dst_cache_valid_ = false;
}

void KnockMatcher::DropProgress(uint64_t doors) {
  table_->ForEachOccupied([&](int32_t index) {
    if (table_->rank(index) == 0) return;  // nothing in progress
    SourceEntry& e = table_->entry(index);
    for (int g = 0; g < kGroupsPerSource; ++g) e.group_doors[g] &= ~doors;
    table_->set_rank(index, RankOf(e, clock_.latest()));
  });
}

}  // namespace sesame
