// The nftables backend against the real kernel, in this test's private
// network namespace: the table it builds, the elements it adds and removes,
// the kernel's own expiry, and real TCP connections over loopback addresses
// through an administrator's default-deny table.
#include "agent/grants/backends/nftables_backend.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/namespace_sandbox.h"
#include "tests/support/sockets.h"

namespace sesame {
namespace {

using ::sesame::testing::Fd;
using ::sesame::testing::RunCommand;
using ::sesame::testing::SockAddr;
using ::testing::HasSubstr;
using ::testing::Not;

// What an administrator's default-deny input chain looks like, with the one
// rule the backend's header asks for.
constexpr char kAdminRuleset[] =
    "add table inet admin\n"
    "add chain inet admin input { type filter hook input priority filter; policy drop; }\n"
    "add rule inet admin input ct state established,related accept\n"
    "add rule inet admin input meta mark & 0x5e5a0000 == 0x5e5a0000 accept\n"
    "add rule inet admin input tcp dport 9999 accept\n";  // a port sesame does not guard

Grant GrantFor(const std::string& door, const char* address, absl::Time expires = absl::InfiniteFuture()) {
  Grant g;
  g.door = door;
  g.address = *IpAddress::Parse(address);
  g.opened = absl::Now();
  g.expires = expires;
  return g;
}

Fd Listen(const std::string& ip, uint16_t port) {
  sockaddr_storage sa;
  const socklen_t len = SockAddr(ip, port, &sa);
  Fd fd(socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  fcntl(fd.get(), F_SETFL, O_NONBLOCK);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0 || listen(fd.get(), SOMAXCONN) != 0) {
    ADD_FAILURE() << "listen on " << ip << ":" << port << ": " << std::strerror(errno);
  }
  return fd;
}

// Accepts and closes whatever connections wait on a listening socket.
void DrainAccepted(const Fd& server) {
  for (int i = 0; i < 1000; ++i) {
    const int fd = accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    close(fd);
  }
}

// Connects from `from` to `to`:`port`; an invalid Fd when the connection is
// not established within `wait`.
Fd Connect(const std::string& from, const std::string& to, uint16_t port, absl::Duration wait) {
  sockaddr_storage src, dst;
  const socklen_t src_len = SockAddr(from, 0, &src);
  const socklen_t dst_len = SockAddr(to, port, &dst);
  Fd fd(socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  // The port is picked by connect(), knowing the whole 4-tuple: bind()
  // alone may pick one whose last connection still lingers at the server.
  const int one = 1;
  setsockopt(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&src), src_len) != 0) {
    ADD_FAILURE() << "bind " << from << ": " << std::strerror(errno);
    return Fd();
  }
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&dst), dst_len) != 0 && errno != EINPROGRESS) return Fd();
  pollfd p{fd.get(), POLLOUT, 0};
  if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(wait))) != 1) return Fd();
  int error = 0;
  socklen_t error_len = sizeof error;
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &error_len);
  return error == 0 ? std::move(fd) : Fd();
}

// Whether a connection gets through: failures wait briefly (a dropped SYN
// never answers), successes may take long on a loaded machine.
constexpr absl::Duration kRefusedWait = absl::Milliseconds(700);
constexpr absl::Duration kAcceptedWait = absl::Seconds(20);
bool Refused(const std::string& from, const std::string& to, uint16_t port) {
  return Connect(from, to, port, kRefusedWait).get() < 0;
}
bool Accepted(const std::string& from, const std::string& to, uint16_t port) {
  return Connect(from, to, port, kAcceptedWait).get() >= 0;
}

class NftablesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Each test starts from an empty ruleset (one process may run them all).
    ASSERT_EQ(RunCommand({"nft", "flush", "ruleset"}).exit_code, 0);
    absl::StatusOr<std::shared_ptr<NftablesTable>> table = NftablesTable::Create("sesame");
    ASSERT_TRUE(table.ok()) << table.status();
    table_ = *table;
  }

  std::string ListSet(const std::string& set) {
    absl::StatusOr<std::string> out = table_->Run(absl::StrCat("list set inet sesame ", set));
    return out.ok() ? *out : out.status().ToString();
  }

  std::shared_ptr<NftablesTable> table_;
};

TEST_F(NftablesTest, PrepareBuildsTheTableIdempotently) {
  NftablesBackend door("openSSH", {{22, Protocol::kTcp}, {2222, Protocol::kTcp}, {53, Protocol::kUdp}}, table_);
  ASSERT_TRUE(door.Prepare().ok()) << door.Prepare();
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());
  ASSERT_TRUE(door.Prepare().ok());  // a reload: the live element stays
  const testing::CommandResult listing = RunCommand({"nft", "list", "table", "inet", "sesame"});
  ASSERT_EQ(listing.exit_code, 0) << listing.output;
  EXPECT_THAT(listing.output, HasSubstr("set openSSH_v4"));
  EXPECT_THAT(listing.output, HasSubstr("set openSSH_v6"));
  EXPECT_THAT(listing.output, HasSubstr("elements = { 192.0.2.7 }"));
  EXPECT_THAT(listing.output, HasSubstr("type filter hook input priority filter - 10; policy accept;"));
  EXPECT_THAT(listing.output,
              HasSubstr("tcp dport { 22, 2222 } ip saddr @openSSH_v4 meta mark set meta mark | 0x5e5a0000 accept"));
  EXPECT_THAT(listing.output, HasSubstr("udp dport 53 ip6 saddr @openSSH_v6"));
  EXPECT_THAT(listing.output, HasSubstr("tcp dport { 22, 2222 } drop"));
  // One copy of each rule after two Prepares.
  const std::string rule = "tcp dport { 22, 2222 } drop";
  EXPECT_EQ(listing.output.find(rule), listing.output.rfind(rule));
  std::cout << listing.output;
}

TEST_F(NftablesTest, OpenAddsOnceAndCloseRemoves) {
  NftablesBackend door("openSSH", {{22, Protocol::kTcp}}, table_);
  ASSERT_TRUE(door.Prepare().ok());
  const Grant v4 = GrantFor("openSSH", "192.0.2.7", absl::Now() + absl::Hours(1));
  const Grant v6 = GrantFor("openSSH", "2001:db8::7", absl::Now() + absl::Hours(1));
  ASSERT_TRUE(door.Open(v4).ok());
  ASSERT_TRUE(door.Open(v4).ok());
  ASSERT_TRUE(door.Open(v6).ok());
  const std::string set4 = ListSet("openSSH_v4");
  EXPECT_THAT(set4, HasSubstr("192.0.2.7 timeout "));
  EXPECT_EQ(set4.find("192.0.2.7"), set4.rfind("192.0.2.7"));
  EXPECT_THAT(ListSet("openSSH_v6"), HasSubstr("2001:db8::7 timeout "));

  ASSERT_TRUE(door.Close(v4).ok());
  EXPECT_THAT(ListSet("openSSH_v4"), Not(HasSubstr("192.0.2.7")));
  EXPECT_THAT(ListSet("openSSH_v6"), HasSubstr("2001:db8::7"));
  ASSERT_TRUE(door.Close(v4).ok());  // closing what is not open is fine
  ASSERT_TRUE(door.Close(v6).ok());
  EXPECT_THAT(ListSet("openSSH_v6"), Not(HasSubstr("2001:db8::7")));
}

TEST_F(NftablesTest, TimeoutIsTheTimeLeftAndReopeningReplacesIt) {
  NftablesBackend door("openSSH", {{22, Protocol::kTcp}}, table_);
  ASSERT_TRUE(door.Prepare().ok());
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7", absl::Now() + absl::Seconds(100))).ok());
  EXPECT_THAT(ListSet("openSSH_v4"), HasSubstr("192.0.2.7 timeout 1m40s"));
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7", absl::Now() + absl::Seconds(1000))).ok());
  EXPECT_THAT(ListSet("openSSH_v4"), HasSubstr("192.0.2.7 timeout 16m40s"));
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());  // no expiry: no timeout
  const std::string set = ListSet("openSSH_v4");
  EXPECT_THAT(set, HasSubstr("elements = { 192.0.2.7 }"));
  EXPECT_THAT(set, Not(HasSubstr("192.0.2.7 timeout")));
  // A grant already past its expiry is not opened (and what was there goes).
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7", absl::Now() - absl::Seconds(1))).ok());
  EXPECT_THAT(ListSet("openSSH_v4"), Not(HasSubstr("192.0.2.7")));
}

TEST_F(NftablesTest, KernelRemovesAnExpiredElementByItself) {
  NftablesBackend door("openSSH", {{22, Protocol::kTcp}}, table_);
  ASSERT_TRUE(door.Prepare().ok());
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7", absl::Now() + absl::Seconds(1))).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  bool gone = false;
  while (!gone && absl::Now() < deadline) {
    gone = !absl::StrContains(ListSet("openSSH_v4"), "192.0.2.7");
    if (!gone) absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(gone) << ListSet("openSSH_v4");
}

TEST_F(NftablesTest, OddDoorNamesMakeValidDistinctSetNames) {
  EXPECT_EQ(NftablesTable::SetName("openSSH", IpAddress::Family::kV4), "openSSH_v4");
  const std::string a = NftablesTable::SetName("my door", IpAddress::Family::kV6);
  const std::string b = NftablesTable::SetName("my_door2", IpAddress::Family::kV6);
  const std::string c = NftablesTable::SetName("my-door", IpAddress::Family::kV6);
  EXPECT_NE(a, c);
  EXPECT_TRUE(absl::StartsWith(a, "my_door_"));
  NftablesBackend d1("my door", {{22, Protocol::kTcp}}, table_);
  NftablesBackend d2("my-door \"quoted\"", {{22, Protocol::kTcp}}, table_);
  NftablesBackend d3("2fa", {{22, Protocol::kTcp}}, table_);
  ASSERT_TRUE(d1.Prepare().ok()) << d1.Prepare();
  ASSERT_TRUE(d2.Open(GrantFor("", "192.0.2.7")).ok());
  ASSERT_TRUE(d3.Open(GrantFor("", "192.0.2.8")).ok());
  EXPECT_TRUE(absl::StartsWith(NftablesTable::SetName("2fa", IpAddress::Family::kV4), "d_2fa_"));
  (void)b;
}

TEST_F(NftablesTest, RunReturnsOnlyTheLastCommandsOutput) {
  NftablesBackend door("openSSH", {{22, Protocol::kTcp}}, table_);
  ASSERT_TRUE(door.Prepare().ok());
  ASSERT_FALSE(ListSet("openSSH_v4").empty());
  absl::StatusOr<std::string> quiet = table_->Run("add element inet sesame openSSH_v4 { 192.0.2.9 }");
  ASSERT_TRUE(quiet.ok());
  EXPECT_EQ(*quiet, "");
  absl::StatusOr<std::string> json = table_->Run("list set inet sesame openSSH_v4", /*json=*/true);
  ASSERT_TRUE(json.ok());
  EXPECT_THAT(*json, HasSubstr("\"192.0.2.9\""));
  const absl::StatusOr<std::string> bad = table_->Run("list set inet sesame nosuchset");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("nosuchset"));
}

TEST_F(NftablesTest, MissingTableIsAClearError) {
  NftablesBackend door("openSSH", {{22, Protocol::kTcp}}, table_);
  const absl::Status s = door.Open(GrantFor("openSSH", "192.0.2.7"));  // no Prepare
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("openSSH_v4"));
}

// --- real traffic ---------------------------------------------------------

class NftablesTrafficTest : public NftablesTest {
 protected:
  void SetUp() override {
    NftablesTest::SetUp();
    // Server and client addresses on lo; loopback traffic of a namespace
    // goes through the input hook like any other.
    RunCommand({"ip", "-6", "addr", "add", "2001:db8::1/128", "dev", "lo", "nodad"});
    RunCommand({"ip", "-6", "addr", "add", "2001:db8::2/128", "dev", "lo", "nodad"});
  }
};

TEST_F(NftablesTrafficTest, DefaultDenyHostOpensOnlyForTheGrantedAddress) {
  absl::StatusOr<std::string> admin = table_->Run(kAdminRuleset);
  ASSERT_TRUE(admin.ok()) << admin.status();
  NftablesBackend door("openSSH", {{2022, Protocol::kTcp}}, table_);
  ASSERT_TRUE(door.Prepare().ok());
  const Fd server4 = Listen("127.0.0.1", 2022);
  const Fd server6 = Listen("2001:db8::1", 2022);

  EXPECT_TRUE(Refused("127.0.0.2", "127.0.0.1", 2022));
  EXPECT_TRUE(Refused("2001:db8::2", "2001:db8::1", 2022));

  const Grant v4 = GrantFor("openSSH", "127.0.0.2", absl::Now() + absl::Hours(1));
  const Grant v6 = GrantFor("openSSH", "2001:db8::2", absl::Now() + absl::Hours(1));
  ASSERT_TRUE(door.Open(v4).ok());
  ASSERT_TRUE(door.Open(v6).ok());
  EXPECT_TRUE(Accepted("127.0.0.2", "127.0.0.1", 2022));
  EXPECT_TRUE(Accepted("2001:db8::2", "2001:db8::1", 2022));
  EXPECT_TRUE(Refused("127.0.0.3", "127.0.0.1", 2022));  // someone else

  ASSERT_TRUE(door.Close(v4).ok());
  ASSERT_TRUE(door.Close(v6).ok());
  EXPECT_TRUE(Refused("127.0.0.2", "127.0.0.1", 2022));
  EXPECT_TRUE(Refused("2001:db8::2", "2001:db8::1", 2022));
}

TEST_F(NftablesTrafficTest, EstablishedSessionSurvivesTheDoorClosing) {
  ASSERT_TRUE(table_->Run(kAdminRuleset).ok());
  NftablesBackend door("openSSH", {{2022, Protocol::kTcp}}, table_);
  ASSERT_TRUE(door.Prepare().ok());
  const Fd server = Listen("127.0.0.1", 2022);
  const Grant grant = GrantFor("openSSH", "127.0.0.2", absl::Now() + absl::Hours(1));
  ASSERT_TRUE(door.Open(grant).ok());
  Fd client = Connect("127.0.0.2", "127.0.0.1", 2022, kAcceptedWait);
  ASSERT_GE(client.get(), 0);
  pollfd p{server.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 20000), 1);
  const Fd session(accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(session.get(), 0);

  ASSERT_TRUE(door.Close(grant).ok());
  EXPECT_TRUE(Refused("127.0.0.2", "127.0.0.1", 2022));  // the door is shut ...
  ASSERT_EQ(write(client.get(), "ping", 4), 4);            // ... the session is not
  pollfd q{session.get(), POLLIN, 0};
  ASSERT_EQ(poll(&q, 1, 20000), 1);
  char buf[8] = {};
  ASSERT_EQ(read(session.get(), buf, sizeof buf), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  ASSERT_EQ(write(session.get(), "pong", 4), 4);
  pollfd r{client.get(), POLLIN, 0};
  ASSERT_EQ(poll(&r, 1, 20000), 1);
  ASSERT_EQ(read(client.get(), buf, sizeof buf), 4);
  EXPECT_EQ(std::string(buf, 4), "pong");
}

TEST_F(NftablesTrafficTest, DoorClosesByItselfWhenTheGrantExpires) {
  ASSERT_TRUE(table_->Run(kAdminRuleset).ok());
  NftablesBackend door("openSSH", {{2022, Protocol::kTcp}}, table_);
  ASSERT_TRUE(door.Prepare().ok());
  const Fd server = Listen("127.0.0.1", 2022);
  // Long enough for one connection even on a loaded machine.
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "127.0.0.2", absl::Now() + absl::Seconds(3))).ok());
  EXPECT_TRUE(Accepted("127.0.0.2", "127.0.0.1", 2022));
  // At most 60 s / 100 ms probes; the server takes what arrives so its
  // accept queue never fills (a full queue drops SYNs too).
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  bool shut = false;
  while (!shut && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    DrainAccepted(server);
    shut = Refused("127.0.0.2", "127.0.0.1", 2022);
  }
  EXPECT_TRUE(shut);
  EXPECT_THAT(ListSet("openSSH_v4"), Not(HasSubstr("127.0.0.2")));
}

TEST_F(NftablesTrafficTest, GuardHidesThePortEvenWithoutAnAdminRuleset) {
  NftablesBackend door("openSSH", {{2022, Protocol::kTcp}}, table_);
  ASSERT_TRUE(door.Prepare().ok());
  const Fd server = Listen("127.0.0.1", 2022);
  const Fd other = Listen("127.0.0.1", 2023);
  EXPECT_TRUE(Refused("127.0.0.2", "127.0.0.1", 2022));
  EXPECT_TRUE(Accepted("127.0.0.2", "127.0.0.1", 2023));  // not a door port: untouched
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "127.0.0.2")).ok());
  EXPECT_TRUE(Accepted("127.0.0.2", "127.0.0.1", 2022));
}

TEST_F(NftablesTrafficTest, TwoDoorsGuardingOnePortEachAdmitTheirGrants) {
  NftablesBackend a("a", {{2022, Protocol::kTcp}}, table_);
  NftablesBackend b("b", {{2022, Protocol::kTcp}, {2023, Protocol::kTcp}}, table_);
  ASSERT_TRUE(a.Prepare().ok());
  const Fd server = Listen("127.0.0.1", 2022);
  ASSERT_TRUE(b.Open(GrantFor("b", "127.0.0.2")).ok());
  ASSERT_TRUE(a.Open(GrantFor("a", "127.0.0.3")).ok());
  EXPECT_TRUE(Accepted("127.0.0.2", "127.0.0.1", 2022));  // b's grant passes a's guard
  EXPECT_TRUE(Accepted("127.0.0.3", "127.0.0.1", 2022));
  EXPECT_TRUE(Refused("127.0.0.4", "127.0.0.1", 2022));
  ASSERT_TRUE(a.Close(GrantFor("a", "127.0.0.2")).ok());  // a never granted .2: b's grant stays
  EXPECT_TRUE(Accepted("127.0.0.2", "127.0.0.1", 2022));
}

// A figure for the report, not an assertion: timing belongs in bench/.
TEST_F(NftablesTest, OpenLatencyFigure) {
  NftablesBackend door("openSSH", {{22, Protocol::kTcp}}, table_);
  ASSERT_TRUE(door.Prepare().ok());
  constexpr int kRounds = 500;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kRounds; ++i) {
    const std::string ip = absl::StrCat("10.1.", i / 250, ".", i % 250 + 1);
    ASSERT_TRUE(door.Open(GrantFor("openSSH", ip.c_str(), absl::Now() + absl::Minutes(5))).ok());
  }
  const absl::Duration per_open = (absl::Now() - start) / kRounds;
  std::cout << "nftables Open, in-process: " << absl::FormatDuration(per_open) << " per grant (" << kRounds
            << " grants into one set)\n";
}

}  // namespace
}  // namespace sesame
