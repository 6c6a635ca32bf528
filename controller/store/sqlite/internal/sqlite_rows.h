// The SQLite store's row codecs, private to controller/store/sqlite: the
// column lists each table is read with, the decoders from a row to a model
// value, and the text and time encodings of columns.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controller/audit/audit_record.h"
#include "controller/model/model.h"
#include "controller/store/sqlite/sqlite_db.h"
#include "controller/store/store.h"

namespace sesame::controller::internal {

// --- Columns ----------------------------------------------------------------

// Times are stored as Unix microseconds.
inline int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }
inline absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

// InfinitePast (never) is stored as NULL.
void BindTimeOrNull(SqliteStatement& s, int index, absl::Time t);
absl::Time TimeOrPast(const SqliteStatement& s, int column);

std::string HashBytes(const ChainHash& h);

// A row that cannot be decoded.
absl::Status Corrupt(absl::string_view table, const std::string& key, absl::string_view what);

// "tcp,udp" and "80,443", as in the doors table.
std::string ProtocolsToText(const std::vector<Protocol>& protocols);
std::string PortsToText(const std::vector<uint16_t>& ports);

// The consumptions table's outcome column (ConsumeOutcomeName's text).
ConsumeOutcome ConsumeOutcomeFromText(absl::string_view text);

// --- Rows -------------------------------------------------------------------

inline constexpr char kDoorColumns[] =
    "name, sequence_length, protocols, port_first, port_last, avoid_ports, grant_ports, grant_ttl_us, "
    "seq_timeout_us, fleet_wide, revision";
absl::StatusOr<Door> DoorFromRow(const SqliteStatement& s);

// The state as the model sees it: an unused sequence is live once an agent
// that may hold it (any agent for a fleet sequence, its own for a reserve
// one) acknowledged the revision that added it.
inline constexpr char kEffectiveState[] =
    "CASE WHEN state = 'burnt' THEN 'burnt' WHEN revision <= (SELECT COALESCE(MAX(acked_revision), 0) FROM agents "
    "WHERE sequences.reserve_agent = '' OR agents.name = sequences.reserve_agent) THEN 'live' ELSE 'issued' END";

// Includes kEffectiveState as the state column.
const std::string& SequenceColumns();
absl::StatusOr<Sequence> SequenceFromRow(const SqliteStatement& s);

inline constexpr char kAgentColumns[] =
    "name, version, connected, connected_at_us, disconnected_at_us, last_heartbeat_us, acked_revision, "
    "reserve_left, spool_depth, last_error, advertise_hosts";
AgentRecord AgentFromRow(const SqliteStatement& s);

// Without the per-bastion reports (grant_agents, see LoadGrantAgents).
inline constexpr char kGrantColumns[] =
    "id, door, address, ports, agent, fleet_wide, opened_at_us, expires_at_us, state, closed_at_us, sequence_id, "
    "opened_by, revision, kill_sessions";
absl::StatusOr<GrantRecord> GrantFromRow(const SqliteStatement& s);

inline constexpr char kAuditColumns[] = "idx, at_us, who, what, location, origin, details, prev_hash, hash";
absl::StatusOr<AuditRecord> AuditFromRow(const SqliteStatement& s);

}  // namespace sesame::controller::internal
