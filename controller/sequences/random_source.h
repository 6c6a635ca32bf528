// Where the controller's randomness comes from: OpenSSL's CSPRNG in
// production, a scripted source in tests. Sequences are secrets, so nothing
// else (no std::mt19937, no absl::BitGen) may produce them.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sesame::controller {

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // Fills out with random bytes, or fails (never returns weak bytes).
  virtual absl::Status Fill(absl::Span<uint8_t> out) = 0;
};

// RAND_bytes. Thread-safe.
class OpenSslRandom final : public RandomSource {
 public:
  absl::Status Fill(absl::Span<uint8_t> out) override;
  static OpenSslRandom& Instance();
};

// A uniformly distributed integer in [0, n), n >= 1, without modulo bias:
// 32-bit draws at or above the largest multiple of n are rejected and drawn
// again.
absl::StatusOr<uint32_t> UniformBelow(RandomSource& random, uint32_t n);

}  // namespace sesame::controller
