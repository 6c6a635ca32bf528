#include "tests/support/etcd_cluster.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/support/test_pki.h"

namespace sesame::testing {
namespace {

// A port nobody listens on now (the kernel's choice for port 0).
absl::StatusOr<int> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return absl::InternalError("bind to a free port");
  }
  close(fd);
  return ntohs(a.sin_port);
}

void Reap(pid_t pid, int sig) {
  if (pid <= 0) return;
  kill(pid, sig);
  int status = 0;
  waitpid(pid, &status, 0);
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(int members) {
  if (access("/usr/bin/etcd", X_OK) != 0) return absl::FailedPreconditionError("etcd is not installed");
  std::unique_ptr<EtcdCluster> c(new EtcdCluster());
  const std::string& d = c->dir_.path();
  std::vector<TestLeaf> leaves;
  for (int i = 0; i < members; ++i) {
    TestLeaf member(absl::StrCat("e", i), "", {"localhost"}, {"127.0.0.1"});
    member.eku = "serverAuth,clientAuth";
    leaves.push_back(member);
    Member m;
    m.name = member.name;
    ASSIGN_OR_RETURN(m.client_port, FreePort());
    ASSIGN_OR_RETURN(m.peer_port, FreePort());
    c->members_.push_back(m);
  }
  leaves.push_back(TestLeaf("client", ""));
  RETURN_IF_ERROR(MakeTestPki(d, leaves));
  c->ca_cert_ = d + "/ca.crt";
  c->client_cert_ = d + "/client.crt";
  c->client_key_ = d + "/client.key";
  for (int i = 0; i < members; ++i) RETURN_IF_ERROR(c->Spawn(i, false));
  RETURN_IF_ERROR(c->WaitForLeader());
  return c;
}

EtcdCluster::~EtcdCluster() {
  for (Member& m : members_) {
    Reap(m.pid, SIGKILL);
    m.pid = -1;
  }
}

std::string EtcdCluster::Endpoint(int i) const {
  return absl::StrCat("https://127.0.0.1:", members_[i].client_port);
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(Endpoint(i));
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
  std::vector<std::string> args = {"/usr/bin/etcd",
                                   "--name=" + m.name,
                                   absl::StrCat("--data-dir=", d, "/", m.name, ".etcd"),
                                   "--listen-client-urls=" + Endpoint(i),
                                   "--advertise-client-urls=" + Endpoint(i),
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
  const std::string log = absl::StrCat(d, "/", m.name, ".log");
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);  // the parent died before prctl
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  m.pid = pid;
  return absl::OkStatus();
}

void EtcdCluster::Kill(int i) {
  Reap(members_[i].pid, SIGKILL);
  members_[i].pid = -1;
}

void EtcdCluster::Stop(int i) {
  Reap(members_[i].pid, SIGTERM);
  members_[i].pid = -1;
}

absl::Status EtcdCluster::Restart(int i) {
  if (running(i)) return absl::FailedPreconditionError(absl::StrCat("member ", i, " is running"));
  RETURN_IF_ERROR(Spawn(i, true));
  return WaitForLeader();
}

absl::StatusOr<std::string> EtcdCluster::Etcdctl(const std::vector<std::string>& args) const {
  std::vector<std::string> live;
  for (int i = 0; i < size(); ++i) {
    if (running(i)) live.push_back(Endpoint(i));
  }
  std::string command = absl::StrCat("ETCDCTL_API=3 /usr/bin/etcdctl --command-timeout=3s --endpoints=",
                                     absl::StrJoin(live, ","), " --cacert=", ca_cert_, " --cert=", client_cert_,
                                     " --key=", client_key_);
  for (const std::string& a : args) absl::StrAppend(&command, " '", a, "'");
  absl::StrAppend(&command, " 2>&1");
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return absl::InternalError("popen etcdctl");
  std::string out;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  if (rc != 0) return absl::UnavailableError(absl::StrCat("etcdctl failed: ", out));
  return out;
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
      if (running(i) && fields[0] == Endpoint(i)) return i;
    }
  }
  return -1;
}

absl::Status EtcdCluster::WaitForLeader(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (LeaderIndex() >= 0) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(100));
  }
  std::string logs;
  for (const Member& m : members_) {
    absl::StrAppend(&logs, "\n", m.name, ".log in ", dir_.path());
  }
  return absl::DeadlineExceededError(absl::StrCat("etcd has no leader after ", absl::FormatDuration(timeout), logs));
}

}  // namespace sesame::testing
