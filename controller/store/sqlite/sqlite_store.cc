// SqliteStore's life and its whole-fleet reads: Open (the lock, the two
// connections, the schema, the writer's starting revision and audit head),
// shutdown, how writes reach the writer thread, the change listener, and
// the fleet state at one revision. The other members are defined by concern
// in the sqlite_*.cc files beside this one.
#include "controller/store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "controller/store/sqlite/internal/sqlite_queries.h"
#include "controller/store/sqlite/internal/sqlite_rows.h"
#include "controller/store/sqlite/internal/sqlite_writer.h"
#include "controller/store/sqlite/sqlite_schema.h"

namespace sesame::controller {
namespace {

absl::Status CreateFile0600(const std::string& path) {
  const int fd = open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  close(fd);
  return absl::OkStatus();
}

}  // namespace

using internal::DoorFromRow;
using internal::GrantFromRow;
using internal::kDoorColumns;
using internal::kGrantColumns;
using internal::LoadAuditHead;
using internal::LoadRevision;
using internal::ReadTransaction;
using internal::SequenceColumns;
using internal::SequenceFromRow;

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

// --- Changes and revision ---------------------------------------------------

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
    ASSIGN_OR_RETURN(state.doors, s.ReadAll(DoorFromRow));
  }
  {
    ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare(absl::StrCat("SELECT ", SequenceColumns(),
                                                                      " FROM sequences WHERE state != 'burnt'")));
    ASSIGN_OR_RETURN(state.unused_sequences, s.ReadAll(SequenceFromRow));
  }
  {
    ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare(absl::StrCat("SELECT ", kGrantColumns,
                                                                      " FROM grants WHERE state = 'open'")));
    ASSIGN_OR_RETURN(state.open_grants, s.ReadAll(GrantFromRow));
  }
  return state;
}

absl::StatusOr<uint64_t> SqliteStore::CurrentRevision() {
  absl::MutexLock lock(&read_mu_);
  return LoadRevision(*reader_);
}

}  // namespace sesame::controller
