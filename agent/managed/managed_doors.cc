#include "agent/managed/managed_doors.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "agent/managed/proto_convert.h"

namespace sesame {
namespace {

const DoorConfig* FindDoor(const AgentConfig& config, const std::string& name, bool managed) {
  for (const DoorConfig& d : config.doors) {
    if (d.managed == managed && absl::AsciiStrToLower(d.name) == absl::AsciiStrToLower(name)) return &d;
  }
  return nullptr;
}

}  // namespace

std::vector<DoorConfig> ManagedDoorConfigs(const AgentConfig& config, const std::map<std::string, v1::Door>& doors,
                                           std::vector<std::string>* errors) {
  std::vector<DoorConfig> out;
  for (const auto& [name, door] : doors) {
    if (const DoorConfig* standalone = FindDoor(config, name, /*managed=*/false)) {
      errors->push_back(absl::StrCat("the controller's door \"", name, "\" has the name of the standalone door [",
                                     standalone->name, "] (line ", standalone->line,
                                     "); it is not served here: rename one of them"));
      continue;
    }
    DoorConfig c;
    if (const DoorConfig* local = FindDoor(config, name, /*managed=*/true)) {
      c = *local;
    } else {
      c.backend = config.options.managed.backend;
      c.managed = true;
    }
    c.name = name;
    c.sequence.clear();
    c.one_time_sequences.clear();
    const v1::DoorPolicy& policy = door.policy();
    absl::StatusOr<std::vector<Knock>> ports = FromProtoKnocks(policy.grant_ports(), 0);
    if (!ports.ok()) {
      errors->push_back(absl::StrCat("door \"", name, "\": grant ports: ", ports.status().message()));
      continue;
    }
    if (!ports->empty()) c.ports = *std::move(ports);
    if (policy.has_seq_timeout() && FromProtoDuration(policy.seq_timeout()) > absl::ZeroDuration()) {
      c.seq_timeout = FromProtoDuration(policy.seq_timeout());
    }
    if (policy.has_grant_ttl()) c.cmd_timeout = FromProtoDuration(policy.grant_ttl());
    out.push_back(std::move(c));
  }
  return out;
}

MatchParams MatchParamsFor(const AgentConfig& config, const DoorConfig& door) {
  MatchParams p;
  p.seq_timeout = door.seq_timeout;
  p.tcp_flags_set = door.tcp_flags_set;
  p.tcp_flags_clear = door.tcp_flags_clear;
  p.reset_mode = EffectiveResetMode(config, door);
  p.target = door.target;
  return p;
}

AgentConfig StandaloneOnly(const AgentConfig& config) {
  AgentConfig out = config;
  out.doors.clear();
  for (const DoorConfig& d : config.doors) {
    if (!d.managed) out.doors.push_back(d);
  }
  return out;
}

AgentConfig WithManagedDoors(const AgentConfig& config, const std::vector<DoorConfig>& managed) {
  AgentConfig out = StandaloneOnly(config);
  out.doors.insert(out.doors.end(), managed.begin(), managed.end());
  return out;
}

}  // namespace sesame
