// The head format: what `audit head -o json` prints and the controller logs,
// and the head files an auditor keeps (JSON objects or the log's lines).
#include "controller/audit/audit_head.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

AuditCheckpoint MakeCheckpoint(uint64_t count) {
  AuditCheckpoint c;
  c.record_count = count;
  c.chain_hash.fill(0xab);
  c.time = absl::FromUnixMicros(1700000000123456);
  c.signature = std::string(64, '\x5c');
  return c;
}

const std::string kKeyId(64, 'e');
const std::string kHashHex = [] {
  std::string s;
  for (int i = 0; i < 32; ++i) s += "ab";
  return s;
}();
const std::string kSignatureHex = [] {
  std::string s;
  for (int i = 0; i < 64; ++i) s += "5c";
  return s;
}();

std::string Json(uint64_t count) { return FormatAuditHeadJson(MakeCheckpoint(count), kKeyId); }

absl::StatusOr<std::vector<AuditSignedHead>> Parse(const std::string& text) { return ParseAuditHeads(text, "h.json"); }

std::string ParseError(const std::string& text) {
  absl::StatusOr<std::vector<AuditSignedHead>> heads = Parse(text);
  EXPECT_FALSE(heads.ok()) << text;
  return heads.ok() ? "" : std::string(heads.status().message());
}

TEST(AuditHeadTest, JsonIsOneLineInTheDocumentedOrder) {
  EXPECT_EQ(Json(20), absl::StrCat("{\"record_count\": 20, \"chain_hash\": \"", kHashHex,
                                   "\", \"time\": \"2023-11-14T22:13:20.123456Z\", \"signature\": \"", kSignatureHex,
                                   "\", \"key_id\": \"", kKeyId, "\"}"));
  EXPECT_EQ(FormatAuditHeadJson(MakeCheckpoint(0), "").find("key_id"), std::string::npos);
  EXPECT_EQ(FormatAuditCheckpointLogLine(MakeCheckpoint(20), kKeyId), absl::StrCat("audit.checkpoint ", Json(20)));
}

TEST(AuditHeadTest, RoundTripsThroughAFile) {
  absl::StatusOr<std::vector<AuditSignedHead>> heads = Parse(Json(20) + "\n" + Json(30) + "\n");
  ASSERT_TRUE(heads.ok()) << heads.status();
  EXPECT_THAT(*heads, ElementsAre(AuditSignedHead{MakeCheckpoint(20), kKeyId, "h.json:1"},
                                  AuditSignedHead{MakeCheckpoint(30), kKeyId, "h.json:2"}));
}

TEST(AuditHeadTest, TheControllersLogIsAHeadFile) {
  // As journalctl prints it, with other lines between.
  const std::string log =
      absl::StrCat("May 01 12:00:00 ctl sesame-controller[42]: sesame-controller listening on [::]:7443\n",
                   "May 01 12:00:00 ctl sesame-controller[42]: 2023-11-14 22:13:20.123 sesame-controller[info]: ",
                   FormatAuditCheckpointLogLine(MakeCheckpoint(7), kKeyId), "\n",
                   "May 01 12:00:01 ctl sesame-controller[42]: door ssh added at revision 3\n",
                   FormatAuditCheckpointLogLine(MakeCheckpoint(9), kKeyId), "\n");
  absl::StatusOr<std::vector<AuditSignedHead>> heads = Parse(log);
  ASSERT_TRUE(heads.ok()) << heads.status();
  ASSERT_EQ(heads->size(), 2u);
  EXPECT_EQ((*heads)[0].checkpoint, MakeCheckpoint(7));
  EXPECT_EQ((*heads)[0].source, "h.json:2");
  EXPECT_EQ((*heads)[1].checkpoint, MakeCheckpoint(9));
  EXPECT_EQ((*heads)[1].source, "h.json:4");
}

TEST(AuditHeadTest, AnIndentedObjectWithUnknownKeysAndNoKeyIdIsAccepted) {
  const std::string text = absl::StrCat(
      "# saved by hand\n{\n  \"record_count\": 5,\n  \"comment\": \"a \\\"note\\\"\",\n", "  \"chain_hash\": \"",
      kHashHex, "\",\n  \"time\": \"2023-11-14T22:13:20.123456\\u005a\",\n", "  \"signature\": \"", kSignatureHex,
      "\", \"extra\": null\n}\n", "{\"record_count\": 6, \"chain_hash\": \"", kHashHex,
      "\", \"time\": \"2023-11-14T22:13:20.123456Z\", \"signature\": \"", kSignatureHex, "\", \"key_id\": \"",
      std::string(64, 'E'), "\"}");
  absl::StatusOr<std::vector<AuditSignedHead>> heads = Parse(text);
  ASSERT_TRUE(heads.ok()) << heads.status();
  ASSERT_EQ(heads->size(), 2u);
  EXPECT_EQ((*heads)[0].checkpoint, MakeCheckpoint(5));
  EXPECT_EQ((*heads)[0].key_id, "");
  EXPECT_EQ((*heads)[0].source, "h.json:2");
  EXPECT_EQ((*heads)[1].key_id, kKeyId);  // lower case, as KeyId() prints it
  EXPECT_EQ((*heads)[1].source, "h.json:9");
}

TEST(AuditHeadTest, MalformedHeadsAreErrorsWithTheirLine) {
  std::string missing = Json(3);
  missing.replace(missing.find("\"time\""), 6, "\"tyme\"");
  EXPECT_THAT(ParseError("\n" + missing), HasSubstr("h.json:2: head: no \"time\""));
  std::string bad_hash = Json(3);
  bad_hash.replace(bad_hash.find("abab"), 2, "zz");
  EXPECT_THAT(ParseError(bad_hash), HasSubstr("h.json:1: head: \"chain_hash\": "));
  std::string short_signature = Json(3);
  short_signature.erase(short_signature.find("5c5c"), 2);
  EXPECT_THAT(ParseError(short_signature), HasSubstr("\"signature\": expected 128 hex digits"));
  std::string negative = Json(3);
  negative.replace(negative.find("3"), 1, "-3");
  EXPECT_THAT(ParseError(negative), HasSubstr("\"-3\": expected a whole number"));
  std::string bad_time = Json(3);
  bad_time.replace(bad_time.find("2023-11-14T"), 11, "2023-11-14 ");
  EXPECT_THAT(ParseError(bad_time), HasSubstr("\"time\": time \"2023-11-14 22:13:20.123456Z\": expected"));
  EXPECT_THAT(ParseError(Json(3) + " trailing"), HasSubstr("h.json:1: head: text after the object's '}'"));
  EXPECT_THAT(ParseError(Json(3).substr(0, 40)), HasSubstr("h.json:1: head: the object ends early"));
  EXPECT_THAT(ParseError("{\"record_count\": 1, \"record_count\": 2}"), HasSubstr("\"record_count\" twice"));
  EXPECT_THAT(ParseError("{\"record_count\": [1]}"), HasSubstr("a nested object or array"));
  EXPECT_THAT(ParseError("{\"a\": \"\\q\"}"), HasSubstr("unknown escape \\q"));
  EXPECT_THAT(ParseError("{\"a\": \"\\u00e9\"}"), HasSubstr("beyond ASCII"));
  EXPECT_THAT(ParseError("x audit.checkpoint oops\n"), HasSubstr("h.json:1: expected a JSON object after"));
  // A log line's object ends on its line.
  EXPECT_THAT(ParseError("audit.checkpoint {\"record_count\": 1,\n\"chain_hash\": \"\"}\n"),
              HasSubstr("the object ends early"));
  EXPECT_THAT(ParseError("sesame-audit-export v1\nR\t0\n"), HasSubstr("h.json: no head: expected a JSON object"));
  EXPECT_THAT(ParseError(""), HasSubstr("no head"));
}

TEST(AuditHeadTest, LoadingIsBounded) {
  testing::TempDir dir;
  EXPECT_TRUE(absl::IsNotFound(LoadAuditHeads(dir.File("none.json")).status()));
  const std::string path = dir.File("big.json");
  ASSERT_TRUE(WriteFileAtomically(path, Json(1) + "\n", 0644).ok());
  ASSERT_TRUE(LoadAuditHeads(path).ok());
  // Sparse: no disk space is used.
  ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(kMaxAuditHeadFileBytes + 1)), 0);
  absl::StatusOr<std::vector<AuditSignedHead>> heads = LoadAuditHeads(path);
  EXPECT_FALSE(heads.ok());
  EXPECT_THAT(heads.status().message(), HasSubstr("more than a head file may hold"));
}

}  // namespace
}  // namespace sesame::controller
