// Keeps the grant book's firewall backends in step with two sources of doors
// that change independently: the configuration file (SIGHUP) and the
// controller (managed doors added, changed, removed). Each change rebuilds
// one backend set from both, under one lock, and hands it to the grant
// worker, which prepares it on its own thread and re-applies the live
// grants (GrantWorker::Reconfigure). Whatever the interleaving of the two
// sources, the last set handed over reflects the latest of both.
//
// A managed door whose backend cannot be built (say, a door section naming
// an iptables chain that is invalid) is left out, with an error, rather
// than keeping every other door from changing.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/config/config.h"
#include "agent/grants/grant_manager.h"

namespace sesame {

class BackendSwitch {
 public:
  struct Built {
    BackendLookup lookup;
    std::function<absl::Status()> prepare;  // creates tables, chains, include lines
  };
  // Builds the backends of `doors` without touching the firewall.
  using Factory = std::function<absl::StatusOr<Built>(const AgentConfig& doors)>;
  // Wraps a lookup (the managed agent's grant reporting); may be empty.
  using Wrap = std::function<BackendLookup(BackendLookup)>;

  BackendSwitch(AgentConfig config, std::vector<DoorConfig> managed, Factory factory, Wrap wrap);

  // The first set, prepared on the calling thread: for GrantBook's
  // constructor. The error of the standalone doors, if any, is the caller's.
  absl::StatusOr<BackendLookup> BuildInitial();
  // From now on changes go to `worker` (which must outlive this).
  void Attach(GrantWorker* worker);

  absl::Status SetConfig(AgentConfig config);
  absl::Status SetManaged(std::vector<DoorConfig> managed);

 private:
  absl::StatusOr<Built> BuildLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HandOverLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Factory factory_;
  const Wrap wrap_;
  absl::Mutex mu_;
  AgentConfig config_ ABSL_GUARDED_BY(mu_);
  std::vector<DoorConfig> managed_ ABSL_GUARDED_BY(mu_);
  GrantWorker* worker_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace sesame
