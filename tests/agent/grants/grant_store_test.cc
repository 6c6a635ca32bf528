#include "agent/grants/grant_store.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

Grant MakeGrant(std::string door, const char* address, int64_t opened_ns, absl::Time expires) {
  Grant g;
  g.door = std::move(door);
  g.address = *IpAddress::Parse(address);
  g.ports = {{22, Protocol::kTcp}, {53, Protocol::kUdp}};
  g.opened = absl::FromUnixNanos(opened_ns);
  g.expires = expires;
  return g;
}

constexpr int64_t kT0 = 1'700'000'000'123'456'789;

TEST(GrantStoreTest, MissingFileIsAnEmptyStoreAndNothingIsWrittenUntilAChange) {
  testing::TempDir dir;
  auto store = GrantStore::Open(dir.File("grants"));
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_THAT((*store)->All(), IsEmpty());
  EXPECT_THAT(DirEntries(dir.path()), IsEmpty());
}

TEST(GrantStoreTest, RoundTripIsExact) {
  testing::TempDir dir;
  const std::string path = dir.File("grants");
  std::vector<Grant> put = {
      MakeGrant("openSSH", "10.0.0.9", kT0, absl::FromUnixNanos(kT0 + 30'000'000'001)),
      MakeGrant("openSSH", "2001:db8::1", kT0, absl::InfiniteFuture()),
      // Door names are free text in knockd.conf: spaces, '%', non-ASCII.
      MakeGrant("door with spaces % and \xc3\xa9", "192.0.2.1", -5, absl::FromUnixNanos(0)),
  };
  put[2].ports.clear();
  {
    auto store = GrantStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    for (const Grant& g : put) ASSERT_TRUE((*store)->Put(g).ok());
    EXPECT_EQ((*store)->size(), 3u);
  }
  auto reopened = GrantStore::Open(path);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  std::vector<Grant> all = (*reopened)->All();
  ASSERT_EQ(all.size(), 3u);
  for (const Grant& g : put) {
    std::optional<Grant> found = (*reopened)->Find(g.door, g.address);
    ASSERT_TRUE(found.has_value()) << g.door;
    EXPECT_EQ(*found, g) << g.door;
  }
  // Sorted by (door, address); versioned header; one grant per line.
  const std::string text = ReadFile(path);
  EXPECT_THAT(text, StartsWith("sesame-grants 1\n"));
  EXPECT_THAT(text, HasSubstr("\ndoor%20with%20spaces%20%25%20and%20%C3%A9 192.0.2.1 - -5 0\n"));
  EXPECT_THAT(text, HasSubstr("\nopenSSH 10.0.0.9 22:tcp,53:udp 1700000000123456789 1700000030123456790\n"));
  EXPECT_THAT(text, HasSubstr("\nopenSSH 2001:db8::1 22:tcp,53:udp 1700000000123456789 inf\n"));
}

TEST(GrantStoreTest, TimesFinerThanANanosecondAreTruncatedOnPut) {
  testing::TempDir dir;
  const std::string path = dir.File("grants");
  auto store = GrantStore::Open(path);
  ASSERT_TRUE(store.ok());
  Grant g = MakeGrant("d", "10.0.0.1", kT0, absl::FromUnixNanos(kT0) + absl::Nanoseconds(1) / 4);
  g.opened += absl::Nanoseconds(1) / 2;
  ASSERT_TRUE((*store)->Put(g).ok());
  const Grant held = (*store)->All().at(0);
  EXPECT_EQ(held.opened, absl::FromUnixNanos(kT0));
  EXPECT_EQ(held.expires, absl::FromUnixNanos(kT0));
  auto reopened = GrantStore::Open(path);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->All(), (*store)->All());
}

TEST(GrantStoreTest, PutReplacesByDoorAndAddressAndRemoveDeletes) {
  testing::TempDir dir;
  const std::string path = dir.File("grants");
  auto store = GrantStore::Open(path);
  ASSERT_TRUE(store.ok());
  GrantStore& s = **store;
  ASSERT_TRUE(s.Put(MakeGrant("a", "10.0.0.1", kT0, absl::FromUnixNanos(kT0 + 1))).ok());
  ASSERT_TRUE(s.Put(MakeGrant("b", "10.0.0.1", kT0, absl::FromUnixNanos(kT0 + 2))).ok());
  const Grant extended = MakeGrant("a", "10.0.0.1", kT0 + 5, absl::FromUnixNanos(kT0 + 100));
  ASSERT_TRUE(s.Put(extended).ok());
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(*s.Find("a", *IpAddress::Parse("10.0.0.1")), extended);

  ASSERT_TRUE(s.Remove("b", *IpAddress::Parse("10.0.0.1")).ok());
  ASSERT_TRUE(s.Remove("b", *IpAddress::Parse("10.0.0.1")).ok());  // absent: fine
  ASSERT_TRUE(s.Remove("nope", *IpAddress::Parse("::1")).ok());
  EXPECT_THAT(s.All(), ElementsAre(extended));

  auto reopened = GrantStore::Open(path);
  ASSERT_TRUE(reopened.ok());
  EXPECT_THAT((*reopened)->All(), ElementsAre(extended));
  // Every rewrite went through a temporary that was renamed away.
  EXPECT_THAT(DirEntries(dir.path()), ElementsAre("grants"));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(GrantStoreTest, EveryIntermediateFileParses) {
  testing::TempDir dir;
  const std::string path = dir.File("grants");
  auto store = GrantStore::Open(path);
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 40; ++i) {
    const std::string address = absl::StrCat("10.0.", i % 7, ".", i);
    if (i % 3 == 2) {
      ASSERT_TRUE((*store)->Remove("d", *IpAddress::Parse(absl::StrCat("10.0.", (i - 1) % 7, ".", i - 1))).ok());
    } else {
      ASSERT_TRUE((*store)->Put(MakeGrant("d", address.c_str(), kT0 + i, absl::FromUnixNanos(kT0 + 1000 * i))).ok());
    }
    absl::StatusOr<ParsedGrants> parsed = ParseGrants(ReadFile(path), path);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_THAT(parsed->errors, IsEmpty());
    EXPECT_EQ(parsed->grants, (*store)->All()) << "after step " << i;
  }
  EXPECT_THAT(DirEntries(dir.path()), ElementsAre("grants"));
}

TEST(GrantStoreTest, AFailedWriteChangesNothing) {
  testing::TempDir dir;
  const std::string sub = dir.File("state");
  ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
  const std::string path = sub + "/grants";
  auto store = GrantStore::Open(path);
  ASSERT_TRUE(store.ok());
  const Grant first = MakeGrant("d", "10.0.0.1", kT0, absl::InfiniteFuture());
  ASSERT_TRUE((*store)->Put(first).ok());
  // The directory vanishes (root ignores permissions, so remove it instead).
  std::filesystem::remove_all(sub);
  EXPECT_FALSE((*store)->Put(MakeGrant("d", "10.0.0.2", kT0, absl::InfiniteFuture())).ok());
  EXPECT_FALSE((*store)->Remove("d", first.address).ok());
  EXPECT_THAT((*store)->All(), ElementsAre(first));
}

TEST(GrantStoreTest, PutRejectsAGrantWithoutDoor) {
  testing::TempDir dir;
  auto store = GrantStore::Open(dir.File("grants"));
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->Put(MakeGrant("", "10.0.0.1", 0, absl::InfiniteFuture())).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GrantStoreTest, DueReturnsWhatHasExpired) {
  testing::TempDir dir;
  auto store = GrantStore::Open(dir.File("grants"));
  ASSERT_TRUE(store.ok());
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  const Grant past = MakeGrant("d", "10.0.0.1", 0, now - absl::Seconds(1));
  const Grant exactly = MakeGrant("d", "10.0.0.2", 0, now);
  const Grant future = MakeGrant("d", "10.0.0.3", 0, now + absl::Nanoseconds(1));
  const Grant never = MakeGrant("d", "10.0.0.4", 0, absl::InfiniteFuture());
  for (const Grant& g : {never, future, exactly, past}) ASSERT_TRUE((*store)->Put(g).ok());
  EXPECT_THAT((*store)->Due(now), ElementsAre(past, exactly));
  EXPECT_THAT((*store)->Due(absl::InfinitePast()), IsEmpty());
  EXPECT_EQ((*store)->Due(absl::InfiniteFuture()).size(), 4u);
}

TEST(GrantStoreTest, StagedChangesAreSeenAtOnceAndWrittenOnceBySync) {
  testing::TempDir dir;
  const std::string path = dir.File("grants");
  auto store = GrantStore::Open(path);
  ASSERT_TRUE(store.ok());
  GrantStore& s = **store;
  const absl::Time t = absl::FromUnixNanos(kT0);
  for (int i = 1; i <= 30; ++i) {
    s.Stage(MakeGrant("d", absl::StrCat("10.0.0.", i).c_str(), kT0, t + absl::Seconds(i)));
  }
  s.StageRemove("d", *IpAddress::Parse("10.0.0.30"));
  s.StageRemove("d", *IpAddress::Parse("10.9.9.9"));  // absent: nothing
  EXPECT_EQ(s.size(), 29u);
  EXPECT_TRUE(s.Find("d", *IpAddress::Parse("10.0.0.7")).has_value());
  EXPECT_TRUE(s.dirty());
  EXPECT_EQ(s.writes(), 0u);
  EXPECT_THAT(DirEntries(dir.path()), IsEmpty()) << "nothing written before Sync";
  ASSERT_TRUE(s.Sync().ok());
  EXPECT_EQ(s.writes(), 1u);
  EXPECT_FALSE(s.dirty());
  ASSERT_TRUE(s.Sync().ok());
  EXPECT_EQ(s.writes(), 1u) << "a clean store writes nothing";
  auto reopened = GrantStore::Open(path);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->All(), s.All());
  // Staging what is already there changes nothing.
  s.Stage(*s.Find("d", *IpAddress::Parse("10.0.0.7")));
  EXPECT_FALSE(s.dirty());
}

TEST(GrantStoreTest, AFailedSyncKeepsTheChangesAndTheNextSyncWritesThem) {
  testing::TempDir dir;
  const std::string sub = dir.File("state");
  ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
  auto store = GrantStore::Open(sub + "/grants");
  ASSERT_TRUE(store.ok());
  std::filesystem::remove_all(sub);
  const Grant g = MakeGrant("d", "10.0.0.1", kT0, absl::InfiniteFuture());
  (*store)->Stage(g);
  EXPECT_FALSE((*store)->Sync().ok());
  EXPECT_TRUE((*store)->dirty());
  EXPECT_THAT((*store)->All(), ElementsAre(g));
  ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
  ASSERT_TRUE((*store)->Sync().ok());
  auto reopened = GrantStore::Open(sub + "/grants");
  ASSERT_TRUE(reopened.ok());
  EXPECT_THAT((*reopened)->All(), ElementsAre(g));
}

TEST(GrantStoreTest, KnowsWhatExpiresFirstAndHowManyEachDoorHolds) {
  testing::TempDir dir;
  auto store = GrantStore::Open(dir.File("grants"));
  ASSERT_TRUE(store.ok());
  GrantStore& s = **store;
  const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
  EXPECT_EQ(s.NextExpiry(), absl::InfiniteFuture());
  s.Stage(MakeGrant("a", "10.0.0.1", 0, t + absl::Seconds(30)));
  s.Stage(MakeGrant("a", "10.0.0.2", 0, t + absl::Seconds(10)));
  s.Stage(MakeGrant("a", "10.0.0.3", 0, t + absl::Seconds(20)));
  s.Stage(MakeGrant("b", "10.0.0.1", 0, t + absl::Seconds(5)));
  EXPECT_EQ(s.NextExpiry(), t + absl::Seconds(5));
  EXPECT_THAT(s.SizeByDoor(), ElementsAre(std::make_pair(std::string("a"), size_t{2 + 1}),
                                          std::make_pair(std::string("b"), size_t{1})));
  EXPECT_EQ(s.FirstToExpire("a")->address.ToString(), "10.0.0.2");
  EXPECT_FALSE(s.FirstToExpire("c").has_value());
  // An extension moves a grant in the expiry order.
  s.Stage(MakeGrant("a", "10.0.0.2", 0, t + absl::Seconds(60)));
  EXPECT_EQ(s.FirstToExpire("a")->address.ToString(), "10.0.0.3");
  EXPECT_THAT(s.Due(t + absl::Seconds(20)),
              ElementsAre(MakeGrant("a", "10.0.0.3", 0, t + absl::Seconds(20)),
                          MakeGrant("b", "10.0.0.1", 0, t + absl::Seconds(5))));
  s.StageRemove("b", *IpAddress::Parse("10.0.0.1"));
  EXPECT_EQ(s.NextExpiry(), t + absl::Seconds(20));
  EXPECT_EQ(s.SizeByDoor().count("b"), 0u);
}

TEST(GrantStoreTest, AGrantsFileThatIsNoRegularFileIsRefused) {
  testing::TempDir dir;
  const std::string fifo = dir.File("grants");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto store = GrantStore::Open(fifo);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr("is not a regular file (a FIFO)"));
  auto a_dir = GrantStore::Open(dir.path());
  ASSERT_FALSE(a_dir.ok());
  EXPECT_THAT(a_dir.status().message(), HasSubstr("is not a regular file (a directory)"));
}

constexpr char kGood[] = "openSSH 10.0.0.9 22:tcp 1700000000000000000 1700000030000000000\n";

TEST(GrantStoreTest, ACorruptLineRefusesToOpenAndNamesFileAndLine) {
  testing::TempDir dir;
  const std::string path = dir.File("grants");
  const std::string text = absl::StrCat("sesame-grants 1\n", kGood, "openSSH 10.0.0.300 22:tcp 1 2\n");
  WriteFile(path, text);
  auto store = GrantStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(store.status().message(), HasSubstr(absl::StrCat(path, ":3: expected an IP address")));
  EXPECT_EQ(ReadFile(path), text) << "a refused file is left alone";
}

TEST(GrantStoreTest, SalvageMovesTheFileAsideAndKeepsTheGoodLines) {
  testing::TempDir dir;
  const std::string path = dir.File("grants");
  const std::string text = absl::StrCat("sesame-grants 1\n", "garbage\n", kGood);
  WriteFile(path, text);
  auto store = GrantStore::Open(path, GrantStore::OnCorrupt::kSalvage);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_EQ((*store)->size(), 1u);
  EXPECT_EQ((*store)->All()[0].address.ToString(), "10.0.0.9");

  std::vector<std::string> entries = DirEntries(dir.path());
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0], "grants");
  EXPECT_THAT(entries[1], StartsWith("grants.corrupt-"));
  EXPECT_EQ(ReadFile(dir.File(entries[1])), text);
  // What is left parses cleanly, in strict mode too.
  auto reopened = GrantStore::Open(path);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->All(), (*store)->All());
}

TEST(GrantStoreTest, AFileOfANewerVersionIsRefusedEvenWhenSalvaging) {
  testing::TempDir dir;
  const std::string path = dir.File("grants");
  WriteFile(path, absl::StrCat("sesame-grants 2\n", kGood));
  for (auto mode : {GrantStore::OnCorrupt::kRefuse, GrantStore::OnCorrupt::kSalvage}) {
    auto store = GrantStore::Open(path, mode);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(store.status().message(), HasSubstr("version 2"));
  }
  EXPECT_THAT(DirEntries(dir.path()), ElementsAre("grants"));
}

TEST(GrantStoreTest, ParseGrantsSaysWhatWasExpected) {
  struct Case {
    std::string line;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"openSSH 10.0.0.9 22:tcp 1", "expected 5 space-separated fields"},
      {"openSSH  10.0.0.9 22:tcp 1 2", "expected 5 space-separated fields"},
      {"openSSH 10.0.0.9 22:tcp 1 2 ", "expected 5 space-separated fields"},
      {"open%G0 10.0.0.9 22:tcp 1 2", "expected a door name"},
      {"open% 10.0.0.9 22:tcp 1 2", "expected a door name"},
      {"openSSH 10.0.0.9; 22:tcp 1 2", "expected an IP address"},
      {"openSSH 10.0.0.9 22 1 2", "expected ports"},
      {"openSSH 10.0.0.9 70000:tcp 1 2", "expected ports"},
      {"openSSH 10.0.0.9 22:sctp 1 2", "expected ports"},
      {"openSSH 10.0.0.9 22:tcp, 1 2", "expected ports"},
      {"openSSH 10.0.0.9 22:tcp 1.5 2", "expected OPENED"},
      {"openSSH 10.0.0.9 22:tcp 1 99999999999999999999", "expected EXPIRES"},
      {"openSSH 10.0.0.9 22:tcp 1 never", "expected EXPIRES"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ParsedGrants> parsed = ParseGrants(absl::StrCat("sesame-grants 1\n", c.line, "\n"), "F");
    ASSERT_TRUE(parsed.ok()) << c.line;
    EXPECT_THAT(parsed->grants, IsEmpty()) << c.line;
    ASSERT_EQ(parsed->errors.size(), 1u) << c.line;
    EXPECT_THAT(parsed->errors[0], StartsWith("F:2: ")) << c.line;
    EXPECT_THAT(parsed->errors[0], HasSubstr(c.expected)) << c.line;
  }

  absl::StatusOr<ParsedGrants> duplicate = ParseGrants(absl::StrCat("sesame-grants 1\n", kGood, kGood), "F");
  ASSERT_TRUE(duplicate.ok());
  EXPECT_EQ(duplicate->grants.size(), 1u);
  ASSERT_EQ(duplicate->errors.size(), 1u);
  EXPECT_THAT(duplicate->errors[0], HasSubstr("F:3: a second grant"));

  absl::StatusOr<ParsedGrants> headless = ParseGrants(kGood, "F");
  ASSERT_TRUE(headless.ok());
  EXPECT_EQ(headless->grants.size(), 1u);  // salvageable
  ASSERT_EQ(headless->errors.size(), 1u);
  EXPECT_THAT(headless->errors[0], HasSubstr("F:1: expected the header"));

  absl::StatusOr<ParsedGrants> empty = ParseGrants("", "F");
  ASSERT_TRUE(empty.ok());
  EXPECT_THAT(empty->grants, IsEmpty());
  EXPECT_THAT(empty->errors, IsEmpty());
}

TEST(GrantStoreTest, ConcurrentPutsAreAllKept) {
  testing::TempDir dir;
  const std::string path = dir.File("grants");
  auto store = GrantStore::Open(path);
  ASSERT_TRUE(store.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        const std::string address = absl::StrCat("10.", t, ".0.", i);
        EXPECT_TRUE((*store)->Put(MakeGrant("d", address.c_str(), i, absl::InfiniteFuture())).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ((*store)->size(), 40u);
  auto reopened = GrantStore::Open(path);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->All(), (*store)->All());
}

}  // namespace
}  // namespace sesame
