#include "common/prometheus_text.h"

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

TEST(PrometheusTextTest, WritesHelpTypeAndValuePerFamily) {
  absl::StatusOr<std::string> text =
      FormatPrometheusText({Counter("sesame_knocks_total", "Knocks seen.", 42), Gauge("sesame_open", "Open now.", 3)});
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "# HELP sesame_knocks_total Knocks seen.\n"
            "# TYPE sesame_knocks_total counter\n"
            "sesame_knocks_total 42\n"
            "# HELP sesame_open Open now.\n"
            "# TYPE sesame_open gauge\n"
            "sesame_open 3\n");
}

TEST(PrometheusTextTest, GroupsOneFamilyAndEscapesLabelValuesAndHelp) {
  MetricSample a = Gauge("up", "Line one\nback\\slash.", 1);
  a.labels = {{"agent", "b\"1\\\n"}};
  MetricSample other = Gauge("other", "Other.", 0);
  MetricSample b = Gauge("up", "ignored: the family's first help wins", 0);
  b.labels = {{"agent", "b2"}, {"door", "ssh"}};
  absl::StatusOr<std::string> text = FormatPrometheusText({a, other, b});
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "# HELP up Line one\\nback\\\\slash.\n"
            "# TYPE up gauge\n"
            "up{agent=\"b\\\"1\\\\\\n\"} 1\n"
            "up{agent=\"b2\",door=\"ssh\"} 0\n"
            "# HELP other Other.\n"
            "# TYPE other gauge\n"
            "other 0\n");
}

TEST(PrometheusTextTest, ValuesKeepEveryDigitOfACounter) {
  EXPECT_EQ(FormatMetricValue(1234567), "1234567");
  EXPECT_EQ(FormatMetricValue(9007199254740992.0), "9007199254740992");
  EXPECT_EQ(FormatMetricValue(-3), "-3");
  EXPECT_EQ(FormatMetricValue(0.25), "0.25");
  EXPECT_EQ(FormatMetricValue(0.1), "0.10000000000000001");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
}

TEST(PrometheusTextTest, RefusesBadNamesAndMixedKinds) {
  EXPECT_FALSE(FormatPrometheusText({Gauge("9lives", "x", 1)}).ok());
  EXPECT_FALSE(FormatPrometheusText({Gauge("has-dash", "x", 1)}).ok());
  EXPECT_FALSE(FormatPrometheusText({Gauge("", "x", 1)}).ok());
  MetricSample labelled = Gauge("ok", "x", 1);
  labelled.labels = {{"bad:label", "v"}};
  EXPECT_FALSE(FormatPrometheusText({labelled}).ok());
  absl::StatusOr<std::string> mixed = FormatPrometheusText({Gauge("m", "x", 1), Counter("m", "x", 1)});
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.status().message().find("both a counter and a gauge"), std::string::npos);
  EXPECT_TRUE(IsValidMetricName("node:sesame_rate5m"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
}

TEST(PrometheusTextTest, WritesTheFileWholeAndLeavesNoTemporary) {
  testing::TempDir dir;
  const std::string path = dir.File("sesame.prom");
  ASSERT_TRUE(WritePrometheusFile(path, {Counter("a_total", "A.", 1)}).ok());
  ASSERT_TRUE(WritePrometheusFile(path, {Counter("a_total", "A.", 2)}).ok());
  EXPECT_EQ(ReadFileToString(path).value_or(""), "# HELP a_total A.\n# TYPE a_total counter\na_total 2\n");
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) entries += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(entries, 1u);
  // A bad sample writes nothing: the previous file stays.
  EXPECT_FALSE(WritePrometheusFile(path, {Counter("bad name", "A.", 3)}).ok());
  EXPECT_EQ(ReadFileToString(path).value_or(""), "# HELP a_total A.\n# TYPE a_total counter\na_total 2\n");
  EXPECT_FALSE(WritePrometheusFile(dir.File("missing/dir/x.prom"), {Counter("a_total", "A.", 1)}).ok());
}

TEST(PrometheusFileWriterTest, WritesTheNewestPostOnItsThreadAndReportsFailures) {
  testing::TempDir dir;
  {
    PrometheusFileWriter writer(dir.File("a.prom"));
    for (int i = 1; i <= 50; ++i) writer.Post({Counter("n_total", "N.", i)});
    ASSERT_TRUE(writer.Flush().ok());
    EXPECT_EQ(ReadFileToString(dir.File("a.prom")).value_or(""), "# HELP n_total N.\n# TYPE n_total counter\nn_total 50\n");
    writer.Post({Counter("n_total", "N.", 51)});
  }  // the destructor writes what is pending
  EXPECT_EQ(ReadFileToString(dir.File("a.prom")).value_or(""), "# HELP n_total N.\n# TYPE n_total counter\nn_total 51\n");

  PrometheusFileWriter broken(dir.File("missing/a.prom"));
  broken.Post({Counter("n_total", "N.", 1)});
  EXPECT_FALSE(broken.Flush().ok());
  EXPECT_FALSE(broken.Flush().ok());  // unchanged without a new post
}

}  // namespace
}  // namespace sesame
