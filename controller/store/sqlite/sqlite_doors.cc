// SqliteStore's doors: PutDoor, GetDoor, ListDoors.
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/store/sqlite/internal/sqlite_queries.h"
#include "controller/store/sqlite/internal/sqlite_rows.h"
#include "controller/store/sqlite/internal/sqlite_writer.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "controller/store/store_checks.h"

namespace sesame::controller {

using internal::DoorFromRow;
using internal::FindDoor;
using internal::kDoorColumns;
using internal::PortsToText;
using internal::ProtocolsToText;

absl::StatusOr<Door> SqliteStore::PutDoor(const Door& door, std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateDoorToPut(door));
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
  return s.ReadAll(DoorFromRow);
}

}  // namespace sesame::controller
