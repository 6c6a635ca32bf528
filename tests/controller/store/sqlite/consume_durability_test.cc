// A consumption answered "won" is on disk: a controller killed with SIGKILL
// right after (or in the middle of a stream of consumptions) comes back with
// every answered sequence burnt, and with an audit chain that matches.
//
// SIGKILL loses the process, not the page cache, so this shows that answers
// wait for the commit; that the commit reaches the disk (power loss) rests
// on synchronous=FULL, checked in sqlite_store_test.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_log.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "gtest/gtest.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"

namespace sesame::controller {
namespace {

std::unique_ptr<SqliteStore> OpenStore(const std::string& dir) {
  SqliteStoreOptions options;
  options.state_dir = dir;
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
  if (!store.ok()) {
    ADD_FAILURE() << store.status();
    return nullptr;
  }
  return *std::move(store);
}

std::vector<Knock> SequenceKnocks(int i) {
  const uint16_t base = static_cast<uint16_t>(20000 + 2 * i);
  return {{base, Protocol::kTcp}, {static_cast<uint16_t>(base + 1), Protocol::kTcp}};
}

void Prepare(const std::string& dir, int count) {
  std::unique_ptr<SqliteStore> store = OpenStore(dir);
  ASSERT_NE(store, nullptr);
  Door door;
  door.name = "ssh";
  ASSERT_TRUE(store->PutDoor(door, {}).ok());
  std::vector<NewSequence> sequences;
  for (int i = 0; i < count; ++i) sequences.push_back(NewSequence{"ssh", SequenceKnocks(i), "ops", ""});
  ASSERT_TRUE(store->AddSequences(sequences, {}).ok());
}

// Reads exactly n bytes unless the writer is gone; returns what was read.
size_t ReadSome(int fd, void* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = read(fd, static_cast<char*>(buf) + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  return done;
}

// The child: consume sequences [0, count) with `threads` threads, writing
// the index of every won sequence to fd once Consume has answered, then wait
// to be killed. Never returns.
[[noreturn]] void ConsumeInChild(const std::string& dir, int count, int threads, int fd) {
  std::unique_ptr<SqliteStore> store = OpenStore(dir);
  if (store == nullptr) _exit(2);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = t; i < count; i += threads) {
        ConsumeRequest r;
        r.knocks = SequenceKnocks(i);
        r.agent = "b1";
        r.source = IpAddress::V4(0xc0000203u);
        absl::StatusOr<ConsumeResult> result = store->Consume(r);
        if (!result.ok() || result->outcome != ConsumeOutcome::kWon) _exit(3);
        const int32_t won = i;
        if (write(fd, &won, sizeof won) != sizeof won) _exit(4);
      }
    });
  }
  for (std::thread& w : workers) w.join();
  for (;;) pause();
}

TEST(ConsumeDurabilityTest, OneConsumptionSurvivesSigkill) {
  testing::TempDir dir;
  Prepare(dir.path(), 1);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    testing::DieWithParent(parent);
    close(fds[0]);
    ConsumeInChild(dir.path(), 1, 1, fds[1]);
  }
  close(fds[1]);
  int32_t won = -1;
  ASSERT_EQ(ReadSome(fds[0], &won, sizeof won), sizeof won) << "the child died before answering";
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  close(fds[0]);

  std::unique_ptr<SqliteStore> store = OpenStore(dir.path());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<Sequence> q = store->GetSequence(1);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->state, SequenceState::kBurnt);
  ConsumeRequest again;
  again.knocks = SequenceKnocks(0);
  again.agent = "b2";
  again.source = IpAddress::V4(0xc0000204u);
  EXPECT_EQ(store->Consume(again)->outcome, ConsumeOutcome::kReplay);
}

TEST(ConsumeDurabilityTest, KilledInTheMiddleOfAStreamLosesNoAnsweredBurn) {
  constexpr int kSequences = 3000;
  constexpr int kThreads = 8;
  testing::TempDir dir;
  Prepare(dir.path(), kSequences);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    testing::DieWithParent(parent);
    close(fds[0]);
    ConsumeInChild(dir.path(), kSequences, kThreads, fds[1]);
  }
  close(fds[1]);
  // Kill once a few hundred answers are out, while batches are in flight.
  std::set<int32_t> answered;
  while (answered.size() < 300) {
    int32_t won;
    if (ReadSome(fds[0], &won, sizeof won) != sizeof won) break;
    answered.insert(won);
  }
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child exited early with " << WEXITSTATUS(status);
  // Answers already in the pipe were given before the kill.
  for (int32_t won; ReadSome(fds[0], &won, sizeof won) == sizeof won;) answered.insert(won);
  close(fds[0]);
  ASSERT_GE(answered.size(), 300u);

  std::unique_ptr<SqliteStore> store = OpenStore(dir.path());
  ASSERT_NE(store, nullptr);
  SequenceFilter burnt_filter;
  burnt_filter.state = SequenceState::kBurnt;
  absl::StatusOr<std::vector<Sequence>> burnt = store->ListSequences(burnt_filter);
  ASSERT_TRUE(burnt.ok());
  std::set<int32_t> burnt_indexes;
  for (const Sequence& q : *burnt) burnt_indexes.insert(static_cast<int32_t>(q.id) - 1);
  for (int32_t i : answered) EXPECT_TRUE(burnt_indexes.contains(i)) << "answered sequence " << i << " came back";
  // Burns and their audit records were committed together: as many
  // "knock.opened" records as burnt sequences, and the chain is whole.
  absl::StatusOr<AuditHead> head = store->GetAuditHead();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->record_count, burnt->size());
  AuditLog log(*store, AuditSigningKey::Generate());
  ASSERT_TRUE(log.Checkpoint().ok());
  absl::StatusOr<AuditVerification> verified = log.Verify();
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->ok) << verified->problem;
  // The store still works, and nothing burnt can be won again.
  for (int32_t i : answered) {
    ConsumeRequest again;
    again.knocks = SequenceKnocks(i);
    again.agent = "b2";
    again.source = IpAddress::V4(0xc0000205u);
    ASSERT_EQ(store->Consume(again)->outcome, ConsumeOutcome::kReplay) << i;
    break;  // one is enough to show the store is usable; all were checked above
  }
}

}  // namespace
}  // namespace sesame::controller
