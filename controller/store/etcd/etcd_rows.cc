#include "controller/store/etcd/etcd_rows.h"

#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace sesame::controller {
namespace {

using store::etcd::KnockRow;

void AppendKnocks(const std::vector<Knock>& knocks, google::protobuf::RepeatedPtrField<KnockRow>* out) {
  for (const Knock& k : knocks) {
    KnockRow* row = out->Add();
    row->set_port(k.port);
    row->set_protocol(static_cast<uint32_t>(k.protocol));
  }
}

absl::StatusOr<Protocol> ProtocolFromRow(uint32_t number) {
  if (number == static_cast<uint32_t>(Protocol::kTcp)) return Protocol::kTcp;
  if (number == static_cast<uint32_t>(Protocol::kUdp)) return Protocol::kUdp;
  return absl::DataLossError(absl::StrCat("stored protocol ", number, " is neither tcp nor udp"));
}

absl::StatusOr<std::vector<Knock>> KnocksFromRow(const google::protobuf::RepeatedPtrField<KnockRow>& rows) {
  std::vector<Knock> out;
  for (const KnockRow& row : rows) {
    if (row.port() > 65535) return absl::DataLossError(absl::StrCat("stored port ", row.port()));
    absl::StatusOr<Protocol> p = ProtocolFromRow(row.protocol());
    if (!p.ok()) return p.status();
    out.push_back(Knock{static_cast<uint16_t>(row.port()), *p});
  }
  return out;
}

absl::StatusOr<IpAddress> AddressFromRow(const std::string& text) {
  std::optional<IpAddress> a = IpAddress::Parse(text);
  if (!a) return absl::DataLossError(absl::StrCat("stored address \"", text, "\" does not parse"));
  return *a;
}

absl::StatusOr<ChainHash> HashFromRow(const std::string& bytes, bool empty_is_zero) {
  ChainHash h{};
  if (bytes.empty() && empty_is_zero) return h;
  if (bytes.size() != h.size()) return absl::DataLossError("stored hash is not 32 bytes");
  std::memcpy(h.data(), bytes.data(), h.size());
  return h;
}

std::string HashToRow(const ChainHash& h) { return std::string(reinterpret_cast<const char*>(h.data()), h.size()); }

}  // namespace

absl::Status RowDataLoss(const std::string& key) {
  return absl::DataLossError(absl::StrCat("etcd key ", key, ": stored value does not parse"));
}

int64_t ToRowMicros(absl::Time t) {
  if (t == absl::InfinitePast()) return std::numeric_limits<int64_t>::min();
  return absl::ToUnixMicros(t);
}

absl::Time FromRowMicros(int64_t us) {
  if (us == std::numeric_limits<int64_t>::min()) return absl::InfinitePast();
  return absl::FromUnixMicros(us);
}

store::etcd::DoorRow ToRow(const Door& door) {
  store::etcd::DoorRow row;
  const DoorPolicy& p = door.policy;
  row.set_name(door.name);
  row.set_sequence_length(static_cast<uint32_t>(p.sequence_length));
  for (Protocol proto : p.protocols) row.add_protocols(static_cast<uint32_t>(proto));
  row.set_port_first(p.port_first);
  row.set_port_last(p.port_last);
  for (uint16_t port : p.avoid_ports) row.add_avoid_ports(port);
  AppendKnocks(p.grant_ports, row.mutable_grant_ports());
  row.set_grant_ttl_us(absl::ToInt64Microseconds(p.grant_ttl));
  row.set_seq_timeout_us(absl::ToInt64Microseconds(p.seq_timeout));
  row.set_fleet_wide(p.fleet_wide);
  row.set_revision(door.revision);
  return row;
}

absl::StatusOr<Door> FromRow(const store::etcd::DoorRow& row) {
  Door door;
  door.name = row.name();
  DoorPolicy& p = door.policy;
  p.sequence_length = static_cast<int>(row.sequence_length());
  p.protocols.clear();
  for (uint32_t number : row.protocols()) {
    absl::StatusOr<Protocol> proto = ProtocolFromRow(number);
    if (!proto.ok()) return proto.status();
    p.protocols.push_back(*proto);
  }
  p.port_first = static_cast<uint16_t>(row.port_first());
  p.port_last = static_cast<uint16_t>(row.port_last());
  for (uint32_t port : row.avoid_ports()) p.avoid_ports.push_back(static_cast<uint16_t>(port));
  absl::StatusOr<std::vector<Knock>> grant_ports = KnocksFromRow(row.grant_ports());
  if (!grant_ports.ok()) return grant_ports.status();
  p.grant_ports = *std::move(grant_ports);
  p.grant_ttl = absl::Microseconds(row.grant_ttl_us());
  p.seq_timeout = absl::Microseconds(row.seq_timeout_us());
  p.fleet_wide = row.fleet_wide();
  door.revision = row.revision();
  return door;
}

store::etcd::SequenceRow ToRow(const Sequence& q) {
  store::etcd::SequenceRow row;
  row.set_id(q.id);
  row.set_door(q.door);
  AppendKnocks(q.knocks, row.mutable_knocks());
  row.set_state(q.state == SequenceState::kBurnt ? "burnt" : "issued");
  row.set_issued_to(q.issued_to);
  row.set_issued_at_us(ToRowMicros(q.issued_at));
  row.set_reserve_agent(q.reserve_agent);
  row.set_consumed_by(q.consumed_by);
  if (q.consumed_from) row.set_consumed_from(q.consumed_from->ToString());
  row.set_consumed_at_us(ToRowMicros(q.consumed_at));
  row.set_revision(q.revision);
  row.set_expires_at_us(q.expires_at == absl::InfiniteFuture() ? std::numeric_limits<int64_t>::max()
                                                                : absl::ToUnixMicros(q.expires_at));
  row.set_expired(q.expired);
  return row;
}

absl::StatusOr<Sequence> FromRow(const store::etcd::SequenceRow& row) {
  Sequence q;
  q.id = row.id();
  q.door = row.door();
  absl::StatusOr<std::vector<Knock>> knocks = KnocksFromRow(row.knocks());
  if (!knocks.ok()) return knocks.status();
  q.knocks = *std::move(knocks);
  std::optional<SequenceState> state = ParseSequenceState(row.state());
  if (!state) return absl::DataLossError(absl::StrCat("sequence ", row.id(), ": stored state \"", row.state(), "\""));
  q.state = *state;
  q.issued_to = row.issued_to();
  q.issued_at = FromRowMicros(row.issued_at_us());
  q.reserve_agent = row.reserve_agent();
  q.consumed_by = row.consumed_by();
  if (!row.consumed_from().empty()) {
    absl::StatusOr<IpAddress> from = AddressFromRow(row.consumed_from());
    if (!from.ok()) return from.status();
    q.consumed_from = *from;
  }
  q.consumed_at = FromRowMicros(row.consumed_at_us());
  q.revision = row.revision();
  if (row.expires_at_us() == 0) {
    q.expires_at = q.issued_at + kDefaultSequenceLifetime;
  } else if (row.expires_at_us() == std::numeric_limits<int64_t>::max()) {
    q.expires_at = absl::InfiniteFuture();
  } else {
    q.expires_at = absl::FromUnixMicros(row.expires_at_us());
  }
  q.expired = row.expired();
  return q;
}

store::etcd::GrantRow ToRow(const GrantRecord& g) {
  store::etcd::GrantRow row;
  row.set_id(g.id);
  row.set_door(g.door);
  row.set_address(g.address.ToString());
  AppendKnocks(g.ports, row.mutable_ports());
  row.set_agent(g.agent);
  row.set_fleet_wide(g.fleet_wide);
  row.set_opened_at_us(ToRowMicros(g.opened_at));
  row.set_expires_at_us(ToRowMicros(g.expires_at));
  row.set_state(GrantStateName(g.state));
  row.set_closed_at_us(ToRowMicros(g.closed_at));
  row.set_sequence_id(g.sequence_id);
  row.set_opened_by(g.opened_by);
  row.set_revision(g.revision);
  row.set_kill_sessions(g.kill_sessions);
  for (const GrantAgentStatus& s : g.agents) {
    store::etcd::GrantAgentRow* a = row.add_agents();
    a->set_agent(s.agent);
    a->set_state(GrantAgentStateName(s.state));
    a->set_detail(s.detail);
    a->set_at_us(ToRowMicros(s.at));
  }
  return row;
}

absl::StatusOr<GrantRecord> FromRow(const store::etcd::GrantRow& row) {
  GrantRecord g;
  g.id = row.id();
  g.door = row.door();
  absl::StatusOr<IpAddress> address = AddressFromRow(row.address());
  if (!address.ok()) return address.status();
  g.address = *address;
  absl::StatusOr<std::vector<Knock>> ports = KnocksFromRow(row.ports());
  if (!ports.ok()) return ports.status();
  g.ports = *std::move(ports);
  g.agent = row.agent();
  g.fleet_wide = row.fleet_wide();
  g.opened_at = FromRowMicros(row.opened_at_us());
  g.expires_at = FromRowMicros(row.expires_at_us());
  std::optional<GrantState> state = ParseGrantState(row.state());
  if (!state) return absl::DataLossError(absl::StrCat("grant ", row.id(), ": stored state \"", row.state(), "\""));
  g.state = *state;
  g.closed_at = FromRowMicros(row.closed_at_us());
  g.sequence_id = row.sequence_id();
  g.opened_by = row.opened_by();
  g.revision = row.revision();
  g.kill_sessions = row.kill_sessions();
  for (const store::etcd::GrantAgentRow& a : row.agents()) {
    std::optional<GrantAgentState> s = ParseGrantAgentState(a.state());
    if (!s) return absl::DataLossError(absl::StrCat("grant ", row.id(), ": stored agent state \"", a.state(), "\""));
    g.agents.push_back(GrantAgentStatus{a.agent(), *s, a.detail(), FromRowMicros(a.at_us())});
  }
  return g;
}

store::etcd::AgentRow ToRow(const AgentRecord& a) {
  store::etcd::AgentRow row;
  row.set_name(a.name);
  row.set_version(a.version);
  row.set_connected(a.connected);
  row.set_connected_at_us(ToRowMicros(a.connected_at));
  row.set_disconnected_at_us(ToRowMicros(a.disconnected_at));
  row.set_last_heartbeat_us(ToRowMicros(a.last_heartbeat));
  row.set_acked_revision(a.acked_revision);
  row.set_reserve_left(a.reserve_left);
  row.set_spool_depth(a.spool_depth);
  row.set_last_error(a.last_error);
  for (const std::string& host : a.advertise_hosts) row.add_advertise_hosts(host);
  return row;
}

AgentRecord FromRow(const store::etcd::AgentRow& row) {
  AgentRecord a;
  a.name = row.name();
  a.version = row.version();
  a.connected = row.connected();
  a.connected_at = FromRowMicros(row.connected_at_us());
  a.disconnected_at = FromRowMicros(row.disconnected_at_us());
  a.last_heartbeat = FromRowMicros(row.last_heartbeat_us());
  a.acked_revision = row.acked_revision();
  a.reserve_left = row.reserve_left();
  a.spool_depth = row.spool_depth();
  a.last_error = row.last_error();
  a.advertise_hosts.assign(row.advertise_hosts().begin(), row.advertise_hosts().end());
  return a;
}

store::etcd::AuditRow ToRow(const AuditRecord& r) {
  store::etcd::AuditRow row;
  row.set_index(r.index);
  row.set_time_us(ToRowMicros(r.entry.time));
  row.set_who(r.entry.who);
  row.set_what(r.entry.what);
  row.set_where(r.entry.where);
  row.set_origin(r.entry.origin);
  for (const auto& [k, v] : r.entry.details) (*row.mutable_details())[k] = v;
  row.set_prev_hash(HashToRow(r.prev_hash));
  row.set_hash(HashToRow(r.hash));
  return row;
}

absl::StatusOr<AuditRecord> FromRow(const store::etcd::AuditRow& row) {
  AuditRecord r;
  r.index = row.index();
  r.entry.time = FromRowMicros(row.time_us());
  r.entry.who = row.who();
  r.entry.what = row.what();
  r.entry.where = row.where();
  r.entry.origin = row.origin();
  r.entry.details.insert(row.details().begin(), row.details().end());
  absl::StatusOr<ChainHash> prev = HashFromRow(row.prev_hash(), false);
  absl::StatusOr<ChainHash> hash = HashFromRow(row.hash(), false);
  if (!prev.ok() || !hash.ok()) return absl::DataLossError(absl::StrCat("audit record ", row.index(), ": bad hash"));
  r.prev_hash = *prev;
  r.hash = *hash;
  return r;
}

store::etcd::AuditBatchRow ToRow(const std::vector<AuditRecord>& records) {
  store::etcd::AuditBatchRow row;
  for (const AuditRecord& r : records) *row.add_records() = ToRow(r);
  return row;
}

absl::StatusOr<std::vector<AuditRecord>> FromRow(const store::etcd::AuditBatchRow& row) {
  std::vector<AuditRecord> out;
  for (const store::etcd::AuditRow& r : row.records()) {
    ASSIGN_OR_RETURN(AuditRecord record, FromRow(r));
    out.push_back(std::move(record));
  }
  return out;
}

store::etcd::CheckpointRow ToRow(const AuditCheckpoint& c) {
  store::etcd::CheckpointRow row;
  row.set_record_count(c.record_count);
  row.set_chain_hash(HashToRow(c.chain_hash));
  row.set_time_us(ToRowMicros(c.time));
  row.set_signature(c.signature);
  return row;
}

absl::StatusOr<AuditCheckpoint> FromRow(const store::etcd::CheckpointRow& row) {
  AuditCheckpoint c;
  c.record_count = row.record_count();
  absl::StatusOr<ChainHash> hash = HashFromRow(row.chain_hash(), false);
  if (!hash.ok()) return absl::DataLossError(absl::StrCat("checkpoint ", row.record_count(), ": bad hash"));
  c.chain_hash = *hash;
  c.time = FromRowMicros(row.time_us());
  c.signature = row.signature();
  return c;
}

store::etcd::ConsumptionRow ToRow(const ConsumptionRecord& record, absl::Time at) {
  store::etcd::ConsumptionRow row;
  row.set_outcome(ConsumeOutcomeName(record.outcome));
  row.set_sequence_id(record.sequence_id);
  row.set_grant_id(record.grant_id);
  row.set_audit_index(record.audit_index);
  row.set_at_us(ToRowMicros(at));
  return row;
}

ConsumptionRecord FromRow(const store::etcd::ConsumptionRow& row) {
  ConsumptionRecord r;
  for (ConsumeOutcome o : {ConsumeOutcome::kWon, ConsumeOutcome::kReplay, ConsumeOutcome::kUnknown,
                           ConsumeOutcome::kRefused}) {
    if (row.outcome() == ConsumeOutcomeName(o)) r.outcome = o;
  }
  r.sequence_id = row.sequence_id();
  r.grant_id = row.grant_id();
  r.audit_index = row.audit_index();
  return r;
}

}  // namespace sesame::controller
