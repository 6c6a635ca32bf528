// The daemons' log in JSON (LogFormat = json): one object a line, events
// with their fields, other messages as "log", whatever the text.
#include "common/log.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::testing::MatchesRegex;

class LogFormatTest : public ::testing::Test {
 protected:
  ~LogFormatTest() override { (void)ConfigureLogging(LogOptions{}); }

  std::vector<google::protobuf::Struct> Lines() {
    std::vector<google::protobuf::Struct> out;
    const std::vector<std::string> lines = absl::StrSplit(*ReadFileToString(dir_.File("log")), '\n', absl::SkipEmpty());
    for (const std::string& line : lines) {
      google::protobuf::Struct parsed;
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok()) << line;
      out.push_back(parsed);
    }
    return out;
  }

  testing::TempDir dir_;
};

std::string S(const google::protobuf::Struct& s, const std::string& key) {
  const auto it = s.fields().find(key);
  return it == s.fields().end() ? "<missing>" : it->second.string_value();
}

TEST_F(LogFormatTest, JsonLinesCarryEventsAndFields) {
  LogOptions options;
  options.ident = "sesame-agent";
  options.to_stderr = false;
  options.file = dir_.File("log");
  options.format = LogFormat::kJson;
  ASSERT_TRUE(ConfigureLogging(options).ok());
  LogEvent(LogLevel::kInfo, "knock.opened", {{"source", "198.51.100.7"}, {"door", "open\"SSH\""}},
           "198.51.100.7: openSSH: OPEN SESAME");
  LogWarning("a plain message\nwith a second line and a \"quote\"");
  LogInfo(R"(audit.checkpoint {"record_count": 4, "chain_hash": "ab"})");
  LogDebug("below the level: not written");

  const std::vector<google::protobuf::Struct> lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(S(lines[0], "time"), MatchesRegex("20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9:.]+Z"));
  EXPECT_EQ(S(lines[0], "level"), "info");
  EXPECT_EQ(S(lines[0], "daemon"), "sesame-agent");
  EXPECT_EQ(S(lines[0], "event"), "knock.opened");
  EXPECT_EQ(S(lines[0], "message"), "198.51.100.7: openSSH: OPEN SESAME");
  EXPECT_EQ(S(lines[0].fields().at("fields").struct_value(), "door"), "open\"SSH\"");
  EXPECT_EQ(S(lines[1], "event"), "log");
  EXPECT_EQ(S(lines[1], "level"), "warning");
  EXPECT_EQ(S(lines[1], "message"), "a plain message\nwith a second line and a \"quote\"");
  EXPECT_EQ(S(lines[2], "event"), "audit.checkpoint");
  EXPECT_EQ(lines[2].fields().at("fields").struct_value().fields().at("record_count").number_value(), 4);
}

TEST_F(LogFormatTest, TextStaysKnockdsLogFileFormat) {
  LogOptions options;
  options.to_stderr = false;
  options.file = dir_.File("log");
  ASSERT_TRUE(ConfigureLogging(options).ok());
  LogEvent(LogLevel::kInfo, "knock.opened", {{"source", "198.51.100.7"}}, "198.51.100.7: openSSH: OPEN SESAME");
  EXPECT_THAT(*ReadFileToString(dir_.File("log")),
              MatchesRegex("\\[[0-9-]+ [0-9:]+\\] 198\\.51\\.100\\.7: openSSH: OPEN SESAME\n"));
}

TEST(ParseLogFormatTest, TextOrJson) {
  EXPECT_EQ(ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_EQ(ParseLogFormat("Text"), LogFormat::kText);
  EXPECT_EQ(ParseLogFormat("yaml"), std::nullopt);
}

}  // namespace
}  // namespace sesame
