#include "agent/match/source_table.h"

#include <sys/mman.h>

#include <cstdlib>

#include "absl/random/random.h"

namespace sesame {
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Large arrays go on transparent huge pages where the kernel allows it (THP
// "madvise" mode, Debian's default): random access over tens of megabytes
// otherwise costs a TLB miss per packet.
template <typename T>
T* AllocateZeroed(size_t count, size_t* allocated) {
  constexpr size_t kHugePage = size_t{2} << 20;
  size_t bytes = count * sizeof(T);
  size_t alignment = alignof(T);
  if (bytes >= kHugePage) {
    bytes = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    alignment = kHugePage;
  }
  void* p = std::aligned_alloc(alignment, bytes);  // bytes is a multiple of the alignment
  if (p == nullptr) return nullptr;
  if (alignment == kHugePage) madvise(p, bytes, MADV_HUGEPAGE);  // a hint: failure is harmless
  std::memset(p, 0, bytes);
  *allocated += bytes;
  return static_cast<T*>(p);
}

}  // namespace

IpAddress SourceKey::ToAddress() const {
  uint8_t bytes[16];
  std::memcpy(bytes, &lo, 8);
  std::memcpy(bytes + 8, &hi, 8);
  return family == static_cast<uint8_t>(IpAddress::Family::kV6) ? IpAddress::V6(bytes) : IpAddress::V4(bytes);
}

void SourceTable::FreeAligned::operator()(void* p) const { std::free(p); }

std::unique_ptr<SourceTable> SourceTable::Create(size_t capacity, uint64_t seed) {
  const size_t num_buckets = capacity < kWays ? 1 : (capacity + kWays - 1) / kWays;
  std::unique_ptr<SourceTable> table(new SourceTable(num_buckets, seed));
  if (table->buckets_ == nullptr || table->entries_ == nullptr) return nullptr;
  return table;
}

SourceTable::SourceTable(size_t num_buckets, uint64_t seed) : num_buckets_(num_buckets) {
  if (seed == 0) {
    absl::BitGen gen;  // seeded from the OS's entropy
    for (uint64_t& k : keys_) k = absl::Uniform<uint64_t>(gen);
  } else {
    uint64_t state = seed;
    for (uint64_t& k : keys_) k = SplitMix64(state);
  }
  buckets_.reset(AllocateZeroed<Bucket>(num_buckets_, &allocated_bytes_));
  entries_.reset(AllocateZeroed<SourceEntry>(num_buckets_ * kWays, &allocated_bytes_));
}

int32_t SourceTable::Insert(const SourceKey& key, const Hashed& h, uint8_t rank, uint8_t max_victim_rank,
                            Victim* victim) {
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
  SourceEntry& e = entries_[index];
  std::memset(&e, 0, sizeof e);
  e.key_lo = key.lo;
  e.key_hi = key.hi;
  e.family = key.family;
  return index;
}

void SourceTable::Erase(int32_t index) {
  Bucket& b = buckets_[index / kWays];
  const int way = index % kWays;
  if (b.tag[way] == 0) return;
  b.tag[way] = 0;
  b.rank[way] = 0;
  b.stamp[way] = 0;
  --occupancy_;
}

}  // namespace sesame
