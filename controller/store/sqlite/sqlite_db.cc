#include "controller/store/sqlite/sqlite_db.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"

namespace sesame::controller {

SqliteStatement::~SqliteStatement() {
  if (stmt_ == nullptr) return;
  if (in_use_ == nullptr) {
    sqlite3_finalize(stmt_);
    return;
  }
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  *in_use_ = false;
}

SqliteStatement& SqliteStatement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

SqliteStatement& SqliteStatement::Bind(int index, std::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

SqliteStatement& SqliteStatement::BindBlob(int index, std::string_view bytes) {
  sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  return *this;
}

SqliteStatement& SqliteStatement::BindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

absl::StatusOr<bool> SqliteStatement::Step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return db_->Error(absl::StrCat("cannot run \"", sqlite3_sql(stmt_), "\""));
}

absl::Status SqliteStatement::Run() {
  for (;;) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

bool SqliteStatement::IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

int64_t SqliteStatement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string SqliteStatement::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

std::string SqliteStatement::Blob(int column) const {
  const void* blob = sqlite3_column_blob(stmt_, column);
  if (blob == nullptr) return {};
  return std::string(static_cast<const char*>(blob), static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path, const SqliteOpenOptions& options) {
  sqlite3* raw = nullptr;
  const int flags = (options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                    SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close(raw);
    return absl::UnavailableError(absl::StrCat("cannot open database ", path, ": ", message));
  }
  std::unique_ptr<SqliteDb> db(new SqliteDb(raw, path));
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  std::string pragmas = absl::StrCat("PRAGMA foreign_keys = ON; PRAGMA cache_size = -", options.cache_kib, ";");
  if (!options.read_only) {
    if (options.wal_full_sync) pragmas += "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;";
    pragmas += absl::StrCat("PRAGMA wal_autocheckpoint = ", options.wal_autocheckpoint, ";");
  } else {
    pragmas += "PRAGMA query_only = ON;";
  }
  absl::Status status = db->Exec(pragmas);
  if (!status.ok()) return status;
  if (!options.read_only && options.wal_full_sync) {
    // journal_mode answers with the mode it got; a file system without
    // shared memory support would silently keep a rollback journal.
    absl::StatusOr<SqliteStatement> mode = db->Prepare("PRAGMA journal_mode");
    if (!mode.ok()) return mode.status();
    absl::StatusOr<bool> row = mode->Step();
    if (!row.ok()) return row.status();
    if (!*row || mode->Text(0) != "wal") {
      return absl::FailedPreconditionError(absl::StrCat("database ", path, ": WAL journal mode is not available"));
    }
  }
  return db;
}

SqliteDb::~SqliteDb() {
  for (auto& [sql, cached] : statements_) sqlite3_finalize(cached.stmt);
  sqlite3_close(db_);
}

absl::Status SqliteDb::Exec(std::string_view sql) {
  const std::string text(sql);
  char* message = nullptr;
  if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    absl::Status status = Error(absl::StrCat("cannot run \"", text.substr(0, 80), "\""));
    sqlite3_free(message);
    return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<SqliteStatement> SqliteDb::Prepare(std::string_view sql) {
  std::string key(sql);
  auto it = statements_.find(key);
  if (it != statements_.end() && !it->second.in_use) {
    it->second.in_use = true;
    return SqliteStatement(this, it->second.stmt, &it->second.in_use);
  }
  sqlite3_stmt* stmt = nullptr;
  const bool cache = it == statements_.end();
  if (sqlite3_prepare_v3(db_, key.data(), static_cast<int>(key.size()), cache ? SQLITE_PREPARE_PERSISTENT : 0,
                         &stmt, nullptr) != SQLITE_OK) {
    return Error(absl::StrCat("cannot prepare \"", key, "\""));
  }
  if (!cache) return SqliteStatement(this, stmt, nullptr);
  Cached& cached = statements_[std::move(key)];
  cached.stmt = stmt;
  cached.in_use = true;
  return SqliteStatement(this, stmt, &cached.in_use);
}

absl::StatusOr<std::optional<int64_t>> SqliteDb::QueryInt(std::string_view sql) {
  absl::StatusOr<SqliteStatement> stmt = Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<int64_t>();
  return std::optional<int64_t>(stmt->Int(0));
}

int64_t SqliteDb::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }

int SqliteDb::Changes() const { return sqlite3_changes(db_); }

absl::Status SqliteDb::Error(std::string_view what) const {
  const int code = sqlite3_extended_errcode(db_);
  std::string message = absl::StrCat("database ", path_, ": ", std::string(what), ": ", sqlite3_errmsg(db_));
  switch (code & 0xff) {
    case SQLITE_CONSTRAINT: return absl::AlreadyExistsError(message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY: return absl::UnavailableError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return absl::DataLossError(message);
    default: return absl::InternalError(message);
  }
}

}  // namespace sesame::controller
