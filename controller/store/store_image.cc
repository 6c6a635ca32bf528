#include "controller/store/store_image.h"

#include <utility>

#include "common/status_macros.h"

namespace sesame::controller {

absl::StatusOr<StoreImage> ReadStoreImage(Store& store) {
  constexpr size_t kAuditPage = 1000;
  StoreImage image;
  ASSIGN_OR_RETURN(image.revision, store.CurrentRevision());
  ASSIGN_OR_RETURN(image.doors, store.ListDoors());
  ASSIGN_OR_RETURN(image.sequences, store.ListSequences(SequenceFilter{}));
  for (Sequence& q : image.sequences) {
    if (q.state == SequenceState::kLive) q.state = SequenceState::kIssued;  // live is worked out on reading
  }
  ASSIGN_OR_RETURN(image.agents, store.ListAgents());
  GrantFilter all;
  all.open_only = false;
  ASSIGN_OR_RETURN(image.grants, store.ListGrants(all));
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<AuditRecord> page, store.ReadAudit(image.audit.size(), kAuditPage));
    if (page.empty()) break;
    for (AuditRecord& r : page) image.audit.push_back(std::move(r));
  }
  ASSIGN_OR_RETURN(image.checkpoints, store.ListCheckpoints());
  return image;
}

}  // namespace sesame::controller
