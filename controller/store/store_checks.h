// What every Store refuses before it writes anything (InvalidArgument,
// naming what is wrong): the same checks on SQLite and on etcd.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "controller/model/model.h"
#include "controller/store/store.h"

namespace sesame::controller {

// 1..32 knocks, no port 0.
absl::Status ValidateKnocks(const std::vector<Knock>& knocks);
absl::Status ValidateDoorToPut(const Door& door);
// A claim names a valid agent (and door, when set), a valid claimant, and
// a count of 1..1000.
absl::Status ValidateSequenceClaim(const SequenceClaim& claim);
absl::Status ValidateNewSequences(const std::vector<NewSequence>& sequences);
absl::Status ValidateAgentRecord(const AgentRecord& agent);
absl::Status ValidateNewGrant(const NewGrant& grant);
// Expired or revoked; only a revocation kills sessions.
absl::Status ValidateGrantClosing(GrantState state, bool kill_sessions);
absl::Status ValidateGrantAgentStatus(const GrantAgentStatus& status);
absl::Status ValidateConsumeRequest(const ConsumeRequest& request);

}  // namespace sesame::controller
