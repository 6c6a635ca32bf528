// An IPv4 or IPv6 address held by value. Packet-derived addresses are only
// ever used through this type: parsed from bytes, printed canonically, so no
// raw packet text reaches a command line or a file.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace sesame {

class IpAddress {
 public:
  enum class Family : uint8_t { kV4 = 4, kV6 = 6 };

  IpAddress() = default;
  // Inline: the decoder builds two of these per packet.
  static IpAddress V4(const uint8_t bytes[4]) {
    IpAddress a;
    a.family_ = Family::kV4;
    std::memcpy(a.bytes_.data(), bytes, 4);
    return a;
  }
  static IpAddress V4(uint32_t host_order);
  static IpAddress V6(const uint8_t bytes[16]) {
    IpAddress a;
    a.family_ = Family::kV6;
    std::memcpy(a.bytes_.data(), bytes, 16);
    return a;
  }
  // Accepts dotted quad or RFC 4291 text (no zone, no brackets, no prefix).
  static std::optional<IpAddress> Parse(std::string_view text);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::kV4; }
  bool is_v6() const { return family_ == Family::kV6; }
  // 4 or 16 meaningful bytes, network order.
  const uint8_t* bytes() const { return bytes_.data(); }
  size_t size() const { return is_v4() ? 4 : 16; }

  // Canonical text: dotted quad, or RFC 5952 for IPv6.
  std::string ToString() const;

  friend bool operator==(const IpAddress& a, const IpAddress& b) {
    return a.family_ == b.family_ && a.bytes_ == b.bytes_;
  }
  friend bool operator<(const IpAddress& a, const IpAddress& b) {
    if (a.family_ != b.family_) return a.family_ < b.family_;
    return a.bytes_ < b.bytes_;
  }
  template <typename H>
  friend H AbslHashValue(H h, const IpAddress& a) {
    return H::combine(std::move(h), a.family_, a.bytes_);
  }

 private:
  Family family_ = Family::kV4;
  std::array<uint8_t, 16> bytes_{};  // unused tail is zero
};

}  // namespace sesame
