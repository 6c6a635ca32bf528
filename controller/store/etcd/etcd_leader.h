// One leader among the controllers that share an etcd store, for the work
// only one of them may do (closing expired grants, signing checkpoints,
// closing the sessions of agents whose controller died).
//
// Each controller keeps a lease and campaigns for the leader key with it
// (a put that succeeds only while nobody holds the key); the one that
// creates the key leads until its lease ends. A leader that cannot renew
// its lease stops leading on its own a third of the TTL before the lease
// can expire in etcd, so it has stopped before another can start. Its
// writes are fenced as well (EtcdStore::FencedScope with revision()): they
// compare the leader key's creation revision, and fail once another
// controller holds it.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "controller/store/etcd/etcd_client.h"

namespace sesame::controller {

class EtcdLeader {
 public:
  EtcdLeader(EtcdClient& client, std::string key, std::string controller, absl::Duration ttl = absl::Seconds(6));
  // Stops campaigning and gives the lease back (another leads at once).
  ~EtcdLeader();

  bool leading() const;
  // The leader key's creation revision while leading (the fence), else 0.
  int64_t revision() const;

 private:
  void Loop();
  void Round();
  void Campaign();

  EtcdClient& client_;
  const std::string key_;
  const std::string controller_;
  const absl::Duration ttl_;
  mutable absl::Mutex mu_;
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;     // 0: not leading
  absl::Time valid_until_ ABSL_GUARDED_BY(mu_);  // leading no later than this
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace sesame::controller
