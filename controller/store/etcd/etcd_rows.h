// The controller's model to and from the values EtcdStore keeps in etcd
// (proto/etcd_rows.proto). Decoding checks what it needs to: a value that
// does not parse is DataLoss naming the key, never a crash.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/audit/audit_record.h"
#include "controller/model/model.h"
#include "controller/store/consume_decision.h"
#include "etcd_rows.pb.h"

namespace sesame::controller {

int64_t ToRowMicros(absl::Time t);  // InfinitePast: INT64_MIN
absl::Time FromRowMicros(int64_t us);

store::etcd::DoorRow ToRow(const Door& door);
absl::StatusOr<Door> FromRow(const store::etcd::DoorRow& row);
// The stored state (issued or burnt: "live" is worked out on reading).
store::etcd::SequenceRow ToRow(const Sequence& sequence);
absl::StatusOr<Sequence> FromRow(const store::etcd::SequenceRow& row);
store::etcd::GrantRow ToRow(const GrantRecord& grant);
absl::StatusOr<GrantRecord> FromRow(const store::etcd::GrantRow& row);
store::etcd::AgentRow ToRow(const AgentRecord& agent);
AgentRecord FromRow(const store::etcd::AgentRow& row);
store::etcd::AuditRow ToRow(const AuditRecord& record);
absl::StatusOr<AuditRecord> FromRow(const store::etcd::AuditRow& row);
// The records one transaction appended, as one value.
store::etcd::AuditBatchRow ToRow(const std::vector<AuditRecord>& records);
absl::StatusOr<std::vector<AuditRecord>> FromRow(const store::etcd::AuditBatchRow& row);
store::etcd::CheckpointRow ToRow(const AuditCheckpoint& checkpoint);
absl::StatusOr<AuditCheckpoint> FromRow(const store::etcd::CheckpointRow& row);
store::etcd::ConsumptionRow ToRow(const ConsumptionRecord& record, absl::Time at);
ConsumptionRecord FromRow(const store::etcd::ConsumptionRow& row);

absl::Status RowDataLoss(const std::string& key);

// Parses value as Row; DataLoss naming key when it does not parse.
template <typename Row>
absl::StatusOr<Row> ParseRow(const std::string& key, const std::string& value) {
  Row row;
  if (!row.ParseFromString(value)) return RowDataLoss(key);
  return row;
}

}  // namespace sesame::controller
