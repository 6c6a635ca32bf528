#include "agent/config/command_line.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sesame {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(SplitCommandLineTest, SplitsLikeAShell) {
  auto words = SplitCommandLine(R"(/usr/sbin/iptables -A INPUT -s %IP% -m comment --comment "knock door" -j ACCEPT)");
  ASSERT_TRUE(words.ok()) << words.status();
  EXPECT_THAT(*words, ElementsAre("/usr/sbin/iptables", "-A", "INPUT", "-s", "%IP%", "-m", "comment", "--comment",
                                  "knock door", "-j", "ACCEPT"));
  EXPECT_THAT(*SplitCommandLine(R"(echo 'a b'"c d"\ e)"), ElementsAre("echo", "a bc d e"));
}

TEST(SplitCommandLineTest, RefusesShellSyntaxWithAReason) {
  for (const char* cmd : {"a; b", "a && b", "a | b", "a > /tmp/x", "a < x", "echo `id`", "echo $(id)", "a &"}) {
    auto words = SplitCommandLine(cmd);
    ASSERT_FALSE(words.ok()) << cmd;
    EXPECT_THAT(words.status().message(), HasSubstr("without a shell")) << cmd;
  }
  EXPECT_FALSE(SplitCommandLine("echo 'open").ok());
  EXPECT_FALSE(SplitCommandLine("   ").ok());
}

TEST(SplitCommandLineTest, QuotedOperatorsAreJustText) {
  EXPECT_THAT(*SplitCommandLine("logger 'a; b | c'"), ElementsAre("logger", "a; b | c"));
}

TEST(SplitCommandLineTest, AnUnquotedHashStartsACommentAsInSh) {
  EXPECT_THAT(*SplitCommandLine("/sbin/iptables -A INPUT -s %IP% -j ACCEPT # open ssh"),
              ElementsAre("/sbin/iptables", "-A", "INPUT", "-s", "%IP%", "-j", "ACCEPT"));
  EXPECT_THAT(*SplitCommandLine("echo a#b '#c'"), ElementsAre("echo", "a#b", "#c"));
}

TEST(ParseCommandLineTest, ShellSyntaxKeepsTheTextWholeForSh) {
  absl::StatusOr<CommandLine> c = ParseCommandLine(R"(/bin/echo "SSHD: %IP%" >> /etc/hosts.allow)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->needs_shell());
  EXPECT_THAT(c->words, ElementsAre());
  EXPECT_EQ(c->shell_text, R"(/bin/echo "SSHD: %IP%" >> /etc/hosts.allow)");
  EXPECT_EQ(c->shell_syntax, "'>'");
  for (const char* cmd : {"a; b", "a && b", "a | b", "a < x", "echo `id`", "echo $(id)", "a &", "echo \"$(id)\""}) {
    ASSERT_TRUE(ParseCommandLine(cmd).ok()) << cmd;
    EXPECT_TRUE(ParseCommandLine(cmd)->needs_shell()) << cmd;
  }
  // A comment after an operator may hold any quote; quotes before it must balance.
  EXPECT_TRUE(ParseCommandLine("echo a >> f # it's fine").ok());
  EXPECT_TRUE(ParseCommandLine("a;#don't").ok());
  EXPECT_FALSE(ParseCommandLine("echo 'a >> f").ok());
  EXPECT_FALSE(ParseCommandLine(">").ok());
  // Quoted operators are text: no shell.
  EXPECT_FALSE(ParseCommandLine("logger 'a; b | c'")->needs_shell());
}

TEST(CommandArgvTest, WordsOrShWithOnlyPlainValues) {
  const Substitutions values = {{"IP", "2001:db8::7"}, {"DOOR", "open ssh"}, {"PORTS", "22:tcp,443:tcp"}};
  EXPECT_THAT(*CommandArgv(*ParseCommandLine("log %DOOR% %IP%"), values), ElementsAre("log", "open ssh", "2001:db8::7"));
  EXPECT_THAT(*CommandArgv(*ParseCommandLine("echo %IP% %PORTS% >> f"), values),
              ElementsAre("/bin/sh", "-c", "echo 2001:db8::7 22:tcp,443:tcp >> f"));
  // A value a shell would read as more than text never goes into its text.
  absl::StatusOr<std::vector<std::string>> refused = CommandArgv(*ParseCommandLine("echo %DOOR% >> f"), values);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("%DOOR% is \"open ssh\""));
  EXPECT_TRUE(SafeForShell("fd5e:20::11"));
  EXPECT_TRUE(SafeForShell("192.0.2.1"));
  for (const char* unsafe : {"a b", "a;b", "$x", "a'b", "a\"b", "`x`", "a*", "~x", "a\nb", "%IP%"}) {
    EXPECT_FALSE(SafeForShell(unsafe)) << unsafe;
  }
}

TEST(SubstituteWordsTest, ReplacesPlaceholdersInsideWords) {
  const auto out = SubstituteWords({"ufw", "allow", "from", "%IP%", "comment", "door=%DOOR%,ttl=%TTL%", "100%"},
                                   {{"IP", "10.0.0.9"}, {"DOOR", "ssh"}, {"TTL", "30"}});
  EXPECT_THAT(out, ElementsAre("ufw", "allow", "from", "10.0.0.9", "comment", "door=ssh,ttl=30", "100%"));
}

}  // namespace
}  // namespace sesame
