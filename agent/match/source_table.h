// The matcher's per-source state: a fixed-capacity, set-associative table
// keyed by source address, allocated once, with an eviction policy that keeps
// the knockers who got furthest.
//
// Layout. Entries live in buckets of kWays. A bucket's metadata (a 16-bit tag,
// an activity stamp and an eviction rank per way) fills one cache line; each
// entry fills another. A lookup reads the metadata line, compares tags, and
// reads an entry line only on a tag match, so a miss (the common case under a
// spoofed flood) costs one cache line, an insert two.
//
// Hashing. The bucket and the tag come from a keyed hash of the address
// (128-bit multiply-fold rounds over per-process random keys). It is not a
// MAC, but an attacker has no way to observe bucket placement, so without the
// keys it cannot aim a flood at the bucket of a chosen victim.
//
// Eviction. Each way carries a rank (the matcher stores the furthest stage the
// source reached, 1 for a banned scanner, 0 when nothing is in progress). An
// insert takes an empty way, else the way with the lowest rank, the least
// recently used breaking ties, but never a way ranked above the caller's
// limit: a flood of new sources (rank 1) can only displace each other and
// idle entries, never a source that is two or more knocks into a sequence.
// Recency is a stamp from a counter of table activity (inserts and touches),
// not a time: it orders entries exactly even when a flood puts thousands of
// packets in one millisecond, and whatever the capture clock does.
//
// Time, in the entries, is a Tick: milliseconds since an epoch the owner
// chooses, so that an entry holds 32-bit times; the owner moves the epoch
// forward long before a Tick could overflow.
//
// The entry type is the owner's (KnockMatcher's SourceEntry below; the
// managed matcher has its own): one cache line whose key_lo, key_hi and
// family fields belong to the table.
//
// Single-threaded: the owner serialises every call. Nothing here allocates
// after construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/ip_address.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sesame {

using Tick = uint32_t;

// A source address as the table stores it: the 16 address bytes (IPv4 in the
// first 4, the rest zero) and the family, so IPv4 a.b.c.d and the IPv6 address
// with the same leading bytes never collide.
struct SourceKey {
  uint64_t lo = 0;
  uint64_t hi = 0;
  uint8_t family = 0;

  static SourceKey From(const IpAddress& address) {
    SourceKey key;
    std::memcpy(&key.lo, address.bytes(), 8);
    if (address.is_v6()) std::memcpy(&key.hi, address.bytes() + 8, 8);
    key.family = static_cast<uint8_t>(address.family());
    return key;
  }
  IpAddress ToAddress() const;
};

inline constexpr int kGroupsPerSource = 2;

// One source's state, one cache line. The table owns the key fields; the rest
// is the matcher's (matcher.h explains the groups, match/internal/
// matcher_bits.h the flags) and is zeroed on insert.
struct alignas(64) SourceEntry {
  uint64_t key_lo;
  uint64_t key_hi;
  // Progress groups: doors (a bit mask) that started on the same knock and
  // have seen the same knocks since, hence share the start and the stage.
  uint64_t group_doors[kGroupsPerSource];
  uint64_t scan_ports;  // sketch of the distinct wrong knocks in the window
  Tick group_start[kGroupsPerSource];
  Tick scan_mark;            // start of the scan window, or end of the ban
  uint32_t ignored_packets;  // dropped while banned
  uint8_t group_stage[kGroupsPerSource];
  uint8_t family;
  uint8_t flags;
  // Knocks to ports of no sequence seen by the group's compat doors (the
  // first is forgiven, as knockd does; a second resets them: a sweep).
  uint8_t group_strays[kGroupsPerSource];
};

namespace source_table_internal {
// Zeroed memory of `bytes` (a multiple of `alignment`), on transparent huge
// pages when it is large; adds what it took to *allocated. Null on failure.
void* AllocateZeroed(size_t bytes, size_t alignment, size_t* allocated);
void FreeAligned(void* p);
void HashKeys(uint64_t seed, uint64_t keys[4]);  // seed 0: from the OS's entropy
}  // namespace source_table_internal

template <typename Entry>
class BasicSourceTable {
  static_assert(sizeof(Entry) == 64 && alignof(Entry) == 64, "one cache line per entry");

 public:
  static constexpr int kWays = 8;
  static constexpr int32_t kNone = -1;

  struct Hashed {
    uint32_t bucket;
    uint16_t tag;  // never 0: 0 marks an empty way
  };

  // capacity is rounded up to a multiple of kWays. seed 0 draws the hash keys
  // from the OS's random source. Null when the memory cannot be had.
  static std::unique_ptr<BasicSourceTable> Create(size_t capacity, uint64_t seed) {
    const size_t num_buckets = capacity < kWays ? 1 : (capacity + kWays - 1) / kWays;
    std::unique_ptr<BasicSourceTable> table(new BasicSourceTable(num_buckets, seed));
    if (table->buckets_ == nullptr || table->entries_ == nullptr) return nullptr;
    return table;
  }
  BasicSourceTable(const BasicSourceTable&) = delete;
  BasicSourceTable& operator=(const BasicSourceTable&) = delete;

  size_t capacity() const { return num_buckets_ * kWays; }
  size_t occupancy() const { return occupancy_; }
  // Everything allocated, once, at construction.
  size_t MemoryBytes() const { return allocated_bytes_; }
  static constexpr size_t BytesPerEntry() { return sizeof(Entry) + sizeof(Bucket) / kWays; }

  Hashed Hash(const SourceKey& key) const {
    const uint64_t h = Fold(Fold(key.lo ^ keys_[0], key.hi ^ keys_[1]) ^ keys_[2], key.family ^ keys_[3]);
    Hashed out;
    out.bucket = static_cast<uint32_t>((static_cast<uint64_t>(static_cast<uint32_t>(h)) * num_buckets_) >> 32);
    out.tag = static_cast<uint16_t>(h >> 48);
    if (out.tag == 0) out.tag = 1;
    return out;
  }

  // For batches: fetch a bucket's metadata ahead of use, then (once it has
  // arrived) the entry a lookup or an insert of that key will most likely
  // touch: the tag match, else the way an insert would take.
  void Prefetch(const Hashed& h) const { __builtin_prefetch(&buckets_[h.bucket]); }
  void PrefetchEntry(const Hashed& h, uint8_t max_victim_rank) const {
    const Bucket& b = buckets_[h.bucket];
    const uint32_t m = TagMatches(b, h.tag);
    const int way = m != 0 ? __builtin_ctz(m) >> 1 : ChooseWay(b, max_victim_rank);
    if (way >= 0) __builtin_prefetch(&entries_[h.bucket * kWays + way], 1);
  }

  // The entry index holding key, or kNone.
  int32_t Find(const SourceKey& key, const Hashed& h) const {
    const Bucket& b = buckets_[h.bucket];
    for (uint32_t m = TagMatches(b, h.tag); m != 0; m &= m - 1) {
      const int way = __builtin_ctz(m) >> 1;
      const int32_t index = static_cast<int32_t>(h.bucket * kWays + way);
      const Entry& e = entries_[index];
      if (e.key_lo == key.lo && e.key_hi == key.hi && e.family == key.family) return index;
    }
    return kNone;
  }

  struct Victim {
    bool occupied = false;  // an entry was displaced
    uint8_t rank = 0;       // its rank
  };

  // Places key (not present) in its bucket with the given rank, as the most
  // recently used, zeroing the entry's state. Returns kNone when every way
  // is ranked above max_victim_rank. *victim says what was displaced.
  int32_t Insert(const SourceKey& key, const Hashed& h, uint8_t rank, uint8_t max_victim_rank, Victim* victim) {
    Bucket& b = buckets_[h.bucket];
    *victim = Victim{};
    const int way = ChooseWay(b, max_victim_rank);
    if (way < 0) return kNone;
    if (b.tag[way] == 0) {
      ++occupancy_;
    } else {
      victim->occupied = true;
      victim->rank = b.rank[way];
    }
    b.tag[way] = h.tag;
    b.stamp[way] = ++activity_;
    b.rank[way] = rank;
    const int32_t index = static_cast<int32_t>(h.bucket * kWays + way);
    Entry& e = entries_[index];
    std::memset(static_cast<void*>(&e), 0, sizeof e);
    e.key_lo = key.lo;
    e.key_hi = key.hi;
    e.family = key.family;
    return index;
  }

  Entry& entry(int32_t index) { return entries_[index]; }
  const Entry& entry(int32_t index) const { return entries_[index]; }

  uint8_t rank(int32_t index) const { return buckets_[index / kWays].rank[index % kWays]; }
  void set_rank(int32_t index, uint8_t rank) { buckets_[index / kWays].rank[index % kWays] = rank; }
  // Marks the entry as the most recently used.
  void Touch(int32_t index) { buckets_[index / kWays].stamp[index % kWays] = ++activity_; }
  void Erase(int32_t index) {
    Bucket& b = buckets_[index / kWays];
    const int way = index % kWays;
    if (b.tag[way] == 0) return;
    b.tag[way] = 0;
    b.rank[way] = 0;
    b.stamp[way] = 0;
    --occupancy_;
  }

  // Calls f(index) for every occupied entry; f may Erase(index).
  template <typename F>
  void ForEachOccupied(F&& f) {
    for (size_t b = 0; b < num_buckets_; ++b) {
      for (int w = 0; w < kWays; ++w) {
        if (buckets_[b].tag[w] != 0) f(static_cast<int32_t>(b * kWays + w));
      }
    }
  }

 private:
  struct alignas(64) Bucket {
    uint16_t tag[kWays];
    uint32_t stamp[kWays];  // activity_ at the last insert or touch
    uint8_t rank[kWays];
  };
  static_assert(sizeof(Bucket) == 64, "bucket metadata is one cache line");

  struct FreeAligned {
    void operator()(void* p) const { source_table_internal::FreeAligned(p); }
  };

  BasicSourceTable(size_t num_buckets, uint64_t seed) : num_buckets_(num_buckets) {
    source_table_internal::HashKeys(seed, keys_);
    buckets_.reset(static_cast<Bucket*>(source_table_internal::AllocateZeroed(
        num_buckets_ * sizeof(Bucket), alignof(Bucket), &allocated_bytes_)));
    entries_.reset(static_cast<Entry*>(source_table_internal::AllocateZeroed(
        num_buckets_ * kWays * sizeof(Entry), alignof(Entry), &allocated_bytes_)));
  }

  // An empty way, else the lowest-ranked (at most max_victim_rank), least
  // recently used one; -1 if every way is ranked higher.
  int ChooseWay(const Bucket& b, uint8_t max_victim_rank) const {
    if (const uint32_t empty = TagMatches(b, 0); empty != 0) return __builtin_ctz(empty) >> 1;
    int way = -1;
    uint64_t best = ~uint64_t{0};
    for (int w = 0; w < kWays; ++w) {
      if (b.rank[w] > max_victim_rank) continue;
      const uint32_t age = activity_ - b.stamp[w];
      const uint64_t score = (static_cast<uint64_t>(b.rank[w]) << 32) | static_cast<uint32_t>(~age);
      if (score < best) {
        best = score;
        way = w;
      }
    }
    return way;
  }

  static uint64_t Fold(uint64_t a, uint64_t b) {
    const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
    return static_cast<uint64_t>(p) ^ static_cast<uint64_t>(p >> 64);
  }

  // Bit 2*w is set for every way w whose tag equals tag.
  static uint32_t TagMatches(const Bucket& b, uint16_t tag) {
#if defined(__SSE2__)
    const __m128i tags = _mm_load_si128(reinterpret_cast<const __m128i*>(b.tag));
    const uint32_t bytes =
        static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi16(tags, _mm_set1_epi16(static_cast<short>(tag)))));
    return bytes & 0x5555u;  // movemask gives two bits per 16-bit lane: keep one
#else
    uint32_t m = 0;
    for (int w = 0; w < kWays; ++w) m |= static_cast<uint32_t>(b.tag[w] == tag) << (2 * w);
    return m;
#endif
  }

  size_t num_buckets_;
  size_t occupancy_ = 0;
  size_t allocated_bytes_ = 0;
  uint32_t activity_ = 0;  // wraps; ages are differences
  uint64_t keys_[4];
  std::unique_ptr<Bucket[], FreeAligned> buckets_;
  std::unique_ptr<Entry[], FreeAligned> entries_;
};

using SourceTable = BasicSourceTable<SourceEntry>;

}  // namespace sesame
