// The TCP Wrappers backend against Debian's own oracle, tcpdmatch(8), at the
// real paths: in this test's private mount namespace /etc is replaced by a
// copy made of symlinks to the real entries, except hosts.allow, hosts.deny
// and hosts, which are the test's own files. (A file bind-mounted over
// /etc/hosts.allow would not do: the backend replaces the table by rename,
// and nothing can be renamed over a mount point.)
#include "agent/grants/backends/hosts_allow_backend.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/namespace_sandbox.h"
#include "tests/support/temp_dir.h"

namespace sesame {
namespace {

using ::sesame::testing::RunCommand;
using ::testing::HasSubstr;

constexpr char kTable[] = "/etc/hosts.allow";
constexpr char kAdminLines[] =
    "# /etc/hosts.allow: list of hosts that are allowed to access the system.\n"
    "#                   See the manual pages hosts_access(5) and hosts_options(5).\n"
    "sshd: 10.9.8.7\n"
    "\n"
    "vsftpd : 192.0.2.0/255.255.255.0   # ftp from the office\n"
    "ALL: [2001:db8:ffff::]/48";  // no newline at the end, on purpose

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// /etc made of symlinks to the real entries, except the files the test
// owns. They live on a tmpfs mounted on `scratch` (a bind mount of the real
// /etc sits there: nothing may ever delete that directory recursively).
absl::Status PrivateEtc(const std::string& scratch) {
  if (mount("sesame-test", scratch.c_str(), "tmpfs", 0, "mode=0755") != 0) return Errno("mount tmpfs");
  const std::string real = scratch + "/real-etc";
  const std::string fake = scratch + "/etc";
  if (mkdir(real.c_str(), 0755) != 0 || mkdir(fake.c_str(), 0755) != 0) return Errno("mkdir");
  absl::Status bound = testing::BindMount("/etc", real);
  if (!bound.ok()) return bound;
  DIR* dir = opendir(real.c_str());
  if (dir == nullptr) return Errno("opendir");
  while (const dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || name == "hosts.allow" || name == "hosts.deny" || name == "hosts") continue;
    if (symlink((real + "/" + name).c_str(), (fake + "/" + name).c_str()) != 0) {
      closedir(dir);
      return Errno("symlink " + name);
    }
  }
  closedir(dir);
  bound = testing::BindMount(fake, "/etc");
  if (!bound.ok()) return bound;
  absl::Status s = WriteFileAtomically("/etc/hosts.deny", "ALL: ALL\n");
  if (s.ok()) s = WriteFileAtomically("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n127.0.0.5 sesame\n");
  return s;
}

class HostsAllowTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::HaveTool("tcpdmatch")) return;
    char templ[] = "/tmp/sesame-etc.XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    scratch_ = new std::string(templ);
    const absl::Status s = PrivateEtc(*scratch_);
    ASSERT_TRUE(s.ok()) << s;
  }

  static void TearDownTestSuite() {
    if (scratch_ == nullptr) return;
    umount2("/etc", MNT_DETACH);
    umount2((*scratch_ + "/real-etc").c_str(), MNT_DETACH);
    umount2(scratch_->c_str(), MNT_DETACH);
    rmdir(scratch_->c_str());
    delete scratch_;
    scratch_ = nullptr;
  }

  void SetUp() override {
    if (!testing::HaveTool("tcpdmatch")) GTEST_SKIP() << "tcpdmatch (Debian package tcpd) is not installed";
    ASSERT_TRUE(WriteFileAtomically(kTable, kAdminLines).ok());
    unlink((std::string(kTable) + ".sesame~").c_str());
  }

  static Grant GrantFor(const std::string& door, const char* address) {
    Grant g;
    g.door = door;
    g.address = *IpAddress::Parse(address);
    return g;
  }

  // tcpdmatch's verdict for SERVICE from ADDRESS (or host name).
  static std::string Access(const std::string& service, const std::string& client) {
    const testing::CommandResult r = RunCommand({"tcpdmatch", service, client});
    if (absl::StrContains(r.output, "access:   granted")) return "granted";
    if (absl::StrContains(r.output, "access:   denied")) return "denied";
    return "tcpdmatch said: " + r.output;
  }

  static std::string Read(const std::string& path) {
    absl::StatusOr<std::string> text = ReadFileToString(path);
    return text.ok() ? *text : "<" + text.status().ToString() + ">";
  }

  static std::string* scratch_;
  testing::TempDir tmp_;
};

std::string* HostsAllowTest::scratch_ = nullptr;

// --- include form ---------------------------------------------------------

TEST_F(HostsAllowTest, IncludeFormOpensAndClosesIPv4AndIPv6) {
  const std::string include = tmp_.File("state/hosts.allow");
  auto file = std::make_shared<HostsAllowIncludeFile>(kTable, include, "sshd");
  HostsAllowBackend door("openSSH", file);
  ASSERT_TRUE(door.Prepare().ok());
  EXPECT_EQ(Read(kTable), absl::StrCat(kAdminLines, "\nsshd: ", include, "\n"));
  EXPECT_EQ(Read(include), "");
  EXPECT_EQ(Read(std::string(kTable) + ".sesame~"), kAdminLines);

  EXPECT_EQ(Access("sshd", "192.0.2.7"), "denied");
  EXPECT_EQ(Access("sshd", "2001:db8::7"), "denied");
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "2001:db8::7")).ok());
  EXPECT_EQ(Read(include), "192.0.2.7\n[2001:db8::7]\n");
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "granted");
  EXPECT_EQ(Access("sshd", "2001:db8::7"), "granted");
  EXPECT_EQ(Access("sshd", "192.0.2.8"), "denied");
  EXPECT_EQ(Access("sshd", "2001:db8::8"), "denied");
  EXPECT_EQ(Access("vsftpd", "2001:db8::7"), "denied");  // another daemon

  ASSERT_TRUE(door.Close(GrantFor("openSSH", "192.0.2.7")).ok());
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "denied");
  EXPECT_EQ(Access("sshd", "2001:db8::7"), "granted");
  ASSERT_TRUE(door.Close(GrantFor("openSSH", "2001:db8::7")).ok());
  EXPECT_EQ(Access("sshd", "2001:db8::7"), "denied");
  EXPECT_EQ(Read(include), "");
  // The table keeps its one include line; nothing else changed.
  EXPECT_EQ(Read(kTable), absl::StrCat(kAdminLines, "\nsshd: ", include, "\n"));
}

TEST_F(HostsAllowTest, IncludeFormIsIdempotent) {
  const std::string include = tmp_.File("hosts.allow");
  auto file = std::make_shared<HostsAllowIncludeFile>(kTable, include, "sshd");
  HostsAllowBackend door("openSSH", file);
  ASSERT_TRUE(door.Prepare().ok());
  ASSERT_TRUE(door.Prepare().ok());
  const std::string table = Read(kTable);
  EXPECT_EQ(table, absl::StrCat(kAdminLines, "\nsshd: ", include, "\n"));

  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());
  EXPECT_EQ(Read(include), "192.0.2.7\n");
  ASSERT_TRUE(door.Prepare().ok());  // a reload keeps what is granted
  EXPECT_EQ(Read(include), "192.0.2.7\n");
  EXPECT_EQ(Read(kTable), table);
  ASSERT_TRUE(door.Close(GrantFor("openSSH", "192.0.2.7")).ok());
  ASSERT_TRUE(door.Close(GrantFor("openSSH", "192.0.2.7")).ok());  // closing twice is fine
  ASSERT_TRUE(door.Close(GrantFor("openSSH", "192.0.2.99")).ok());  // never opened
  EXPECT_EQ(Read(include), "");
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "denied");
}

TEST_F(HostsAllowTest, IncludeLineWrittenByHandIsRecognised) {
  const std::string include = tmp_.File("hosts.allow");
  const std::string table = absl::StrCat("# mine\n  sshd :  ", include, "  \n");
  ASSERT_TRUE(WriteFileAtomically(kTable, table).ok());
  HostsAllowBackend door("openSSH", std::make_shared<HostsAllowIncludeFile>(kTable, include, "sshd"));
  ASSERT_TRUE(door.Prepare().ok());
  EXPECT_EQ(Read(kTable), table);
}

TEST_F(HostsAllowTest, IncludePrepareResetsWhatAnEarlierRunLeft) {
  const std::string include = tmp_.File("hosts.allow");
  ASSERT_TRUE(WriteFileAtomically(include, "192.0.2.66\n").ok());
  HostsAllowBackend door("openSSH", std::make_shared<HostsAllowIncludeFile>(kTable, include, "sshd"));
  ASSERT_TRUE(door.Prepare().ok());
  EXPECT_EQ(Read(include), "");
  EXPECT_EQ(Access("sshd", "192.0.2.66"), "denied");
}

TEST_F(HostsAllowTest, IncludeFileSharedByTwoDoorsKeepsAnAddressWhileOneGrantsIt) {
  const std::string include = tmp_.File("hosts.allow");
  auto file = std::make_shared<HostsAllowIncludeFile>(kTable, include, "sshd");
  HostsAllowBackend a("a", file);
  HostsAllowBackend b("b", file);
  ASSERT_TRUE(a.Prepare().ok());
  ASSERT_TRUE(b.Prepare().ok());
  ASSERT_TRUE(a.Open(GrantFor("a", "192.0.2.7")).ok());
  ASSERT_TRUE(b.Open(GrantFor("b", "192.0.2.7")).ok());
  EXPECT_EQ(Read(include), "192.0.2.7\n");
  ASSERT_TRUE(a.Close(GrantFor("a", "192.0.2.7")).ok());
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "granted");
  ASSERT_TRUE(a.Close(GrantFor("a", "192.0.2.7")).ok());  // a's second close must not take b's grant
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "granted");
  ASSERT_TRUE(b.Close(GrantFor("b", "192.0.2.7")).ok());
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "denied");
}

TEST_F(HostsAllowTest, IncludeTableIsCreatedWhenMissing) {
  unlink(kTable);
  const std::string include = tmp_.File("hosts.allow");
  HostsAllowBackend door("openSSH", std::make_shared<HostsAllowIncludeFile>(kTable, include, "sshd"));
  ASSERT_TRUE(door.Prepare().ok());
  EXPECT_EQ(Read(kTable), absl::StrCat("sshd: ", include, "\n"));
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "granted");
}

// --- inline form ----------------------------------------------------------

TEST_F(HostsAllowTest, InlineFormOpensAndClosesIPv4AndIPv6ByteExactly) {
  ASSERT_EQ(chmod(kTable, 0640), 0);
  ASSERT_EQ(chown(kTable, 1234, 5678), 0);
  auto table = std::make_shared<HostsAllowInlineTable>(kTable);
  HostsAllowBackend door("openSSH", "sshd", table);
  ASSERT_TRUE(door.Prepare().ok());
  EXPECT_EQ(Read(kTable), kAdminLines);  // nothing of ours to add or remove

  EXPECT_EQ(Access("sshd", "192.0.2.7"), "denied");
  EXPECT_EQ(Access("sshd", "2001:db8::7"), "denied");
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());
  EXPECT_EQ(Read(table->backup()), kAdminLines);
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "2001:db8::7")).ok());
  EXPECT_EQ(Read(kTable), absl::StrCat(kAdminLines, "\n",                                    //
                                       "sshd: 192.0.2.7 EXCEPT # sesame door=openSSH\n",     //
                                       "sshd: [2001:db8::7] EXCEPT # sesame door=openSSH\n"));
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "granted");
  EXPECT_EQ(Access("sshd", "2001:db8::7"), "granted");
  EXPECT_EQ(Access("sshd", "192.0.2.8"), "denied");

  struct stat st {};
  ASSERT_EQ(stat(kTable, &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);

  ASSERT_TRUE(door.Close(GrantFor("openSSH", "192.0.2.7")).ok());
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "denied");
  EXPECT_EQ(Access("sshd", "2001:db8::7"), "granted");
  ASSERT_TRUE(door.Close(GrantFor("openSSH", "2001:db8::7")).ok());
  EXPECT_EQ(Access("sshd", "2001:db8::7"), "denied");
  // Every other byte as it was, the missing final newline included.
  EXPECT_EQ(Read(kTable), absl::StrCat(kAdminLines, "\n"));
}

TEST_F(HostsAllowTest, InlineFormTouchesNoOtherLine) {
  const std::string admin = "sshd: 10.0.0.1\nsshd: 10.0.0.2\n";
  ASSERT_TRUE(WriteFileAtomically(kTable, admin).ok());
  HostsAllowBackend door("openSSH", "sshd", std::make_shared<HostsAllowInlineTable>(kTable));
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());  // twice: one line
  EXPECT_EQ(Read(kTable), admin + "sshd: 192.0.2.7 EXCEPT # sesame door=openSSH\n");
  // The administrator adds a line meanwhile; closing keeps it.
  ASSERT_TRUE(WriteFileAtomically(kTable, Read(kTable) + "sshd: 10.0.0.3\n").ok());
  ASSERT_TRUE(door.Close(GrantFor("openSSH", "192.0.2.7")).ok());
  EXPECT_EQ(Read(kTable), admin + "sshd: 10.0.0.3\n");
  ASSERT_TRUE(door.Close(GrantFor("openSSH", "192.0.2.7")).ok());  // not open: fine, nothing changes
  EXPECT_EQ(Read(kTable), admin + "sshd: 10.0.0.3\n");
}

TEST_F(HostsAllowTest, InlineGrantsOfTwoDoorsAreIndependent) {
  auto table = std::make_shared<HostsAllowInlineTable>(kTable);
  HostsAllowBackend a("a", "sshd", table);
  HostsAllowBackend b("b", "sshd", table);
  ASSERT_TRUE(a.Open(GrantFor("a", "192.0.2.7")).ok());
  ASSERT_TRUE(b.Open(GrantFor("b", "192.0.2.7")).ok());
  ASSERT_TRUE(a.Close(GrantFor("a", "192.0.2.7")).ok());
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "granted");
  ASSERT_TRUE(b.Close(GrantFor("b", "192.0.2.7")).ok());
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "denied");
  EXPECT_EQ(Read(kTable), absl::StrCat(kAdminLines, "\n"));
}

TEST_F(HostsAllowTest, InlinePrepareRemovesLinesAnEarlierRunLeft) {
  const std::string admin = "sshd: 10.0.0.1\n";
  ASSERT_TRUE(WriteFileAtomically(kTable, admin + "sshd: 192.0.2.66 EXCEPT # sesame door=gone\n" +
                                              "# sshd: 192.0.2.67 EXCEPT # sesame door=commented\n")
                  .ok());
  auto table = std::make_shared<HostsAllowInlineTable>(kTable);
  HostsAllowBackend door("openSSH", "sshd", table);
  ASSERT_TRUE(door.Open(GrantFor("openSSH", "192.0.2.7")).ok());
  ASSERT_TRUE(door.Prepare().ok());  // keeps the live grant, drops the stale one
  EXPECT_EQ(Read(kTable), admin + "# sshd: 192.0.2.67 EXCEPT # sesame door=commented\n" +
                              "sshd: 192.0.2.7 EXCEPT # sesame door=openSSH\n");
  EXPECT_EQ(Access("sshd", "192.0.2.66"), "denied");
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "granted");
}

// tcpd has no end-of-line comments: in "sshd: ADDR # sesame door=x" the
// words after ADDR would be host name patterns admitting a host named
// "sesame". The EXCEPT keeps them from widening the grant.
TEST_F(HostsAllowTest, InlineMarkerAdmitsNoHostNamedLikeIt) {
  HostsAllowBackend door("x", "sshd", std::make_shared<HostsAllowInlineTable>(kTable));
  ASSERT_TRUE(door.Open(GrantFor("x", "192.0.2.7")).ok());
  EXPECT_EQ(Access("sshd", "192.0.2.7"), "granted");
  const std::string verdict = Access("sshd", "sesame");  // 127.0.0.5 in this test's /etc/hosts
  EXPECT_EQ(verdict, "denied");
  // What the marker would do without EXCEPT:
  ASSERT_TRUE(WriteFileAtomically(kTable, "sshd: 192.0.2.7 # sesame door=x\n").ok());
  EXPECT_EQ(Access("sshd", "sesame"), "granted");
}

TEST_F(HostsAllowTest, InlineDoorNamesCannotBreakTheLine) {
  const IpAddress a = *IpAddress::Parse("192.0.2.7");
  EXPECT_EQ(HostsAllowInlineTable::GrantLine("sshd", "my door: \"x\"", a),
            "sshd: 192.0.2.7 EXCEPT # sesame door=my_door___x_");
  EXPECT_TRUE(HostsAllowInlineTable::IsGrantLine("sshd: 192.0.2.7 EXCEPT # sesame door=a"));
  EXPECT_FALSE(HostsAllowInlineTable::IsGrantLine("# sshd: 192.0.2.7 EXCEPT # sesame door=a"));
  EXPECT_FALSE(HostsAllowInlineTable::IsGrantLine("sshd: 192.0.2.7 # sesame door=a"));
  EXPECT_EQ(HostsAccessPattern(*IpAddress::Parse("2001:db8::1")), "[2001:db8::1]");
}

TEST_F(HostsAllowTest, UnwritableTableIsAnError) {
  auto table = std::make_shared<HostsAllowInlineTable>(tmp_.File("no/such/dir/hosts.allow"));
  HostsAllowBackend door("openSSH", "sshd", table);
  const absl::Status prepared = door.Prepare();
  EXPECT_FALSE(prepared.ok());
  EXPECT_THAT(std::string(prepared.message()), HasSubstr("no/such/dir/hosts.allow"));
  const absl::Status s = door.Open(GrantFor("openSSH", "192.0.2.7"));
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("no/such/dir/hosts.allow"));
}

TEST_F(HostsAllowTest, ReadOnlyDirectoryIsFoundAtPrepare) {
  const std::string dir = tmp_.File("ro");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  ASSERT_TRUE(testing::BindMount(dir, dir).ok());
  ASSERT_EQ(mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr), 0) << strerror(errno);
  HostsAllowBackend door("openSSH", "sshd", std::make_shared<HostsAllowInlineTable>(dir + "/hosts.allow"));
  const absl::Status s = door.Prepare();
  umount2(dir.c_str(), MNT_DETACH);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("is not writable"));
}

}  // namespace
}  // namespace sesame
