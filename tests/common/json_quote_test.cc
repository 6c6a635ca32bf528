// JSON strings built by hand must stay JSON whatever the text (a log
// message, a verification problem quoting a file name).
#include "common/json_quote.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "gtest/gtest.h"

namespace sesame {
namespace {

TEST(JsonQuoteTest, EscapesWhatJsonRequires) {
  EXPECT_EQ(JsonQuote(""), "\"\"");
  EXPECT_EQ(JsonQuote("plain text: 1/2"), "\"plain text: 1/2\"");
  EXPECT_EQ(JsonQuote("a \"b\" \\c"), "\"a \\\"b\\\" \\\\c\"");
  EXPECT_EQ(JsonQuote("tab\there\nline\r\b\f"), "\"tab\\there\\nline\\r\\b\\f\"");
  EXPECT_EQ(JsonQuote(std::string("nul\0bell\x07 del\x7f", 14)), "\"nul\\u0000bell\\u0007 del\\u007f\"");
  EXPECT_EQ(JsonQuote("é"), "\"é\"");  // UTF-8 as it is

  // What it builds parses back to the same text.
  const std::string nasty = "file \"x\\y\".json:1:\t\x01 é";
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage("{\"problem\": " + JsonQuote(nasty) + "}", &parsed).ok());
  EXPECT_EQ(parsed.fields().at("problem").string_value(), nasty);
}

}  // namespace
}  // namespace sesame
