#include "agent/grants/backends/command_backend.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::Duration kPatience = absl::Seconds(60);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Lines(const std::string& path) {
  return absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty());
}

IpAddress Ip(const char* text) {
  std::optional<IpAddress> a = IpAddress::Parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress());
}

// A configured command may be anything, including a shell: here it appends
// its arguments to a file the test reads. (sesame never adds a shell itself.)
std::string Recorder(const std::string& file, const std::string& tag, const std::string& args) {
  return absl::StrCat("/bin/sh -c 'echo \"", tag, " $*\" >> ", file, "' ", tag, " ", args);
}

class CommandBackendTest : public ::testing::Test {
 protected:
  CommandBackendTest() : clock_(absl::FromUnixSeconds(1'700'000'000)) {
    door_.name = "openSSH";
    door_.line = 7;
    door_.ports = {{22, Protocol::kTcp}, {443, Protocol::kTcp}};
  }

  Grant MakeGrant(const char* address, absl::Duration ttl = absl::Seconds(30)) {
    Grant g;
    g.door = door_.name;
    g.address = Ip(address);
    g.ports = door_.ports;
    g.opened = clock_.Now();
    g.expires = clock_.Now() + ttl;
    return g;
  }

  std::vector<std::string> Log() {
    EXPECT_TRUE(runner_.WaitIdle(kPatience));
    return Lines(log_);
  }

  testing::TempDir dir_;
  const std::string log_ = dir_.File("log");
  ManualClock clock_;
  DoorConfig door_;
  ProcessRunner runner_{ProcessRunnerOptions{}};
};

TEST_F(CommandBackendTest, OpenAndCloseRunTheCommandsWithPlaceholdersSubstituted) {
  door_.start_command = Recorder(log_, "start", "%IP% %DOOR% %PORTS% %TTL%");
  door_.stop_command = Recorder(log_, "stop", "%IP% %DOOR%");
  CommandBackend backend(door_, runner_, clock_);
  ASSERT_TRUE(backend.Prepare().ok());
  EXPECT_TRUE(backend.closes());
  EXPECT_EQ(backend.name(), "command");

  // 29.2 s left: %TTL% rounds up.
  Grant g = MakeGrant("10.0.0.9", absl::Milliseconds(29'200));
  ASSERT_TRUE(backend.Open(g).ok());
  EXPECT_THAT(Log(), ElementsAre("start 10.0.0.9 openSSH 22:tcp,443:tcp 30"));
  ASSERT_TRUE(backend.Close(g).ok());
  EXPECT_THAT(Log(), ElementsAre("start 10.0.0.9 openSSH 22:tcp,443:tcp 30", "stop 10.0.0.9 openSSH"));
}

TEST_F(CommandBackendTest, TtlIsZeroWithoutExpiryAndAtLeastOneWithIt) {
  door_.start_command = "/usr/sbin/iptables -A INPUT -s %IP% -m comment --comment ttl=%TTL% -j ACCEPT";
  CommandBackend backend(door_, runner_, clock_);
  Grant forever = MakeGrant("192.0.2.1");
  forever.expires = absl::InfiniteFuture();
  EXPECT_THAT(backend.StartArgv(forever), ElementsAre("/usr/sbin/iptables", "-A", "INPUT", "-s", "192.0.2.1", "-m",
                                                      "comment", "--comment", "ttl=0", "-j", "ACCEPT"));
  Grant overdue = MakeGrant("192.0.2.1", -absl::Seconds(5));
  EXPECT_EQ(backend.StartArgv(overdue)[8], "ttl=1");
}

TEST_F(CommandBackendTest, WithoutStopCommandCloseRunsNothing) {
  door_.start_command = Recorder(log_, "start", "%IP%");
  CommandBackend backend(door_, runner_, clock_);
  EXPECT_FALSE(backend.closes());
  Grant g = MakeGrant("10.0.0.9");
  ASSERT_TRUE(backend.Open(g).ok());
  ASSERT_TRUE(backend.Close(g).ok());
  EXPECT_THAT(Log(), ElementsAre("start 10.0.0.9"));
}

TEST_F(CommandBackendTest, Ipv6UsesTheSixCommands) {
  door_.start_command = Recorder(log_, "start4", "%IP%");
  door_.stop_command = Recorder(log_, "stop4", "%IP%");
  door_.start_command_6 = Recorder(log_, "start6", "%IP%");
  door_.stop_command_6 = Recorder(log_, "stop6", "%IP%");
  CommandBackend backend(door_, runner_, clock_);
  // Re-printed canonically (RFC 5952), whatever text it was parsed from.
  Grant v6 = MakeGrant("2001:DB8:0:0:0:0:0:1");
  Grant v4 = MakeGrant("198.51.100.7");
  ASSERT_TRUE(backend.Open(v6).ok());
  EXPECT_THAT(Log(), ElementsAre("start6 2001:db8::1"));
  ASSERT_TRUE(backend.Close(v6).ok());
  EXPECT_EQ(Log().size(), 2u);  // different addresses may run side by side: one at a time here
  ASSERT_TRUE(backend.Open(v4).ok());
  ASSERT_TRUE(backend.Close(v4).ok());
  EXPECT_THAT(Log(), ElementsAre("start6 2001:db8::1", "stop6 2001:db8::1", "start4 198.51.100.7",
                                 "stop4 198.51.100.7"));
}

TEST_F(CommandBackendTest, Ipv6FallsBackToTheIpv4CommandsAsTheParserResolvesThem) {
  // Without _6 lines the parser copies the IPv4 commands (knockd 0.8).
  door_.start_command = door_.start_command_6 = Recorder(log_, "start", "%IP%");
  door_.stop_command = door_.stop_command_6 = Recorder(log_, "stop", "%IP%");
  CommandBackend backend(door_, runner_, clock_);
  Grant g = MakeGrant("fe80::1");
  ASSERT_TRUE(backend.Open(g).ok());
  ASSERT_TRUE(backend.Close(g).ok());
  EXPECT_THAT(Log(), ElementsAre("start fe80::1", "stop fe80::1"));
}

TEST_F(CommandBackendTest, EmptySixCommandsRunNothingForIpv6) {
  door_.start_command = Recorder(log_, "start", "%IP%");
  door_.stop_command = Recorder(log_, "stop", "%IP%");
  CommandBackend backend(door_, runner_, clock_);
  EXPECT_TRUE(backend.closes(IpAddress::Family::kV4));
  EXPECT_FALSE(backend.closes(IpAddress::Family::kV6));
  Grant g = MakeGrant("2001:db8::2");
  ASSERT_TRUE(backend.Open(g).ok());
  ASSERT_TRUE(backend.Close(g).ok());
  EXPECT_THAT(Log(), IsEmpty());
}

TEST_F(CommandBackendTest, AnAddressIsAlwaysExactlyItsCanonicalText) {
  door_.start_command = door_.start_command_6 = "/bin/logger knock=%IP%";
  CommandBackend backend(door_, runner_, clock_);
  // Hostile text never becomes an IpAddress, so it cannot reach a command.
  for (const char* hostile : {"1.2.3.4; rm -rf /", "1.2.3.4 -j DROP", "$(id)", "::1%eth0", "[::1]", "1.2.3.4/0",
                              "01.2.3.4\n", "1.2.3.4 "}) {
    EXPECT_FALSE(IpAddress::Parse(hostile).has_value()) << hostile;
  }
  // Whatever the address, %IP% yields one word of address characters only.
  for (const char* text : {"0.0.0.0", "255.255.255.255", "::", "::ffff:1.2.3.4", "2001:db8:0:0:1:0:0:1"}) {
    std::vector<std::string> argv = backend.StartArgv(MakeGrant(text));
    ASSERT_EQ(argv.size(), 2u);
    EXPECT_EQ(argv[1], absl::StrCat("knock=", Ip(text).ToString()));
    EXPECT_EQ(argv[1].find_first_not_of("knock=0123456789abcdef.:"), std::string::npos) << argv[1];
  }
}

TEST_F(CommandBackendTest, OpenIsIdempotentUntilClosed) {
  door_.start_command = Recorder(log_, "start", "%IP%");
  door_.stop_command = Recorder(log_, "stop", "%IP%");
  CommandBackend backend(door_, runner_, clock_);
  Grant g = MakeGrant("10.1.1.1");
  ASSERT_TRUE(backend.Open(g).ok());
  ASSERT_TRUE(backend.Open(g).ok());  // a re-knock while open
  EXPECT_THAT(Log(), ElementsAre("start 10.1.1.1"));
  ASSERT_TRUE(backend.Open(g).ok());
  ASSERT_TRUE(backend.Close(g).ok());
  ASSERT_TRUE(backend.Open(g).ok());
  EXPECT_THAT(Log(), ElementsAre("start 10.1.1.1", "stop 10.1.1.1", "start 10.1.1.1"));
}

TEST_F(CommandBackendTest, AFailedStartIsRetriedByTheNextOpen) {
  door_.start_command = absl::StrCat("/bin/sh -c 'echo start >> ", log_, "; exit 1'");
  CommandBackend backend(door_, runner_, clock_);
  Grant g = MakeGrant("10.1.1.2");
  ASSERT_TRUE(backend.Open(g).ok());
  EXPECT_THAT(Log(), ElementsAre("start"));
  ASSERT_TRUE(backend.Open(g).ok());
  EXPECT_THAT(Log(), ElementsAre("start", "start"));
}

TEST_F(CommandBackendTest, CommandsForOneAddressRunInCallOrder) {
  // A slow start and an immediate Close: without ordering the stop command
  // would finish first and the door would stay open.
  door_.start_command = absl::StrCat("/bin/sh -c 'sleep 0.2; echo start $0 >> ", log_, "' %IP%");
  door_.stop_command = Recorder(log_, "stop", "%IP%");
  CommandBackend backend(door_, runner_, clock_);
  Grant a = MakeGrant("10.2.0.1");
  Grant b = MakeGrant("10.2.0.2");
  ASSERT_TRUE(backend.Open(a).ok());
  ASSERT_TRUE(backend.Open(b).ok());
  ASSERT_TRUE(backend.Close(a).ok());
  ASSERT_TRUE(backend.Open(a).ok());
  ASSERT_TRUE(backend.Close(a).ok());
  std::vector<std::string> log = Log();
  std::vector<std::string> for_a;
  for (const std::string& line : log) {
    if (absl::EndsWith(line, "10.2.0.1")) for_a.push_back(line);
  }
  EXPECT_THAT(for_a, ElementsAre("start 10.2.0.1", "stop 10.2.0.1", "start 10.2.0.1", "stop 10.2.0.1"));
  EXPECT_EQ(log.size(), 5u);
}

TEST_F(CommandBackendTest, ShellSyntaxRunsThroughShWithOnlyOurValuesInIt) {
  // knockd's classic TCP Wrappers pair, a file of the test's for hosts.allow.
  const std::string allow = dir_.File("hosts.allow");
  door_.start_command = absl::StrCat("/bin/echo \"SSHD: %IP%\" >> ", allow, " # door %DOOR%");
  door_.stop_command = absl::StrCat("/usr/bin/perl -ni.bak -e 'print unless /SSHD: %IP%/' ", allow);
  // No _6 lines: the parser gives IPv6 the same commands (knockd's fallback).
  door_.start_command_6 = door_.start_command;
  door_.stop_command_6 = door_.stop_command;
  ASSERT_TRUE(CommandBackend::Check(door_).ok()) << CommandBackend::Check(door_);
  EXPECT_THAT(CommandBackend::ShellNotice(door_).value_or(""),
              HasSubstr("door [openSSH]: Start_Command runs through /bin/sh -c, as knockd runs commands (it uses '>')"));
  CommandBackend backend(door_, runner_, clock_);
  ASSERT_TRUE(backend.Prepare().ok());
  const Grant v4 = MakeGrant("192.0.2.5"), v6 = MakeGrant("2001:db8::5");
  EXPECT_THAT(backend.StartArgv(v4),
              ElementsAre("/bin/sh", "-c", absl::StrCat("/bin/echo \"SSHD: 192.0.2.5\" >> ", allow, " # door openSSH")));
  // The perl line needs no shell: it runs as its words.
  EXPECT_EQ(backend.StopArgv(v4)[0], "/usr/bin/perl");
  ASSERT_TRUE(backend.Open(v4).ok());
  ASSERT_TRUE(runner_.WaitIdle(kPatience));  // commands of two addresses may run at once
  ASSERT_TRUE(backend.Open(v6).ok());
  ASSERT_TRUE(runner_.WaitIdle(kPatience));
  EXPECT_EQ(ReadFile(allow), "SSHD: 192.0.2.5\nSSHD: 2001:db8::5\n");
  ASSERT_TRUE(backend.Close(v4).ok());
  ASSERT_TRUE(runner_.WaitIdle(kPatience));
  EXPECT_EQ(ReadFile(allow), "SSHD: 2001:db8::5\n");
}

TEST_F(CommandBackendTest, AShellCommandNeverGetsADoorNameAShellWouldRead) {
  door_.name = "open ssh;reboot";
  door_.start_command = "/bin/echo %DOOR% > /dev/null";
  EXPECT_THAT(CommandBackend::Check(door_).message(), HasSubstr("uses %DOOR%, but the door's name is not plain text"));
  CommandBackend backend(door_, runner_, clock_);
  EXPECT_FALSE(backend.Prepare().ok());
  EXPECT_FALSE(backend.Open(MakeGrant("10.0.0.1")).ok());
  EXPECT_THAT(Log(), IsEmpty());
  // Without a shell the name is one word whatever it holds.
  door_.start_command = Recorder(log_, "start", "%DOOR%");
  EXPECT_TRUE(CommandBackend::Check(door_).ok());
}

TEST_F(CommandBackendTest, AnUnbalancedQuoteIsRefusedAndNothingRuns) {
  door_.start_command = Recorder(log_, "start", "%IP%");
  door_.stop_command = "/usr/sbin/iptables -D INPUT -s '%IP% -j ACCEPT";
  EXPECT_THAT(CommandBackend::Check(door_).message(), HasSubstr("door [openSSH] (line 7): Stop_Command"));
  CommandBackend backend(door_, runner_, clock_);
  absl::Status prepared = backend.Prepare();
  EXPECT_EQ(prepared.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(prepared.message(), HasSubstr("unbalanced quote"));
  Grant g = MakeGrant("10.0.0.1");
  EXPECT_EQ(backend.Open(g), prepared);
  EXPECT_EQ(backend.Close(g), prepared);
  EXPECT_FALSE(backend.closes());
  EXPECT_THAT(Log(), IsEmpty());
}

TEST_F(CommandBackendTest, AMissingProgramIsAnErrorFromOpen) {
  door_.start_command = "/nonexistent/sesame-open %IP%";
  CommandBackend backend(door_, runner_, clock_);
  EXPECT_TRUE(backend.Prepare().ok());  // the program may appear later; knockd also only finds out at run time
  EXPECT_EQ(backend.Open(MakeGrant("10.0.0.3")).code(), absl::StatusCode::kNotFound);
}

TEST_F(CommandBackendTest, BuiltWithTheFactorysTwoArgumentConstructor) {
  door_.start_command = Recorder(log_, "start", "%IP% %TTL%");
  CommandBackend backend(door_, runner_);
  Grant g = MakeGrant("10.0.0.4");
  g.expires = absl::Now() + absl::Hours(1);
  ASSERT_TRUE(backend.Open(g).ok());
  std::vector<std::string> log = Log();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_THAT(log[0], ::testing::StartsWith("start 10.0.0.4 "));
}

}  // namespace
}  // namespace sesame
