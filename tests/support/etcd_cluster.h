// Real etcd members for tests and benches: N processes of Debian's etcd on
// 127.0.0.1, mutual TLS for clients and peers (a throwaway CA of their own,
// test_pki.h), data and logs in a TempDir. Members die with the process
// that started them (PDEATHSIG) and with this object; nothing outlives it.
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
  // Starts members members and waits until the cluster has a leader.
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(int members);
  ~EtcdCluster();

  // "https://127.0.0.1:PORT", one per member.
  std::vector<std::string> endpoints() const;
  const std::string& ca_cert() const { return ca_cert_; }
  const std::string& client_cert() const { return client_cert_; }
  const std::string& client_key() const { return client_key_; }
  int size() const { return static_cast<int>(members_.size()); }
  bool running(int i) const { return members_[i].pid > 0; }

  void Kill(int i);  // SIGKILL, reaped
  void Stop(int i);  // SIGTERM, reaped
  // Starts member i again on its data (it rejoins); waits for a leader.
  absl::Status Restart(int i);
  // The index of the leader among the running members; -1 when none.
  int LeaderIndex() const;
  // etcdctl with this cluster's endpoints and client certificate; its output.
  absl::StatusOr<std::string> Etcdctl(const std::vector<std::string>& args) const;
  // Waits until etcdctl finds a leader (bounded).
  absl::Status WaitForLeader(absl::Duration timeout = absl::Seconds(30)) const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
  };

  EtcdCluster() = default;
  absl::Status Spawn(int i, bool existing);
  std::string Endpoint(int i) const;

  TempDir dir_;
  std::string ca_cert_, client_cert_, client_key_;
  std::vector<Member> members_;
};

}  // namespace sesame::testing
