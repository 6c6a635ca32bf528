#include "controller/store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "controller/store/sqlite/sqlite_schema.h"

namespace sesame::controller {
namespace {

constexpr size_t kMaxRequestIdSize = 128;

// --- Column helpers -------------------------------------------------------

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

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

// --- Rows -----------------------------------------------------------------

constexpr char kDoorColumns[] =
    "name, sequence_length, protocols, port_first, port_last, avoid_ports, grant_ports, grant_ttl_us, "
    "seq_timeout_us, fleet_wide, revision";

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

// The state as the model sees it: an unused sequence is live once an agent
// that may hold it (any agent for a fleet sequence, its own for a reserve
// one) acknowledged the revision that added it.
constexpr char kEffectiveState[] =
    "CASE WHEN state = 'burnt' THEN 'burnt' WHEN revision <= (SELECT COALESCE(MAX(acked_revision), 0) FROM agents "
    "WHERE sequences.reserve_agent = '' OR agents.name = sequences.reserve_agent) THEN 'live' ELSE 'issued' END";

const std::string& SequenceColumns() {
  static const std::string columns =
      absl::StrCat("id, door, knocks, ", kEffectiveState,
                   ", issued_to, issued_at_us, reserve_agent, consumed_by, consumed_from, consumed_at_us, revision");
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
  return q;
}

constexpr char kAgentColumns[] =
    "name, version, connected, connected_at_us, disconnected_at_us, last_heartbeat_us, acked_revision, "
    "reserve_left, spool_depth, last_error, advertise_hosts";

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

constexpr char kGrantColumns[] =
    "id, door, address, ports, agent, fleet_wide, opened_at_us, expires_at_us, state, closed_at_us, sequence_id, "
    "opened_by, revision";

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
  return g;
}

constexpr char kAuditColumns[] = "idx, at_us, who, what, location, origin, details, prev_hash, hash";

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

// --- Queries shared by the reader and the writer --------------------------

absl::StatusOr<std::optional<Door>> FindDoor(SqliteDb& db, const std::string& name) {
  ASSIGN_OR_RETURN(SqliteStatement s, db.Prepare(absl::StrCat("SELECT ", kDoorColumns, " FROM doors WHERE name = ?")));
  s.BindAll(name);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<Door>();
  ASSIGN_OR_RETURN(Door door, DoorFromRow(s));
  return std::optional<Door>(std::move(door));
}

absl::StatusOr<std::optional<Sequence>> FindSequence(SqliteDb& db, uint64_t id) {
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db.Prepare(absl::StrCat("SELECT ", SequenceColumns(), " FROM sequences WHERE id = ?")));
  s.BindAll(static_cast<int64_t>(id));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<Sequence>();
  ASSIGN_OR_RETURN(Sequence q, SequenceFromRow(s));
  return std::optional<Sequence>(std::move(q));
}

// The unused sequence with these knocks, or else the newest burnt one.
absl::StatusOr<std::optional<Sequence>> FindSequenceByKnocks(SqliteDb& db, const std::string& knocks) {
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db.Prepare(absl::StrCat("SELECT ", SequenceColumns(),
                                           " FROM sequences WHERE knocks = ? ORDER BY state = 'burnt', id DESC LIMIT 1")));
  s.BindAll(knocks);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<Sequence>();
  ASSIGN_OR_RETURN(Sequence q, SequenceFromRow(s));
  return std::optional<Sequence>(std::move(q));
}

absl::Status LoadGrantAgents(SqliteDb& db, GrantRecord& g) {
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db.Prepare("SELECT agent, state, detail, at_us FROM grant_agents WHERE grant_id = ? ORDER BY agent"));
  s.BindAll(static_cast<int64_t>(g.id));
  g.agents.clear();
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return absl::OkStatus();
    GrantAgentStatus a;
    a.agent = s.Text(0);
    std::optional<GrantAgentState> state = ParseGrantAgentState(s.Text(1));
    if (!state) return Corrupt("grant", absl::StrCat(g.id), "bad agent state");
    a.state = *state;
    a.detail = s.Text(2);
    a.at = FromMicros(s.Int(3));
    g.agents.push_back(std::move(a));
  }
}

absl::StatusOr<std::optional<GrantRecord>> FindGrant(SqliteDb& db, uint64_t id) {
  std::optional<GrantRecord> grant;
  {
    ASSIGN_OR_RETURN(SqliteStatement s,
                     db.Prepare(absl::StrCat("SELECT ", kGrantColumns, " FROM grants WHERE id = ?")));
    s.BindAll(static_cast<int64_t>(id));
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return grant;
    ASSIGN_OR_RETURN(grant, GrantFromRow(s));
  }
  RETURN_IF_ERROR(LoadGrantAgents(db, *grant));
  return grant;
}

absl::StatusOr<std::optional<AuditRecord>> FindAuditByOrigin(SqliteDb& db, const std::string& origin) {
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db.Prepare(absl::StrCat("SELECT ", kAuditColumns, " FROM audit WHERE origin = ? AND origin != ''")));
  s.BindAll(origin);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<AuditRecord>();
  ASSIGN_OR_RETURN(AuditRecord r, AuditFromRow(s));
  return std::optional<AuditRecord>(std::move(r));
}

absl::StatusOr<AuditHead> LoadAuditHead(SqliteDb& db) {
  ASSIGN_OR_RETURN(SqliteStatement s, db.Prepare("SELECT idx, hash FROM audit ORDER BY idx DESC LIMIT 1"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  AuditHead head;
  if (!row) return head;
  head.record_count = static_cast<uint64_t>(s.Int(0)) + 1;
  const std::string hash = s.Blob(1);
  if (hash.size() != 32) return Corrupt("audit record", absl::StrCat(s.Int(0)), "hash is not 32 bytes");
  std::copy(hash.begin(), hash.end(), head.hash.begin());
  return head;
}

absl::StatusOr<uint64_t> LoadRevision(SqliteDb& db) {
  ASSIGN_OR_RETURN(std::optional<int64_t> value, db.QueryInt("SELECT value FROM meta WHERE key = 'revision'"));
  if (!value) return absl::DataLossError("store: the revision counter is missing");
  return static_cast<uint64_t>(*value);
}

// A consistent view across several statements on the reader.
class ReadTransaction {
 public:
  explicit ReadTransaction(SqliteDb& db) : db_(db), open_(db.Exec("BEGIN").ok()) {}
  ~ReadTransaction() {
    if (open_) (void)db_.Exec("COMMIT");
  }

 private:
  SqliteDb& db_;
  bool open_;
};

absl::Status CreateFile0600(const std::string& path) {
  const int fd = open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  close(fd);
  return absl::OkStatus();
}

absl::Status ValidateKnocks(const std::vector<Knock>& knocks) {
  if (knocks.empty()) return absl::InvalidArgumentError("a sequence needs at least one knock");
  if (knocks.size() > 32) return absl::InvalidArgumentError("a sequence has at most 32 knocks");
  for (const Knock& k : knocks) {
    if (k.port == 0) return absl::InvalidArgumentError("knock on port 0: expected 1..65535");
  }
  return absl::OkStatus();
}

}  // namespace

// --- The writer -------------------------------------------------------------

// The write connection and what the writer keeps in memory between commits:
// the revision counter and the head of the audit chain. Both are saved at
// the start of every operation and of every batch, and put back when that
// operation or batch is rolled back.
class SqliteStore::Writer final : public BatchTransaction {
 public:
  Writer(std::unique_ptr<SqliteDb> db, uint64_t revision, AuditHead head)
      : db_(std::move(db)), revision_(revision), committed_revision_(revision), head_(head), committed_head_(head) {}

  SqliteDb& db() { return *db_; }

  uint64_t NextRevision() { return ++revision_; }

  void set_listener(ChangeListener* listener) { listener_ = listener; }
  // Records a change for the listener; dropped if its operation or batch is
  // rolled back.
  void Changed(StoreChange change) { changes_.push_back(std::move(change)); }

  // Seals and inserts one record (or returns the one with the same origin).
  absl::StatusOr<AuditRecord> Append(AuditEntry entry) {
    if (!entry.origin.empty()) {
      ASSIGN_OR_RETURN(std::optional<AuditRecord> existing, FindAuditByOrigin(*db_, entry.origin));
      if (existing) return *std::move(existing);
    }
    AuditRecord r = SealRecord(head_, std::move(entry));
    ASSIGN_OR_RETURN(SqliteStatement s,
                     db_->Prepare("INSERT INTO audit (idx, at_us, who, what, location, origin, details, prev_hash, "
                                  "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    s.BindAll(static_cast<int64_t>(r.index), Micros(r.entry.time), r.entry.who, r.entry.what, r.entry.where,
              r.entry.origin, DetailsToText(r.entry.details));
    s.BindBlob(8, HashBytes(r.prev_hash)).BindBlob(9, HashBytes(r.hash));
    RETURN_IF_ERROR(s.Run());
    head_ = AuditHead{r.index + 1, r.hash};
    return r;
  }

  absl::Status AppendAll(std::vector<AuditEntry> entries) {
    for (AuditEntry& e : entries) {
      ASSIGN_OR_RETURN(AuditRecord r, Append(std::move(e)));
      (void)r;
    }
    return absl::OkStatus();
  }

  absl::Status Begin() override {
    revision_ = committed_revision_;
    head_ = committed_head_;
    changes_.clear();
    return Statement("BEGIN IMMEDIATE");
  }

  absl::Status BeginOperation() override {
    op_revision_ = revision_;
    op_head_ = head_;
    op_changes_ = changes_.size();
    return Statement("SAVEPOINT op");
  }

  absl::Status EndOperation(bool ok) override {
    if (!ok) {
      revision_ = op_revision_;
      head_ = op_head_;
      changes_.resize(op_changes_);
      RETURN_IF_ERROR(Statement("ROLLBACK TO op"));
    }
    return Statement("RELEASE op");
  }

  absl::Status Commit() override {
    if (revision_ != committed_revision_) {
      ASSIGN_OR_RETURN(SqliteStatement s, db_->Prepare("UPDATE meta SET value = ? WHERE key = 'revision'"));
      s.BindAll(static_cast<int64_t>(revision_));
      RETURN_IF_ERROR(s.Run());
    }
    RETURN_IF_ERROR(Statement("COMMIT"));
    committed_revision_ = revision_;
    committed_head_ = head_;
    // Durable now; the callers are answered after this returns.
    if (listener_ != nullptr && !changes_.empty()) listener_->OnCommitted(changes_);
    changes_.clear();
    return absl::OkStatus();
  }

  void Rollback() override {
    // After some I/O errors SQLite has rolled back already; then this fails
    // harmlessly.
    (void)db_->Exec("ROLLBACK");
    revision_ = committed_revision_;
    head_ = committed_head_;
    changes_.clear();
  }

 private:
  absl::Status Statement(std::string_view sql) {
    ASSIGN_OR_RETURN(SqliteStatement s, db_->Prepare(sql));
    return s.Run();
  }

  std::unique_ptr<SqliteDb> db_;
  uint64_t revision_, committed_revision_, op_revision_ = 0;
  AuditHead head_, committed_head_, op_head_;
  ChangeListener* listener_ = nullptr;
  std::vector<StoreChange> changes_;  // of the open batch, in revision order
  size_t op_changes_ = 0;
};

// Inserts a grant; bastions add their rows to grant_agents as they report.
static absl::StatusOr<GrantRecord> InsertGrant(SqliteDb& db, uint64_t revision, const NewGrant& g, absl::Time now) {
  ASSIGN_OR_RETURN(SqliteStatement s,
                   db.Prepare("INSERT INTO grants (door, address, ports, agent, fleet_wide, opened_at_us, "
                              "expires_at_us, state, closed_at_us, sequence_id, opened_by, revision) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, 'open', NULL, ?, ?, ?)"));
  s.BindAll(g.door, g.address.ToString(), KnocksToText(g.ports), g.fleet_wide ? std::string() : g.agent,
            int64_t{g.fleet_wide ? 1 : 0}, Micros(now), Micros(TruncateToMicros(g.expires_at)),
            static_cast<int64_t>(g.sequence_id), g.opened_by, static_cast<int64_t>(revision));
  RETURN_IF_ERROR(s.Run());
  GrantRecord out;
  out.id = static_cast<uint64_t>(db.LastInsertRowId());
  out.door = g.door;
  out.address = g.address;
  out.ports = g.ports;
  out.agent = g.fleet_wide ? std::string() : g.agent;
  out.fleet_wide = g.fleet_wide;
  out.opened_at = now;
  out.expires_at = TruncateToMicros(g.expires_at);
  out.sequence_id = g.sequence_id;
  out.opened_by = g.opened_by;
  out.revision = revision;
  return out;
}

static absl::Status ValidateNewGrant(const NewGrant& g) {
  if (!IsValidName(g.door)) return absl::InvalidArgumentError(absl::StrCat("bad door name \"", g.door, "\""));
  if (!g.fleet_wide && !IsValidName(g.agent)) {
    return absl::InvalidArgumentError("a grant needs an agent unless it is fleet-wide");
  }
  if (g.ports.empty()) return absl::InvalidArgumentError("a grant opens at least one port");
  return absl::OkStatus();
}

// --- Open -------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const SqliteStoreOptions& options) {
  if (options.state_dir.empty()) return absl::InvalidArgumentError("the store needs a state directory");
  RETURN_IF_ERROR(MakeDirectories(options.state_dir, 0700));
  const std::string path = absl::StrCat(options.state_dir, "/", options.file_name);
  // SQLite creates the -wal and -shm files with the database file's mode.
  RETURN_IF_ERROR(CreateFile0600(path));

  std::unique_ptr<SqliteStore> store(new SqliteStore(path, *options.clock));
  const std::string lock_path = path + ".lock";
  store->lock_fd_ = open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  if (store->lock_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", lock_path, ": ", std::strerror(errno)));
  }
  if (flock(store->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("database ", path, " is in use by another store (", lock_path, " is locked)"));
  }
  SqliteOpenOptions write_options;
  write_options.wal_autocheckpoint = options.wal_autocheckpoint;
  write_options.cache_kib = options.cache_kib;
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path, write_options));
  const int target = options.schema_version == 0 ? LatestSchemaVersion() : options.schema_version;
  RETURN_IF_ERROR(MigrateSchema(*db, target));
  ASSIGN_OR_RETURN(uint64_t revision, LoadRevision(*db));
  ASSIGN_OR_RETURN(AuditHead head, LoadAuditHead(*db));
  {
    SqliteOpenOptions read_options;
    read_options.read_only = true;
    ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> reader, SqliteDb::Open(path, read_options));
    absl::MutexLock lock(&store->read_mu_);
    store->reader_ = std::move(reader);
  }
  store->writer_ = std::make_unique<Writer>(std::move(db), revision, head);
  store->committer_ = std::make_unique<GroupCommitter>(*store->writer_, options.max_batch);
  return store;
}

SqliteStore::SqliteStore(std::string path, const Clock& clock) : path_(std::move(path)), clock_(clock) {}

SqliteStore::~SqliteStore() {
  committer_.reset();
  writer_.reset();
  {
    absl::MutexLock lock(&read_mu_);
    reader_.reset();
  }
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
}

absl::Status SqliteStore::Write(absl::AnyInvocable<absl::Status(Writer&)> op) {
  return committer_->Run([this, &op] { return op(*writer_); });
}

// --- Changes, revision, doors ----------------------------------------------

void SqliteStore::SetChangeListener(ChangeListener* listener) {
  // Runs on the writer thread, between batches.
  (void)committer_->Run([this, listener] {
    writer_->set_listener(listener);
    return absl::OkStatus();
  });
}

absl::StatusOr<FleetState> SqliteStore::LoadFleetState() {
  absl::MutexLock lock(&read_mu_);
  ReadTransaction txn(*reader_);
  FleetState state;
  ASSIGN_OR_RETURN(state.revision, LoadRevision(*reader_));
  {
    ASSIGN_OR_RETURN(SqliteStatement s,
                     reader_->Prepare(absl::StrCat("SELECT ", kDoorColumns, " FROM doors ORDER BY name")));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ASSIGN_OR_RETURN(Door d, DoorFromRow(s));
      state.doors.push_back(std::move(d));
    }
  }
  {
    ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare(absl::StrCat("SELECT ", SequenceColumns(),
                                                                      " FROM sequences WHERE state != 'burnt'")));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ASSIGN_OR_RETURN(Sequence q, SequenceFromRow(s));
      state.unused_sequences.push_back(std::move(q));
    }
  }
  {
    ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare(absl::StrCat("SELECT ", kGrantColumns,
                                                                      " FROM grants WHERE state = 'open'")));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ASSIGN_OR_RETURN(GrantRecord g, GrantFromRow(s));
      state.open_grants.push_back(std::move(g));
    }
  }
  return state;
}


absl::StatusOr<uint64_t> SqliteStore::CurrentRevision() {
  absl::MutexLock lock(&read_mu_);
  return LoadRevision(*reader_);
}

absl::StatusOr<Door> SqliteStore::PutDoor(const Door& door, std::vector<AuditEntry> audit) {
  if (!IsValidName(door.name)) {
    return absl::InvalidArgumentError(absl::StrCat("door name \"", door.name, "\": expected [A-Za-z0-9_.-]{1,64}"));
  }
  if (absl::Status s = ValidateDoorPolicy(door.policy); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("door ", door.name, ": ", s.message()));
  }
  Door out = door;
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.revision = w.NextRevision();
    const DoorPolicy& p = door.policy;
    ASSIGN_OR_RETURN(SqliteStatement s,
                     w.db().Prepare(absl::StrCat("INSERT OR REPLACE INTO doors (", kDoorColumns,
                                                 ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")));
    s.BindAll(door.name, int64_t{p.sequence_length}, ProtocolsToText(p.protocols), int64_t{p.port_first},
              int64_t{p.port_last}, PortsToText(p.avoid_ports), KnocksToText(p.grant_ports),
              absl::ToInt64Microseconds(p.grant_ttl), absl::ToInt64Microseconds(p.seq_timeout),
              int64_t{p.fleet_wide ? 1 : 0}, static_cast<int64_t>(out.revision));
    RETURN_IF_ERROR(s.Run());
    w.Changed(StoreChange{StoreChange::Kind::kDoorChanged, out.revision, {}, {}, out});
    return w.AppendAll(std::move(audit));
  }));
  return out;
}

absl::StatusOr<Door> SqliteStore::GetDoor(const std::string& name) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(std::optional<Door> door, FindDoor(*reader_, name));
  if (!door) return absl::NotFoundError(absl::StrCat("no door \"", name, "\""));
  return *std::move(door);
}

absl::StatusOr<std::vector<Door>> SqliteStore::ListDoors() {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s,
                   reader_->Prepare(absl::StrCat("SELECT ", kDoorColumns, " FROM doors ORDER BY name")));
  std::vector<Door> doors;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return doors;
    ASSIGN_OR_RETURN(Door d, DoorFromRow(s));
    doors.push_back(std::move(d));
  }
}

// --- Sequences --------------------------------------------------------------

absl::StatusOr<std::vector<Sequence>> SqliteStore::AddSequences(const std::vector<NewSequence>& sequences,
                                                                std::vector<AuditEntry> audit) {
  for (size_t i = 0; i < sequences.size(); ++i) {
    const NewSequence& n = sequences[i];
    if (!IsValidName(n.door)) return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": bad door name"));
    if (!n.reserve_agent.empty() && !IsValidName(n.reserve_agent)) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": bad reserve agent name"));
    }
    if (absl::Status s = ValidateKnocks(n.knocks); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": ", s.message()));
    }
  }
  std::vector<Sequence> out;
  const absl::Time now = TruncateToMicros(clock_.Now());
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.clear();
    SqliteDb& db = w.db();
    for (size_t i = 0; i < sequences.size(); ++i) {
      const NewSequence& n = sequences[i];
      ASSIGN_OR_RETURN(std::optional<Door> door, FindDoor(db, n.door));
      if (!door) return absl::NotFoundError(absl::StrCat("no door \"", n.door, "\""));
      const std::string text = KnocksToText(n.knocks);
      // Equal to an unused sequence, or a proper prefix of one.
      {
        ASSIGN_OR_RETURN(SqliteStatement s,
                         db.Prepare("SELECT id FROM sequences WHERE knocks >= ?1 AND knocks < ?2 AND "
                                    "state != 'burnt' LIMIT 1"));
        // text itself and every knock list starting with text + "," sort in
        // [text, text + "-"): '-' follows ',' in ASCII, and a knock list
        // ends in "tcp" or "udp", so only ',' can follow text.
        s.BindAll(text, text + "-");
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (row) {
          return absl::AlreadyExistsError(
              absl::StrCat("new sequence ", i, " equals or is a prefix of unused sequence ", s.Int(0)));
        }
      }
      // An unused sequence is a proper prefix of it.
      for (size_t len = 1; len < n.knocks.size(); ++len) {
        const std::string prefix =
            KnocksToText(std::vector<Knock>(n.knocks.begin(), n.knocks.begin() + static_cast<std::ptrdiff_t>(len)));
        ASSIGN_OR_RETURN(SqliteStatement s,
                         db.Prepare("SELECT id FROM sequences WHERE state != 'burnt' AND knocks = ? LIMIT 1"));
        s.BindAll(prefix);
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (row) {
          return absl::AlreadyExistsError(
              absl::StrCat("unused sequence ", s.Int(0), " is a prefix of new sequence ", i));
        }
      }
      Sequence q;
      q.door = n.door;
      q.knocks = n.knocks;
      q.state = SequenceState::kIssued;
      q.issued_to = n.issued_to;
      q.issued_at = now;
      q.reserve_agent = n.reserve_agent;
      q.revision = w.NextRevision();
      ASSIGN_OR_RETURN(SqliteStatement s,
                       db.Prepare("INSERT INTO sequences (door, knocks, state, issued_to, issued_at_us, "
                                  "reserve_agent, revision) VALUES (?, ?, 'issued', ?, ?, ?, ?)"));
      s.BindAll(q.door, text, q.issued_to, Micros(now), q.reserve_agent, static_cast<int64_t>(q.revision));
      RETURN_IF_ERROR(s.Run());
      q.id = static_cast<uint64_t>(db.LastInsertRowId());
      w.Changed(StoreChange{StoreChange::Kind::kSequenceAdded, q.revision, q, {}, {}});
      out.push_back(std::move(q));
    }
    std::vector<uint64_t> ids;
    for (const Sequence& q : out) ids.push_back(q.id);
    for (AuditEntry& e : audit) e.details.emplace("sequences", absl::StrJoin(ids, ","));
    return w.AppendAll(std::move(audit));
  }));
  return out;
}

absl::StatusOr<Sequence> SqliteStore::GetSequence(uint64_t id) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(std::optional<Sequence> q, FindSequence(*reader_, id));
  if (!q) return absl::NotFoundError(absl::StrCat("no sequence ", id));
  return *std::move(q);
}

absl::StatusOr<std::vector<Sequence>> SqliteStore::ListSequences(const SequenceFilter& filter) {
  // Only the conditions asked for, so that SQLite can use the partial index
  // on unused sequences; each shape of query is prepared once.
  std::string sql = absl::StrCat("SELECT ", SequenceColumns(), " FROM sequences WHERE 1");
  if (!filter.door.empty()) sql += " AND door = ?1";
  if (filter.state) sql += absl::StrCat(" AND (", kEffectiveState, ") = ?2");
  if (filter.unused_only) sql += " AND state != 'burnt'";
  if (!filter.reserve_agent.empty()) sql += " AND reserve_agent = ?3";
  sql += filter.limit > 0 ? " ORDER BY id DESC LIMIT ?4" : " ORDER BY id";
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare(sql));
  if (!filter.door.empty()) s.Bind(1, filter.door);
  if (filter.state) s.Bind(2, SequenceStateName(*filter.state));
  if (!filter.reserve_agent.empty()) s.Bind(3, filter.reserve_agent);
  if (filter.limit > 0) s.Bind(4, static_cast<int64_t>(filter.limit));
  std::vector<Sequence> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return out;
    ASSIGN_OR_RETURN(Sequence q, SequenceFromRow(s));
    out.push_back(std::move(q));
  }
}

absl::StatusOr<ConsumeResult> SqliteStore::Consume(const ConsumeRequest& request) {
  if (!IsValidName(request.agent)) return absl::InvalidArgumentError("consume: bad agent name");
  if (request.sequence_id == 0) RETURN_IF_ERROR(ValidateKnocks(request.knocks));
  if (request.request_id.size() > kMaxRequestIdSize) {
    return absl::InvalidArgumentError(absl::StrCat("consume: request id longer than ", kMaxRequestIdSize, " bytes"));
  }
  ConsumeResult result;
  RETURN_IF_ERROR(Write([&](Writer& w) { return ConsumeInTransaction(w, request, result); }));
  return result;
}

absl::Status SqliteStore::ConsumeInTransaction(Writer& w, const ConsumeRequest& req, ConsumeResult& result) {
  SqliteDb& db = w.db();
  result = ConsumeResult();
  const absl::Time now = TruncateToMicros(clock_.Now());

  // A resend: the first answer again.
  if (!req.request_id.empty()) {
    ASSIGN_OR_RETURN(SqliteStatement s,
                     db.Prepare("SELECT outcome, sequence_id, grant_id, audit_index FROM consumptions "
                                "WHERE agent = ? AND request_id = ?"));
    s.BindAll(req.agent, req.request_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      const std::string outcome = s.Text(0);
      result.outcome = outcome == "won"      ? ConsumeOutcome::kWon
                       : outcome == "replay" ? ConsumeOutcome::kReplay
                                             : ConsumeOutcome::kUnknown;
      result.sequence_id = static_cast<uint64_t>(s.Int(1));
      const uint64_t grant_id = static_cast<uint64_t>(s.Int(2));
      result.audit_index = static_cast<uint64_t>(s.Int(3));
      result.repeated = true;
      if (result.sequence_id != 0) {
        ASSIGN_OR_RETURN(std::optional<Sequence> q, FindSequence(db, result.sequence_id));
        if (q) {
          result.door = q->door;
          result.first_agent = q->consumed_by;
          result.first_source = q->consumed_from;
          result.consumed_at = q->consumed_at;
          if (result.outcome == ConsumeOutcome::kWon) result.revision = q->revision;
        }
      }
      if (grant_id != 0) {
        ASSIGN_OR_RETURN(result.grant, FindGrant(db, grant_id));
      }
      return absl::OkStatus();
    }
  }

  std::optional<Sequence> q;
  if (req.sequence_id != 0) {
    ASSIGN_OR_RETURN(q, FindSequence(db, req.sequence_id));
  } else {
    ASSIGN_OR_RETURN(q, FindSequenceByKnocks(db, KnocksToText(req.knocks)));
  }

  AuditEntry entry;
  entry.time = now;
  entry.who = req.source.ToString();
  entry.where = absl::StrCat("agent:", req.agent);
  // No origin: the consumptions table already answers resends, and an
  // origin would cost one more index page per consumption.
  if (!req.knocks.empty()) entry.details["knocks"] = KnocksToText(req.knocks);
  if (req.sequence_id != 0) entry.details["sequence"] = absl::StrCat(req.sequence_id);
  if (req.offline) entry.details["offline"] = "true";

  // Another bastion's reserve sequence is not valid here: unknown, and it
  // stays unused for its own bastion.
  const bool foreign_reserve = q && !q->reserve_agent.empty() && q->reserve_agent != req.agent;
  if (!q || foreign_reserve) {
    result.outcome = ConsumeOutcome::kUnknown;
    entry.what = "knock.unknown";
    if (foreign_reserve) entry.details["reserve_of"] = q->reserve_agent;
  } else {
    result.sequence_id = q->id;
    result.door = q->door;
    entry.details["door"] = q->door;
    entry.details["sequence"] = absl::StrCat(q->id);
    if (q->state == SequenceState::kBurnt) {
      result.outcome = ConsumeOutcome::kReplay;
      result.first_agent = q->consumed_by;
      result.first_source = q->consumed_from;
      result.consumed_at = q->consumed_at;
      entry.what = "knock.replay";
      entry.details["first_agent"] = q->consumed_by;
    } else {
      result.outcome = ConsumeOutcome::kWon;
      result.first_agent = req.agent;
      result.first_source = req.source;
      result.consumed_at = now;
      result.revision = w.NextRevision();
      entry.what = "knock.opened";
      ASSIGN_OR_RETURN(SqliteStatement s,
                       db.Prepare("UPDATE sequences SET state = 'burnt', consumed_by = ?, consumed_from = ?, "
                                  "consumed_at_us = ?, revision = ? WHERE id = ? AND state != 'burnt'"));
      s.BindAll(req.agent, req.source.ToString(), Micros(now), static_cast<int64_t>(result.revision),
                static_cast<int64_t>(q->id));
      RETURN_IF_ERROR(s.Run());
      if (db.Changes() != 1) return absl::InternalError(absl::StrCat("sequence ", q->id, " changed under the writer"));
      {
        Sequence burnt = *q;
        burnt.state = SequenceState::kBurnt;
        burnt.consumed_by = req.agent;
        burnt.consumed_from = req.source;
        burnt.consumed_at = now;
        burnt.revision = result.revision;
        w.Changed(StoreChange{StoreChange::Kind::kSequenceBurnt, burnt.revision, std::move(burnt), {}, {}});
      }
      if (req.order_grant) {
        ASSIGN_OR_RETURN(std::optional<Door> door, FindDoor(db, q->door));
        if (door) {
          NewGrant g;
          g.door = door->name;
          g.address = req.source;
          g.ports = door->policy.grant_ports;
          g.agent = req.agent;
          g.fleet_wide = door->policy.fleet_wide;
          g.expires_at = now + door->policy.grant_ttl;
          g.sequence_id = q->id;
          g.opened_by = absl::StrCat("agent:", req.agent);
          ASSIGN_OR_RETURN(GrantRecord grant, InsertGrant(db, w.NextRevision(), g, now));
          w.Changed(StoreChange{StoreChange::Kind::kGrantOpened, grant.revision, {}, grant, {}});
          entry.details["grant"] = absl::StrCat(grant.id);
          result.grant = std::move(grant);
        }
      }
    }
  }
  ASSIGN_OR_RETURN(AuditRecord record, w.Append(std::move(entry)));
  result.audit_index = record.index;

  if (!req.request_id.empty()) {
    ASSIGN_OR_RETURN(SqliteStatement s,
                     db.Prepare("INSERT INTO consumptions (agent, request_id, outcome, sequence_id, grant_id, "
                                "audit_index, at_us) VALUES (?, ?, ?, ?, ?, ?, ?)"));
    s.BindAll(req.agent, req.request_id, ConsumeOutcomeName(result.outcome), static_cast<int64_t>(result.sequence_id),
              static_cast<int64_t>(result.grant ? result.grant->id : 0), static_cast<int64_t>(result.audit_index),
              Micros(now));
    RETURN_IF_ERROR(s.Run());
  }
  return absl::OkStatus();
}

// --- Agents -----------------------------------------------------------------

absl::Status SqliteStore::PutAgent(const AgentRecord& a, std::vector<AuditEntry> audit) {
  if (!IsValidName(a.name)) return absl::InvalidArgumentError(absl::StrCat("bad agent name \"", a.name, "\""));
  for (const std::string& host : a.advertise_hosts) {
    if (host.empty() || host.find('\n') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("agent ", a.name, ": bad advertised host"));
    }
  }
  return Write([&](Writer& w) -> absl::Status {
    ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare(absl::StrCat("INSERT OR REPLACE INTO agents (", kAgentColumns,
                                                                    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")));
    s.BindAll(a.name, a.version, int64_t{a.connected ? 1 : 0});
    BindTimeOrNull(s, 4, a.connected_at);
    BindTimeOrNull(s, 5, a.disconnected_at);
    BindTimeOrNull(s, 6, a.last_heartbeat);
    s.Bind(7, static_cast<int64_t>(a.acked_revision))
        .Bind(8, int64_t{a.reserve_left})
        .Bind(9, int64_t{a.spool_depth})
        .Bind(10, a.last_error)
        .Bind(11, absl::StrJoin(a.advertise_hosts, "\n"));
    RETURN_IF_ERROR(s.Run());
    return w.AppendAll(std::move(audit));
  });
}

absl::StatusOr<AgentRecord> SqliteStore::GetAgent(const std::string& name) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s,
                   reader_->Prepare(absl::StrCat("SELECT ", kAgentColumns, " FROM agents WHERE name = ?")));
  s.BindAll(name);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no agent \"", name, "\""));
  return AgentFromRow(s);
}

absl::StatusOr<std::vector<AgentRecord>> SqliteStore::ListAgents() {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s,
                   reader_->Prepare(absl::StrCat("SELECT ", kAgentColumns, " FROM agents ORDER BY name")));
  std::vector<AgentRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return out;
    out.push_back(AgentFromRow(s));
  }
}

absl::Status SqliteStore::AckRevision(const std::string& agent, uint64_t revision) {
  return Write([&](Writer& w) -> absl::Status {
    ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare("UPDATE agents SET acked_revision = "
                                                       "MAX(acked_revision, ?) WHERE name = ?"));
    s.BindAll(static_cast<int64_t>(revision), agent);
    RETURN_IF_ERROR(s.Run());
    if (w.db().Changes() == 0) return absl::NotFoundError(absl::StrCat("no agent \"", agent, "\""));
    return absl::OkStatus();
  });
}

// --- Grants -----------------------------------------------------------------

absl::StatusOr<GrantRecord> SqliteStore::AddGrant(const NewGrant& grant, std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateNewGrant(grant));
  GrantRecord out;
  const absl::Time now = TruncateToMicros(clock_.Now());
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<Door> door, FindDoor(w.db(), grant.door));
    if (!door) return absl::NotFoundError(absl::StrCat("no door \"", grant.door, "\""));
    ASSIGN_OR_RETURN(out, InsertGrant(w.db(), w.NextRevision(), grant, now));
    w.Changed(StoreChange{StoreChange::Kind::kGrantOpened, out.revision, {}, out, {}});
    for (AuditEntry& e : audit) e.details.emplace("grant", absl::StrCat(out.id));
    return w.AppendAll(std::move(audit));
  }));
  return out;
}

absl::StatusOr<GrantRecord> SqliteStore::GetGrant(uint64_t id) {
  absl::MutexLock lock(&read_mu_);
  ReadTransaction txn(*reader_);
  ASSIGN_OR_RETURN(std::optional<GrantRecord> g, FindGrant(*reader_, id));
  if (!g) return absl::NotFoundError(absl::StrCat("no grant ", id));
  return *std::move(g);
}

absl::StatusOr<std::vector<GrantRecord>> SqliteStore::ListGrants(const GrantFilter& filter) {
  std::string sql = absl::StrCat("SELECT ", kGrantColumns, " FROM grants WHERE 1");
  if (filter.open_only) sql += " AND state = 'open'";
  if (filter.address) sql += " AND address = ?1";
  if (!filter.agent.empty()) sql += " AND (agent = ?2 OR fleet_wide = 1)";
  sql += filter.limit > 0 ? " ORDER BY id DESC LIMIT ?3" : " ORDER BY id";
  absl::MutexLock lock(&read_mu_);
  ReadTransaction txn(*reader_);
  std::vector<GrantRecord> out;
  {
    ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare(sql));
    if (filter.address) s.Bind(1, filter.address->ToString());
    if (!filter.agent.empty()) s.Bind(2, filter.agent);
    if (filter.limit > 0) s.Bind(3, static_cast<int64_t>(filter.limit));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ASSIGN_OR_RETURN(GrantRecord g, GrantFromRow(s));
      out.push_back(std::move(g));
    }
  }
  for (GrantRecord& g : out) RETURN_IF_ERROR(LoadGrantAgents(*reader_, g));
  return out;
}

absl::StatusOr<GrantRecord> SqliteStore::CloseGrant(uint64_t id, GrantState state, std::vector<AuditEntry> audit) {
  if (state == GrantState::kOpen) return absl::InvalidArgumentError("closing a grant needs expired or revoked");
  GrantRecord out;
  const absl::Time now = TruncateToMicros(clock_.Now());
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<GrantRecord> g, FindGrant(w.db(), id));
    if (!g) return absl::NotFoundError(absl::StrCat("no grant ", id));
    out = *std::move(g);
    if (out.state != GrantState::kOpen) return absl::OkStatus();
    out.state = state;
    out.closed_at = now;
    out.revision = w.NextRevision();
    ASSIGN_OR_RETURN(SqliteStatement s,
                     w.db().Prepare("UPDATE grants SET state = ?, closed_at_us = ?, revision = ? WHERE id = ?"));
    s.BindAll(GrantStateName(state), Micros(now), static_cast<int64_t>(out.revision), static_cast<int64_t>(id));
    RETURN_IF_ERROR(s.Run());
    w.Changed(StoreChange{StoreChange::Kind::kGrantClosed, out.revision, {}, out, {}});
    for (AuditEntry& e : audit) e.details.emplace("grant", absl::StrCat(id));
    return w.AppendAll(std::move(audit));
  }));
  return out;
}

absl::Status SqliteStore::SetGrantAgentState(uint64_t id, const GrantAgentStatus& status,
                                             std::vector<AuditEntry> audit) {
  if (!IsValidName(status.agent)) return absl::InvalidArgumentError("grant report: bad agent name");
  if (status.state == GrantAgentState::kPending) {
    return absl::InvalidArgumentError("grant report: pending is the absence of a report");
  }
  return Write([&](Writer& w) -> absl::Status {
    {
      ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare("SELECT 1 FROM grants WHERE id = ?"));
      s.BindAll(static_cast<int64_t>(id));
      ASSIGN_OR_RETURN(bool exists, s.Step());
      if (!exists) return absl::NotFoundError(absl::StrCat("no grant ", id));
    }
    ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare("INSERT OR REPLACE INTO grant_agents (grant_id, agent, state, "
                                                       "detail, at_us) VALUES (?, ?, ?, ?, ?)"));
    s.BindAll(static_cast<int64_t>(id), status.agent, GrantAgentStateName(status.state), status.detail,
              Micros(status.at));
    RETURN_IF_ERROR(s.Run());
    return w.AppendAll(std::move(audit));
  });
}

// --- Audit ------------------------------------------------------------------

absl::StatusOr<std::vector<AuditRecord>> SqliteStore::AppendAudit(std::vector<AuditEntry> entries) {
  std::vector<AuditRecord> out;
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.clear();
    for (AuditEntry& e : entries) {
      ASSIGN_OR_RETURN(AuditRecord r, w.Append(e));
      out.push_back(std::move(r));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<AuditRecord>> SqliteStore::ReadAudit(uint64_t from_index, size_t limit) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare(absl::StrCat("SELECT ", kAuditColumns,
                                                                    " FROM audit WHERE idx >= ? ORDER BY idx LIMIT ?")));
  s.BindAll(static_cast<int64_t>(from_index), static_cast<int64_t>(limit));
  std::vector<AuditRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return out;
    ASSIGN_OR_RETURN(AuditRecord r, AuditFromRow(s));
    out.push_back(std::move(r));
  }
}

absl::StatusOr<AuditHead> SqliteStore::GetAuditHead() {
  absl::MutexLock lock(&read_mu_);
  return LoadAuditHead(*reader_);
}

absl::Status SqliteStore::AddCheckpoint(const AuditCheckpoint& c) {
  return Write([&](Writer& w) -> absl::Status {
    ASSIGN_OR_RETURN(SqliteStatement s, w.db().Prepare("INSERT OR REPLACE INTO audit_checkpoints (record_count, "
                                                       "chain_hash, at_us, signature) VALUES (?, ?, ?, ?)"));
    s.Bind(1, static_cast<int64_t>(c.record_count))
        .BindBlob(2, HashBytes(c.chain_hash))
        .Bind(3, Micros(c.time))
        .BindBlob(4, c.signature);
    return s.Run();
  });
}

absl::StatusOr<std::vector<AuditCheckpoint>> SqliteStore::ListCheckpoints() {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare("SELECT record_count, chain_hash, at_us, signature FROM "
                                                       "audit_checkpoints ORDER BY record_count"));
  std::vector<AuditCheckpoint> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return out;
    AuditCheckpoint c;
    c.record_count = static_cast<uint64_t>(s.Int(0));
    const std::string hash = s.Blob(1);
    if (hash.size() != 32) return Corrupt("audit checkpoint", absl::StrCat(c.record_count), "hash is not 32 bytes");
    std::copy(hash.begin(), hash.end(), c.chain_hash.begin());
    c.time = FromMicros(s.Int(2));
    c.signature = s.Blob(3);
    out.push_back(std::move(c));
  }
}

}  // namespace sesame::controller
