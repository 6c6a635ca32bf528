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

}  // namespace

IpAddress SourceKey::ToAddress() const {
  uint8_t bytes[16];
  std::memcpy(bytes, &lo, 8);
  std::memcpy(bytes + 8, &hi, 8);
  return family == static_cast<uint8_t>(IpAddress::Family::kV6) ? IpAddress::V6(bytes) : IpAddress::V4(bytes);
}

namespace source_table_internal {

// Large arrays go on transparent huge pages where the kernel allows it (THP
// "madvise" mode, Debian's default): random access over tens of megabytes
// otherwise costs a TLB miss per packet.
void* AllocateZeroed(size_t bytes, size_t alignment, size_t* allocated) {
  constexpr size_t kHugePage = size_t{2} << 20;
  if (bytes >= kHugePage) {
    bytes = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    alignment = kHugePage;
  }
  void* p = std::aligned_alloc(alignment, bytes);  // bytes is a multiple of the alignment
  if (p == nullptr) return nullptr;
  if (alignment == kHugePage) madvise(p, bytes, MADV_HUGEPAGE);  // a hint: failure is harmless
  std::memset(p, 0, bytes);
  *allocated += bytes;
  return p;
}

void FreeAligned(void* p) { std::free(p); }

void HashKeys(uint64_t seed, uint64_t keys[4]) {
  if (seed == 0) {
    absl::BitGen gen;  // seeded from the OS's entropy
    for (int i = 0; i < 4; ++i) keys[i] = absl::Uniform<uint64_t>(gen);
  } else {
    uint64_t state = seed;
    for (int i = 0; i < 4; ++i) keys[i] = SplitMix64(state);
  }
}

}  // namespace source_table_internal
}  // namespace sesame
