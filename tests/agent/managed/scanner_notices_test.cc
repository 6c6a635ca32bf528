// ScannerNotices: scanner reports in, ScannerSeen out — the first of a
// window alone and at once, the rest as one aggregate whose fields 1-5 still
// read as a scanner notice; releases only counted; refused notices counted
// again; a bounded queue between the capture thread and the worker.
#include "agent/managed/scanner_notices.h"

#include <string>
#include <vector>

#include "agent/managed/proto_convert.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sesame {
namespace {

using ::testing::ElementsAre;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

IpAddress Addr(uint32_t n) { return IpAddress::V4(0xC6130000u + n); }  // 198.19.x.y

ScannerReport Flagged(uint32_t n, absl::Time at) {
  ScannerReport r;
  r.source = Addr(n);
  r.at = at;
  r.ignored_until = at + absl::Seconds(300);
  r.distinct_ports = 12;
  r.window = absl::Seconds(5);
  return r;
}

ScannerReport Released(uint32_t n, absl::Time at, uint64_t packets) {
  ScannerReport r = Flagged(n, at);
  r.released = true;
  r.packets = packets;
  return r;
}

ScannerNoticeOptions Options(absl::Duration window) {
  ScannerNoticeOptions o;
  o.report_window = window;
  o.sample_size = 4;
  return o;
}

TEST(ScannerNoticesTest, TheFirstAloneAtOnceTheRestAsOneAggregate) {
  ScannerNotices notices(Options(absl::Seconds(60)));
  EXPECT_TRUE(notices.Add(Flagged(1, kT0)));
  for (uint32_t n = 2; n <= 1000; ++n) EXPECT_FALSE(notices.Add(Flagged(n, kT0 + absl::Milliseconds(n))));

  std::vector<v1::ScannerSeen> now = notices.Take(kT0 + absl::Seconds(1));
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now[0].source(), "198.19.0.1");
  EXPECT_EQ(now[0].distinct_ports(), 12u);
  EXPECT_EQ(FromProtoTime(now[0].at()), kT0);
  EXPECT_EQ(FromProtoTime(now[0].ignored_until()), kT0 + absl::Seconds(300));
  EXPECT_FALSE(now[0].has_aggregate());
  EXPECT_TRUE(notices.Take(kT0 + absl::Seconds(59)).empty());

  std::vector<v1::ScannerSeen> later = notices.Take(kT0 + absl::Seconds(60));
  ASSERT_EQ(later.size(), 1u);
  const v1::ScannerSeen& n = later[0];
  ASSERT_TRUE(n.has_aggregate());
  EXPECT_EQ(n.aggregate().sources(), 999u);
  EXPECT_EQ(n.aggregate().packets(), 999u * 12);
  EXPECT_EQ(n.aggregate().released(), 0u);
  EXPECT_THAT(n.aggregate().sample(), ElementsAre("198.19.0.2", "198.19.0.3", "198.19.0.4", "198.19.0.5"));
  EXPECT_EQ(FromProtoTime(n.aggregate().first_seen()), kT0 + absl::Milliseconds(2));
  EXPECT_EQ(FromProtoTime(n.aggregate().last_seen()), kT0 + absl::Milliseconds(1000));
  EXPECT_EQ(FromProtoDuration(n.aggregate().period()), absl::Seconds(60));
  // Fields 1-5 for a reader that does not know the aggregate.
  EXPECT_EQ(n.source(), "198.19.0.2");
  EXPECT_EQ(n.distinct_ports(), 12u);
  EXPECT_EQ(FromProtoDuration(n.window()), absl::Seconds(5));
  EXPECT_EQ(FromProtoTime(n.at()), kT0 + absl::Milliseconds(2));
  EXPECT_EQ(FromProtoTime(n.ignored_until()), kT0 + absl::Milliseconds(1000) + absl::Seconds(300));

  const ScannerNoticeCounters c = notices.counters();
  EXPECT_EQ(c.flagged, 1000u);
  EXPECT_EQ(c.alone, 1u);
  EXPECT_EQ(c.aggregates, 1u);
}

TEST(ScannerNoticesTest, EveryShardsReportOfOneSourceCountsOnce) {
  ScannerNotices notices(Options(absl::Seconds(60)));
  EXPECT_TRUE(notices.Add(Flagged(1, kT0)));
  EXPECT_FALSE(notices.Add(Flagged(1, kT0)));  // a second shard, same packet
  EXPECT_FALSE(notices.Add(Flagged(2, kT0)));
  EXPECT_FALSE(notices.Add(Flagged(2, kT0)));
  EXPECT_EQ(notices.Take(kT0).size(), 1u);
  std::vector<v1::ScannerSeen> later = notices.Take(kT0 + absl::Minutes(1));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].aggregate().sources(), 1u);
}

TEST(ScannerNoticesTest, EndedMarksAreOnlyCounted) {
  ScannerNotices notices(Options(absl::Seconds(60)));
  EXPECT_FALSE(notices.Add(Released(1, kT0, 500)));
  EXPECT_FALSE(notices.Add(Released(2, kT0, 20)));
  EXPECT_TRUE(notices.Take(kT0 + absl::Seconds(1)).empty());
  std::vector<v1::ScannerSeen> later = notices.Take(kT0 + absl::Seconds(60));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].aggregate().sources(), 0u);
  EXPECT_EQ(later[0].aggregate().released(), 2u);
  EXPECT_EQ(later[0].aggregate().packets(), 520u);
  EXPECT_EQ(later[0].source(), "198.19.0.1");
}

TEST(ScannerNoticesTest, ARefusedNoticeIsCountedInTheNextAggregate) {
  ScannerNotices notices(Options(absl::Seconds(60)));
  ASSERT_TRUE(notices.Add(Flagged(1, kT0)));
  for (uint32_t n = 2; n <= 10; ++n) notices.Add(Flagged(n, kT0));
  std::vector<v1::ScannerSeen> alone = notices.Take(kT0);
  ASSERT_EQ(alone.size(), 1u);
  notices.Return(alone[0], kT0);  // the spool was full
  std::vector<v1::ScannerSeen> first = notices.Take(kT0 + absl::Seconds(60));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].aggregate().sources(), 10u);  // nine counted, one returned
  notices.Return(first[0], kT0 + absl::Seconds(60));  // full again
  EXPECT_TRUE(notices.Take(kT0 + absl::Seconds(61)).empty()) << "retried once a window, not in a loop";
  std::vector<v1::ScannerSeen> second = notices.Take(kT0 + absl::Seconds(120));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].aggregate().sources(), 10u);
  EXPECT_EQ(second[0].aggregate().packets(), 120u);
  EXPECT_EQ(FromProtoTime(second[0].aggregate().first_seen()), kT0);
  EXPECT_EQ(notices.counters().returned, 2u);
}

// Without windows every scanner is a notice of its own, as before; the
// queue to the worker stays bounded all the same.
TEST(ScannerNoticesTest, WithoutWindowsTheQueueToTheWorkerIsBounded) {
  ScannerNotices notices(Options(absl::ZeroDuration()));
  int ready = 0;
  for (uint32_t n = 1; n <= 100; ++n) ready += notices.Add(Flagged(n, kT0)) ? 1 : 0;
  EXPECT_EQ(ready, static_cast<int>(ScannerNotices::kMaxWaiting));
  std::vector<v1::ScannerSeen> out = notices.Take(kT0);
  ASSERT_EQ(out.size(), ScannerNotices::kMaxWaiting + 1);
  EXPECT_FALSE(out[0].has_aggregate());
  ASSERT_TRUE(out.back().has_aggregate());
  EXPECT_EQ(out.back().aggregate().sources(), 100u - ScannerNotices::kMaxWaiting);
  // Taken promptly, each is a notice of its own.
  EXPECT_TRUE(notices.Add(Flagged(200, kT0)));
  EXPECT_EQ(notices.Take(kT0).size(), 1u);
}

}  // namespace
}  // namespace sesame
