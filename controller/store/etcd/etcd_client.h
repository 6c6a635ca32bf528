// A small client of etcd's v3 gRPC API (etcd_rpc.proto): what EtcdStore
// needs and nothing more. Speaks mutual TLS to a list of endpoints and
// keeps to one of them until it fails: a call that fails with UNAVAILABLE
// (the member is down, partitioned or has no leader) moves to the next
// endpoint, and reads are retried there. A Txn is never resent by this
// client: whether it committed is for the caller to find out (EtcdStore
// marks each transaction for that).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controller/service/tls_credentials.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"

namespace sesame::controller {

struct EtcdClientOptions {
  // "https://HOST:PORT" (or HOST:PORT); tried in order, then round again.
  std::vector<std::string> endpoints;
  TlsFiles tls;  // ca_cert, cert, key; crl_dir unused
  // Deadline of one call; a member that does not answer in time is treated
  // as unavailable.
  absl::Duration call_timeout = absl::Seconds(2);
};

// The key just after every key starting with prefix: [prefix, end) is
// the prefix's range.
std::string EtcdPrefixEnd(const std::string& prefix);

class EtcdClient {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Connect(const EtcdClientOptions& options);

  // Reads [key, range_end) (just key when range_end is empty), up to limit
  // keys (0: all), at revision (0: the newest), linearizable unless
  // serializable (the member's own view, maybe behind: for reads a compare
  // checks later). Retried on another endpoint when one is unavailable.
  absl::StatusOr<etcdserverpb::RangeResponse> Range(const std::string& key, const std::string& range_end,
                                                    int64_t limit = 0, int64_t revision = 0,
                                                    bool serializable = false);
  // Not retried: UNAVAILABLE or DEADLINE_EXCEEDED leave it unknown whether
  // it committed.
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request);
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> LeaseGrant(int64_t ttl_seconds);
  absl::Status LeaseRevoke(int64_t lease_id);
  // One keep-alive round trip (a short stream, so a dead member shows as a
  // failed call): the lease's remaining TTL in seconds, 0 when it expired.
  absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease_id);

  // For long streams (Watch): the stub of the endpoint in use and a name
  // for logs. After a stream fails, call Failed(endpoint) to move on.
  etcdserverpb::Watch::Stub& WatchStub(std::string* endpoint);
  void Failed(const std::string& endpoint);

  const EtcdClientOptions& options() const { return options_; }

 private:
  struct Member {
    std::string endpoint;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Lease::Stub> lease;
    std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  };

  explicit EtcdClient(EtcdClientOptions options) : options_(std::move(options)) {}
  Member& Current(size_t* index);
  void FailedIndex(size_t index);
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  // Runs call on the current member, moving on through every member once
  // while it answers UNAVAILABLE (retry = true) or just once.
  template <typename Call>
  absl::Status OnMembers(bool retry, const Call& call);

  const EtcdClientOptions options_;
  std::vector<Member> members_;
  absl::Mutex mu_;
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sesame::controller
