// Issuing sequences: generate fresh ones for a door and store them, in one
// step that holds even when several operators issue at once (the store
// re-checks freshness inside its transaction; a clash is retried with a
// fresh view).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "controller/model/model.h"
#include "controller/sequences/sequence_generator.h"
#include "controller/store/store.h"

namespace sesame::controller {

struct IssueRequest {
  std::string door;
  size_t count = 1;            // 1..kMaxIssueCount
  std::string issued_to;       // recorded with each sequence
  std::string reserve_agent;   // empty: fleet sequences
  std::string actor;           // audit "who", e.g. "admin:alice"
  absl::Time expires_at = absl::InfiniteFuture();  // AdminService always sets it
};

inline constexpr size_t kMaxIssueCount = 1000;

// The unused sequences' index between issues, as of a store revision. Every
// write moves the revision, so while it has not moved but for this cache's
// own issues the index is exact, and an issue need not read every unused
// sequence from the store again (200 ms at 100,000 held).
class IssueCache {
 private:
  friend absl::StatusOr<std::vector<Sequence>> IssueSequences(Store&, SequenceGenerator&, const IssueRequest&,
                                                              const Clock&, IssueCache*);
  absl::Mutex mu_;  // held through an issue: issues are serialised by the store's writer anyway
  bool valid_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  SequenceIndex index_ ABSL_GUARDED_BY(mu_);
};

// Audited as "sequences.issued" (who = actor, where = "controller", details:
// door, count, issued_to, reserve_agent when set, sequences = the ids), in
// the transaction that stores them. The knocks themselves never reach the
// audit log.
absl::StatusOr<std::vector<Sequence>> IssueSequences(Store& store, SequenceGenerator& generator,
                                                     const IssueRequest& request, const Clock& clock,
                                                     IssueCache* cache = nullptr);

}  // namespace sesame::controller
