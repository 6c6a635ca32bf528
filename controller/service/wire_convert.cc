#include "controller/service/wire_convert.h"

#include <grpcpp/support/status.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sesame::controller {

google::protobuf::Timestamp ToWireTime(absl::Time t) {
  google::protobuf::Timestamp out;
  if (t == absl::InfinitePast()) return out;
  const int64_t us = absl::ToUnixMicros(t);
  int64_t seconds = us / 1000000;
  int64_t micros = us % 1000000;
  if (micros < 0) {
    micros += 1000000;
    --seconds;
  }
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(micros * 1000));
  return out;
}

absl::Time FromWireTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

google::protobuf::Duration ToWireDuration(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out.set_seconds(ns / 1000000000);
  out.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return out;
}

absl::Duration FromWireDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

v1::Protocol ToWire(Protocol p) { return p == Protocol::kTcp ? v1::PROTOCOL_TCP : v1::PROTOCOL_UDP; }

void AppendWireKnocks(const std::vector<Knock>& knocks, google::protobuf::RepeatedPtrField<v1::Knock>* out) {
  for (const Knock& k : knocks) {
    v1::Knock* w = out->Add();
    w->set_port(k.port);
    w->set_protocol(ToWire(k.protocol));
  }
}

absl::StatusOr<std::vector<Knock>> FromWireKnocks(const google::protobuf::RepeatedPtrField<v1::Knock>& knocks,
                                                  const char* field) {
  std::vector<Knock> out;
  for (int i = 0; i < knocks.size(); ++i) {
    const v1::Knock& w = knocks[i];
    if (w.port() == 0 || w.port() > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "].port ", w.port(), ": expected 1..65535"));
    }
    Knock k;
    k.port = static_cast<uint16_t>(w.port());
    if (w.protocol() == v1::PROTOCOL_TCP) {
      k.protocol = Protocol::kTcp;
    } else if (w.protocol() == v1::PROTOCOL_UDP) {
      k.protocol = Protocol::kUdp;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "].protocol: expected TCP or UDP"));
    }
    out.push_back(k);
  }
  return out;
}

v1::Door ToWire(const Door& door) {
  v1::Door out;
  out.set_name(door.name);
  out.set_revision(door.revision);
  v1::DoorPolicy* p = out.mutable_policy();
  p->set_sequence_length(static_cast<uint32_t>(door.policy.sequence_length));
  for (Protocol proto : door.policy.protocols) p->add_protocols(ToWire(proto));
  p->mutable_port_range()->set_first(door.policy.port_first);
  p->mutable_port_range()->set_last(door.policy.port_last);
  for (uint16_t port : door.policy.avoid_ports) p->add_avoid_ports(port);
  AppendWireKnocks(door.policy.grant_ports, p->mutable_grant_ports());
  *p->mutable_grant_ttl() = ToWireDuration(door.policy.grant_ttl);
  p->set_fleet_wide(door.policy.fleet_wide);
  *p->mutable_seq_timeout() = ToWireDuration(door.policy.seq_timeout);
  return out;
}

v1::SequenceState ToWire(SequenceState state) {
  switch (state) {
    case SequenceState::kIssued: return v1::SEQUENCE_STATE_ISSUED;
    case SequenceState::kLive: return v1::SEQUENCE_STATE_LIVE;
    case SequenceState::kBurnt: return v1::SEQUENCE_STATE_BURNT;
  }
  return v1::SEQUENCE_STATE_UNSPECIFIED;
}

absl::StatusOr<SequenceState> FromWire(v1::SequenceState state) {
  switch (state) {
    case v1::SEQUENCE_STATE_ISSUED: return SequenceState::kIssued;
    case v1::SEQUENCE_STATE_LIVE: return SequenceState::kLive;
    case v1::SEQUENCE_STATE_BURNT: return SequenceState::kBurnt;
    default: return absl::InvalidArgumentError("state: expected ISSUED, LIVE or BURNT");
  }
}

v1::Grant ToWire(const GrantRecord& g, bool with_agents) {
  v1::Grant out;
  out.set_id(g.id);
  out.set_door(g.door);
  out.set_address(g.address.ToString());
  AppendWireKnocks(g.ports, out.mutable_ports());
  out.set_agent(g.agent);
  out.set_fleet_wide(g.fleet_wide);
  *out.mutable_opened_at() = ToWireTime(g.opened_at);
  *out.mutable_expires_at() = ToWireTime(g.expires_at);
  switch (g.state) {
    case GrantState::kOpen: out.set_state(v1::GRANT_STATE_OPEN); break;
    case GrantState::kExpired: out.set_state(v1::GRANT_STATE_EXPIRED); break;
    case GrantState::kRevoked: out.set_state(v1::GRANT_STATE_REVOKED); break;
  }
  out.set_sequence_id(g.sequence_id);
  out.set_opened_by(g.opened_by);
  out.set_revision(g.revision);
  out.set_kill_sessions(g.kill_sessions);
  if (with_agents) {
    for (const GrantAgentStatus& a : g.agents) {
      v1::GrantAgentStatus* w = out.add_agents();
      w->set_agent(a.agent);
      switch (a.state) {
        case GrantAgentState::kPending: w->set_state(v1::GRANT_AGENT_STATE_PENDING); break;
        case GrantAgentState::kApplied: w->set_state(v1::GRANT_AGENT_STATE_APPLIED); break;
        case GrantAgentState::kFailed: w->set_state(v1::GRANT_AGENT_STATE_FAILED); break;
        case GrantAgentState::kRemoved: w->set_state(v1::GRANT_AGENT_STATE_REMOVED); break;
      }
      w->set_detail(a.detail);
      *w->mutable_at() = ToWireTime(a.at);
    }
  }
  return out;
}

v1::AuditRecord ToWire(const AuditRecord& r) {
  v1::AuditRecord out;
  out.set_index(r.index);
  *out.mutable_time() = ToWireTime(r.entry.time);
  out.set_who(r.entry.who);
  out.set_what(r.entry.what);
  out.set_where(r.entry.where);
  out.set_origin(r.entry.origin);
  for (const auto& [key, value] : r.entry.details) (*out.mutable_details())[key] = value;
  out.set_prev_hash(std::string(reinterpret_cast<const char*>(r.prev_hash.data()), r.prev_hash.size()));
  out.set_hash(std::string(reinterpret_cast<const char*>(r.hash.data()), r.hash.size()));
  return out;
}

v1::AuditCheckpoint ToWire(const AuditCheckpoint& c) {
  v1::AuditCheckpoint out;
  out.set_record_count(c.record_count);
  out.set_chain_hash(std::string(reinterpret_cast<const char*>(c.chain_hash.data()), c.chain_hash.size()));
  *out.mutable_time() = ToWireTime(c.time);
  out.set_signature(c.signature);
  return out;
}

absl::StatusOr<AuditCheckpoint> FromWire(const v1::AuditCheckpoint& c, std::string_view field) {
  const std::string name(field);
  if (c.chain_hash().size() != 32) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".chain_hash: expected 32 bytes (SHA-256), got ",
                                                   c.chain_hash().size()));
  }
  if (c.signature().size() != 64) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".signature: expected 64 bytes (Ed25519), got ",
                                                   c.signature().size()));
  }
  AuditCheckpoint out;
  out.record_count = c.record_count();
  std::copy(c.chain_hash().begin(), c.chain_hash().end(), out.chain_hash.begin());
  out.time = FromWireTime(c.time());
  out.signature = c.signature();
  return out;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace sesame::controller
