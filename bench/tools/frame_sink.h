// Where generated frames go: straight onto an interface through an AF_PACKET
// socket (any source address, no kernel stack involved), or into a pcap file
// for tcpreplay. Both take a schedule: each frame is due at an offset from the
// start of the run.
#pragma once

#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/tools/knock_frame.h"

namespace sesame::bench {

struct SinkStats {
  uint64_t frames = 0;
  uint64_t bytes = 0;
  uint64_t retries = 0;  // live: sends retried after ENOBUFS/EAGAIN (a full queue)
};

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // Delivers `frame`, due `offset` after the run started. A live sink sleeps
  // until then (never sends early; a zero offset means "at once") and returns
  // DeadlineExceeded once the run has lasted longer than its time bound. A
  // file sink stamps the frame with start + offset.
  virtual absl::Status Emit(std::span<const uint8_t> frame, absl::Duration offset) = 0;
  // Flushes and closes; a file sink only makes its file visible here.
  virtual absl::Status Finish() = 0;
  virtual SinkStats stats() const = 0;
};

class PacketSocketSink final : public FrameSink {
 public:
  // Opens an AF_PACKET socket bound to `interface` that only sends. The run's
  // clock starts now; Emit fails once `max_duration` has passed.
  static absl::StatusOr<std::unique_ptr<PacketSocketSink>> Open(const std::string& interface,
                                                                absl::Duration max_duration);
  ~PacketSocketSink() override;

  absl::Status Emit(std::span<const uint8_t> frame, absl::Duration offset) override;
  absl::Status Finish() override;
  SinkStats stats() const override { return stats_; }

  const MacAddress& interface_mac() const { return mac_; }
  // Sends `frame` now, ignoring the schedule (still bounded by the deadline);
  // for probes that time their own sends.
  absl::Status SendNow(std::span<const uint8_t> frame);
  absl::Time start() const { return start_; }

 private:
  PacketSocketSink(int fd, MacAddress mac, absl::Duration max_duration);
  int fd_;
  MacAddress mac_;
  absl::Time start_;
  absl::Time deadline_;
  SinkStats stats_;
};

class PcapFileSink final : public FrameSink {
 public:
  // Writes Ethernet frames to `path` + ".partial", renamed to `path` by
  // Finish(), so a failed run never leaves a truncated capture under the
  // final name. Timestamps start at `start`.
  static absl::StatusOr<std::unique_ptr<PcapFileSink>> Open(const std::string& path, absl::Time start);
  ~PcapFileSink() override;

  absl::Status Emit(std::span<const uint8_t> frame, absl::Duration offset) override;
  absl::Status Finish() override;
  SinkStats stats() const override { return stats_; }

 private:
  PcapFileSink(std::string path, pcap_t* pcap, pcap_dumper_t* dumper, absl::Time start);
  std::string path_;
  pcap_t* pcap_;
  pcap_dumper_t* dumper_;
  absl::Time start_;
  SinkStats stats_;
};

}  // namespace sesame::bench
