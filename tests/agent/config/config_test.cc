#include "agent/config/config.h"

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/knockd_conf_samples.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr Knock Tcp(uint16_t port) { return Knock{port, Protocol::kTcp}; }
constexpr Knock Udp(uint16_t port) { return Knock{port, Protocol::kUdp}; }

absl::StatusOr<AgentConfig> Parse(const std::string& text) { return ParseConfig(text, "k.conf"); }

// The error message of a text that must not parse ("OK" if it parsed).
std::string ErrorOf(const std::string& text) {
  absl::StatusOr<AgentConfig> config = Parse(text);
  if (config.ok()) return "OK";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  return std::string(config.status().message());
}

using testing::kDebianKnockdConf;

// The classic three doors of knockd's manual (examples 1 and 2).
constexpr char kClassicKnockdConf[] =
    "[options]\n"
    "\tlogfile = /var/log/knockd.log\n"
    "\n"
    "[openSSH]\n"
    "\tsequence    = 7000,8000,9000\n"
    "\tseq_timeout = 10\n"
    "\ttcpflags    = syn\n"
    "\tcommand     = /usr/sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT\n"
    "\n"
    "[closeSSH]\n"
    "\tsequence    = 9000,8000,7000\n"
    "\tseq_timeout = 10\n"
    "\ttcpflags    = syn\n"
    "\tcommand     = /usr/sbin/iptables -D INPUT -s %IP% --dport 22 -j ACCEPT\n"
    "\n"
    "[opencloseSSH]\n"
    "\tsequence      = 2222:udp,3333:tcp,4444:udp\n"
    "\tseq_timeout   = 15\n"
    "\ttcpflags      = syn,ack\n"
    "\tstart_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT\n"
    "\tcmd_timeout   = 5\n"
    "\tstop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT\n";

TEST(ParseConfigTest, ReadsDebiansKnockdConfUnchanged) {
  auto config = Parse(kDebianKnockdConf);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->path, "k.conf");
  EXPECT_TRUE(config->options.use_syslog);
  EXPECT_EQ(config->options.log_file, "");
  ASSERT_EQ(config->doors.size(), 3u);

  const DoorConfig& open = config->doors[0];
  EXPECT_EQ(open.name, "openSSH");
  EXPECT_EQ(open.line, 4);
  EXPECT_THAT(open.sequence, ElementsAre(Tcp(7000), Tcp(8000), Tcp(9000)));
  EXPECT_EQ(open.one_time_sequences, "");
  EXPECT_EQ(open.seq_timeout, absl::Seconds(5));
  EXPECT_EQ(open.tcp_flags_set, tcp_flags::kSyn);
  EXPECT_EQ(open.tcp_flags_clear, 0);  // "tcpflags = syn" taken as written: ACK allowed
  EXPECT_EQ(open.start_command, "/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT");
  EXPECT_EQ(open.start_command_6, open.start_command);  // knockd 0.8's fallback
  EXPECT_EQ(open.stop_command, "");
  EXPECT_EQ(open.cmd_timeout, absl::Seconds(10));
  EXPECT_FALSE(open.target.has_value());
  EXPECT_EQ(open.backend, BackendKind::kCommand);

  EXPECT_EQ(config->doors[1].name, "closeSSH");
  EXPECT_EQ(config->doors[1].line, 10);
  EXPECT_THAT(config->doors[1].sequence, ElementsAre(Tcp(9000), Tcp(8000), Tcp(7000)));
  EXPECT_EQ(config->doors[2].name, "openHTTPS");
  EXPECT_THAT(config->doors[2].sequence, ElementsAre(Tcp(12345), Tcp(54321), Tcp(24680), Tcp(13579)));
}

TEST(ParseConfigTest, LogFormatIsTextOrJson) {
  auto config = Parse("[options]\nLogFormat = json\n[d]\nsequence = 1\ncommand = /bin/true\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->options.log_format, LogFormat::kJson);
  EXPECT_EQ(Parse("[d]\nsequence = 1\ncommand = /bin/true\n")->options.log_format, LogFormat::kText);
  EXPECT_EQ(ErrorOf("[options]\nLogFormat = xml\n[d]\nsequence = 1\ncommand = /bin/true\n"),
            "k.conf:2: LogFormat: expected text or json, got \"xml\"");
}

TEST(ParseConfigTest, ReadsTheClassicOpenCloseDoors) {
  auto config = Parse(kClassicKnockdConf);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->options.use_syslog);
  EXPECT_EQ(config->options.log_file, "/var/log/knockd.log");
  ASSERT_EQ(config->doors.size(), 3u);
  const DoorConfig& door = config->doors[2];
  EXPECT_EQ(door.name, "opencloseSSH");
  EXPECT_EQ(door.line, 16);
  EXPECT_THAT(door.sequence, ElementsAre(Udp(2222), Tcp(3333), Udp(4444)));
  EXPECT_EQ(door.seq_timeout, absl::Seconds(15));
  EXPECT_EQ(door.tcp_flags_set, tcp_flags::kSyn | tcp_flags::kAck);
  EXPECT_EQ(door.tcp_flags_clear, 0);
  EXPECT_EQ(door.start_command, "/usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT");
  EXPECT_EQ(door.stop_command, "/usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT");
  EXPECT_EQ(door.stop_command_6, door.stop_command);
  EXPECT_EQ(door.cmd_timeout, absl::Seconds(5));
}

TEST(ParseConfigTest, ReadsTheManualsOneTimeAndIpv6Example) {
  auto config = Parse(
      "[options]\n"
      "\tlogfile = /var/log/knockd.log\n"
      "\n"
      "[opencloseSMTP]\n"
      "\tone_time_sequences = /etc/knockd/smtp_sequences\n"
      "\tseq_timeout        = 15\n"
      "\ttcpflags           = fin,!ack\n"
      "\tstart_command      = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n"
      "\tstart_command_6    = /usr/sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n"
      "\tcmd_timeout        = 5\n"
      "\tstop_command       = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n"
      "\tstop_command_6     = /usr/sbin/ip6tables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n"
      "\t\n");
  ASSERT_TRUE(config.ok()) << config.status();
  const DoorConfig& door = config->doors.at(0);
  EXPECT_TRUE(door.sequence.empty());
  EXPECT_EQ(door.one_time_sequences, "/etc/knockd/smtp_sequences");
  EXPECT_EQ(door.tcp_flags_set, tcp_flags::kFin);
  EXPECT_EQ(door.tcp_flags_clear, tcp_flags::kAck);
  EXPECT_EQ(door.start_command_6, "/usr/sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT");
  EXPECT_EQ(door.stop_command_6, "/usr/sbin/ip6tables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT");
}

TEST(ParseConfigTest, DefaultsWhenKeysAreAbsent) {
  auto config = Parse("[door]\nsequence = 1\ncommand = /bin/true\n");
  ASSERT_TRUE(config.ok()) << config.status();
  const AgentOptions& o = config->options;
  EXPECT_FALSE(o.use_syslog);
  EXPECT_EQ(o.log_file, "");
  EXPECT_EQ(o.pid_file, "");
  EXPECT_TRUE(o.interfaces.empty());
  EXPECT_EQ(o.state_dir, "/var/lib/sesame-agent");
  EXPECT_EQ(o.reset_mode, ResetMode::kCompat);
  EXPECT_EQ(o.max_sources, 65536u);
  EXPECT_EQ(o.scan_threshold, 12);
  EXPECT_EQ(o.scan_window, absl::Seconds(5));
  EXPECT_EQ(o.scan_ban, absl::Seconds(300));
  EXPECT_EQ(o.scan_report_window, absl::Seconds(60));
  EXPECT_EQ(o.max_children, 16);
  EXPECT_EQ(o.command_time_limit, absl::Seconds(60));

  const DoorConfig& d = config->doors.at(0);
  EXPECT_EQ(d.seq_timeout, absl::Seconds(25));
  EXPECT_EQ(d.cmd_timeout, absl::Seconds(10));
  EXPECT_EQ(d.tcp_flags_set, tcp_flags::kSyn);  // sesame's default knock: SYN without ACK
  EXPECT_EQ(d.tcp_flags_clear, tcp_flags::kAck);
  EXPECT_EQ(d.backend, BackendKind::kCommand);
  EXPECT_THAT(d.ports, ElementsAre(Tcp(22)));
  EXPECT_FALSE(d.reset_mode.has_value());
  EXPECT_EQ(d.hosts_allow_form, HostsAllowForm::kInclude);
  EXPECT_EQ(d.hosts_allow_file, "/var/lib/sesame-agent/hosts.allow");
  EXPECT_EQ(d.hosts_allow_service, "sshd");
  EXPECT_EQ(d.nft_table, "sesame");
  EXPECT_EQ(d.iptables_chain, "SESAME");
  EXPECT_EQ(EffectiveResetMode(*config, d), ResetMode::kCompat);
}

TEST(ParseConfigTest, KeysAliasesAndOptionsAreCaseInsensitive) {
  auto config = Parse(
      "[OPTIONS]\n"
      "USESYSLOG\n"
      "LOGFILE=/tmp/k.log\n"
      "pidfile = /run/k.pid\n"
      "[Door]\n"
      "SEQUENCE = 1:TCP, 2:Udp\n"
      "TIMEOUT = 7\n"
      "TcpFlags = SYN , !Ack,URG\n"
      "COMMAND = /bin/echo open %IP%\n"
      "command_6 = /bin/echo open6 %IP%\n"
      "STOP_COMMAND = /bin/echo close %IP%\n"
      "Stop_Command_6 = /bin/echo close6 %IP%\n"
      "CMD_TIMEOUT = 3\n"
      "target = 192.0.2.7\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->options.use_syslog);
  EXPECT_EQ(config->options.log_file, "/tmp/k.log");
  EXPECT_EQ(config->options.pid_file, "/run/k.pid");
  const DoorConfig& d = config->doors.at(0);
  EXPECT_EQ(d.name, "Door");
  EXPECT_THAT(d.sequence, ElementsAre(Tcp(1), Udp(2)));
  EXPECT_EQ(d.seq_timeout, absl::Seconds(7));
  EXPECT_EQ(d.tcp_flags_set, tcp_flags::kSyn | tcp_flags::kUrg);
  EXPECT_EQ(d.tcp_flags_clear, tcp_flags::kAck);
  EXPECT_EQ(d.start_command, "/bin/echo open %IP%");
  EXPECT_EQ(d.start_command_6, "/bin/echo open6 %IP%");
  EXPECT_EQ(d.stop_command, "/bin/echo close %IP%");
  EXPECT_EQ(d.stop_command_6, "/bin/echo close6 %IP%");
  EXPECT_EQ(d.cmd_timeout, absl::Seconds(3));
  ASSERT_TRUE(d.target.has_value());
  EXPECT_EQ(d.target->ToString(), "192.0.2.7");
}

TEST(ParseConfigTest, CommentsBlankLinesAndLineEndings) {
  // CRLF, a byte order mark, indented comments, no newline at the end.
  auto config = Parse(
      "\xEF\xBB\xBF# knockd.conf\r\n"
      "   # indented comment\r\n"
      "\t\r\n"
      "[options]\r\n"
      "  UseSyslog  \r\n"
      "[ door one ]\r\n"
      "sequence=7000,8000\r\n"
      "#sequence = 1,2,3\r\n"
      "command = /bin/logger knock # not a comment after a value\r\n"
      "seq_timeout =   9");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->options.use_syslog);
  const DoorConfig& d = config->doors.at(0);
  EXPECT_EQ(d.name, "door one");
  EXPECT_EQ(d.line, 6);
  EXPECT_THAT(d.sequence, ElementsAre(Tcp(7000), Tcp(8000)));
  EXPECT_EQ(d.start_command, "/bin/logger knock # not a comment after a value");
  EXPECT_EQ(d.seq_timeout, absl::Seconds(9));
}

TEST(ParseConfigTest, DurationsInSecondsOrWithASuffix) {
  struct Case {
    const char* text;
    absl::Duration want;
  };
  for (const Case& c : {Case{"5", absl::Seconds(5)}, Case{"5s", absl::Seconds(5)}, Case{"5 S", absl::Seconds(5)},
                        Case{"250ms", absl::Milliseconds(250)}, Case{"2m", absl::Minutes(2)},
                        Case{"1h", absl::Hours(1)}, Case{"0030", absl::Seconds(30)}}) {
    auto config = Parse(std::string("[d]\nsequence = 1\ncommand = /bin/true\nseq_timeout = ") + c.text + "\n");
    ASSERT_TRUE(config.ok()) << c.text << ": " << config.status();
    EXPECT_EQ(config->doors[0].seq_timeout, c.want) << c.text;
  }
  auto zero = Parse("[d]\nsequence = 1\ncommand = /bin/true\ncmd_timeout = 0\n");
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(zero->doors[0].cmd_timeout, absl::ZeroDuration());  // knockd: stop right after start
}

TEST(ParseConfigTest, SesameOptions) {
  auto config = Parse(
      "[options]\n"
      "Interface = eth0, eth1 ,vlan.10\n"
      "StateDir = /srv/sesame/\n"
      "ResetMode = STRICT\n"
      "MaxSources = 1000\n"
      "ScanThreshold = 20\n"
      "ScanWindow = 1500ms\n"
      "ScanBan = 10m\n"
      "ScanReportWindow = 5m\n"
      "MaxChildren = 4\n"
      "CommandTimeLimit = 30\n"
      "[a]\nsequence = 1\nbackend = hosts_allow\n"
      "[b]\nsequence = 2\nbackend = hosts_allow\nhostsallow_form = inline\nresetmode = compat\n");
  ASSERT_TRUE(config.ok()) << config.status();
  const AgentOptions& o = config->options;
  EXPECT_THAT(o.interfaces, ElementsAre("eth0", "eth1", "vlan.10"));
  EXPECT_EQ(o.state_dir, "/srv/sesame");
  EXPECT_EQ(o.reset_mode, ResetMode::kStrict);
  EXPECT_EQ(o.max_sources, 1000u);
  EXPECT_EQ(o.scan_threshold, 20);
  EXPECT_EQ(o.scan_window, absl::Milliseconds(1500));
  EXPECT_EQ(o.scan_ban, absl::Minutes(10));
  EXPECT_EQ(o.scan_report_window, absl::Minutes(5));
  EXPECT_EQ(o.max_children, 4);
  EXPECT_EQ(o.command_time_limit, absl::Seconds(30));
  // The include form's file lives in StateDir, even when StateDir comes later.
  EXPECT_EQ(config->doors[0].hosts_allow_file, "/srv/sesame/hosts.allow");
  EXPECT_EQ(config->doors[1].hosts_allow_file, "/etc/hosts.allow");
  EXPECT_EQ(EffectiveResetMode(*config, config->doors[0]), ResetMode::kStrict);
  EXPECT_EQ(EffectiveResetMode(*config, config->doors[1]), ResetMode::kCompat);
}

TEST(ParseConfigTest, SesameDoorKeys) {
  auto config = Parse(
      "[ssh]\n"
      "sequence = 7000,8000\n"
      "Backend = NFTABLES\n"
      "Ports = 22, 443:tcp, 53:UDP\n"
      "ResetMode = strict\n"
      "HostsAllow_Form = Include\n"
      "HostsAllow_File = /etc/hosts.allow.d/sesame\n"
      "HostsAllow_Table = /etc/tcpd/hosts.allow\n"
      "HostsAllow_Service = sshd\n"
      "Nft_Table = sesame_fw\n"
      "Iptables_Chain = KNOCK-IN\n"
      "[cmd]\nsequence = 1\nbackend = command\nstart_command_6 = /bin/true\n"
      "[ipt]\nsequence = 2\nbackend = iptables\n"
      "[ufw]\nsequence = 3\nbackend = ufw\n"
      "[hosts]\nsequence = 4\nbackend = hosts_allow\nhostsallow_service = in.telnetd\n");
  ASSERT_TRUE(config.ok()) << config.status();
  const DoorConfig& d = config->doors.at(0);
  EXPECT_EQ(d.backend, BackendKind::kNftables);
  EXPECT_THAT(d.ports, ElementsAre(Tcp(22), Tcp(443), Udp(53)));
  EXPECT_EQ(d.reset_mode, ResetMode::kStrict);
  EXPECT_EQ(d.hosts_allow_form, HostsAllowForm::kInclude);
  EXPECT_EQ(d.hosts_allow_file, "/etc/hosts.allow.d/sesame");
  EXPECT_EQ(d.hosts_allow_table, "/etc/tcpd/hosts.allow");
  EXPECT_EQ(d.hosts_allow_service, "sshd");
  EXPECT_EQ(d.nft_table, "sesame_fw");
  EXPECT_EQ(d.iptables_chain, "KNOCK-IN");
  EXPECT_EQ(config->doors[1].backend, BackendKind::kCommand);
  EXPECT_EQ(config->doors[1].start_command, "");  // an IPv6-only command door
  EXPECT_EQ(config->doors[1].start_command_6, "/bin/true");
  EXPECT_EQ(config->doors[2].backend, BackendKind::kIptables);
  EXPECT_EQ(config->doors[3].backend, BackendKind::kUfw);
  EXPECT_EQ(config->doors[4].backend, BackendKind::kHostsAllow);
  EXPECT_EQ(config->doors[4].hosts_allow_service, "in.telnetd");
}

TEST(ParseConfigTest, Ipv6CommandsFallBackUnlessSetEmpty) {
  auto config = Parse(
      "[a]\nsequence = 1\nstart_command = /bin/open %IP%\nstop_command = /bin/close %IP%\n"
      "[b]\nsequence = 2\nstart_command = /bin/open %IP%\nstart_command_6 =\nstop_command = /bin/close %IP%\n"
      "stop_command_6 =\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->doors[0].start_command_6, "/bin/open %IP%");
  EXPECT_EQ(config->doors[0].stop_command_6, "/bin/close %IP%");
  EXPECT_EQ(config->doors[1].start_command_6, "");  // knockd: empty value = do nothing for IPv6
  EXPECT_EQ(config->doors[1].stop_command_6, "");
}

TEST(ParseConfigTest, RepeatedKeysLastWinsTcpFlagsAddUp) {
  auto config = Parse(
      "[d]\nsequence = 1,2\nsequence = 3\ncommand = /bin/a\ncommand = /bin/b\n"
      "tcpflags = syn\ntcpflags = !ack\n"
      "[options]\ninterface = eth0\ninterface = eth9\n");
  ASSERT_TRUE(config.ok()) << config.status();
  const DoorConfig& d = config->doors.at(0);
  EXPECT_THAT(d.sequence, ElementsAre(Tcp(3)));
  EXPECT_EQ(d.start_command, "/bin/b");
  EXPECT_EQ(d.tcp_flags_set, tcp_flags::kSyn);
  EXPECT_EQ(d.tcp_flags_clear, tcp_flags::kAck);
  EXPECT_THAT(config->options.interfaces, ElementsAre("eth9"));
}

TEST(ParseConfigTest, KnockdQuirksKept) {
  // UseSyslog is accepted in a door section (knockd sets the global flag);
  // [options] may come after doors and more than once; IPv6 target.
  auto config = Parse(
      "[d]\nUseSyslog\nsequence = 65535:udp,1\ncommand = /bin/true\ntarget = 2001:DB8::1\n"
      "[options]\nlogfile = /a\n[options]\npidfile = /b\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->options.use_syslog);
  EXPECT_EQ(config->options.log_file, "/a");
  EXPECT_EQ(config->options.pid_file, "/b");
  EXPECT_THAT(config->doors[0].sequence, ElementsAre(Udp(65535), Tcp(1)));
  EXPECT_EQ(config->doors[0].target->ToString(), "2001:db8::1");
}

TEST(ParseConfigTest, AcceptsExactlyMaxDoors) {
  std::string text;
  for (size_t i = 0; i < kMaxDoors; ++i) text += "[d" + std::to_string(i) + "]\nsequence = 1\ncommand = /bin/true\n";
  auto config = Parse(text);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->doors.size(), kMaxDoors);
  // One more: the error is on its header, line 3 * 64 + 1.
  text += "[one-too-many]\nsequence = 1\ncommand = /bin/true\n";
  EXPECT_EQ(ErrorOf(text), "k.conf:193: too many doors: at most 64 are allowed");
}

TEST(ParseSequenceTest, KnockdSyntax) {
  EXPECT_THAT(*ParseSequence("7000,8000:udp,9000:tcp"), ElementsAre(Tcp(7000), Udp(8000), Tcp(9000)));
  EXPECT_THAT(*ParseSequence(" 7000 , 8000 : UDP ,9000"), ElementsAre(Tcp(7000), Udp(8000), Tcp(9000)));
  EXPECT_THAT(*ParseSequence("1"), ElementsAre(Tcp(1)));
  EXPECT_THAT(*ParseSequence("1,1,1"), ElementsAre(Tcp(1), Tcp(1), Tcp(1)));  // repeats are allowed

  std::string longest;
  for (size_t i = 1; i <= kMaxSequenceLength; ++i) longest += (i > 1 ? "," : "") + std::to_string(i);
  auto ok = ParseSequence(longest);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), kMaxSequenceLength);
  EXPECT_EQ(ParseSequence(longest + ",33").status().message(), "sequence has 33 ports; at most 32 are allowed");
}

TEST(ParseSequenceTest, Errors) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {
           Case{"", "empty sequence; expected PORT[:tcp|udp],... such as 7000,8000:udp"},
           Case{"0", "port 0 is out of range (1-65535)"},
           Case{"65536", "port 65536 is out of range (1-65535)"},
           Case{"12345678901234", "port 12345678901234 is out of range (1-65535)"},
           Case{"70o0", "\"70o0\" is not a port number; expected PORT[:tcp|udp] with PORT in 1-65535"},
           Case{"-1", "\"-1\" is not a port number; expected PORT[:tcp|udp] with PORT in 1-65535"},
           Case{"7000:icmp", "unknown protocol \"icmp\" in \"7000:icmp\"; expected tcp or udp"},
           Case{"7000:", "unknown protocol \"\" in \"7000:\"; expected tcp or udp"},
           Case{"7000:tcp:x", "\"7000:tcp:x\" has more than one ':'; expected PORT or PORT:tcp or PORT:udp"},
           Case{"1,,2", "empty element in sequence \"1,,2\"; expected PORT[:tcp|udp] between the commas"},
           Case{"1,2,", "empty element in sequence \"1,2,\"; expected PORT[:tcp|udp] between the commas"},
           Case{"7000 # first", "\"7000 # first\" is not a port number; expected PORT[:tcp|udp] with PORT in 1-65535"},
       }) {
    auto knocks = ParseSequence(c.text);
    ASSERT_FALSE(knocks.ok()) << c.text;
    EXPECT_EQ(knocks.status().message(), c.message) << c.text;
  }
}

// Every validation error, each with the exact line it names.
TEST(ParseConfigErrorsTest, ExactMessagesAndLines) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::string ok_door = "[d]\nsequence = 1\ncommand = /bin/true\n";  // lines 1-3
  const std::vector<Case> cases = {
      // Structure.
      {"# comment\n\nsequence = 1\n",
       "k.conf:3: \"sequence\" is outside any section; expected [options] or a [door name] header first"},
      {"[d\nsequence = 1\n", "k.conf:1: expected a section header [name], got \"[d\""},
      {"[]\n", "k.conf:1: empty section name; expected [options] or [door name]"},
      {"[  ]\n", "k.conf:1: empty section name; expected [options] or [door name]"},
      {std::string("[d\x01]\nsequence = 1\n"), "k.conf:1: door name contains a control character"},
      {"[" + std::string(128, 'x') + "]\n", "k.conf:1: door name is 128 bytes long; at most 127 are allowed"},
      {ok_door + "\n[D]\nsequence = 2\ncommand = /bin/true\n",
       "k.conf:5: duplicate door name [D]; [d] is already defined at line 1"},
      {ok_door + "sequence 7000\n", "k.conf:4: expected KEY = VALUE, got \"sequence 7000\""},
      {ok_door + " = 7000\n", "k.conf:4: missing key before '='; expected KEY = VALUE"},
      {std::string("[d]\nsequence = 1\0002\n", 19), "k.conf:2: line contains a NUL byte; expected text"},
      {"", "k.conf: no door defined; expected at least one [door name] section with a Sequence or "
           "One_Time_Sequences (an agent without a door has nothing to do)"},
      {"[options]\nUseSyslog\n", "k.conf: no door defined; expected at least one [door name] section with a "
                                 "Sequence or One_Time_Sequences (an agent without a door has nothing to do)"},
      // Unknown keys and keys in the wrong section.
      {ok_door + "sequense = 1\n",
       "k.conf:4: unknown key \"sequense\" in door [d]; expected one of Sequence, One_Time_Sequences, "
       "Seq_Timeout, Timeout, TCPFlags, Start_Command, Command, Start_Command_6, Command_6, Stop_Command, "
       "Stop_Command_6, Cmd_Timeout, Target, Backend, Ports, ResetMode, HostsAllow_Form, HostsAllow_File, "
       "HostsAllow_Table, HostsAllow_Service, Nft_Table, Iptables_Chain"},
      {"[options]\nlogfle = /x\n" + ok_door,
       "k.conf:2: unknown key \"logfle\" in [options]; expected one of UseSyslog, LogFile, LogFormat, PidFile, "
       "Interface, StateDir, ResetMode, MaxSources, ScanThreshold, ScanWindow, ScanBan, ScanReportWindow, MaxChildren, "
       "CommandTimeLimit, MetricsFile, MetricsInterval"},
      {"[options]\nsequence = 1\n", "k.conf:2: Sequence belongs in a door section, not in [options]"},
      {ok_door + "logfile = /x\n", "k.conf:4: LogFile belongs in [options], not in door [d]"},
      {"[options]\nUseSyslog = yes\n", "k.conf:2: UseSyslog takes no value; write it alone on its line"},
      // Sequences.
      {"[d]\n\ncommand = /bin/true\n",
       "k.conf:1: door [d] has no knock sequence; expected a Sequence or One_Time_Sequences line"},
      {"[d]\nsequence = 1\none_time_sequences = /x\n",
       "k.conf:3: door [d] already has a Sequence (line 2); expected either Sequence or One_Time_Sequences"},
      {"[d]\none_time_sequences = /x\nsequence = 1\n",
       "k.conf:3: door [d] already has One_Time_Sequences (line 2); expected either Sequence or "
       "One_Time_Sequences"},
      {"[d]\none_time_sequences =\n",
       "k.conf:2: One_Time_Sequences: expected the path of a one-time sequences file"},
      {"[d]\nsequence = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33\n",
       "k.conf:2: Sequence: sequence has 33 ports; at most 32 are allowed"},
      {"[d]\nsequence = 7000,0\n", "k.conf:2: Sequence: port 0 is out of range (1-65535)"},
      {"[d]\nsequence = 70000\n", "k.conf:2: Sequence: port 70000 is out of range (1-65535)"},
      {"[d]\nsequence = 7000:sctp\n",
       "k.conf:2: Sequence: unknown protocol \"sctp\" in \"7000:sctp\"; expected tcp or udp"},
      {"[d]\nsequence =\n",
       "k.conf:2: Sequence: empty sequence; expected PORT[:tcp|udp],... such as 7000,8000:udp"},
      {ok_door + "ports = 22:tcp,,53\n",
       "k.conf:4: Ports: empty element in sequence \"22:tcp,,53\"; expected PORT[:tcp|udp] between the commas"},
      {ok_door + "ports = ssh\n",
       "k.conf:4: Ports: \"ssh\" is not a port number; expected PORT[:tcp|udp] with PORT in 1-65535"},
      // TCP flags.
      {ok_door + "tcpflags = syn,fyn\n",
       "k.conf:4: TCPFlags: unknown flag \"fyn\"; expected fin, syn, rst, psh, ack or urg, each optionally "
       "prefixed by !"},
      {ok_door + "tcpflags = syn,\n",
       "k.conf:4: TCPFlags: unknown flag \"\"; expected fin, syn, rst, psh, ack or urg, each optionally "
       "prefixed by !"},
      {ok_door + "tcpflags = syn,ack,!syn\n",
       "k.conf:4: TCPFlags: flag syn is both required and forbidden (!syn)"},
      {ok_door + "tcpflags = !ack\ntcpflags = ack\n",
       "k.conf:5: TCPFlags: flag ack is both required and forbidden (!ack)"},
      // Numbers and durations.
      {ok_door + "seq_timeout = 5x\n",
       "k.conf:4: Seq_Timeout: expected a duration (whole seconds, or a number with ms, s, m or h), got \"5x\""},
      {ok_door + "timeout = 1.5\n",
       "k.conf:4: Timeout: expected a duration (whole seconds, or a number with ms, s, m or h), got \"1.5\""},
      {ok_door + "seq_timeout = -1\n",
       "k.conf:4: Seq_Timeout: expected a duration (whole seconds, or a number with ms, s, m or h), got \"-1\""},
      {ok_door + "seq_timeout = 0\n", "k.conf:4: Seq_Timeout: expected a duration greater than zero"},
      {ok_door + "cmd_timeout =\n",
       "k.conf:4: Cmd_Timeout: expected a duration (whole seconds, or a number with ms, s, m or h), got \"\""},
      {ok_door + "cmd_timeout = 9999999999\n",
       "k.conf:4: Cmd_Timeout: expected a duration (whole seconds, or a number with ms, s, m or h), got "
       "\"9999999999\""},
      {"[options]\nMaxSources = lots\n" + ok_door,
       "k.conf:2: MaxSources: expected a whole number from 1 to 16777216, got \"lots\""},
      {"[options]\nMaxSources = 0\n" + ok_door,
       "k.conf:2: MaxSources: expected a whole number from 1 to 16777216, got \"0\""},
      {"[options]\nScanThreshold = -3\n" + ok_door,
       "k.conf:2: ScanThreshold: expected a whole number from 1 to 65535, got \"-3\""},
      {"[options]\nMaxChildren = 0\n" + ok_door,
       "k.conf:2: MaxChildren: expected a whole number from 1 to 1024, got \"0\""},
      {"[options]\nScanWindow = 0ms\n" + ok_door, "k.conf:2: ScanWindow: expected a duration greater than zero"},
      {"[options]\nScanBan = 1d\n" + ok_door,
       "k.conf:2: ScanBan: expected a duration (whole seconds, or a number with ms, s, m or h), got \"1d\""},
      {"[options]\nScanReportWindow = 25h\n" + ok_door, "k.conf:2: ScanReportWindow: expected at most 24h, got \"25h\""},
      {"[options]\nCommandTimeLimit = 0\n" + ok_door,
       "k.conf:2: CommandTimeLimit: expected a duration greater than zero"},
      // Addresses, names, paths.
      {ok_door + "target = bastion.example.org\n",
       "k.conf:4: Target: expected an IPv4 or IPv6 address, got \"bastion.example.org\""},
      {ok_door + "target = 10.0.0.1/24\n", "k.conf:4: Target: expected an IPv4 or IPv6 address, got \"10.0.0.1/24\""},
      {"[options]\ninterface = eth0 eth1\n" + ok_door,
       "k.conf:2: Interface: expected interface names separated by commas (eth0,eth1), got \"eth0 eth1\""},
      {"[options]\ninterface = eth0,,eth1\n" + ok_door,
       "k.conf:2: Interface: expected interface names separated by commas (eth0,eth1), got \"\""},
      {"[options]\ninterface = averyveryverylongname\n" + ok_door,
       "k.conf:2: Interface: expected interface names separated by commas (eth0,eth1), got "
       "\"averyveryverylongname\""},
      {"[options]\nStateDir = var/lib/sesame\n" + ok_door,
       "k.conf:2: StateDir: expected an absolute path, got \"var/lib/sesame\""},
      {ok_door + "HostsAllow_File = hosts.allow\n",
       "k.conf:4: HostsAllow_File: expected an absolute path, got \"hosts.allow\""},
      {ok_door + "HostsAllow_Form = append\n", "k.conf:4: HostsAllow_Form: expected include or inline, got \"append\""},
      {ok_door + "HostsAllow_Service = sshd: ALL\n",
       "k.conf:4: HostsAllow_Service: expected one daemon name such as sshd, got \"sshd: ALL\""},
      {ok_door + "Nft_Table = 1table\n",
       "k.conf:4: Nft_Table: expected an nftables table name (a letter, then letters, digits, _ - .; at most 64), "
       "got \"1table\""},
      {ok_door + "Iptables_Chain = -A\n",
       "k.conf:4: Iptables_Chain: expected an iptables chain name (letters, digits, _ -; at most 28), got \"-A\""},
      // Backends, modes, commands.
      {ok_door + "backend = pf\n",
       "k.conf:4: unknown Backend \"pf\"; expected command, hosts_allow, nftables, iptables or ufw"},
      {"[options]\nResetMode = paranoid\n" + ok_door,
       "k.conf:2: ResetMode: expected compat or strict, got \"paranoid\""},
      {ok_door + "ResetMode = loose\n", "k.conf:4: ResetMode: expected compat or strict, got \"loose\""},
      {ok_door + "command_6 = echo 'open\n", "k.conf:4: Command_6: command has an unbalanced quote"},
      {"[d]\nsequence = 1\n", "k.conf:1: door [d] uses the command backend but has no Start_Command (alias "
                              "Command); expected a command, or a Backend line"},
      {"[d]\nsequence = 1\ncommand =\nstop_command = /bin/true\n",
       "k.conf:1: door [d] uses the command backend but has no Start_Command (alias Command); expected a "
       "command, or a Backend line"},
  };
  for (const Case& c : cases) EXPECT_EQ(ErrorOf(c.text), c.message) << c.text;
}

TEST(ParseConfigErrorsTest, TheFirstErrorWinsAndNamesTheGivenFile) {
  auto config = ParseConfig("[d]\nsequence = 0\nbogus = 1\n", "/etc/knockd.conf");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(), "/etc/knockd.conf:2: Sequence: port 0 is out of range (1-65535)");
}

TEST(LoadConfigTest, ReadsAFileAndRemembersItsPath) {
  testing::TempDir dir;
  const std::string path = dir.File("knockd.conf");
  std::ofstream(path) << kDebianKnockdConf;
  auto config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->path, path);
  EXPECT_EQ(config->doors.size(), 3u);

  std::ofstream(path) << "[d]\nsequence = 1\ncommand = /bin/true\nseq_timeout = soon\n";
  EXPECT_THAT(std::string(LoadConfig(path).status().message()),
              StartsWith(path + ":4: Seq_Timeout: expected a duration"));
}

TEST(LoadConfigTest, MissingOrUnreadableFileIsAClearError) {
  testing::TempDir dir;
  auto missing = LoadConfig(dir.File("nope.conf"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("cannot read configuration"));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(dir.File("nope.conf")));

  auto directory = LoadConfig(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_THAT(std::string(directory.status().message()), HasSubstr("cannot read configuration"));
  EXPECT_THAT(std::string(directory.status().message()), HasSubstr(dir.path()));
}

}  // namespace
}  // namespace sesame
