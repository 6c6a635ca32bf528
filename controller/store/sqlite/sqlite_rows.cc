// The SQLite store's row codecs (internal/sqlite_rows.h).
#include "controller/store/sqlite/internal/sqlite_rows.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace sesame::controller::internal {

// --- Columns ----------------------------------------------------------------

void BindTimeOrNull(SqliteStatement& s, int index, absl::Time t) {
  if (t == absl::InfinitePast()) {
    s.BindNull(index);
  } else {
    s.Bind(index, Micros(t));
  }
}

absl::Time TimeOrPast(const SqliteStatement& s, int column) {
  return s.IsNull(column) ? absl::InfinitePast() : FromMicros(s.Int(column));
}

std::string HashBytes(const ChainHash& h) { return std::string(reinterpret_cast<const char*>(h.data()), h.size()); }

absl::Status Corrupt(absl::string_view table, const std::string& key, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("store: ", table, " ", key, ": ", what));
}

std::string ProtocolsToText(const std::vector<Protocol>& protocols) {
  std::vector<std::string> names;
  for (Protocol p : protocols) names.push_back(ProtocolName(p));
  return absl::StrJoin(names, ",");
}

std::string PortsToText(const std::vector<uint16_t>& ports) { return absl::StrJoin(ports, ","); }

ConsumeOutcome ConsumeOutcomeFromText(absl::string_view text) {
  return text == "won"       ? ConsumeOutcome::kWon
         : text == "replay"  ? ConsumeOutcome::kReplay
         : text == "refused" ? ConsumeOutcome::kRefused
                             : ConsumeOutcome::kUnknown;
}

// --- Rows -------------------------------------------------------------------

absl::StatusOr<Door> DoorFromRow(const SqliteStatement& s) {
  Door d;
  d.name = s.Text(0);
  DoorPolicy& p = d.policy;
  p.sequence_length = static_cast<int>(s.Int(1));
  p.protocols.clear();
  for (absl::string_view name : absl::StrSplit(s.Text(2), ',', absl::SkipEmpty())) {
    if (name == "tcp") {
      p.protocols.push_back(Protocol::kTcp);
    } else if (name == "udp") {
      p.protocols.push_back(Protocol::kUdp);
    } else {
      return Corrupt("door", d.name, "bad protocol list");
    }
  }
  p.port_first = static_cast<uint16_t>(s.Int(3));
  p.port_last = static_cast<uint16_t>(s.Int(4));
  for (absl::string_view port : absl::StrSplit(s.Text(5), ',', absl::SkipEmpty())) {
    uint32_t value = 0;
    if (!absl::SimpleAtoi(port, &value) || value == 0 || value > 65535) {
      return Corrupt("door", d.name, "bad avoid list");
    }
    p.avoid_ports.push_back(static_cast<uint16_t>(value));
  }
  absl::StatusOr<std::vector<Knock>> grant_ports = ParseKnocksText(s.Text(6));
  if (!grant_ports.ok()) return Corrupt("door", d.name, grant_ports.status().message());
  p.grant_ports = *std::move(grant_ports);
  p.grant_ttl = absl::Microseconds(s.Int(7));
  p.seq_timeout = absl::Microseconds(s.Int(8));
  p.fleet_wide = s.Int(9) != 0;
  d.revision = static_cast<uint64_t>(s.Int(10));
  return d;
}

const std::string& SequenceColumns() {
  static const std::string columns =
      absl::StrCat("id, door, knocks, ", kEffectiveState,
                   ", issued_to, issued_at_us, reserve_agent, consumed_by, consumed_from, consumed_at_us, revision, "
                   "expires_at_us, expired");
  return columns;
}

absl::StatusOr<Sequence> SequenceFromRow(const SqliteStatement& s) {
  Sequence q;
  q.id = static_cast<uint64_t>(s.Int(0));
  const std::string key = absl::StrCat(q.id);
  q.door = s.Text(1);
  absl::StatusOr<std::vector<Knock>> knocks = ParseKnocksText(s.Text(2));
  if (!knocks.ok()) return Corrupt("sequence", key, knocks.status().message());
  q.knocks = *std::move(knocks);
  std::optional<SequenceState> state = ParseSequenceState(s.Text(3));
  if (!state) return Corrupt("sequence", key, "bad state");
  q.state = *state;
  q.issued_to = s.Text(4);
  q.issued_at = FromMicros(s.Int(5));
  q.reserve_agent = s.Text(6);
  q.consumed_by = s.Text(7);
  if (!s.IsNull(8)) {
    q.consumed_from = IpAddress::Parse(s.Text(8));
    if (!q.consumed_from) return Corrupt("sequence", key, "bad consumed_from address");
  }
  q.consumed_at = TimeOrPast(s, 9);
  q.revision = static_cast<uint64_t>(s.Int(10));
  q.expires_at = s.IsNull(11) ? absl::InfiniteFuture() : FromMicros(s.Int(11));
  q.expired = s.Int(12) != 0;
  return q;
}

AgentRecord AgentFromRow(const SqliteStatement& s) {
  AgentRecord a;
  a.name = s.Text(0);
  a.version = s.Text(1);
  a.connected = s.Int(2) != 0;
  a.connected_at = TimeOrPast(s, 3);
  a.disconnected_at = TimeOrPast(s, 4);
  a.last_heartbeat = TimeOrPast(s, 5);
  a.acked_revision = static_cast<uint64_t>(s.Int(6));
  a.reserve_left = static_cast<int>(s.Int(7));
  a.spool_depth = static_cast<int>(s.Int(8));
  a.last_error = s.Text(9);
  a.advertise_hosts = absl::StrSplit(s.Text(10), '\n', absl::SkipEmpty());
  return a;
}

absl::StatusOr<GrantRecord> GrantFromRow(const SqliteStatement& s) {
  GrantRecord g;
  g.id = static_cast<uint64_t>(s.Int(0));
  const std::string key = absl::StrCat(g.id);
  g.door = s.Text(1);
  std::optional<IpAddress> address = IpAddress::Parse(s.Text(2));
  if (!address) return Corrupt("grant", key, "bad address");
  g.address = *address;
  absl::StatusOr<std::vector<Knock>> ports = ParseKnocksText(s.Text(3));
  if (!ports.ok()) return Corrupt("grant", key, ports.status().message());
  g.ports = *std::move(ports);
  g.agent = s.Text(4);
  g.fleet_wide = s.Int(5) != 0;
  g.opened_at = FromMicros(s.Int(6));
  g.expires_at = FromMicros(s.Int(7));
  std::optional<GrantState> state = ParseGrantState(s.Text(8));
  if (!state) return Corrupt("grant", key, "bad state");
  g.state = *state;
  g.closed_at = TimeOrPast(s, 9);
  g.sequence_id = static_cast<uint64_t>(s.Int(10));
  g.opened_by = s.Text(11);
  g.revision = static_cast<uint64_t>(s.Int(12));
  g.kill_sessions = s.Int(13) != 0;
  return g;
}

absl::StatusOr<AuditRecord> AuditFromRow(const SqliteStatement& s) {
  AuditRecord r;
  r.index = static_cast<uint64_t>(s.Int(0));
  const std::string key = absl::StrCat(r.index);
  r.entry.time = FromMicros(s.Int(1));
  r.entry.who = s.Text(2);
  r.entry.what = s.Text(3);
  r.entry.where = s.Text(4);
  r.entry.origin = s.Text(5);
  absl::StatusOr<std::map<std::string, std::string>> details = DetailsFromText(s.Text(6));
  if (!details.ok()) return Corrupt("audit record", key, details.status().message());
  r.entry.details = *std::move(details);
  const std::string prev = s.Blob(7);
  const std::string hash = s.Blob(8);
  if (prev.size() != 32 || hash.size() != 32) return Corrupt("audit record", key, "hash is not 32 bytes");
  std::copy(prev.begin(), prev.end(), r.prev_hash.begin());
  std::copy(hash.begin(), hash.end(), r.hash.begin());
  return r;
}

}  // namespace sesame::controller::internal
