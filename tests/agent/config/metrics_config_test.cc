// [options] MetricsFile and MetricsInterval: the agent's Prometheus text file.
#include "agent/config/config.h"
#include "gtest/gtest.h"

namespace sesame {
namespace {

constexpr char kDoor[] = "[d]\nsequence = 7000,8000\ncommand = /bin/true %IP%\n";

std::string ErrorOf(const std::string& text) {
  absl::StatusOr<AgentConfig> config = ParseConfig(text, "a.conf");
  if (config.ok()) return "OK";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  return std::string(config.status().message());
}

TEST(MetricsConfigTest, OffByDefaultEveryFiveSecondsWhenOn) {
  absl::StatusOr<AgentConfig> off = ParseConfig(kDoor, "a.conf");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->options.metrics_file, "");
  EXPECT_EQ(off->options.metrics_interval, absl::Seconds(5));

  absl::StatusOr<AgentConfig> on = ParseConfig(
      std::string("[options]\n  metricsfile = /var/lib/prometheus/node-exporter/sesame_agent.prom\n"
                  "  METRICSINTERVAL = 15s\n") +
          kDoor,
      "a.conf");
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_EQ(on->options.metrics_file, "/var/lib/prometheus/node-exporter/sesame_agent.prom");
  EXPECT_EQ(on->options.metrics_interval, absl::Seconds(15));
  // Whole seconds, as every duration of knockd.conf.
  absl::StatusOr<AgentConfig> plain = ParseConfig(std::string("[options]\nMetricsInterval = 2\n") + kDoor, "a.conf");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->options.metrics_interval, absl::Seconds(2));
}

TEST(MetricsConfigTest, BadValuesSayFileLineAndWhatWasExpected) {
  const std::string d = kDoor;
  EXPECT_EQ(ErrorOf("[options]\nMetricsFile = sesame.prom\n" + d),
            "a.conf:2: MetricsFile: expected an absolute path, got \"sesame.prom\"");
  EXPECT_EQ(ErrorOf("[options]\nMetricsFile =\n" + d), "a.conf:2: MetricsFile: expected an absolute path, got \"\"");
  EXPECT_EQ(ErrorOf("[options]\n\nMetricsFile = /var/lib/prometheus/\n" + d),
            "a.conf:3: MetricsFile: expected a file name, got the directory \"/var/lib/prometheus/\"");
  EXPECT_EQ(ErrorOf("[options]\nMetricsInterval = often\n" + d),
            "a.conf:2: MetricsInterval: expected a duration (whole seconds, or a number with ms, s, m or h), got "
            "\"often\"");
  EXPECT_EQ(ErrorOf("[options]\nMetricsInterval = 0\n" + d),
            "a.conf:2: MetricsInterval: expected a duration greater than zero");
  EXPECT_EQ(ErrorOf("[options]\nMetricsInterval = 200ms\n" + d),
            "a.conf:2: MetricsInterval: expected at least 1s, got \"200ms\"");
  EXPECT_EQ(ErrorOf(d + "MetricsFile = /x.prom\n"), "a.conf:4: MetricsFile belongs in [options], not in door [d]");
}

TEST(MetricsConfigTest, WorksInManagedModeToo) {
  absl::StatusOr<AgentConfig> config = ParseConfig(
      "[options]\n  Controller = ctl:7443\n  CaCert = /ca\n  Cert = /c\n  Key = /k\n"
      "  MetricsFile = /run/sesame/agent.prom\n  MetricsInterval = 1s\n",
      "a.conf");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->options.metrics_file, "/run/sesame/agent.prom");
  EXPECT_EQ(config->options.metrics_interval, absl::Seconds(1));
}

}  // namespace
}  // namespace sesame
