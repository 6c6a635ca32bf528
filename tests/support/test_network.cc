#include "tests/support/test_network.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "tests/support/child_process.h"

namespace sesame::testing {
namespace {

std::vector<std::string> InNamespace(const std::string& ns, const std::vector<std::string>& argv) {
  std::vector<std::string> full = {"ip", "netns", "exec", ns};
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

}  // namespace

namespace {

// Namespaces "<prefix><pid>gw|cl" of test processes that died before their
// destructor ran.
void RemoveLeftovers(const std::string& prefix) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0 || name.size() < prefix.size() + 3) continue;
    const std::string pid_text = name.substr(prefix.size(), name.size() - prefix.size() - 2);
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (kill(pid, 0) != 0 && errno == ESRCH) RunCommand({"ip", "netns", "del", name});
  }
}

}  // namespace

TestNetwork::TestNetwork(std::string prefix) : prefix_(prefix + std::to_string(getpid())) {
  // ctest runs the cases of one binary as separate processes, in parallel:
  // the pid keeps their namespaces apart.
  RemoveLeftovers(prefix);
  const std::vector<std::vector<std::string>> setup = {
      {"ip", "netns", "add", gateway()},
      {"ip", "netns", "add", client()},
      {"ip", "-n", gateway(), "link", "add", kGatewayIf, "type", "veth", "peer", "name", "sxcl0", "netns", client()},
      {"ip", "-n", gateway(), "link", "set", "lo", "up"},
      {"ip", "-n", client(), "link", "set", "lo", "up"},
      {"ip", "-n", gateway(), "addr", "add", absl::StrCat(kGatewayV4, "/24"), "dev", kGatewayIf},
      {"ip", "-n", client(), "addr", "add", absl::StrCat(kClientV4, "/24"), "dev", "sxcl0"},
      {"ip", "-n", gateway(), "addr", "add", absl::StrCat(kGatewayV6, "/64"), "dev", kGatewayIf, "nodad"},
      {"ip", "-n", client(), "addr", "add", absl::StrCat(kClientV6, "/64"), "dev", "sxcl0", "nodad"},
      {"ip", "-n", gateway(), "link", "set", kGatewayIf, "up"},
      {"ip", "-n", client(), "link", "set", "sxcl0", "up"},
  };
  for (const auto& argv : setup) {
    const CommandResult r = RunCommand(argv);
    if (r.exit_code != 0) {
      status_ = absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), ": ", r.output));
      return;
    }
  }
}

TestNetwork::~TestNetwork() {
  for (pid_t pid : children_) Stop(pid, SIGTERM);
  RunCommand({"ip", "netns", "del", gateway()});
  RunCommand({"ip", "netns", "del", client()});
}

CommandResult TestNetwork::Exec(const std::string& ns, const std::vector<std::string>& argv) const {
  return RunCommand(InNamespace(ns, argv));
}

pid_t TestNetwork::Spawn(const std::string& ns, const std::vector<std::string>& argv, const std::string& log_file) {
  absl::StatusOr<pid_t> pid = SpawnWithLog(InNamespace(ns, argv), log_file);
  if (!pid.ok()) return -1;
  children_.push_back(*pid);
  return *pid;
}

bool TestNetwork::Alive(pid_t pid) const {
  int status = 0;
  return waitpid(pid, &status, WNOHANG) == 0;
}

void TestNetwork::Stop(pid_t pid, int signal) {
  auto it = std::find(children_.begin(), children_.end(), pid);
  if (it == children_.end()) return;
  children_.erase(it);
  kill(pid, signal);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

bool TestNetwork::CanConnect(const std::string& host, int port) const {
  const std::string script = absl::StrCat(
      "import socket,sys\n"
      "try:\n"
      "  socket.create_connection(('",
      host, "', ", port,
      "), timeout=2).close()\n"
      "except OSError:\n"
      "  sys.exit(1)\n");
  return Exec(client(), {"python3", "-c", script}).exit_code == 0;
}

pid_t TestNetwork::StartListener(int port, const std::string& log_file) {
  const std::string script = absl::StrCat(
      "import socket\n"
      "s = socket.socket(socket.AF_INET6)\n"
      "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
      "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
      "s.bind(('::', ",
      port,
      "))\n"
      "s.listen(64)\n"
      "while True:\n"
      "  c, _ = s.accept()\n"
      "  c.sendall(b'SSH-2.0-sesame-test\\r\\n')\n"
      "  c.close()\n");
  return Spawn(gateway(), {"python3", "-c", script}, log_file);
}

}  // namespace sesame::testing
