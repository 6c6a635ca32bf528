// The host's own addresses: a knock counts only when sent to one of them
// (or to a door's Target). Read with getifaddrs, refreshed periodically.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "common/ip_address.h"

namespace sesame {

absl::StatusOr<std::vector<IpAddress>> ListLocalAddresses();

}  // namespace sesame
