#include "controller/store/sqlite/sqlite_schema.h"

#include "absl/strings/str_cat.h"

namespace sesame::controller {
namespace {

// Times are microseconds since the Unix epoch (UTC), addresses canonical
// text, knock lists KnocksToText, audit details DetailsToText.
constexpr std::string_view kInitialSchema = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('revision', 0);

CREATE TABLE doors (
  name            TEXT PRIMARY KEY,
  sequence_length INTEGER NOT NULL,
  protocols       TEXT NOT NULL,    -- "tcp,udp"
  port_first      INTEGER NOT NULL,
  port_last       INTEGER NOT NULL,
  avoid_ports     TEXT NOT NULL,    -- "22,80,443"
  grant_ports     TEXT NOT NULL,    -- "22:tcp"
  grant_ttl_us    INTEGER NOT NULL,
  seq_timeout_us  INTEGER NOT NULL,
  fleet_wide      INTEGER NOT NULL,
  revision        INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sequences (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  door           TEXT NOT NULL REFERENCES doors (name),
  knocks         TEXT NOT NULL,
  -- 'issued' or 'burnt'. Live is derived when read (an agent that may hold
  -- it acknowledged its revision), so acknowledgements write nothing here.
  state          TEXT NOT NULL CHECK (state IN ('issued', 'burnt')),
  issued_to      TEXT NOT NULL,
  issued_at_us   INTEGER NOT NULL,
  reserve_agent  TEXT NOT NULL DEFAULT '',
  consumed_by    TEXT,
  consumed_from  TEXT,
  consumed_at_us INTEGER,
  revision       INTEGER NOT NULL   -- when added, then when burnt
);
-- Finds a sequence by its knocks, unused or burnt; also serves the
-- uniqueness and prefix checks, which the writer makes before each insert.
-- Indexes are kept to what a burn does not touch: a consumption rewrites the
-- sequence's row and nothing else of this table.
CREATE INDEX sequences_by_knocks ON sequences (knocks);

CREATE TABLE agents (
  name               TEXT PRIMARY KEY,
  version            TEXT NOT NULL,
  connected          INTEGER NOT NULL,
  connected_at_us    INTEGER,
  disconnected_at_us INTEGER,
  last_heartbeat_us  INTEGER,
  acked_revision     INTEGER NOT NULL,
  reserve_left       INTEGER NOT NULL,
  spool_depth        INTEGER NOT NULL,
  last_error         TEXT NOT NULL,
  advertise_hosts    TEXT NOT NULL     -- one per line
) WITHOUT ROWID;

CREATE TABLE grants (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  door          TEXT NOT NULL,
  address       TEXT NOT NULL,
  ports         TEXT NOT NULL,
  agent         TEXT NOT NULL,
  fleet_wide    INTEGER NOT NULL,
  opened_at_us  INTEGER NOT NULL,
  expires_at_us INTEGER NOT NULL,
  state         TEXT NOT NULL CHECK (state IN ('open', 'expired', 'revoked')),
  closed_at_us  INTEGER,
  sequence_id   INTEGER NOT NULL,
  opened_by     TEXT NOT NULL,
  revision      INTEGER NOT NULL
);
CREATE INDEX grants_open_by_expiry ON grants (expires_at_us) WHERE state = 'open';
CREATE INDEX grants_by_address ON grants (address);

-- One row per bastion that reported on a grant; no row: not reported yet.
CREATE TABLE grant_agents (
  grant_id INTEGER NOT NULL REFERENCES grants (id),
  agent    TEXT NOT NULL,
  state    TEXT NOT NULL CHECK (state IN ('applied', 'failed', 'removed')),
  detail   TEXT NOT NULL,
  at_us    INTEGER NOT NULL,
  PRIMARY KEY (grant_id, agent)
) WITHOUT ROWID;

CREATE TABLE audit (
  idx       INTEGER PRIMARY KEY,
  at_us     INTEGER NOT NULL,
  who       TEXT NOT NULL,
  what      TEXT NOT NULL,
  location  TEXT NOT NULL,   -- the record's "where"
  origin    TEXT NOT NULL,
  details   TEXT NOT NULL,
  prev_hash BLOB NOT NULL,
  hash      BLOB NOT NULL
);
CREATE UNIQUE INDEX audit_by_origin ON audit (origin) WHERE origin != '';

CREATE TABLE audit_checkpoints (
  record_count INTEGER PRIMARY KEY,
  chain_hash   BLOB NOT NULL,
  at_us        INTEGER NOT NULL,
  signature    BLOB NOT NULL
);
)sql";

// Agents resend knock reports after a reconnect; the first answer is kept
// per (agent, message id) so a resend gets it again instead of a replay.
constexpr std::string_view kConsumptions = R"sql(
CREATE TABLE consumptions (
  agent       TEXT NOT NULL,
  request_id  TEXT NOT NULL,
  outcome     TEXT NOT NULL CHECK (outcome IN ('won', 'replay', 'unknown')),
  sequence_id INTEGER NOT NULL,
  grant_id    INTEGER NOT NULL,
  audit_index INTEGER NOT NULL,
  at_us       INTEGER NOT NULL,
  PRIMARY KEY (agent, request_id)
) WITHOUT ROWID;
)sql";

// A refused report's answer is kept like any other (a resend gets it again,
// recorded once). SQLite cannot change a CHECK: the table is rebuilt.
constexpr std::string_view kRefusedConsumptions = R"sql(
CREATE TABLE consumptions_v3 (
  agent       TEXT NOT NULL,
  request_id  TEXT NOT NULL,
  outcome     TEXT NOT NULL CHECK (outcome IN ('won', 'replay', 'unknown', 'refused')),
  sequence_id INTEGER NOT NULL,
  grant_id    INTEGER NOT NULL,
  audit_index INTEGER NOT NULL,
  at_us       INTEGER NOT NULL,
  PRIMARY KEY (agent, request_id)
) WITHOUT ROWID;
INSERT INTO consumptions_v3 (agent, request_id, outcome, sequence_id, grant_id, audit_index, at_us)
  SELECT agent, request_id, outcome, sequence_id, grant_id, audit_index, at_us FROM consumptions;
DROP TABLE consumptions;
ALTER TABLE consumptions_v3 RENAME TO consumptions;
)sql";

// Every sequence expires: NULL is never, for rows of the schema before.
// The unused ones get the default lifetime from their issue, as a
// controller of this version would have given them. A burn by expiry sets
// expired = 1. The leader's sweep looks up the unused ones by expiry.
constexpr std::string_view kSequenceExpiry = R"sql(
ALTER TABLE sequences ADD COLUMN expires_at_us INTEGER;
ALTER TABLE sequences ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;
UPDATE sequences SET expires_at_us = issued_at_us + 2592000000000 WHERE state = 'issued';
CREATE INDEX sequences_by_expiry ON sequences (expires_at_us) WHERE state = 'issued';
)sql";

// A revocation may order the bastions to end the address's live sessions.
constexpr std::string_view kKillSessions = R"sql(
ALTER TABLE grants ADD COLUMN kill_sessions INTEGER NOT NULL DEFAULT 0;
)sql";

}  // namespace

const std::vector<Migration>& SqliteMigrations() {
  static const std::vector<Migration> migrations = {
      {1, "doors, sequences, agents, grants, audit chain", kInitialSchema},
      {2, "consumptions remembered per agent message id", kConsumptions},
      {3, "refused knock reports remembered too", kRefusedConsumptions},
      {4, "sequences expire", kSequenceExpiry},
      {5, "revocations that kill live sessions", kKillSessions},
  };
  return migrations;
}

int LatestSchemaVersion() { return SqliteMigrations().back().version; }

absl::StatusOr<int> SchemaVersion(SqliteDb& db) {
  absl::StatusOr<std::optional<int64_t>> version = db.QueryInt("PRAGMA user_version");
  if (!version.ok()) return version.status();
  return static_cast<int>(version->value_or(0));
}

absl::Status MigrateSchema(SqliteDb& db, int target_version) {
  absl::StatusOr<int> current = SchemaVersion(db);
  if (!current.ok()) return current.status();
  if (*current > LatestSchemaVersion()) {
    return absl::FailedPreconditionError(absl::StrCat("database ", db.path(), " has schema version ", *current,
                                                      ", newer than this controller knows (",
                                                      LatestSchemaVersion(), "): upgrade sesame-controller"));
  }
  for (const Migration& m : SqliteMigrations()) {
    if (m.version <= *current || m.version > target_version) continue;
    absl::Status status = db.Exec("BEGIN IMMEDIATE");
    if (status.ok()) status = db.Exec(m.sql);
    if (status.ok()) status = db.Exec(absl::StrCat("PRAGMA user_version = ", m.version));
    if (status.ok()) status = db.Exec("COMMIT");
    if (!status.ok()) {
      (void)db.Exec("ROLLBACK");
      return absl::Status(status.code(), absl::StrCat("schema migration to version ", m.version, " (",
                                                      std::string(m.description), ") failed: ", status.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace sesame::controller
