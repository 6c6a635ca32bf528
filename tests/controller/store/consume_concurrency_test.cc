// At most once, fleet-wide: many agents report the same sequence at the same
// instant, over and over; each sequence is won exactly once, every other
// report is a replay, and the audit log says so record for record. On every
// store (store_test_util.h).
#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_log.h"
#include "gtest/gtest.h"
#include "tests/controller/store/store_test_util.h"
#include "tests/support/temp_dir.h"

namespace sesame::controller {
namespace {

constexpr int kThreads = 24;
constexpr int kRounds = 60;

class ConsumeConcurrencyTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<Store> OpenStore() {
    absl::StatusOr<std::unique_ptr<Store>> store =
        store_test::OpenStoreUnderTest(GetParam(), dir_.path(), store_test::FreshPrefix(), &RealClock::Instance());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  testing::TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Stores, ConsumeConcurrencyTest, ::testing::Values("sqlite", "etcd"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Sequence i is (10000 + 3i, 10001 + 3i, 10002 + 3i), so sequences never
// share a prefix.
std::vector<Knock> SequenceKnocks(int i) {
  const uint16_t base = static_cast<uint16_t>(10000 + 3 * i);
  return {{base, Protocol::kTcp}, {static_cast<uint16_t>(base + 1), Protocol::kUdp},
          {static_cast<uint16_t>(base + 2), Protocol::kTcp}};
}

void AddDoorAndSequences(Store& store, int count) {
  Door door;
  door.name = "ssh";
  ASSERT_TRUE(store.PutDoor(door, {}).ok());
  std::vector<NewSequence> sequences;
  for (int i = 0; i < count; ++i) sequences.push_back(NewSequence{"ssh", SequenceKnocks(i), "ops", ""});
  ASSERT_TRUE(store.AddSequences(sequences, {}).ok());
}

struct Tally {
  std::atomic<int> won{0}, replay{0}, unknown{0}, errors{0};
};

TEST_P(ConsumeConcurrencyTest, SameSequenceFromManyAgentsIsWonExactlyOnce) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  AddDoorAndSequences(*store, kRounds);

  std::vector<Tally> tallies(kRounds);
  std::vector<std::atomic<int>> winners(kRounds);
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        ConsumeRequest r;
        // Half report by id, half by knocks: both paths race each other.
        if (t % 2 == 0) r.sequence_id = static_cast<uint64_t>(round + 1);
        r.knocks = SequenceKnocks(round);
        r.agent = absl::StrCat("bastion", t);
        r.source = IpAddress::V4(0xc6336400u + static_cast<uint32_t>(t));  // 198.51.100.t
        r.request_id = absl::StrCat("round-", round);
        start.arrive_and_wait();  // everyone reports at the same instant
        absl::StatusOr<ConsumeResult> result = store->Consume(r);
        Tally& tally = tallies[round];
        if (!result.ok()) {
          ++tally.errors;
          continue;
        }
        switch (result->outcome) {
          case ConsumeOutcome::kWon:
            ++tally.won;
            winners[round] = t;
            break;
          case ConsumeOutcome::kReplay: ++tally.replay; break;
          case ConsumeOutcome::kUnknown: ++tally.unknown; break;
          case ConsumeOutcome::kRefused: ++tally.errors; break;  // nothing here is refusable
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();

  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    EXPECT_EQ(tallies[round].errors, 0);
    EXPECT_EQ(tallies[round].won, 1);
    EXPECT_EQ(tallies[round].replay, kThreads - 1);
    EXPECT_EQ(tallies[round].unknown, 0);
    absl::StatusOr<Sequence> q = store->GetSequence(static_cast<uint64_t>(round + 1));
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->state, SequenceState::kBurnt);
    EXPECT_EQ(q->consumed_by, absl::StrCat("bastion", winners[round].load()));
  }

  // One grant per sequence, and the audit log agrees with the answers.
  GrantFilter all;
  all.open_only = false;
  EXPECT_EQ(store->ListGrants(all)->size(), static_cast<size_t>(kRounds));
  absl::StatusOr<std::vector<AuditRecord>> audit = store->ReadAudit(0, kRounds * kThreads + 10);
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), static_cast<size_t>(kRounds * kThreads));
  std::vector<int> opened(kRounds), replays(kRounds);
  for (const AuditRecord& r : *audit) {
    const int round = std::stoi(r.entry.details.at("sequence")) - 1;
    if (r.entry.what == "knock.opened") ++opened[round];
    if (r.entry.what == "knock.replay") ++replays[round];
  }
  for (int round = 0; round < kRounds; ++round) {
    EXPECT_EQ(opened[round], 1) << round;
    EXPECT_EQ(replays[round], kThreads - 1) << round;
  }
  AuditLog log(*store, AuditSigningKey::Generate());
  ASSERT_TRUE(log.Checkpoint().ok());
  absl::StatusOr<AuditVerification> verified = log.Verify();
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->ok) << verified->problem;
  EXPECT_EQ(verified->records, static_cast<uint64_t>(kRounds * kThreads));
}

TEST_P(ConsumeConcurrencyTest, ResendsRacingTheOriginalGetTheSameAnswer) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  constexpr int kSequences = 40;
  AddDoorAndSequences(*store, kSequences);

  // Every agent reports every sequence twice with the same message id (a
  // resend racing the original), all at once.
  constexpr int kAgents = 8;
  struct Answer {
    ConsumeOutcome outcome;
    uint64_t audit_index;
  };
  std::vector<std::vector<std::vector<Answer>>> answers(
      kAgents, std::vector<std::vector<Answer>>(kSequences));
  absl::Mutex mu;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2 * kAgents; ++t) {
    threads.emplace_back([&, t] {
      const int agent = t / 2;
      for (int i = 0; i < kSequences; ++i) {
        ConsumeRequest r;
        r.knocks = SequenceKnocks((i + agent) % kSequences);
        r.agent = absl::StrCat("b", agent);
        r.source = IpAddress::V4(0xc0000201u);
        r.request_id = absl::StrCat("m", (i + agent) % kSequences);
        absl::StatusOr<ConsumeResult> result = store->Consume(r);
        if (!result.ok()) {
          ++errors;
          continue;
        }
        absl::MutexLock lock(&mu);
        answers[agent][(i + agent) % kSequences].push_back({result->outcome, result->audit_index});
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(errors, 0);
  for (int s = 0; s < kSequences; ++s) {
    int won = 0;
    for (int a = 0; a < kAgents; ++a) {
      const auto& pair = answers[a][s];
      ASSERT_EQ(pair.size(), 2u);
      EXPECT_EQ(pair[0].outcome, pair[1].outcome);
      EXPECT_EQ(pair[0].audit_index, pair[1].audit_index);
      if (pair[0].outcome == ConsumeOutcome::kWon) ++won;
    }
    EXPECT_EQ(won, 1) << "sequence " << s;
  }
  // One audit record per (agent, message), not per report.
  EXPECT_EQ(store->GetAuditHead()->record_count, static_cast<uint64_t>(kAgents * kSequences));
}

TEST_P(ConsumeConcurrencyTest, ManySequencesAtOnceAllWonOnce) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  constexpr int kSequences = 600;
  AddDoorAndSequences(*store, kSequences);
  std::atomic<int> won{0}, replay{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread walks all sequences from its own starting point.
      for (int i = 0; i < kSequences; i += 3) {
        ConsumeRequest r;
        r.sequence_id = static_cast<uint64_t>((i + t * 25) % kSequences + 1);
        r.knocks = SequenceKnocks((i + t * 25) % kSequences);
        r.agent = absl::StrCat("b", t);
        r.source = IpAddress::V4(0xc0000202u);
        r.order_grant = false;
        absl::StatusOr<ConsumeResult> result = store->Consume(r);
        if (!result.ok()) {
          ++errors;
        } else if (result->outcome == ConsumeOutcome::kWon) {
          ++won;
        } else if (result->outcome == ConsumeOutcome::kReplay) {
          ++replay;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(errors, 0);
  SequenceFilter burnt;
  burnt.state = SequenceState::kBurnt;
  const int burnt_count = static_cast<int>(store->ListSequences(burnt)->size());
  EXPECT_EQ(won, burnt_count);
  EXPECT_EQ(won + replay, kThreads * (kSequences / 3));
}

}  // namespace
}  // namespace sesame::controller
