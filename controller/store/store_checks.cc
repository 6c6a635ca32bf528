#include "controller/store/store_checks.h"

#include <cstddef>
#include <string>

#include "absl/strings/str_cat.h"

namespace sesame::controller {
namespace {

constexpr size_t kMaxRequestIdSize = 128;

}  // namespace

absl::Status ValidateKnocks(const std::vector<Knock>& knocks) {
  if (knocks.empty()) return absl::InvalidArgumentError("a sequence needs at least one knock");
  if (knocks.size() > 32) return absl::InvalidArgumentError("a sequence has at most 32 knocks");
  for (const Knock& k : knocks) {
    if (k.port == 0) return absl::InvalidArgumentError("knock on port 0: expected 1..65535");
  }
  return absl::OkStatus();
}

absl::Status ValidateDoorToPut(const Door& door) {
  if (!IsValidName(door.name)) {
    return absl::InvalidArgumentError(absl::StrCat("door name \"", door.name, "\": expected [A-Za-z0-9_.-]{1,64}"));
  }
  if (absl::Status s = ValidateDoorPolicy(door.policy); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("door ", door.name, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ValidateNewSequences(const std::vector<NewSequence>& sequences) {
  for (size_t i = 0; i < sequences.size(); ++i) {
    const NewSequence& n = sequences[i];
    if (!IsValidName(n.door)) return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": bad door name"));
    if (!n.reserve_agent.empty() && !IsValidName(n.reserve_agent)) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": bad reserve agent name"));
    }
    if (absl::Status s = ValidateKnocks(n.knocks); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": ", s.message()));
    }
    if (n.expires_at == absl::InfinitePast()) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": an expiry in the infinite past"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSequenceClaim(const SequenceClaim& claim) {
  if (!IsValidName(claim.reserve_agent)) return absl::InvalidArgumentError("claim: bad agent name");
  if (!claim.door.empty() && !IsValidName(claim.door)) return absl::InvalidArgumentError("claim: bad door name");
  if (!IsValidName(claim.claimant) || claim.claimant == kUnclaimedReserve) {
    return absl::InvalidArgumentError("claim: bad claimant name");
  }
  if (claim.count < 1 || claim.count > 1000) return absl::InvalidArgumentError("claim: count out of 1..1000");
  return absl::OkStatus();
}

absl::Status ValidateAgentRecord(const AgentRecord& a) {
  if (!IsValidName(a.name)) return absl::InvalidArgumentError(absl::StrCat("bad agent name \"", a.name, "\""));
  for (const std::string& host : a.advertise_hosts) {
    if (host.empty() || host.find('\n') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("agent ", a.name, ": bad advertised host"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateNewGrant(const NewGrant& g) {
  if (!IsValidName(g.door)) return absl::InvalidArgumentError(absl::StrCat("bad door name \"", g.door, "\""));
  if (!g.fleet_wide && !IsValidName(g.agent)) {
    return absl::InvalidArgumentError("a grant needs an agent unless it is fleet-wide");
  }
  if (g.ports.empty()) return absl::InvalidArgumentError("a grant opens at least one port");
  return absl::OkStatus();
}

absl::Status ValidateGrantClosing(GrantState state, bool kill_sessions) {
  if (state == GrantState::kOpen) return absl::InvalidArgumentError("closing a grant needs expired or revoked");
  if (kill_sessions && state != GrantState::kRevoked) {
    return absl::InvalidArgumentError("only a revocation kills live sessions");
  }
  return absl::OkStatus();
}

absl::Status ValidateGrantAgentStatus(const GrantAgentStatus& status) {
  if (!IsValidName(status.agent)) return absl::InvalidArgumentError("grant report: bad agent name");
  if (status.state == GrantAgentState::kPending) {
    return absl::InvalidArgumentError("grant report: pending is the absence of a report");
  }
  return absl::OkStatus();
}

absl::Status ValidateConsumeRequest(const ConsumeRequest& request) {
  if (!IsValidName(request.agent)) return absl::InvalidArgumentError("consume: bad agent name");
  if (request.sequence_id == 0) {
    if (absl::Status s = ValidateKnocks(request.knocks); !s.ok()) return s;
  }
  if (request.request_id.size() > kMaxRequestIdSize) {
    return absl::InvalidArgumentError(absl::StrCat("consume: request id longer than ", kMaxRequestIdSize, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace sesame::controller
