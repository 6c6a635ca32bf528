// Everything a Store holds that outlives a controller, read through the
// Store interface: what `sesame-controller migrate` copies from one store to
// another. Not in it: the answers kept for resent knock reports (an agent
// resending across a migration gets the sequence's present state: replay).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/audit/audit_record.h"
#include "controller/model/model.h"
#include "controller/store/store.h"

namespace sesame::controller {

struct StoreImage {
  uint64_t revision = 0;
  std::vector<Door> doors;
  std::vector<Sequence> sequences;  // every one, burnt too; states as stored (live read as issued)
  std::vector<AgentRecord> agents;
  std::vector<GrantRecord> grants;  // every one, with the bastions' reports
  std::vector<AuditRecord> audit;   // the whole chain, in order
  std::vector<AuditCheckpoint> checkpoints;
};

absl::StatusOr<StoreImage> ReadStoreImage(Store& store);

}  // namespace sesame::controller
