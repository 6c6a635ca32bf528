// The fleet's own addresses: gRPC peer strings as gRPC writes them (also
// IPv4 through a dual-stack listener, and percent-encoded brackets),
// advertised hosts that are addresses, this host's interfaces, and the
// bounded book of who owns what.
#include "controller/service/own_addresses.h"

#include <algorithm>

#include "gtest/gtest.h"

namespace sesame::controller {
namespace {

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

TEST(OwnAddressesTest, PeerAddresses) {
  EXPECT_EQ(PeerAddress("ipv4:198.51.100.7:5000"), Ip("198.51.100.7"));
  EXPECT_EQ(PeerAddress("ipv6:[2001:db8::1]:5000"), Ip("2001:db8::1"));
  EXPECT_EQ(PeerAddress("ipv6:%5B2001:db8::1%5D:5000"), Ip("2001:db8::1"));
  // An IPv4 agent through a [::] listener.
  EXPECT_EQ(PeerAddress("ipv6:%5B::ffff:198.18.20.11%5D:41234"), Ip("198.18.20.11"));
  EXPECT_FALSE(PeerAddress("unix:/run/x.sock").has_value());
  EXPECT_FALSE(PeerAddress("inproc").has_value());
  EXPECT_FALSE(PeerAddress("ipv4:not-an-address:1").has_value());
  EXPECT_FALSE(PeerAddress("").has_value());
}

TEST(OwnAddressesTest, AdvertisedLiteralsOnly) {
  EXPECT_EQ(AddressLiterals({"bastion1.example.net", "198.18.20.11", "fd5e:20::11", "[2001:db8::5]", ""}),
            (std::vector<IpAddress>{Ip("198.18.20.11"), Ip("fd5e:20::11"), Ip("2001:db8::5")}));
}

TEST(OwnAddressesTest, LocalAddressesHaveLoopbackAndTheListenLiteral) {
  const std::vector<IpAddress> local = LocalAddresses("192.0.2.44:7443");
  EXPECT_NE(std::find(local.begin(), local.end(), Ip("127.0.0.1")), local.end());
  EXPECT_NE(std::find(local.begin(), local.end(), Ip("192.0.2.44")), local.end());
  const std::vector<IpAddress> wildcard = LocalAddresses("[::]:7443");
  EXPECT_EQ(std::find(wildcard.begin(), wildcard.end(), Ip("::")), wildcard.end());
}

TEST(OwnAddressesTest, TheBookNamesOwnersAndIsBounded) {
  OwnAddressBook book;
  EXPECT_TRUE(book.Get()->empty());
  book.SetController({Ip("192.0.2.10")});
  book.AddAgent("bastion2", {Ip("192.0.2.12"), Ip("192.0.2.12")});
  std::shared_ptr<const std::vector<OwnAddress>> all = book.Get();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].owner, "the controller");
  EXPECT_EQ((*all)[1].address, Ip("192.0.2.12"));
  EXPECT_EQ((*all)[1].owner, "agent bastion2");
  // A snapshot taken before stays as it was.
  book.AddAgent("bastion2", {Ip("2001:db8::12")});
  EXPECT_EQ(all->size(), 2u);
  EXPECT_EQ(book.Get()->size(), 3u);

  std::vector<IpAddress> many;
  for (uint32_t i = 0; i < 100; ++i) many.push_back(IpAddress::V4(0x0a000000u + i));
  book.AddAgent("bastion3", many);
  EXPECT_EQ(book.Get()->size(), 3u + OwnAddressBook::kMaxPerAgent);
}

}  // namespace
}  // namespace sesame::controller
