// Source addresses for generated knocks: consecutive ranges (distinct
// knockers) and random addresses inside a prefix (spoofed flood sources).
#pragma once

#include <cstdint>
#include <random>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/ip_address.h"

namespace sesame::bench {

// `base` plus `index`, carried through the address bytes (wraps around the
// family's address space).
IpAddress OffsetAddress(const IpAddress& base, uint64_t index);

class AddressPrefix {
 public:
  // "198.18.0.0/15", "2001:db8:5e5a::/48"; host bits must be zero.
  static absl::StatusOr<AddressPrefix> Parse(std::string_view text);

  const IpAddress& network() const { return network_; }
  int length() const { return length_; }
  bool Contains(const IpAddress& address) const;
  // Every host bit drawn from `random`.
  IpAddress Random(std::mt19937_64& random) const;

 private:
  IpAddress network_;
  int length_ = 0;
};

}  // namespace sesame::bench
