// Conversions between the wire contract (sesame.v1) and the agent's own
// types. Everything that comes from the controller is checked here once:
// ports in 1..65535, TCP or UDP, canonical addresses, door names of the
// contract's alphabet; what does not pass is an InvalidArgument naming the
// field, never a crash.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/grants/firewall.h"
#include "common/knock.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/repeated_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "sesame/v1/common.pb.h"

namespace sesame {

google::protobuf::Timestamp ToProtoTime(absl::Time t);
// An unset Timestamp (all zero) is the Unix epoch, as protobuf defines it.
absl::Time FromProtoTime(const google::protobuf::Timestamp& t);
google::protobuf::Duration ToProtoDuration(absl::Duration d);
absl::Duration FromProtoDuration(const google::protobuf::Duration& d);

v1::Knock ToProtoKnock(const Knock& knock);
absl::StatusOr<Knock> FromProtoKnock(const v1::Knock& knock);
// 1..max_length knocks (max_length 0: any number, including none).
absl::StatusOr<std::vector<Knock>> FromProtoKnocks(const google::protobuf::RepeatedPtrField<v1::Knock>& knocks,
                                                   size_t max_length);
void AppendProtoKnocks(const std::vector<Knock>& knocks, google::protobuf::RepeatedPtrField<v1::Knock>* out);

// The contract's door names: [A-Za-z0-9_.-]{1,64}.
bool IsValidDoorName(const std::string& name);

// A controller's grant as the grant book applies it: door, address, ports,
// opened, expires. The grant's own ports win; a grant without ports gets
// `default_ports` (its door's grant_ports).
absl::StatusOr<Grant> FromProtoGrant(const v1::Grant& grant, const std::vector<Knock>& default_ports);

}  // namespace sesame
