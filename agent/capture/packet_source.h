// Where packets come from: a live interface or a capture file (--pcap).
// Decoding happens inside the source, so the loop sees only Packets.
#pragma once

#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "agent/packet/packet.h"

namespace sesame {

struct CaptureStats {
  uint64_t frames = 0;         // handed to us by libpcap
  uint64_t kernel_drops = 0;   // pcap_stats ps_drop: the ring was full
  uint64_t interface_drops = 0;
  uint64_t malformed = 0;      // truncated or inconsistent, dropped
  uint64_t ignored = 0;        // well-formed but not TCP/UDP (or a fragment)
};

class PacketSource {
 public:
  virtual ~PacketSource() = default;
  virtual const std::string& name() const = 0;
  // A descriptor that polls readable when packets may be pending; -1 for a
  // file, which is always ready.
  virtual int selectable_fd() const = 0;
  // Delivers up to `max` decoded packets to `sink`. Returns how many frames
  // were read; 0 with ok when nothing is pending (live) — for a file, 0 means
  // the end. An error means the source is broken (interface gone) and must be
  // reopened.
  virtual absl::StatusOr<int> Dispatch(int max, absl::FunctionRef<void(const Packet&)> sink) = 0;
  virtual CaptureStats Stats() = 0;
};

}  // namespace sesame
