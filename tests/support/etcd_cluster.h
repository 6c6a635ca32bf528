// Real etcd members for tests and benches: N processes of Debian's etcd on
// 127.0.0.1, mutual TLS for clients and peers (a throwaway CA of their own,
// test_pki.h), data and one log per member in a TempDir. Members die with
// this object (SIGKILL, reaped, the TempDir removed) and with the process
// that started them (PR_SET_PDEATHSIG). PDEATHSIG follows the *thread* that
// forked: start, restart and destroy a cluster from a thread that outlives it
// (the test's main thread), not from a short-lived std::thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/support/temp_dir.h"

namespace sesame::testing {

class EtcdCluster {
 public:
  // Starts `members` members (1 or 3 are the useful sizes) and waits until
  // every one of them answers a linearizable read. Ports are picked free just
  // before etcd binds them; a start lost to a port taken in between is tried
  // again with new ports. Errors carry the tail of each member's log.
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(int members);
  ~EtcdCluster();

  // "https://127.0.0.1:PORT", one per member, running or not.
  std::vector<std::string> endpoints() const;
  std::string endpoint(int i) const;
  const std::string& ca_cert() const { return ca_cert_; }
  const std::string& client_cert() const { return client_cert_; }
  const std::string& client_key() const { return client_key_; }
  // The TempDir: ca.crt, client.{crt,key}, eN.{crt,key}, eN.etcd/ (data), eN.log.
  const std::string& dir() const { return dir_.path(); }
  int size() const { return static_cast<int>(members_.size()); }
  bool running(int i) const { return members_[i].pid > 0; }
  // The process of member i; -1 when it is not running.
  pid_t pid(int i) const { return members_[i].pid; }

  // SIGKILL / SIGTERM (SIGKILL after 10 s), reaped. No-ops for a member that
  // is not running or an index out of range (e.g. LeaderIndex()'s -1).
  void Kill(int i);
  void Stop(int i);
  // Starts a stopped member again on its data and ports (it rejoins) and
  // waits until it answers a linearizable read.
  absl::Status Restart(int i);
  // The index of the leader among the running members; -1 when none is
  // found (no quorum, or a running member does not answer).
  int LeaderIndex() const;
  // etcdctl (API v3) with the running members' endpoints and the client
  // certificate; its stdout and stderr. An error when etcdctl fails.
  absl::StatusOr<std::string> Etcdctl(const std::vector<std::string>& args) const;
  // Waits until etcdctl finds a leader (bounded).
  absl::Status WaitForLeader(absl::Duration timeout = absl::Seconds(30)) const;
  // Waits until every running member answers a linearizable read (bounded);
  // fails early, with its log tail, when a member exits.
  absl::Status WaitHealthy(absl::Duration timeout = absl::Seconds(30));

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
  };

  EtcdCluster() = default;
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> TryStart(int members);
  absl::Status Spawn(int i, bool existing);
  void Signal(int i, int sig, absl::Duration grace);
  std::string LogTails() const;

  TempDir dir_;
  std::string ca_cert_, client_cert_, client_key_;
  std::vector<Member> members_;
};

}  // namespace sesame::testing
