#include "bench/tools/source_addresses.h"

#include <charconv>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace sesame::bench {
namespace {

IpAddress FromBytes(IpAddress::Family family, const uint8_t* bytes) {
  return family == IpAddress::Family::kV4 ? IpAddress::V4(bytes) : IpAddress::V6(bytes);
}

}  // namespace

IpAddress OffsetAddress(const IpAddress& base, uint64_t index) {
  uint8_t bytes[16];
  const size_t size = base.size();
  std::memcpy(bytes, base.bytes(), size);
  unsigned carry = 0;
  for (size_t i = size; i-- > 0;) {
    unsigned sum = bytes[i] + static_cast<unsigned>(index & 0xff) + carry;
    bytes[i] = static_cast<uint8_t>(sum);
    carry = sum >> 8;
    index >>= 8;
    if (index == 0 && carry == 0) break;
  }
  return FromBytes(base.family(), bytes);
}

absl::StatusOr<AddressPrefix> AddressPrefix::Parse(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("prefix '", std::string(text), "': expected ADDRESS/LENGTH"));
  }
  std::optional<IpAddress> network = IpAddress::Parse(text.substr(0, slash));
  std::string_view length_text = text.substr(slash + 1);
  int length = -1;
  auto [end, ec] = std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
  if (!network || length_text.empty() || ec != std::errc() ||
      end != length_text.data() + length_text.size() || length < 0 ||
      length > static_cast<int>(network->size() * 8)) {
    return absl::InvalidArgumentError(absl::StrCat("prefix '", std::string(text), "': expected ADDRESS/LENGTH"));
  }
  AddressPrefix prefix;
  prefix.network_ = *network;
  prefix.length_ = length;
  // The network's host bits must be zero, or Contains() would lie.
  for (size_t bit = length; bit < network->size() * 8; ++bit) {
    if (network->bytes()[bit / 8] & (0x80 >> (bit % 8))) {
      return absl::InvalidArgumentError(absl::StrCat("prefix '", std::string(text), "': host bits are set"));
    }
  }
  return prefix;
}

bool AddressPrefix::Contains(const IpAddress& address) const {
  if (address.family() != network_.family()) return false;
  for (int bit = 0; bit < length_; ++bit) {
    const uint8_t mask = 0x80 >> (bit % 8);
    if ((address.bytes()[bit / 8] & mask) != (network_.bytes()[bit / 8] & mask)) return false;
  }
  return true;
}

IpAddress AddressPrefix::Random(std::mt19937_64& random) const {
  uint8_t bytes[16];
  const size_t size = network_.size();
  uint64_t high = random(), low = random();
  for (size_t i = 0; i < size; ++i) {
    uint64_t& word = i < 8 ? high : low;
    bytes[i] = static_cast<uint8_t>(word >> (8 * (i % 8)));
  }
  for (int bit = 0; bit < length_; ++bit) {
    const uint8_t mask = 0x80 >> (bit % 8);
    bytes[bit / 8] = static_cast<uint8_t>((bytes[bit / 8] & ~mask) | (network_.bytes()[bit / 8] & mask));
  }
  return FromBytes(network_.family(), bytes);
}

}  // namespace sesame::bench
