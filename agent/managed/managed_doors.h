// The local half of the controller's doors. The controller gives a door's
// policy (ports and TTL of a grant, seq_timeout); the configuration says how
// this host serves it: a door section with "Managed = yes" of that name
// (Backend and backend keys, TCPFlags, Target, ResetMode), else
// ManagedBackend with its defaults. A controller door named like a
// standalone door of the configuration is not served (the standalone door
// wins, and the clash is reported).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agent/config/config.h"
#include "agent/managed/managed_matcher.h"
#include "sesame/v1/common.pb.h"

namespace sesame {

// A DoorConfig per controller door, ready for BackendSet::Create.
// `errors` gets one line per door that cannot be served.
std::vector<DoorConfig> ManagedDoorConfigs(const AgentConfig& config, const std::map<std::string, v1::Door>& doors,
                                           std::vector<std::string>* errors);

// How the sequences of a managed door are matched.
MatchParams MatchParamsFor(const AgentConfig& config, const DoorConfig& door);

// `config` without its "Managed = yes" sections: what the standalone
// pipeline and the standalone backends are built from.
AgentConfig StandaloneOnly(const AgentConfig& config);

// The doors the grant book serves: the standalone ones and the managed ones.
AgentConfig WithManagedDoors(const AgentConfig& config, const std::vector<DoorConfig>& managed);

}  // namespace sesame
