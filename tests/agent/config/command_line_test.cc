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

TEST(SubstituteWordsTest, ReplacesPlaceholdersInsideWords) {
  const auto out = SubstituteWords({"ufw", "allow", "from", "%IP%", "comment", "door=%DOOR%,ttl=%TTL%", "100%"},
                                   {{"IP", "10.0.0.9"}, {"DOOR", "ssh"}, {"TTL", "30"}});
  EXPECT_THAT(out, ElementsAre("ufw", "allow", "from", "10.0.0.9", "comment", "door=ssh,ttl=30", "100%"));
}

}  // namespace
}  // namespace sesame
