// The host's own addresses, from its network interfaces (getifaddrs),
// sorted and without duplicates. The agent counts a knock only when it is
// sent to one of them (or to a door's Target) and refreshes them
// periodically; the controller refuses them as a knocker's source.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "common/ip_address.h"

namespace sesame {

absl::StatusOr<std::vector<IpAddress>> ListLocalAddresses();

}  // namespace sesame
