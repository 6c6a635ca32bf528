// What the capture path hands to the matcher: one decoded TCP or UDP packet.
#pragma once

#include <cstdint>

#include "absl/time/time.h"
#include "common/ip_address.h"
#include "common/knock.h"

namespace sesame {

struct Packet {
  absl::Time time;          // capture timestamp
  IpAddress source;
  IpAddress destination;
  Protocol protocol = Protocol::kTcp;
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
  uint8_t tcp_flags = 0;    // zero for UDP
};

}  // namespace sesame
