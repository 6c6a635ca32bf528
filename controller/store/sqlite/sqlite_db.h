// A thin owner of one SQLite connection: open with the pragmas the store
// relies on, run SQL, and cached prepared statements. One connection is used
// by one thread at a time (the caller serialises); errors are absl::Status
// carrying SQLite's message and the database path.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/status/statusor.h"

struct sqlite3;
struct sqlite3_stmt;

namespace sesame::controller {

class SqliteDb;

// A prepared statement borrowed from the connection's cache; reset and its
// bindings cleared when the handle goes away. Preparing the same SQL while a
// handle to it is alive gives a separate, uncached statement.
class SqliteStatement {
 public:
  SqliteStatement(SqliteStatement&& other) noexcept
      : db_(other.db_), stmt_(other.stmt_), in_use_(other.in_use_) {
    other.stmt_ = nullptr;
  }
  SqliteStatement& operator=(SqliteStatement&&) = delete;
  ~SqliteStatement();

  // Parameters are numbered from 1.
  SqliteStatement& Bind(int index, int64_t value);
  SqliteStatement& Bind(int index, std::string_view text);
  SqliteStatement& Bind(int index, const char* text) { return Bind(index, std::string_view(text)); }
  SqliteStatement& Bind(int index, const std::string& text) { return Bind(index, std::string_view(text)); }
  SqliteStatement& BindBlob(int index, std::string_view bytes);
  SqliteStatement& BindNull(int index);
  // Binds every argument in order from parameter 1.
  template <typename... Args>
  SqliteStatement& BindAll(const Args&... args) {
    int i = 0;
    (Bind(++i, args), ...);
    return *this;
  }

  // Advances: true when a row is available, false when done.
  absl::StatusOr<bool> Step();
  // Steps to completion, for statements that return no rows.
  absl::Status Run();
  // Steps to completion, reading each row with from_row(*this), which
  // returns an absl::StatusOr<T>: every row, or the first error.
  template <typename FromRow>
  auto ReadAll(FromRow from_row)
      -> absl::StatusOr<std::vector<typename std::invoke_result_t<FromRow, SqliteStatement&>::value_type>> {
    std::vector<typename std::invoke_result_t<FromRow, SqliteStatement&>::value_type> rows;
    for (;;) {
      absl::StatusOr<bool> row = Step();
      if (!row.ok()) return row.status();
      if (!*row) return rows;
      auto value = from_row(*this);
      if (!value.ok()) return value.status();
      rows.push_back(*std::move(value));
    }
  }

  // Columns are numbered from 0.
  bool IsNull(int column) const;
  int64_t Int(int column) const;
  std::string Text(int column) const;
  std::string Blob(int column) const;

 private:
  friend class SqliteDb;
  SqliteStatement(SqliteDb* db, sqlite3_stmt* stmt, bool* in_use) : db_(db), stmt_(stmt), in_use_(in_use) {}
  SqliteDb* db_;
  sqlite3_stmt* stmt_;
  bool* in_use_;  // the cache's flag; nullptr for an uncached statement

};

struct SqliteOpenOptions {
  bool read_only = false;
  // WAL with synchronous=FULL: a commit is on disk when it returns.
  bool wal_full_sync = true;
  int busy_timeout_ms = 10000;
  // WAL pages after which a commit also checkpoints (SQLite's default
  // 1000); 0 disables automatic checkpoints.
  int wal_autocheckpoint = 1000;
  // Page cache per connection, KiB.
  int cache_kib = 2000;
};

class SqliteDb {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path, const SqliteOpenOptions& options);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Runs one or more statements that return no rows.
  absl::Status Exec(std::string_view sql);
  // A cached prepared statement for sql (a single statement).
  absl::StatusOr<SqliteStatement> Prepare(std::string_view sql);

  // The first column of the first row of a query, or nullopt without a row.
  absl::StatusOr<std::optional<int64_t>> QueryInt(std::string_view sql);

  int64_t LastInsertRowId() const;
  int Changes() const;
  const std::string& path() const { return path_; }

  // An error status for the last failure on this connection.
  absl::Status Error(std::string_view what) const;

 private:
  SqliteDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
  struct Cached {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  // node_hash_map: the in_use flags must not move.
  absl::node_hash_map<std::string, Cached> statements_;
};

}  // namespace sesame::controller
