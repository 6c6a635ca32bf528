// KillSessions against the real kernel, in this test's private network
// namespace: TCP connections over loopback addresses, with conntrack on
// (an input chain that looks at connection state, as a bastion's does).
#include "agent/grants/session_killer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/namespace_sandbox.h"
#include "tests/support/sockets.h"

namespace sesame {
namespace {

using ::sesame::testing::Fd;
using ::sesame::testing::RunCommand;
using ::sesame::testing::SockAddr;

constexpr uint16_t kSshPort = 2201;
constexpr uint16_t kOtherPort = 2202;

Fd Listen(const std::string& ip, uint16_t port) {
  sockaddr_storage a;
  const socklen_t len = SockAddr(ip, port, &a);
  Fd s(socket(a.ss_family, SOCK_STREAM, 0));
  const int on = 1;
  setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (a.ss_family == AF_INET6) {
    const int off = 0;  // dual-stack: IPv4 peers arrive as ::ffff:a.b.c.d
    setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  EXPECT_EQ(bind(s.get(), reinterpret_cast<sockaddr*>(&a), len), 0) << std::strerror(errno);
  EXPECT_EQ(listen(s.get(), 8), 0);
  return s;
}

// A connection from `from` to `to`:`port`: the client's and the server's sockets.
std::pair<Fd, Fd> Connect(const std::string& from, const std::string& to, uint16_t port, const Fd& listener) {
  sockaddr_storage local, remote;
  const socklen_t local_len = SockAddr(from, 0, &local);
  const socklen_t remote_len = SockAddr(to, port, &remote);
  Fd client(socket(remote.ss_family, SOCK_STREAM, 0));
  EXPECT_EQ(bind(client.get(), reinterpret_cast<sockaddr*>(&local), local_len), 0) << std::strerror(errno);
  EXPECT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&remote), remote_len), 0) << std::strerror(errno);
  Fd server(accept(listener.get(), nullptr, nullptr));
  EXPECT_GE(server.get(), 0);
  return {std::move(client), std::move(server)};
}

// Whether the connection still carries data, seen from the client: it
// writes, the server reads it and answers.
bool Carries(const std::pair<Fd, Fd>& c) {
  const char ping = 'p';
  if (send(c.first.get(), &ping, 1, MSG_NOSIGNAL) != 1) return false;
  pollfd p{c.second.get(), POLLIN, 0};
  char got;
  if (poll(&p, 1, 5000) != 1 || recv(c.second.get(), &got, 1, 0) != 1) return false;
  if (send(c.second.get(), &got, 1, MSG_NOSIGNAL) != 1) return false;
  pollfd q{c.first.get(), POLLIN, 0};
  return poll(&q, 1, 5000) == 1 && recv(c.first.get(), &got, 1, 0) == 1;
}

// The client's next read after a kill: the reset the server's side sent.
int ClientReadError(const std::pair<Fd, Fd>& c) {
  pollfd p{c.first.get(), POLLIN, 0};
  if (poll(&p, 1, 5000) != 1) return 0;
  char got;
  return recv(c.first.get(), &got, 1, 0) < 0 ? errno : 0;
}

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

class SessionKillerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(RunCommand({"ip", "addr", "add", "fd5e::2/128", "dev", "lo"}).exit_code, 0);
    ASSERT_EQ(RunCommand({"ip", "addr", "add", "fd5e::3/128", "dev", "lo"}).exit_code, 0);
    // Loopback traffic is tracked once a chain looks at connection state.
    const auto nft = RunCommand({"nft", "add table inet t; add chain inet t input { type filter hook input priority "
                                        "0; }; add rule inet t input ct state established accept"});
    ASSERT_EQ(nft.exit_code, 0) << nft.output;
  }
  void TearDown() override {
    RunCommand({"nft", "delete table inet t"});
    RunCommand({"ip", "addr", "del", "fd5e::2/128", "dev", "lo"});
    RunCommand({"ip", "addr", "del", "fd5e::3/128", "dev", "lo"});
  }
};

TEST_F(SessionKillerTest, EndsTheAddressSessionsToTheGrantPortsAndNothingElse) {
  const Fd ssh = Listen("127.0.0.1", kSshPort);
  const Fd other = Listen("127.0.0.1", kOtherPort);
  auto revoked = Connect("127.0.0.2", "127.0.0.1", kSshPort, ssh);
  auto revoked_again = Connect("127.0.0.2", "127.0.0.1", kSshPort, ssh);
  auto same_address_other_port = Connect("127.0.0.2", "127.0.0.1", kOtherPort, other);
  auto other_address = Connect("127.0.0.3", "127.0.0.1", kSshPort, ssh);
  ASSERT_TRUE(Carries(revoked));

  const std::vector<Knock> ports = {{kSshPort, Protocol::kTcp}};
  const KilledSessions killed = KillSessions(Ip("127.0.0.2"), ports);
  ASSERT_TRUE(killed.status.ok()) << killed.status;
  EXPECT_EQ(killed.sockets, 2);
  EXPECT_EQ(killed.conntrack_entries, 2);

  EXPECT_EQ(ClientReadError(revoked), ECONNRESET);
  EXPECT_EQ(ClientReadError(revoked_again), ECONNRESET);
  EXPECT_TRUE(Carries(same_address_other_port));
  EXPECT_TRUE(Carries(other_address));

  // Nothing of the address is left to end.
  const KilledSessions again = KillSessions(Ip("127.0.0.2"), ports);
  EXPECT_TRUE(again.status.ok()) << again.status;
  EXPECT_EQ(again.sockets, 0);
  EXPECT_EQ(again.conntrack_entries, 0);
}

TEST_F(SessionKillerTest, FindsIpv4PeersOfADualStackServerAndIpv6Peers) {
  const Fd dual = Listen("::", kSshPort);
  auto v4 = Connect("127.0.0.2", "127.0.0.1", kSshPort, dual);
  auto v6 = Connect("fd5e::2", "fd5e::3", kSshPort, dual);
  auto v6_other = Connect("fd5e::3", "fd5e::3", kSshPort, dual);
  const std::vector<Knock> ports = {{kSshPort, Protocol::kTcp}};

  const KilledSessions v4_killed = KillSessions(Ip("127.0.0.2"), ports);
  ASSERT_TRUE(v4_killed.status.ok()) << v4_killed.status;
  EXPECT_EQ(v4_killed.sockets, 1);
  EXPECT_EQ(ClientReadError(v4), ECONNRESET);

  const KilledSessions v6_killed = KillSessions(Ip("fd5e::2"), ports);
  ASSERT_TRUE(v6_killed.status.ok()) << v6_killed.status;
  EXPECT_EQ(v6_killed.sockets, 1);
  EXPECT_EQ(v6_killed.conntrack_entries, 1);
  EXPECT_EQ(ClientReadError(v6), ECONNRESET);
  EXPECT_TRUE(Carries(v6_other));
}

TEST_F(SessionKillerTest, DeletesTheConntrackEntriesOfUdpFlows) {
  sockaddr_storage server, client;
  const socklen_t server_len = SockAddr("127.0.0.1", kSshPort, &server);
  const socklen_t client_len = SockAddr("127.0.0.2", 0, &client);
  const Fd receiver(socket(AF_INET, SOCK_DGRAM, 0));
  ASSERT_EQ(bind(receiver.get(), reinterpret_cast<sockaddr*>(&server), server_len), 0);
  const Fd sender(socket(AF_INET, SOCK_DGRAM, 0));
  ASSERT_EQ(bind(sender.get(), reinterpret_cast<sockaddr*>(&client), client_len), 0);
  ASSERT_EQ(sendto(sender.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&server), server_len), 1);

  // A TCP grant port of the same number is not the UDP flow.
  const KilledSessions tcp_only = KillSessions(Ip("127.0.0.2"), std::vector<Knock>{{kSshPort, Protocol::kTcp}});
  EXPECT_EQ(tcp_only.conntrack_entries, 0);
  const KilledSessions udp = KillSessions(Ip("127.0.0.2"), std::vector<Knock>{{kSshPort, Protocol::kUdp}});
  ASSERT_TRUE(udp.status.ok()) << udp.status;
  EXPECT_EQ(udp.conntrack_entries, 1);
  EXPECT_EQ(udp.sockets, 0);  // the receiver is not connected to the peer
}

TEST_F(SessionKillerTest, NoPortsEndsNothing) {
  const Fd ssh = Listen("127.0.0.1", kSshPort);
  auto c = Connect("127.0.0.2", "127.0.0.1", kSshPort, ssh);
  const KilledSessions killed = KillSessions(Ip("127.0.0.2"), {});
  EXPECT_EQ(killed.sockets, 0);
  EXPECT_TRUE(Carries(c));
}

}  // namespace
}  // namespace sesame
