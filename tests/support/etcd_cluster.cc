#include "tests/support/etcd_cluster.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/support/child_process.h"
#include "tests/support/namespace_sandbox.h"
#include "tests/support/test_pki.h"

namespace sesame::testing {
namespace {

constexpr char kEtcd[] = "/usr/bin/etcd";
constexpr char kEtcdctl[] = "/usr/bin/etcdctl";
constexpr int kStartAttempts = 3;

// n distinct loopback ports nobody listens on now (the kernel's choices for
// port 0, all held until the last is picked so none repeats).
absl::StatusOr<std::vector<int>> FreePorts(int n) {
  std::vector<int> fds, ports;
  absl::Status status = absl::OkStatus();
  for (int i = 0; i < n && status.ok(); ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      status = absl::InternalError("socket");
      break;
    }
    fds.push_back(fd);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      status = absl::InternalError("bind to a free port");
    }
    ports.push_back(ntohs(a.sin_port));
  }
  for (int fd : fds) close(fd);
  if (!status.ok()) return status;
  return ports;
}

// The last bytes of a file, from a line start when there is one.
std::string Tail(const std::string& path, size_t bytes = 2000) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "(no log)";
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (all.size() <= bytes) return all;
  std::string tail = all.substr(all.size() - bytes);
  const size_t nl = tail.find('\n');
  return nl == std::string::npos ? tail : tail.substr(nl + 1);
}

std::string ExitDescription(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return "unknown status";
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(int members) {
  if (access(kEtcd, X_OK) != 0 || access(kEtcdctl, X_OK) != 0) {
    return absl::FailedPreconditionError("etcd is not installed (apt-get install etcd-server etcd-client)");
  }
  if (members < 1) return absl::InvalidArgumentError("an etcd cluster needs a member");
  absl::Status last;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> c = TryStart(members);
    if (c.ok()) return c;
    last = c.status();
    // Unavailable: a member exited while starting, most likely because one
    // of its ports was taken between FreePorts() and its bind. Anything else
    // (no leader in time, no certificates) would fail the same way again.
    if (!absl::IsUnavailable(last)) break;
  }
  return last;
}

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::TryStart(int members) {
  std::unique_ptr<EtcdCluster> c(new EtcdCluster());
  const std::string& d = c->dir_.path();
  ASSIGN_OR_RETURN(std::vector<int> ports, FreePorts(2 * members));
  std::vector<TestLeaf> leaves;
  for (int i = 0; i < members; ++i) {
    TestLeaf member(absl::StrCat("e", i), "", {"localhost"}, {"127.0.0.1"});
    member.eku = "serverAuth,clientAuth";  // a server to clients, a client to its peers
    leaves.push_back(member);
    Member m;
    m.name = member.name;
    m.client_port = ports[2 * i];
    m.peer_port = ports[2 * i + 1];
    c->members_.push_back(m);
  }
  leaves.push_back(TestLeaf("client", ""));
  RETURN_IF_ERROR(MakeTestPki(d, leaves));
  c->ca_cert_ = d + "/ca.crt";
  c->client_cert_ = d + "/client.crt";
  c->client_key_ = d + "/client.key";
  for (int i = 0; i < members; ++i) RETURN_IF_ERROR(c->Spawn(i, false));
  RETURN_IF_ERROR(c->WaitHealthy());
  return c;
}

EtcdCluster::~EtcdCluster() {
  // All at once, then reaped; dir_ is removed after this body.
  for (const Member& m : members_) {
    if (m.pid > 0) kill(m.pid, SIGKILL);
  }
  for (int i = 0; i < size(); ++i) Signal(i, SIGKILL, absl::ZeroDuration());
}

std::string EtcdCluster::endpoint(int i) const {
  return absl::StrCat("https://127.0.0.1:", members_[i].client_port);
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

absl::Status EtcdCluster::Spawn(int i, bool existing) {
  const std::string& d = dir_.path();
  Member& m = members_[i];
  std::vector<std::string> peers;
  for (const Member& p : members_) peers.push_back(absl::StrCat(p.name, "=https://127.0.0.1:", p.peer_port));
  const std::string peer_url = absl::StrCat("https://127.0.0.1:", m.peer_port);
  const std::string member_cert = absl::StrCat(d, "/", m.name, ".crt");
  const std::string member_key = absl::StrCat(d, "/", m.name, ".key");
  std::vector<std::string> args = {kEtcd,
                                   "--name=" + m.name,
                                   absl::StrCat("--data-dir=", d, "/", m.name, ".etcd"),
                                   "--listen-client-urls=" + endpoint(i),
                                   "--advertise-client-urls=" + endpoint(i),
                                   "--listen-peer-urls=" + peer_url,
                                   "--initial-advertise-peer-urls=" + peer_url,
                                   "--initial-cluster=" + absl::StrJoin(peers, ","),
                                   std::string("--initial-cluster-state=") + (existing ? "existing" : "new"),
                                   "--initial-cluster-token=sesame-test",
                                   "--client-cert-auth",
                                   "--trusted-ca-file=" + ca_cert_,
                                   "--cert-file=" + member_cert,
                                   "--key-file=" + member_key,
                                   "--peer-client-cert-auth",
                                   "--peer-trusted-ca-file=" + ca_cert_,
                                   "--peer-cert-file=" + member_cert,
                                   "--peer-key-file=" + member_key,
                                   // Elections in about a second, stable on a loaded 2-core machine.
                                   "--heartbeat-interval=100",
                                   "--election-timeout=1000",
                                   "--logger=zap",
                                   "--log-level=warn"};
  ASSIGN_OR_RETURN(const pid_t pid, SpawnWithLog(args, absl::StrCat(d, "/", m.name, ".log")));
  m.pid = pid;
  return absl::OkStatus();
}

void EtcdCluster::Signal(int i, int sig, absl::Duration grace) {
  if (i < 0 || i >= size() || members_[i].pid <= 0) return;
  const pid_t pid = members_[i].pid;
  members_[i].pid = -1;
  kill(pid, sig);
  int status = 0;
  const absl::Time deadline = absl::Now() + grace;
  while (sig != SIGKILL && absl::Now() < deadline) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return;
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (sig != SIGKILL) kill(pid, SIGKILL);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

void EtcdCluster::Kill(int i) { Signal(i, SIGKILL, absl::ZeroDuration()); }

void EtcdCluster::Stop(int i) { Signal(i, SIGTERM, absl::Seconds(10)); }

absl::Status EtcdCluster::Restart(int i) {
  if (i < 0 || i >= size()) return absl::InvalidArgumentError(absl::StrCat("no member ", i));
  if (running(i)) return absl::FailedPreconditionError(absl::StrCat("member ", i, " is running"));
  RETURN_IF_ERROR(Spawn(i, true));
  return WaitHealthy();
}

absl::StatusOr<std::string> EtcdCluster::Etcdctl(const std::vector<std::string>& args) const {
  std::vector<std::string> live;
  for (int i = 0; i < size(); ++i) {
    if (running(i)) live.push_back(endpoint(i));
  }
  if (live.empty()) return absl::FailedPreconditionError("no etcd member is running");
  std::vector<std::string> argv = {kEtcdctl,
                                   "--dial-timeout=2s",
                                   "--command-timeout=3s",
                                   "--endpoints=" + absl::StrJoin(live, ","),
                                   "--cacert=" + ca_cert_,
                                   "--cert=" + client_cert_,
                                   "--key=" + client_key_};
  argv.insert(argv.end(), args.begin(), args.end());
  const CommandResult r = RunCommand(argv);
  if (r.exit_code != 0) {
    return absl::UnavailableError(
        absl::StrCat("etcdctl ", absl::StrJoin(args, " "), " failed (", r.exit_code, "): ", r.output));
  }
  return r.output;
}

int EtcdCluster::LeaderIndex() const {
  // One line per endpoint: "ENDPOINT, ID, VERSION, DB SIZE, IS LEADER, ..."
  absl::StatusOr<std::string> out = Etcdctl({"endpoint", "status"});
  if (!out.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(*out, '\n')) {
    std::vector<std::string> fields;
    for (absl::string_view f : absl::StrSplit(line, ',')) fields.emplace_back(absl::StripAsciiWhitespace(f));
    if (fields.size() < 5 || fields[4] != "true") continue;
    for (int i = 0; i < size(); ++i) {
      if (running(i) && fields[0] == endpoint(i)) return i;
    }
  }
  return -1;
}

std::string EtcdCluster::LogTails() const {
  std::string out;
  for (const Member& m : members_) {
    absl::StrAppend(&out, "\n--- ", m.name, ".log (", m.pid > 0 ? "running" : "not running", ") ---\n",
                    Tail(absl::StrCat(dir_.path(), "/", m.name, ".log")));
  }
  return out;
}

absl::Status EtcdCluster::WaitForLeader(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (LeaderIndex() >= 0) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("etcd has no leader after ", absl::FormatDuration(timeout), LogTails()));
}

absl::Status EtcdCluster::WaitHealthy(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::OkStatus();
  for (;;) {
    for (Member& m : members_) {
      int status = 0;
      if (m.pid > 0 && waitpid(m.pid, &status, WNOHANG) == m.pid) {
        m.pid = -1;
        return absl::UnavailableError(
            absl::StrCat("etcd member ", m.name, " exited (", ExitDescription(status), ")", LogTails()));
      }
    }
    // A quorum read through each endpoint: the member is up, has a leader
    // and has caught up with it.
    absl::StatusOr<std::string> health = Etcdctl({"endpoint", "health"});
    if (health.ok()) return absl::OkStatus();
    if (absl::IsFailedPrecondition(health.status())) return health.status();  // none running
    last = health.status();
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat("etcd is not healthy after ", absl::FormatDuration(timeout), ": ",
                                                  last.message(), LogTails()));
}

}  // namespace sesame::testing
