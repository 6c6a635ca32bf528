// The controller's model to and from the wire contract (sesame.v1). What
// arrives from the wire is checked here (ports, protocols, addresses) and
// refused with InvalidArgument naming the field.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/audit/audit_record.h"
#include "controller/model/model.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/repeated_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "sesame/v1/common.pb.h"

namespace grpc {
class Status;
}

namespace sesame::controller {

google::protobuf::Timestamp ToWireTime(absl::Time t);
absl::Time FromWireTime(const google::protobuf::Timestamp& t);
google::protobuf::Duration ToWireDuration(absl::Duration d);
absl::Duration FromWireDuration(const google::protobuf::Duration& d);

v1::Protocol ToWire(Protocol p);
void AppendWireKnocks(const std::vector<Knock>& knocks, google::protobuf::RepeatedPtrField<v1::Knock>* out);
// field names the repeated field in errors ("knocks").
absl::StatusOr<std::vector<Knock>> FromWireKnocks(const google::protobuf::RepeatedPtrField<v1::Knock>& knocks,
                                                  const char* field);

v1::Door ToWire(const Door& door);
v1::SequenceState ToWire(SequenceState state);
absl::StatusOr<SequenceState> FromWire(v1::SequenceState state);
v1::Grant ToWire(const GrantRecord& grant, bool with_agents);
v1::AuditRecord ToWire(const AuditRecord& record);
v1::AuditCheckpoint ToWire(const AuditCheckpoint& checkpoint);
// Checks the sizes of the hash (32 bytes) and the signature (64); field
// names it in errors ("heads[2].checkpoint").
absl::StatusOr<AuditCheckpoint> FromWire(const v1::AuditCheckpoint& checkpoint, std::string_view field);

// absl::StatusCode and grpc::StatusCode share their numbering.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace sesame::controller
