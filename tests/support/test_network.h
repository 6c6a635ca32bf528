// A two-host network for integration tests: namespaces "<prefix><pid>gw"
// (the bastion) and "<prefix><pid>cl" (a client) joined by a veth pair, with IPv4
// (198.18.0.0/24, the benchmarking range) and IPv6 (fd5e:5a3e::/64)
// addresses. Everything it creates — namespaces, processes started in them —
// is removed by the destructor, and by a sweep of leftovers at construction.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tests/support/namespace_sandbox.h"

namespace sesame::testing {

class TestNetwork {
 public:
  static constexpr const char* kGatewayV4 = "198.18.0.1";
  static constexpr const char* kClientV4 = "198.18.0.2";
  static constexpr const char* kGatewayV6 = "fd5e:5a3e::1";
  static constexpr const char* kClientV6 = "fd5e:5a3e::2";
  static constexpr const char* kGatewayIf = "sxgw0";  // the bastion's interface

  // Prefix: short and unique per test binary (namespace names are global);
  // the process id is appended.
  explicit TestNetwork(std::string prefix);
  ~TestNetwork();
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  absl::Status status() const { return status_; }
  std::string gateway() const { return prefix_ + "gw"; }
  std::string client() const { return prefix_ + "cl"; }

  // Runs argv inside namespace `ns` and waits.
  CommandResult Exec(const std::string& ns, const std::vector<std::string>& argv) const;
  // Starts argv inside `ns` in the background; stdout+stderr to `log_file`.
  // Killed (SIGTERM, then SIGKILL) by the destructor or Stop().
  pid_t Spawn(const std::string& ns, const std::vector<std::string>& argv, const std::string& log_file);
  // Sends `signal` and waits for the process to end (SIGKILL after 10 s).
  void Stop(pid_t pid, int signal = 15);
  bool Alive(pid_t pid) const;

  // A TCP connection from the client to host:port completes within 2 s.
  bool CanConnect(const std::string& host, int port) const;
  // Listens on `port` in the gateway namespace and accepts forever.
  pid_t StartListener(int port, const std::string& log_file);

 private:
  std::string prefix_;
  absl::Status status_;
  std::vector<pid_t> children_;
};

// Polls `condition` every 20 ms until it holds or `limit` passes. Limits are
// generous: they bound a broken test, they do not measure anything.
template <typename F>
bool WaitFor(F&& condition, absl::Duration limit = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + limit;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return condition();
}

}  // namespace sesame::testing
