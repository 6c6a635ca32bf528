#include "common/ip_address.h"

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace sesame {
namespace {

TEST(IpAddressTest, ParsesAndPrintsCanonically) {
  EXPECT_EQ(IpAddress::Parse("10.0.0.1")->ToString(), "10.0.0.1");
  EXPECT_EQ(IpAddress::Parse("2001:DB8:0:0:0:0:0:1")->ToString(), "2001:db8::1");
  EXPECT_TRUE(IpAddress::Parse("::ffff:10.0.0.1")->is_v6());
}

TEST(IpAddressTest, RejectsWhatIsNotAnAddress) {
  for (const char* bad : {"", "10.0.0", "10.0.0.256", "1.2.3.4; rm -rf /", "fe80::1%eth0", "[::1]", "::1/128",
                          "10.0.0.1 ", "host.example"}) {
    EXPECT_FALSE(IpAddress::Parse(bad).has_value()) << bad;
  }
}

TEST(IpAddressTest, FamiliesDifferAndHash) {
  const uint8_t zero4[4] = {0, 0, 0, 0};
  const uint8_t zero16[16] = {};
  EXPECT_FALSE(IpAddress::V4(zero4) == IpAddress::V6(zero16));
  absl::flat_hash_set<IpAddress> set = {IpAddress::V4(0x0a000001), *IpAddress::Parse("10.0.0.1")};
  EXPECT_EQ(set.size(), 1u);
}

}  // namespace
}  // namespace sesame
