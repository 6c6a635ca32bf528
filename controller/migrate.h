// `sesame-controller migrate --from sqlite:PATH --to etcd`: copies a
// single controller's SQLite store into the etcd store its configuration
// names (Store = etcd, Etcd_*), for an installation that grows from one
// controller to three. The controller whose store it is must be stopped
// (the SQLite store is locked while open). The audit chain is verified
// with the controller's audit key before the copy and again in etcd after
// it, where a checkpoint is signed over the copied head; ids, revisions
// and every audit record are kept, so agents and saved heads carry on.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "controller/controller_config.h"

namespace sesame::controller {

// from: "sqlite:PATH" (the state directory, or the database file in it);
// to: "etcd". Returns what was copied and verified, for the operator.
absl::StatusOr<std::string> Migrate(const std::string& from, const std::string& to, const ControllerConfig& config);

}  // namespace sesame::controller
