// The SQLite store's schema, as an ordered list of migrations. The schema
// version lives in PRAGMA user_version; opening a database applies every
// migration above it, each in its own transaction, and refuses a database
// whose version is newer than this program knows.
//
// Never edit a migration that has shipped: add the next one.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "controller/store/sqlite/sqlite_db.h"

namespace sesame::controller {

struct Migration {
  int version;  // user_version after it, from 1, contiguous
  std::string_view description;
  std::string_view sql;
};

const std::vector<Migration>& SqliteMigrations();
int LatestSchemaVersion();

// Reads the database's version and applies the migrations above it, up to
// target_version (LatestSchemaVersion() unless a test asks for less).
absl::Status MigrateSchema(SqliteDb& db, int target_version);
absl::StatusOr<int> SchemaVersion(SqliteDb& db);

}  // namespace sesame::controller
