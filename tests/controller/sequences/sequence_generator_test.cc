#include "controller/sequences/sequence_generator.h"

#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;

// Returns scripted 32-bit values (big-endian), then fails.
class ScriptedRandom final : public RandomSource {
 public:
  explicit ScriptedRandom(std::deque<uint32_t> values) : values_(std::move(values)) {}
  absl::Status Fill(absl::Span<uint8_t> out) override {
    if (out.size() != 4) return absl::InternalError("expected 4-byte draws");
    if (values_.empty()) return absl::UnavailableError("script exhausted");
    const uint32_t v = values_.front();
    values_.pop_front();
    out[0] = static_cast<uint8_t>(v >> 24);
    out[1] = static_cast<uint8_t>(v >> 16);
    out[2] = static_cast<uint8_t>(v >> 8);
    out[3] = static_cast<uint8_t>(v);
    return absl::OkStatus();
  }

 private:
  std::deque<uint32_t> values_;
};

class FailingRandom final : public RandomSource {
 public:
  absl::Status Fill(absl::Span<uint8_t>) override { return absl::UnavailableError("no entropy"); }
};

DoorPolicy Policy(uint16_t first, uint16_t last, int length, std::vector<Protocol> protocols = {Protocol::kTcp}) {
  DoorPolicy p;
  p.port_first = first;
  p.port_last = last;
  p.sequence_length = length;
  p.protocols = std::move(protocols);
  p.grant_ports = {{22, Protocol::kTcp}};
  return p;
}

// Pearson's chi-square statistic of counts against a uniform expectation.
double ChiSquare(const std::map<std::pair<uint16_t, Protocol>, int>& counts, size_t categories, int total) {
  const double expected = static_cast<double>(total) / static_cast<double>(categories);
  double chi = 0;
  size_t seen = 0;
  for (const auto& [key, n] : counts) {
    chi += (n - expected) * (n - expected) / expected;
    ++seen;
  }
  chi += static_cast<double>(categories - seen) * expected;  // categories never drawn
  return chi;
}

TEST(UniformBelowTest, RejectsTheBiasedTail) {
  // n = 3: 2^32 is not a multiple of 3, so the top value 0xffffffff would
  // favour 0; it is rejected and the next draw is used.
  ScriptedRandom random({0xffffffffu, 5});
  absl::StatusOr<uint32_t> v = UniformBelow(random, 3);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 2u);
  // The largest accepted value maps normally.
  ScriptedRandom edge({0xfffffffeu});
  EXPECT_EQ(*UniformBelow(edge, 3), 0xfffffffeu % 3);
}

TEST(UniformBelowTest, PowersOfTwoNeverReject) {
  ScriptedRandom random({0xffffffffu});
  EXPECT_EQ(*UniformBelow(random, 1024), 1023u);
  ScriptedRandom one({0xffffffffu});
  EXPECT_EQ(*UniformBelow(one, 1), 0u);
}

TEST(UniformBelowTest, ErrorsAreReportedNotHidden) {
  ScriptedRandom random({});
  EXPECT_TRUE(absl::IsInvalidArgument(UniformBelow(random, 0).status()));
  FailingRandom failing;
  EXPECT_TRUE(absl::IsUnavailable(UniformBelow(failing, 10).status()));
  // A source stuck on a rejected value is broken, not unlucky.
  ScriptedRandom stuck(std::deque<uint32_t>(100, 0xffffffffu));
  EXPECT_TRUE(absl::IsInternal(UniformBelow(stuck, 3).status()));
}

TEST(OpenSslRandomTest, FillsBytes) {
  uint8_t a[32] = {}, b[32] = {};
  ASSERT_TRUE(OpenSslRandom::Instance().Fill(absl::MakeSpan(a)).ok());
  ASSERT_TRUE(OpenSslRandom::Instance().Fill(absl::MakeSpan(b)).ok());
  EXPECT_NE(std::memcmp(a, b, sizeof a), 0);
}

TEST(CandidateKnocksTest, RangeMinusAvoidedTimesProtocols) {
  DoorPolicy p = Policy(20, 25, 2, {Protocol::kUdp, Protocol::kTcp, Protocol::kUdp});
  p.avoid_ports = {21, 24, 9999};
  p.grant_ports = {{22, Protocol::kTcp}};
  const std::vector<Knock> c = CandidateKnocks(p);
  std::set<uint16_t> ports;
  for (const Knock& k : c) ports.insert(k.port);
  EXPECT_EQ(ports, (std::set<uint16_t>{20, 23, 25}));
  EXPECT_EQ(c.size(), 6u);  // duplicate protocol entries count once
}

TEST(SequenceIndexTest, EqualityAndPrefixesBothWays) {
  SequenceIndex index;
  const std::vector<Knock> abc = {{1000, Protocol::kTcp}, {2000, Protocol::kUdp}, {3000, Protocol::kTcp}};
  index.Add(abc);
  EXPECT_TRUE(index.Conflicts(abc));
  EXPECT_TRUE(index.Conflicts({abc[0], abc[1]}));                     // a prefix of a member
  EXPECT_TRUE(index.Conflicts({abc[0], abc[1], abc[2], {4000}}));     // a member is its prefix
  EXPECT_FALSE(index.Conflicts({abc[0], {2000, Protocol::kTcp}}));    // protocol matters
  EXPECT_FALSE(index.Conflicts({abc[1], abc[2]}));                    // a suffix is fine
  EXPECT_FALSE(index.Conflicts({{100}, {2000, Protocol::kUdp}}));
  index.Add({abc[0], {5000}});
  index.Remove(abc);
  EXPECT_FALSE(index.Conflicts(abc));
  EXPECT_TRUE(index.Conflicts({abc[0]}));  // still a prefix of the other member
  index.Remove({abc[0], {5000}});
  EXPECT_FALSE(index.Conflicts({abc[0]}));
  EXPECT_EQ(index.size(), 0u);
}

TEST(SequenceGeneratorTest, SequencesFollowThePolicy) {
  DoorPolicy p = Policy(7000, 7100, 4, {Protocol::kTcp, Protocol::kUdp});
  p.avoid_ports = {7001, 7002, 7050};
  p.grant_ports = {{7003, Protocol::kTcp}};
  SequenceGenerator generator;
  SequenceIndex index;
  absl::StatusOr<std::vector<std::vector<Knock>>> out = generator.Generate(p, index, 500);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 500u);
  std::set<std::string> seen;
  std::set<Protocol> protocols;
  for (const auto& knocks : *out) {
    ASSERT_EQ(knocks.size(), 4u);
    std::set<std::pair<uint16_t, Protocol>> distinct;
    for (const Knock& k : knocks) {
      EXPECT_GE(k.port, 7000);
      EXPECT_LE(k.port, 7100);
      EXPECT_NE(k.port, 7001);
      EXPECT_NE(k.port, 7002);
      EXPECT_NE(k.port, 7050);
      EXPECT_NE(k.port, 7003);  // the grant port is never a knock
      distinct.insert({k.port, k.protocol});
      protocols.insert(k.protocol);
    }
    EXPECT_EQ(distinct.size(), 4u) << "a knock repeats within " << KnocksToText(knocks);
    EXPECT_TRUE(seen.insert(KnocksToText(knocks)).second) << "duplicate " << KnocksToText(knocks);
  }
  EXPECT_EQ(protocols.size(), 2u);
  EXPECT_EQ(index.size(), 500u);  // all were added
}

TEST(SequenceGeneratorTest, FreshAgainstExistingSequencesOfOtherLengths) {
  // A tiny space, so clashes are frequent: 6 candidates, length 2, ports
  // more than 2 apart → 12 sequences; existing length-1 and length-3
  // sequences block some.
  DoorPolicy p = Policy(3000, 3005, 2);
  SequenceIndex index;
  index.Add({{3000, Protocol::kTcp}});                                               // blocks 3000,x
  index.Add({{3001, Protocol::kTcp}, {3002, Protocol::kTcp}, {3003, Protocol::kTcp}});  // blocks 3001,3002
  SequenceGenerator generator;
  generator.set_max_attempts(100000);
  // 12 - 3 (3000,x) = 9 fresh sequences exist.
  absl::StatusOr<std::vector<std::vector<Knock>>> out = generator.Generate(p, index, 9);
  ASSERT_TRUE(out.ok()) << out.status();
  for (const auto& knocks : *out) {
    EXPECT_NE(knocks[0].port, 3000) << KnocksToText(knocks);
    EXPECT_GT(std::abs(int{knocks[0].port} - int{knocks[1].port}), kMinPortStep) << KnocksToText(knocks);
  }
  // The 10th cannot exist.
  generator.set_max_attempts(2000);
  absl::StatusOr<std::vector<std::vector<Knock>>> more = generator.Generate(p, index, 1);
  EXPECT_TRUE(absl::IsResourceExhausted(more.status())) << more.status();
  EXPECT_THAT(more.status().message(), HasSubstr("no fresh sequence"));
}

TEST(SequenceGeneratorTest, EveryPositionIsUniform) {
  // 50 ports x 2 protocols = 100 candidates; 3 positions; 20000 sequences
  // drawn against an empty index each time (freshness would skew counts).
  const DoorPolicy p = Policy(40000, 40049, 3, {Protocol::kTcp, Protocol::kUdp});
  SequenceGenerator generator;
  constexpr int kDraws = 20000;
  std::vector<std::map<std::pair<uint16_t, Protocol>, int>> counts(3);
  for (int i = 0; i < kDraws; ++i) {
    SequenceIndex empty;
    absl::StatusOr<std::vector<std::vector<Knock>>> out = generator.Generate(p, empty, 1);
    ASSERT_TRUE(out.ok());
    for (int pos = 0; pos < 3; ++pos) ++counts[pos][{(*out)[0][pos].port, (*out)[0][pos].protocol}];
  }
  // 99 degrees of freedom: mean 99, standard deviation 14. 220 is beyond
  // 8 standard deviations (p < 1e-15); a biased generator (e.g. modulo bias
  // towards low ports, or a stuck protocol) lands far above.
  for (int pos = 0; pos < 3; ++pos) {
    const double chi = ChiSquare(counts[pos], 100, kDraws);
    EXPECT_LT(chi, 220.0) << "position " << pos;
  }
}

TEST(SequenceGeneratorTest, ErrorsAreReported) {
  SequenceIndex index;
  SequenceGenerator good;
  DoorPolicy bad = Policy(5000, 5001, 3);  // 2 candidates for 3 distinct knocks
  EXPECT_TRUE(absl::IsInvalidArgument(good.Generate(bad, index, 1).status()));
  DoorPolicy narrow = Policy(5000, 5002, 2);  // no two ports more than 2 apart
  EXPECT_TRUE(absl::IsResourceExhausted(good.Generate(narrow, index, 1).status()));
  FailingRandom failing;
  SequenceGenerator broken(failing);
  EXPECT_TRUE(absl::IsUnavailable(broken.Generate(Policy(5000, 6000, 3), index, 1).status()));
  EXPECT_EQ(index.size(), 0u);
}

}  // namespace
}  // namespace sesame::controller
