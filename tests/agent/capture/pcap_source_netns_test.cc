// Live capture through the kernel, in the test's private network namespace:
// real packets sent on `lo` with sockets, crafted frames injected on a veth
// pair, interfaces deleted and taken down under a running capture; and
// replay of capture files written with pcap_dump.
#include "agent/capture/pcap_source.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/frames.h"
#include "tests/support/namespace_sandbox.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using testing::BuildFrame;
using testing::FrameSpec;
using testing::RunCommand;
using testing::TcpFrame;
using testing::UdpFrame;
using ::testing::HasSubstr;

constexpr Knock Tcp(uint16_t port) { return {port, Protocol::kTcp}; }
constexpr Knock Udp(uint16_t port) { return {port, Protocol::kUdp}; }

const absl::Duration kPatience = absl::Seconds(20);  // bounds a broken test; measures nothing

void Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  const testing::CommandResult r = RunCommand(argv);
  ASSERT_EQ(r.exit_code, 0) << absl::StrJoin(argv, " ") << ": " << r.output;
}

// A veth pair whose ends carry the MACs that frames.h uses by default, so a
// frame injected on `peer` arrives on `name` addressed to it.
class VethPair {
 public:
  VethPair(std::string name, std::string peer) : name_(std::move(name)), peer_(std::move(peer)) { Create(); }
  ~VethPair() { RunCommand({"ip", "link", "del", name_}); }
  void Create() {
    Ip({"link", "add", name_, "address", "02:00:00:00:00:01", "type", "veth", "peer", "name", peer_, "address",
        "02:00:00:00:00:02"});
    Ip({"link", "set", name_, "up"});
    Ip({"link", "set", peer_, "up"});
  }
  const std::string& name() const { return name_; }

  // Sends `frame` out of the peer: it arrives on `name` as incoming.
  void Inject(const std::vector<uint8_t>& frame) const {
    const int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = static_cast<int>(if_nametoindex(peer_.c_str()));
    to.sll_halen = 6;
    const ssize_t sent = sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    const int saved = errno;
    close(fd);
    ASSERT_EQ(sent, static_cast<ssize_t>(frame.size())) << std::strerror(saved);
  }

 private:
  std::string name_;
  std::string peer_;
};

// Real packets from the host's stack: a UDP datagram, and the SYN of a
// non-blocking connect (answered by a RST on lo, as nothing listens).
void SendUdp(const char* host, uint16_t source_port, uint16_t port) {
  const bool v6 = std::strchr(host, ':') != nullptr;
  const int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_storage from{}, to{};
  socklen_t length;
  if (v6) {
    auto* f = reinterpret_cast<sockaddr_in6*>(&from);
    auto* t = reinterpret_cast<sockaddr_in6*>(&to);
    f->sin6_family = t->sin6_family = AF_INET6;
    f->sin6_port = htons(source_port);
    t->sin6_port = htons(port);
    inet_pton(AF_INET6, host, &t->sin6_addr);
    length = sizeof(sockaddr_in6);
  } else {
    auto* f = reinterpret_cast<sockaddr_in*>(&from);
    auto* t = reinterpret_cast<sockaddr_in*>(&to);
    f->sin_family = t->sin_family = AF_INET;
    f->sin_port = htons(source_port);
    t->sin_port = htons(port);
    inet_pton(AF_INET, host, &t->sin_addr);
    length = sizeof(sockaddr_in);
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&from), length), 0) << std::strerror(errno);
  ASSERT_EQ(sendto(fd, "knock", 5, 0, reinterpret_cast<sockaddr*>(&to), length), 5) << std::strerror(errno);
  close(fd);
}

void SendSyn(const char* host, uint16_t port) {
  const bool v6 = std::strchr(host, ':') != nullptr;
  const int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_storage to{};
  socklen_t length;
  if (v6) {
    auto* t = reinterpret_cast<sockaddr_in6*>(&to);
    t->sin6_family = AF_INET6;
    t->sin6_port = htons(port);
    inet_pton(AF_INET6, host, &t->sin6_addr);
    length = sizeof(sockaddr_in6);
  } else {
    auto* t = reinterpret_cast<sockaddr_in*>(&to);
    t->sin_family = AF_INET;
    t->sin_port = htons(port);
    inet_pton(AF_INET, host, &t->sin_addr);
    length = sizeof(sockaddr_in);
  }
  const int r = connect(fd, reinterpret_cast<sockaddr*>(&to), length);
  ASSERT_TRUE(r == 0 || errno == EINPROGRESS || errno == ECONNREFUSED) << std::strerror(errno);
  close(fd);
}

// Dispatches (polling the source's descriptor) until `done` holds for what
// arrived, or the source fails, or kPatience passes.
struct Collected {
  std::vector<Packet> packets;
  absl::Status status;
};
Collected CollectUntil(PcapSource& source, const std::function<bool(const std::vector<Packet>&)>& done) {
  Collected c;
  const absl::Time deadline = absl::Now() + kPatience;
  while (!done(c.packets) && absl::Now() < deadline) {
    pollfd pfd{source.selectable_fd(), POLLIN, 0};
    poll(&pfd, 1, 50);
    absl::StatusOr<int> n = source.Dispatch(64, [&](const Packet& p) { c.packets.push_back(p); });
    if (!n.ok()) {
      c.status = n.status();
      break;
    }
  }
  return c;
}

bool Has(const std::vector<Packet>& packets, Protocol protocol, uint16_t port) {
  for (const Packet& p : packets) {
    if (p.protocol == protocol && p.destination_port == port) return true;
  }
  return false;
}
int CountTo(const std::vector<Packet>& packets, Protocol protocol, uint16_t port) {
  int n = 0;
  for (const Packet& p : packets) n += p.protocol == protocol && p.destination_port == port;
  return n;
}

// Sends a marker UDP datagram to `port` until it is seen: everything sent
// before it has then been through the ring.
constexpr uint16_t kMarkerPort = 8999;

class LoopbackCaptureTest : public ::testing::TestWithParam<bool> {};

TEST_P(LoopbackCaptureTest, RealKnocksArriveDecodedAndOtherPortsStayOut) {
  LiveCaptureOptions options;
  options.interface = "lo";
  options.scope = CaptureScope::Only({Tcp(7000), Udp(8000), Udp(kMarkerPort)});
  options.immediate = GetParam();
  absl::StatusOr<std::unique_ptr<PcapSource>> source = OpenLiveCapture(options);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ((*source)->link_type(), DLT_EN10MB);
  EXPECT_TRUE((*source)->is_live());
  EXPECT_GE((*source)->selectable_fd(), 0);
  EXPECT_EQ((*source)->name(), "lo");

  const absl::Time before = absl::Now();
  for (const char* host : {"127.0.0.1", "::1"}) {
    SendUdp(host, 40001, 8000);
    SendSyn(host, 7000);
    SendUdp(host, 40002, 8001);  // other ports: kept out by the kernel
    SendSyn(host, 7001);
  }
  SendUdp("127.0.0.1", 40003, kMarkerPort);
  // Loopback packets may be processed on either CPU: wait for all of them.
  const Collected c = CollectUntil(**source, [](const auto& p) {
    return Has(p, Protocol::kUdp, kMarkerPort) && CountTo(p, Protocol::kUdp, 8000) >= 2 &&
           CountTo(p, Protocol::kTcp, 7000) >= 2;
  });
  ASSERT_TRUE(c.status.ok()) << c.status;
  ASSERT_TRUE(Has(c.packets, Protocol::kUdp, kMarkerPort));

  // Incoming only: each packet once, although lo sees it leave and arrive.
  EXPECT_EQ(CountTo(c.packets, Protocol::kUdp, 8000), 2);
  EXPECT_EQ(CountTo(c.packets, Protocol::kTcp, 7000), 2);
  EXPECT_FALSE(Has(c.packets, Protocol::kUdp, 8001));
  EXPECT_FALSE(Has(c.packets, Protocol::kTcp, 7001));
  for (const Packet& p : c.packets) {
    SCOPED_TRACE(absl::StrCat(p.source.ToString(), " -> ", p.destination.ToString(), ":", p.destination_port));
    EXPECT_EQ(p.source, p.destination);  // loopback
    EXPECT_GE(p.time, before - absl::Seconds(60));
    EXPECT_LE(p.time, absl::Now() + absl::Seconds(60));
    if (p.protocol == Protocol::kUdp && p.destination_port == 8000) {
      EXPECT_EQ(p.source_port, 40001);
    }
    if (p.protocol == Protocol::kTcp) {
      EXPECT_EQ(p.tcp_flags, tcp_flags::kSyn);
    }
  }
  // The RSTs that answered the SYNs went to ephemeral ports: filtered too.
  const CaptureStats stats = (*source)->Stats();
  EXPECT_EQ(stats.frames, c.packets.size());
  EXPECT_EQ(stats.malformed, 0u);
  EXPECT_EQ(stats.ignored, 0u);
  EXPECT_EQ(stats.kernel_drops, 0u);
}

INSTANTIATE_TEST_SUITE_P(BlockTimeoutAndImmediate, LoopbackCaptureTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Immediate" : "BlockTimeout"; });

TEST(LiveCaptureTest, SetScopeChangesTheKernelFilter) {
  LiveCaptureOptions options;
  options.interface = "lo";
  options.scope = CaptureScope::Only({Udp(kMarkerPort)});
  auto source = OpenLiveCapture(options);
  ASSERT_TRUE(source.ok()) << source.status();
  SendUdp("127.0.0.1", 40010, 8100);
  SendUdp("127.0.0.1", 40011, kMarkerPort);
  Collected c = CollectUntil(**source, [](const auto& p) { return Has(p, Protocol::kUdp, kMarkerPort); });
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_FALSE(Has(c.packets, Protocol::kUdp, 8100));

  ASSERT_TRUE((*source)->SetScope(CaptureScope::Only({Udp(8100)})).ok());
  EXPECT_THAT((*source)->filter_text(), HasSubstr("dst port 8100"));
  SendUdp("127.0.0.1", 40012, 8100);
  c = CollectUntil(**source, [](const auto& p) { return Has(p, Protocol::kUdp, 8100); });
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_TRUE(Has(c.packets, Protocol::kUdp, 8100));

  // A filter that does not compile is refused and the old one stays.
  const absl::Status bad = (*source)->SetFilterText("tcp dst port banana");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("banana"));
  EXPECT_THAT((*source)->filter_text(), HasSubstr("dst port 8100"));
}

TEST(LiveCaptureTest, AnyDeviceGivesCookedFrames) {
  LiveCaptureOptions options;
  options.interface = "any";
  options.scope = CaptureScope::Only({Udp(8200), Tcp(7200)});
  auto source = OpenLiveCapture(options);
  ASSERT_TRUE(source.ok()) << source.status();
  const int dlt = (*source)->link_type();
  EXPECT_TRUE(dlt == DLT_LINUX_SLL2 || dlt == DLT_LINUX_SLL) << dlt;
  SendSyn("::1", 7200);
  SendUdp("127.0.0.1", 40020, 8200);
  const Collected c = CollectUntil(**source, [](const auto& p) {
    return Has(p, Protocol::kUdp, 8200) && Has(p, Protocol::kTcp, 7200);
  });
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(CountTo(c.packets, Protocol::kUdp, 8200), 1);
  EXPECT_EQ(CountTo(c.packets, Protocol::kTcp, 7200), 1);
}

// Crafted frames through a veth: VLAN tags (the kernel takes the outer one
// off before the filter, libpcap puts it back), IPv6 extension headers.
TEST(LiveCaptureTest, CraftedFramesOnAVeth) {
  VethPair veth("sxcap0", "sxcap1");
  LiveCaptureOptions options;
  options.interface = veth.name();
  options.scope = CaptureScope::Only({Tcp(7000), Udp(8000), Udp(kMarkerPort)});
  auto source = OpenLiveCapture(options);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ((*source)->link_type(), DLT_EN10MB);

  FrameSpec tagged = TcpFrame("192.0.2.10", "192.0.2.1", 7000);
  tagged.vlans = {{0x8100, 42}};
  tagged.source_port = 1001;
  FrameSpec qinq = UdpFrame("2001:db8::7", "2001:db8::1", 8000);
  qinq.vlans = {{0x88A8, 5}, {0x8100, 6}};
  qinq.source_port = 1002;
  FrameSpec options6 = TcpFrame("2001:db8::7", "2001:db8::1", 7000);
  options6.ipv6_extensions = {{testing::kIpProtoDestinationOptions, 16}, {testing::kIpProtoFragment}};
  options6.source_port = 1003;
  FrameSpec plain = UdpFrame("192.0.2.10", "192.0.2.1", 8000);
  plain.source_port = 1004;
  FrameSpec other = TcpFrame("192.0.2.10", "192.0.2.1", 7001);
  FrameSpec marker = UdpFrame("192.0.2.10", "192.0.2.1", kMarkerPort);

  for (const FrameSpec* spec : {&tagged, &qinq, &options6, &plain, &other, &marker}) veth.Inject(BuildFrame(*spec));
  // Received on either CPU, so possibly out of order: wait for all five.
  const Collected c = CollectUntil(**source, [](const auto& p) { return p.size() >= 5; });
  ASSERT_TRUE(c.status.ok()) << c.status;
  std::map<uint16_t, Packet> by_source_port;
  for (const Packet& p : c.packets) by_source_port[p.source_port] = p;
  EXPECT_EQ(c.packets.size(), 5u);
  ASSERT_EQ(by_source_port.size(), 5u);
  EXPECT_EQ(by_source_port.count(40000), 1u);  // the marker
  const Packet& t = by_source_port[1001];
  EXPECT_EQ(t.source, IpAddress::Parse("192.0.2.10"));
  EXPECT_EQ(t.protocol, Protocol::kTcp);
  EXPECT_EQ(t.destination_port, 7000);
  const Packet& q = by_source_port[1002];
  EXPECT_EQ(q.destination, IpAddress::Parse("2001:db8::1"));
  EXPECT_EQ(q.protocol, Protocol::kUdp);
  const Packet& o = by_source_port[1003];
  EXPECT_EQ(o.tcp_flags, tcp_flags::kSyn);
  EXPECT_EQ(o.destination_port, 7000);
  EXPECT_EQ(by_source_port[1004].destination_port, 8000);
  // Nothing to 7001 came through. (The kernel's frame count may be higher
  // than five: the filter hands every IPv6 frame with extension headers to
  // user space, and the veth's own MLD reports carry a hop-by-hop header.)
  for (const Packet& p : c.packets) EXPECT_NE(p.destination_port, 7001);
  EXPECT_GE((*source)->Stats().frames, 5u);
}

TEST(LiveCaptureTest, MissingInterfaceIsNamedInTheError) {
  LiveCaptureOptions options;
  options.interface = "sxnosuch0";
  auto source = OpenLiveCapture(options);
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(source.status().message(), HasSubstr("'sxnosuch0'"));
}

TEST(LiveCaptureTest, DeletedInterfaceFailsDispatchAndReopeningWorksOnceItIsBack) {
  auto veth = std::make_unique<VethPair>("sxdel0", "sxdel1");
  LiveCaptureOptions options;
  options.interface = "sxdel0";
  options.scope = CaptureScope::Only({Udp(kMarkerPort)});
  auto source = OpenLiveCapture(options);
  ASSERT_TRUE(source.ok()) << source.status();
  veth->Inject(BuildFrame(UdpFrame("192.0.2.10", "192.0.2.1", kMarkerPort)));
  Collected c = CollectUntil(**source, [](const auto& p) { return !p.empty(); });
  ASSERT_EQ(c.packets.size(), 1u) << c.status;

  veth.reset();  // ip link del
  c = CollectUntil(**source, [](const auto&) { return false; });
  EXPECT_EQ(c.status.code(), absl::StatusCode::kUnavailable) << c.status;
  EXPECT_THAT(c.status.message(), HasSubstr("'sxdel0'"));
  // Broken for good: no spinning, the same error each time.
  absl::StatusOr<int> again = (*source)->Dispatch(64, [](const Packet&) {});
  EXPECT_EQ(again.status(), c.status);

  auto reopened = OpenLiveCapture(options);
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(reopened.status().message(), HasSubstr("'sxdel0'"));

  veth = std::make_unique<VethPair>("sxdel0", "sxdel1");
  reopened = OpenLiveCapture(options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  veth->Inject(BuildFrame(UdpFrame("192.0.2.10", "192.0.2.1", kMarkerPort)));
  c = CollectUntil(**reopened, [](const auto& p) { return !p.empty(); });
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.packets.size(), 1u);
}

TEST(LiveCaptureTest, InterfaceTakenDownFailsDispatch) {
  VethPair veth("sxdown0", "sxdown1");
  LiveCaptureOptions options;
  options.interface = veth.name();
  auto source = OpenLiveCapture(options);
  ASSERT_TRUE(source.ok()) << source.status();
  Ip({"link", "set", veth.name(), "down"});
  const Collected c = CollectUntil(**source, [](const auto&) { return false; });
  EXPECT_EQ(c.status.code(), absl::StatusCode::kUnavailable) << c.status;
  EXPECT_THAT(c.status.message(), HasSubstr("'sxdown0'"));
  EXPECT_THAT(c.status.message(), HasSubstr("down"));

  auto reopened = OpenLiveCapture(options);
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kUnavailable) << reopened.status();
  EXPECT_THAT(reopened.status().message(), HasSubstr("'sxdown0'"));
  Ip({"link", "set", veth.name(), "up"});
  reopened = OpenLiveCapture(options);
  EXPECT_TRUE(reopened.ok()) << reopened.status();
}

// ---- Capture files ----

TEST(CaptureFileTest, ReplaysDecodedPacketsWithTheirTimestamps) {
  testing::TempDir dir;
  const absl::Time t0 = absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(123456789);
  std::vector<testing::CapturedFrame> frames;
  frames.push_back({t0, BuildFrame(TcpFrame("192.0.2.10", "192.0.2.1", 7000))});
  FrameSpec tagged = UdpFrame("2001:db8::7", "2001:db8::1", 8000);
  tagged.vlans = {{0x8100, 7}};
  frames.push_back({t0 + absl::Milliseconds(1500), BuildFrame(tagged)});
  FrameSpec fragment = TcpFrame("192.0.2.10", "192.0.2.1", 7000);
  fragment.ipv4_fragment_offset = 100;  // passes the filter, ignored by the decoder
  frames.push_back({t0 + absl::Seconds(2), BuildFrame(fragment)});
  std::vector<uint8_t> cut = BuildFrame(TcpFrame("192.0.2.10", "192.0.2.1", 7000));
  cut.resize(14 + 20 + 10);  // malformed
  frames.push_back({t0 + absl::Seconds(3), cut});
  frames.push_back({t0 + absl::Seconds(4), BuildFrame(TcpFrame("192.0.2.11", "192.0.2.1", 9000))});
  ASSERT_TRUE(testing::WritePcapFile(dir.File("knocks.pcap"), DLT_EN10MB, frames).ok());

  auto source = OpenCaptureFile(dir.File("knocks.pcap"));
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_FALSE((*source)->is_live());
  EXPECT_EQ((*source)->selectable_fd(), -1);
  EXPECT_EQ((*source)->name(), dir.File("knocks.pcap"));
  std::vector<Packet> packets;
  int total = 0;
  for (int round = 0; round < 100; ++round) {  // bounded; the file has 5 frames
    absl::StatusOr<int> n = (*source)->Dispatch(2, [&](const Packet& p) { packets.push_back(p); });
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;
    EXPECT_LE(*n, 2);
    total += *n;
  }
  EXPECT_EQ(total, 5);
  ASSERT_EQ(packets.size(), 3u);
  EXPECT_EQ(packets[0].time, t0);  // nanoseconds survive
  EXPECT_EQ(packets[0].destination_port, 7000);
  EXPECT_EQ(packets[1].time, t0 + absl::Milliseconds(1500));
  EXPECT_EQ(packets[1].source, IpAddress::Parse("2001:db8::7"));
  EXPECT_EQ(packets[2].source, IpAddress::Parse("192.0.2.11"));
  const CaptureStats stats = (*source)->Stats();
  EXPECT_EQ(stats.frames, 5u);
  EXPECT_EQ(stats.ignored, 1u);
  EXPECT_EQ(stats.malformed, 1u);
  // At the end it stays at the end.
  EXPECT_EQ(*(*source)->Dispatch(10, [](const Packet&) {}), 0);
}

TEST(CaptureFileTest, ScopeFiltersAReplayAndOtherLinkTypesWork) {
  testing::TempDir dir;
  for (int dlt : {DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_RAW, DLT_NULL, DLT_LOOP}) {
    std::vector<testing::CapturedFrame> frames;
    for (uint16_t port : {7000, 7001, 7002}) {
      FrameSpec spec = TcpFrame("192.0.2.10", "192.0.2.1", port);
      spec.link_type = dlt;
      frames.push_back({absl::FromUnixSeconds(port), BuildFrame(spec)});
    }
    const std::string path = dir.File(absl::StrCat("link", dlt, ".pcap"));
    ASSERT_TRUE(testing::WritePcapFile(path, dlt, frames).ok());
    auto source = OpenCaptureFile(path, CaptureScope::Only({Tcp(7001)}));
    ASSERT_TRUE(source.ok()) << source.status();
    EXPECT_EQ((*source)->link_type(), dlt);
    std::vector<Packet> packets;
    ASSERT_TRUE((*source)->Dispatch(100, [&](const Packet& p) { packets.push_back(p); }).ok());
    ASSERT_EQ(packets.size(), 1u) << dlt;
    EXPECT_EQ(packets[0].destination_port, 7001);
    EXPECT_EQ(packets[0].time, absl::FromUnixSeconds(7001));
  }
}

TEST(CaptureFileTest, BadFilesAreClearErrors) {
  testing::TempDir dir;
  auto missing = OpenCaptureFile(dir.File("nope.pcap"));
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.pcap"));

  FILE* f = std::fopen(dir.File("junk.pcap").c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("this is not a capture file at all", f);
  std::fclose(f);
  auto junk = OpenCaptureFile(dir.File("junk.pcap"));
  ASSERT_FALSE(junk.ok());
  EXPECT_THAT(junk.status().message(), HasSubstr("junk.pcap"));

  // A file cut in the middle of a record: what came before is delivered,
  // then a data-loss error naming the file.
  const std::vector<uint8_t> udp = BuildFrame(UdpFrame("192.0.2.10", "192.0.2.1", 1));  // 42 bytes
  std::vector<testing::CapturedFrame> frames(3, {absl::UnixEpoch(), udp});
  ASSERT_TRUE(testing::WritePcapFile(dir.File("cut.pcap"), DLT_EN10MB, frames).ok());
  ASSERT_EQ(truncate(dir.File("cut.pcap").c_str(), 24 + 2 * (16 + 42) + 20), 0);
  auto cut = OpenCaptureFile(dir.File("cut.pcap"));
  ASSERT_TRUE(cut.ok()) << cut.status();
  int delivered = 0;
  absl::Status status;
  for (int round = 0; round < 10 && status.ok(); ++round) {
    absl::StatusOr<int> n = (*cut)->Dispatch(1, [&](const Packet&) { ++delivered; });
    if (!n.ok()) status = n.status();
  }
  EXPECT_EQ(delivered, 2);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr("cut.pcap"));

  // A link type the decoder does not know.
  ASSERT_TRUE(testing::WritePcapFile(dir.File("wifi.pcap"), DLT_IEEE802_11, {}).ok());
  auto wifi = OpenCaptureFile(dir.File("wifi.pcap"));
  ASSERT_FALSE(wifi.ok());
  EXPECT_THAT(wifi.status().message(), HasSubstr("IEEE802_11"));
}

}  // namespace
}  // namespace sesame
