// The managed-mode keys of the configuration, and how the controller's doors
// map onto local door sections.
#include "absl/strings/match.h"
#include "agent/config/config.h"
#include "agent/managed/managed_doors.h"
#include "agent/managed/proto_convert.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sesame {
namespace {

using ::testing::ElementsAre;

constexpr char kManaged[] =
    "[options]\n"
    "  Controller = ctl1.example.net:7443, [2001:db8::1]:7443\n"
    "  CaCert = /etc/sesame/tls/ca.crt\n"
    "  Cert = /etc/sesame/tls/agent.crt\n"
    "  Key = /etc/sesame/tls/agent.key\n";

std::string ErrorOf(const std::string& text) {
  absl::StatusOr<AgentConfig> config = ParseConfig(text, "a.conf");
  if (config.ok()) return "OK";
  return std::string(config.status().message());
}

TEST(ManagedConfigTest, AFileWithoutDoorsIsFineInManagedMode) {
  auto config = ParseConfig(kManaged, "a.conf");
  ASSERT_TRUE(config.ok()) << config.status();
  const ManagedOptions& m = config->options.managed;
  EXPECT_TRUE(m.enabled());
  EXPECT_THAT(m.controllers, ElementsAre("ctl1.example.net:7443", "[2001:db8::1]:7443"));
  EXPECT_EQ(m.ca_cert, "/etc/sesame/tls/ca.crt");
  EXPECT_EQ(m.backend, BackendKind::kNftables);
  EXPECT_EQ(m.keepalive, absl::Seconds(20));
  EXPECT_EQ(m.spool_limit_bytes, uint64_t{16} << 20);
  // DESIGN: strict is the default in managed mode.
  EXPECT_EQ(config->options.reset_mode, ResetMode::kStrict);
  EXPECT_TRUE(config->doors.empty());
}

TEST(ManagedConfigTest, AllKeys) {
  auto config = ParseConfig(std::string(kManaged) +
                                "  AgentName = bastion1\n"
                                "  ManagedBackend = hosts_allow\n"
                                "  ReserveSize = 5\n"
                                "  SpoolLimitMB = 64\n"
                                "  Keepalive = 30s\n"
                                "  BackoffMin = 500ms\n"
                                "  BackoffMax = 1m\n"
                                "  ConnectTimeout = 3s\n"
                                "  AdvertiseHosts = bastion1.example.net, 192.0.2.10\n"
                                "  ResetMode = compat\n"
                                "[ssh]\n"
                                "  Managed = yes\n"
                                "  Backend = iptables\n"
                                "  Iptables_Chain = SESAME_SSH\n"
                                "  TCPFlags = syn\n"
                                "[breakGlass]\n"
                                "  Sequence = 9000,9001\n"
                                "  Backend = nftables\n",
                            "a.conf");
  ASSERT_TRUE(config.ok()) << config.status();
  const ManagedOptions& m = config->options.managed;
  EXPECT_EQ(m.agent_name, "bastion1");
  EXPECT_EQ(m.backend, BackendKind::kHostsAllow);
  EXPECT_EQ(m.reserve_size, 5);
  EXPECT_EQ(m.spool_limit_bytes, uint64_t{64} << 20);
  EXPECT_EQ(m.keepalive, absl::Seconds(30));
  EXPECT_EQ(m.backoff_min, absl::Milliseconds(500));
  EXPECT_EQ(m.backoff_max, absl::Minutes(1));
  EXPECT_EQ(m.connect_timeout, absl::Seconds(3));
  EXPECT_THAT(m.advertise_hosts, ElementsAre("bastion1.example.net", "192.0.2.10"));
  EXPECT_EQ(config->options.reset_mode, ResetMode::kCompat);  // explicit wins
  ASSERT_EQ(config->doors.size(), 2u);
  EXPECT_TRUE(config->doors[0].managed);
  EXPECT_EQ(config->doors[0].backend, BackendKind::kIptables);
  EXPECT_FALSE(config->doors[1].managed);
}

TEST(ManagedConfigTest, ErrorsNameTheLine) {
  const std::string m = kManaged;
  EXPECT_EQ(ErrorOf("[options]\nController = ctl:7443\nCaCert = /a\nCert = /b\n"),
            "a.conf:2: managed mode needs Key in [options] (CaCert: the CA of the controller's certificate; Cert "
            "and Key: this agent's certificate and private key)");
  EXPECT_EQ(ErrorOf("[options]\nController = ctl\n"),
            "a.conf:2: Controller: expected HOST:PORT[, HOST:PORT...] (an IPv6 address in brackets: "
            "[2001:db8::1]:7443), got \"ctl\"");
  EXPECT_EQ(ErrorOf("[options]\nController = ctl:0\n"),
            "a.conf:2: Controller: expected HOST:PORT[, HOST:PORT...] (an IPv6 address in brackets: "
            "[2001:db8::1]:7443), got \"ctl:0\"");
  EXPECT_EQ(ErrorOf("[options]\nController = 2001:db8::1:7443\n"),
            "a.conf:2: Controller: expected HOST:PORT[, HOST:PORT...] (an IPv6 address in brackets: "
            "[2001:db8::1]:7443), got \"2001:db8::1:7443\"");
  EXPECT_EQ(ErrorOf("[options]\nCaCert = /a\n[d]\nsequence = 1\ncommand = /bin/true\n"),
            "a.conf:2: CaCert, Cert and Key are for managed mode; expected a Controller line as well");
  EXPECT_EQ(ErrorOf("[ssh]\nManaged = yes\n"),
            "a.conf:1: door [ssh] says Managed = yes, but there is no Controller in [options]; expected "
            "Controller = HOST:PORT");
  EXPECT_EQ(ErrorOf(m + "[ssh]\nManaged = yes\nSequence = 1,2\n"),
            "a.conf:8: door [ssh] is managed: its Sequence comes from the controller; remove this line (or "
            "Managed = yes)");
  EXPECT_EQ(ErrorOf(m + "[ssh]\nPorts = 22\nManaged = yes\n"),
            "a.conf:7: door [ssh] is managed: its Ports comes from the controller; remove this line (or "
            "Managed = yes)");
  EXPECT_EQ(ErrorOf(m + "[ssh]\nManaged = maybe\n"), "a.conf:7: Managed: expected yes or no, got \"maybe\"");
  EXPECT_EQ(ErrorOf(m + "ManagedBackend = command\n"),
            "a.conf:6: ManagedBackend: the command backend needs commands; expected hosts_allow, nftables, "
            "iptables or ufw (or a door section with Managed = yes and Backend = command)");
  EXPECT_EQ(ErrorOf(m + "ManagedBackend = pf\n"),
            "a.conf:6: ManagedBackend: unknown backend \"pf\"; expected command, hosts_allow, nftables, iptables "
            "or ufw");
  EXPECT_EQ(ErrorOf(m + "AgentName = bad name\n"),
            "a.conf:6: AgentName: expected a name of letters, digits, _ - . (at most 64), got \"bad name\"");
  EXPECT_EQ(ErrorOf(m + "BackoffMin = 10s\nBackoffMax = 1s\n"),
            "a.conf:2: BackoffMax (1s) is shorter than BackoffMin (10s)");
  EXPECT_EQ(ErrorOf(m + "ReserveSize = 65\n"), "a.conf:6: ReserveSize: expected a whole number from 0 to 64, got \"65\"");
  EXPECT_EQ(ErrorOf(m + "SpoolLimitMB = 0\n"),
            "a.conf:6: SpoolLimitMB: expected a whole number from 1 to 4096, got \"0\"");
  EXPECT_EQ(ErrorOf(m + "[d]\nController = x:1\n"), "a.conf:7: Controller belongs in [options], not in door [d]");
  // In managed mode the list of keys names the managed ones too.
  EXPECT_TRUE(absl::StrContains(ErrorOf(m + "Controler = x:1\n"), "Controller, CaCert, Cert, Key, AgentName"));
}

TEST(ManagedConfigTest, ControllerDoorsMapOntoLocalSections) {
  auto config = ParseConfig(std::string(kManaged) +
                                "ManagedBackend = ufw\n"
                                "[ssh]\nManaged = yes\nBackend = hosts_allow\nTCPFlags = syn,!ack,!rst\n"
                                "[local]\nSequence = 1,2,3\nBackend = nftables\n",
                            "a.conf");
  ASSERT_TRUE(config.ok()) << config.status();
  std::map<std::string, v1::Door> doors;
  for (const char* name : {"ssh", "web", "local"}) {
    v1::Door d;
    d.set_name(name);
    v1::Knock* port = d.mutable_policy()->add_grant_ports();
    port->set_port(name == std::string("web") ? 443 : 22);
    port->set_protocol(v1::PROTOCOL_TCP);
    *d.mutable_policy()->mutable_grant_ttl() = ToProtoDuration(absl::Seconds(90));
    *d.mutable_policy()->mutable_seq_timeout() = ToProtoDuration(absl::Seconds(4));
    doors[name] = d;
  }
  std::vector<std::string> errors;
  std::vector<DoorConfig> managed = ManagedDoorConfigs(*config, doors, &errors);
  ASSERT_EQ(managed.size(), 2u);
  ASSERT_EQ(errors.size(), 1u);  // "local" is a standalone door here
  EXPECT_TRUE(absl::StrContains(errors[0], "standalone door [local]")) << errors[0];
  EXPECT_EQ(managed[0].name, "ssh");
  EXPECT_EQ(managed[0].backend, BackendKind::kHostsAllow);
  EXPECT_EQ(managed[0].cmd_timeout, absl::Seconds(90));
  EXPECT_EQ(managed[0].seq_timeout, absl::Seconds(4));
  EXPECT_EQ(managed[1].name, "web");
  EXPECT_EQ(managed[1].backend, BackendKind::kUfw);
  EXPECT_EQ(managed[1].ports, (std::vector<Knock>{{443, Protocol::kTcp}}));
  const MatchParams p = MatchParamsFor(*config, managed[0]);
  EXPECT_EQ(p.tcp_flags_clear, tcp_flags::kAck | tcp_flags::kRst);
  EXPECT_EQ(p.reset_mode, ResetMode::kStrict);
  EXPECT_EQ(p.seq_timeout, absl::Seconds(4));

  // The standalone pipeline and backends never see the managed sections.
  const AgentConfig standalone = StandaloneOnly(*config);
  ASSERT_EQ(standalone.doors.size(), 1u);
  EXPECT_EQ(standalone.doors[0].name, "local");
  EXPECT_EQ(WithManagedDoors(*config, managed).doors.size(), 3u);
}

}  // namespace
}  // namespace sesame
