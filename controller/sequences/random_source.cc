#include "controller/sequences/random_source.h"

#include <openssl/err.h>
#include <openssl/rand.h>

#include <limits>

namespace sesame::controller {

absl::Status OpenSslRandom::Fill(absl::Span<uint8_t> out) {
  if (out.empty()) return absl::OkStatus();
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
    ERR_clear_error();
    return absl::UnavailableError("OpenSSL's random generator failed (not seeded?)");
  }
  return absl::OkStatus();
}

OpenSslRandom& OpenSslRandom::Instance() {
  static OpenSslRandom random;
  return random;
}

absl::StatusOr<uint32_t> UniformBelow(RandomSource& random, uint32_t n) {
  if (n == 0) return absl::InvalidArgumentError("UniformBelow(0)");
  // Draws in [0, limit) map evenly onto [0, n); limit is the largest
  // multiple of n that fits in 2^32 (2^32 itself when n is a power of two).
  const uint64_t range = uint64_t{1} << 32;
  const uint64_t limit = range - range % n;
  // Each try succeeds with probability > 1/2; 64 failures in a row means a
  // broken source, not bad luck.
  for (int attempt = 0; attempt < 64; ++attempt) {
    uint8_t bytes[4];
    if (absl::Status s = random.Fill(absl::MakeSpan(bytes)); !s.ok()) return s;
    const uint32_t draw = uint32_t{bytes[0]} << 24 | uint32_t{bytes[1]} << 16 | uint32_t{bytes[2]} << 8 | bytes[3];
    if (draw < limit) return static_cast<uint32_t>(draw % n);
  }
  return absl::InternalError("the random source keeps returning rejected values");
}

}  // namespace sesame::controller
