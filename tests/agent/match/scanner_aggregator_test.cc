// ScannerAggregator: the first scanner of a window alone and at once, the
// rest as one summary at the window's end, duplicates once, bounded sample
// and address set, counts that could not be delivered folded back.
#include "agent/match/scanner_aggregator.h"

#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sesame {
namespace {

using ::testing::ElementsAre;
using Verdict = ScannerAggregator::Verdict;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

IpAddress Addr(uint32_t n) { return IpAddress::V4(0xC6120000u + n); }  // 198.18.x.y

ScannerAggregator::Options Window(absl::Duration window) {
  ScannerAggregator::Options o;
  o.window = window;
  return o;
}

TEST(ScannerAggregatorTest, FirstIsReportedAloneTheRestAsOneSummaryAtTheWindowsEnd) {
  ScannerAggregator agg(Window(absl::Seconds(60)));
  EXPECT_EQ(agg.Flagged(Addr(1), kT0, 12), Verdict::kReportNow);
  EXPECT_EQ(agg.due(), kT0 + absl::Seconds(60));
  EXPECT_EQ(agg.Flagged(Addr(2), kT0 + absl::Seconds(1), 12), Verdict::kCounted);
  EXPECT_EQ(agg.Flagged(Addr(3), kT0 + absl::Seconds(2), 12), Verdict::kCounted);
  EXPECT_EQ(agg.Released(Addr(2), kT0 + absl::Seconds(3), 40), Verdict::kCounted);
  EXPECT_FALSE(agg.TakeDue(kT0 + absl::Seconds(59)).has_value());

  std::optional<ScannerSummary> s = agg.TakeDue(kT0 + absl::Seconds(60));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->sources, 2u);
  EXPECT_EQ(s->released, 1u);
  EXPECT_EQ(s->packets, 12u + 12u + 40u);
  EXPECT_EQ(s->first, kT0 + absl::Seconds(1));
  EXPECT_EQ(s->last, kT0 + absl::Seconds(3));
  EXPECT_EQ(s->window, absl::Seconds(60));
  EXPECT_THAT(s->sample, ElementsAre(Addr(2), Addr(3)));
  EXPECT_FALSE(agg.TakeDue(kT0 + absl::Seconds(61)).has_value());  // taken once
  EXPECT_EQ(agg.due(), absl::InfiniteFuture());

  // The next scanner opens a new window and is reported at once again.
  EXPECT_EQ(agg.Flagged(Addr(4), kT0 + absl::Seconds(90), 12), Verdict::kReportNow);
}

TEST(ScannerAggregatorTest, ALoneScannerMakesNoSummary) {
  ScannerAggregator agg(Window(absl::Seconds(60)));
  EXPECT_EQ(agg.Flagged(Addr(1), kT0, 12), Verdict::kReportNow);
  EXPECT_FALSE(agg.TakeDue(kT0 + absl::Minutes(5)).has_value());
}

TEST(ScannerAggregatorTest, AnAddressCountsOncePerWindowAndKind) {
  ScannerAggregator agg(Window(absl::Seconds(60)));
  EXPECT_EQ(agg.Flagged(Addr(1), kT0, 12), Verdict::kReportNow);
  EXPECT_EQ(agg.Flagged(Addr(1), kT0, 12), Verdict::kDuplicate);  // another shard, same packet
  EXPECT_EQ(agg.Flagged(Addr(2), kT0, 12), Verdict::kCounted);
  EXPECT_EQ(agg.Flagged(Addr(2), kT0, 12), Verdict::kDuplicate);
  EXPECT_EQ(agg.Released(Addr(2), kT0, 5), Verdict::kCounted);
  EXPECT_EQ(agg.Released(Addr(2), kT0, 5), Verdict::kDuplicate);
  std::optional<ScannerSummary> s = agg.TakeDue(kT0 + absl::Seconds(60));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->sources, 1u);
  EXPECT_EQ(s->released, 1u);
  EXPECT_EQ(s->packets, 17u);
  // A new window: the same address is news again.
  EXPECT_EQ(agg.Flagged(Addr(1), kT0 + absl::Seconds(60), 12), Verdict::kReportNow);
}

TEST(ScannerAggregatorTest, MarksThatEndedAreReportedAloneOnlyWhenAsked) {
  ScannerAggregator counted(Window(absl::Seconds(60)));
  EXPECT_EQ(counted.Released(Addr(1), kT0, 7), Verdict::kCounted);
  // A release opened the window; the first scanner in it is still news.
  EXPECT_EQ(counted.Flagged(Addr(2), kT0 + absl::Seconds(1), 12), Verdict::kReportNow);
  std::optional<ScannerSummary> s = counted.TakeDue(kT0 + absl::Seconds(60));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->sources, 0u);
  EXPECT_EQ(s->released, 1u);
  EXPECT_EQ(s->packets, 7u);

  ScannerAggregator::Options o = Window(absl::Seconds(60));
  o.report_releases = true;
  ScannerAggregator alone(o);
  EXPECT_EQ(alone.Released(Addr(1), kT0, 7), Verdict::kReportNow);
  EXPECT_EQ(alone.Released(Addr(2), kT0, 7), Verdict::kCounted);
  EXPECT_EQ(alone.Flagged(Addr(3), kT0, 12), Verdict::kReportNow);
}

TEST(ScannerAggregatorTest, AHundredThousandSourcesMakeOneSummaryWithABoundedSample) {
  ScannerAggregator::Options o = Window(absl::Seconds(60));
  o.sample_size = 8;
  ScannerAggregator agg(o);
  int alone = 0;
  for (uint32_t i = 0; i < 100000; ++i) {
    if (agg.Flagged(Addr(i), kT0 + absl::Microseconds(i * 10), 12) == Verdict::kReportNow) ++alone;
  }
  EXPECT_EQ(alone, 1);
  std::optional<ScannerSummary> s = agg.TakeDue(kT0 + absl::Seconds(61));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->sources, 99999u);
  EXPECT_EQ(s->packets, 99999u * 12);
  EXPECT_EQ(s->sample.size(), 8u);
  EXPECT_EQ(s->sample.front(), Addr(1));
}

TEST(ScannerAggregatorTest, PastTheAddressCapacityDuplicatesOverCountNeverUnder) {
  ScannerAggregator::Options o = Window(absl::Seconds(60));
  o.distinct_capacity = 4;
  ScannerAggregator agg(o);
  for (uint32_t i = 0; i < 10; ++i) agg.Flagged(Addr(i), kT0, 1);
  EXPECT_EQ(agg.Flagged(Addr(1), kT0, 1), Verdict::kDuplicate);  // remembered
  EXPECT_EQ(agg.Flagged(Addr(9), kT0, 1), Verdict::kCounted);    // not remembered: counted again
  std::optional<ScannerSummary> s = agg.TakeDue(kT0 + absl::Seconds(60));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->sources, 10u);  // 9 distinct beyond the first, one counted twice
}

TEST(ScannerAggregatorTest, AnEventAfterTheWindowEndsItEvenBeforeTakeDue) {
  ScannerAggregator agg(Window(absl::Seconds(10)));
  agg.Flagged(Addr(1), kT0, 12);
  agg.Flagged(Addr(2), kT0 + absl::Seconds(1), 12);
  // The capture runs ahead of the periodic TakeDue.
  EXPECT_EQ(agg.Flagged(Addr(3), kT0 + absl::Seconds(11), 12), Verdict::kReportNow);
  EXPECT_EQ(agg.Flagged(Addr(4), kT0 + absl::Seconds(12), 12), Verdict::kCounted);
  std::optional<ScannerSummary> first = agg.TakeDue(kT0 + absl::Seconds(12));
  ASSERT_TRUE(first.has_value());
  EXPECT_THAT(first->sample, ElementsAre(Addr(2)));
  std::optional<ScannerSummary> second = agg.TakeDue(kT0 + absl::Seconds(21));
  ASSERT_TRUE(second.has_value());
  EXPECT_THAT(second->sample, ElementsAre(Addr(4)));
}

TEST(ScannerAggregatorTest, AClockSetBackEndsTheOpenWindow) {
  ScannerAggregator agg(Window(absl::Seconds(60)));
  agg.Flagged(Addr(1), kT0, 12);
  agg.Flagged(Addr(2), kT0, 12);
  EXPECT_FALSE(agg.TakeDue(kT0 - absl::Seconds(30)).has_value());  // a small step back: still open
  std::optional<ScannerSummary> s = agg.TakeDue(kT0 - absl::Hours(1));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->sources, 1u);
}

TEST(ScannerAggregatorTest, WindowZeroReportsEveryEventAlone) {
  ScannerAggregator agg(Window(absl::ZeroDuration()));
  for (uint32_t i = 0; i < 5; ++i) EXPECT_EQ(agg.Flagged(Addr(i), kT0, 12), Verdict::kReportNow);
  EXPECT_EQ(agg.Released(Addr(1), kT0, 3), Verdict::kReportNow);
  EXPECT_FALSE(agg.TakeDue(kT0 + absl::Hours(1)).has_value());
}

TEST(ScannerAggregatorTest, MergedCountsComeOutWithTheNextSummary) {
  ScannerAggregator agg(Window(absl::Seconds(60)));
  ScannerSummary undelivered;
  undelivered.first = kT0 - absl::Minutes(2);
  undelivered.last = kT0 - absl::Minutes(1);
  undelivered.sources = 500;
  undelivered.packets = 6000;
  undelivered.sample = {Addr(100), Addr(101)};
  agg.Merge(undelivered, kT0);
  EXPECT_EQ(agg.due(), kT0 + absl::Seconds(60));
  // A scanner in the window the merge opened is still reported at once.
  EXPECT_EQ(agg.Flagged(Addr(1), kT0 + absl::Seconds(1), 12), Verdict::kReportNow);
  EXPECT_EQ(agg.Flagged(Addr(2), kT0 + absl::Seconds(2), 12), Verdict::kCounted);
  std::optional<ScannerSummary> s = agg.TakeDue(kT0 + absl::Seconds(60));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->sources, 501u);
  EXPECT_EQ(s->packets, 6012u);
  EXPECT_EQ(s->first, kT0 - absl::Minutes(2));
  EXPECT_EQ(s->last, kT0 + absl::Seconds(2));
  EXPECT_THAT(s->sample, ElementsAre(Addr(100), Addr(101), Addr(2)));

  // Without windows the merged counts wait for the next TakeDue.
  ScannerAggregator none(Window(absl::ZeroDuration()));
  none.Merge(undelivered, kT0);
  std::optional<ScannerSummary> back = none.TakeDue(kT0);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->sources, 500u);
}

}  // namespace
}  // namespace sesame
