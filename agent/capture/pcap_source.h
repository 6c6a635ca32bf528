// PacketSources backed by libpcap: a live interface, or a capture file
// (--pcap). One move-only owner of the pcap_t; frames are decoded (decoder.h)
// inside Dispatch, so the caller sees Packets and counters only.
//
// Live capture choices (DESIGN.md, "Facts worth knowing"): TPACKET_V3 with a
// short block timeout (1 ms by default) rather than immediate mode, which
// falls back to TPACKET_V2 at several times the per-packet cost; V3 without a
// timeout could hold a lone knock until a block fills. Measured on a veth
// (2-core VM under load): V3 + 1 ms, lone knock to sink p50 0.93 ms, p99
// about 5 ms, 54 ns of capture CPU per packet in a flood; immediate mode
// p50 10 µs, p99 30 µs, but 1.1 µs per packet. The socket is
// non-blocking (the caller polls selectable_fd()), takes only incoming
// packets (pcap_setdirection(PCAP_D_IN): our own replies never look like
// knocks) and filters in the kernel (capture_filter.h).
//
// A live source breaks when its interface disappears or is taken down:
// Dispatch then returns kUnavailable naming the interface, and keeps
// returning it. The caller re-opens (with backoff); opening an interface that
// does not exist is kNotFound, one that is down kUnavailable.
//
// Not thread-safe: one thread dispatches, reads stats and changes the filter.
#pragma once

#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/capture/capture_filter.h"
#include "agent/capture/packet_source.h"
#include "agent/packet/decoder.h"

namespace sesame {

// Room for a cooked v2 header, four VLAN tags, an IPv6 header with a few
// hundred bytes of extension headers, and TCP with all its options.
inline constexpr int kDefaultSnaplen = 512;
inline constexpr int kDefaultCaptureBufferBytes = 32 << 20;

struct LiveCaptureOptions {
  std::string interface;  // a name, or "any" (Linux cooked v2 capture)
  CaptureScope scope;     // what the kernel lets through; default: every TCP/UDP packet
  int snaplen = kDefaultSnaplen;
  int buffer_bytes = kDefaultCaptureBufferBytes;
  // TPACKET_V3 block timeout: the longest a lone packet waits in the ring.
  // Rounded up to whole milliseconds.
  absl::Duration read_timeout = absl::Milliseconds(1);
  // libpcap's immediate mode (TPACKET_V2): no batching delay at all, at about
  // 0.8 µs per packet. For measurements; the default is off.
  bool immediate = false;
  bool promiscuous = false;  // knocks are addressed to this host
};

class PcapSource final : public PacketSource {
 public:
  ~PcapSource() override;
  PcapSource(const PcapSource&) = delete;
  PcapSource& operator=(const PcapSource&) = delete;

  const std::string& name() const override { return name_; }
  int selectable_fd() const override { return selectable_fd_; }
  absl::StatusOr<int> Dispatch(int max, absl::FunctionRef<void(const Packet&)> sink) override;
  CaptureStats Stats() override;

  int link_type() const { return link_type_; }
  bool is_live() const { return live_; }
  // The libpcap text of the filter in force.
  const std::string& filter_text() const { return filter_text_; }

  // Replaces the filter (in the kernel, for a live capture). Frames already
  // queued are held to the new filter too (libpcap does so for TPACKET_V3).
  // On error the previous filter stays.
  absl::Status SetScope(const CaptureScope& scope);
  // The same with filter text of the caller's own (libpcap syntax).
  absl::Status SetFilterText(const std::string& text);

 private:
  friend absl::StatusOr<std::unique_ptr<PcapSource>> OpenLiveCapture(const LiveCaptureOptions& options);
  friend absl::StatusOr<std::unique_ptr<PcapSource>> OpenCaptureFile(const std::string& path,
                                                                     const CaptureScope& scope);
  struct DispatchContext;

  PcapSource(pcap_t* pcap, std::string name, bool live);
  // Link type and timestamp precision, once the handle is active.
  void ReadHandleProperties();
  static void OnFrame(u_char* user, const pcap_pkthdr* header, const u_char* bytes);
  // For a live capture on a named interface: is it still there and up?
  absl::Status CheckInterface();

  pcap_t* pcap_;
  std::string name_;
  bool live_;
  int link_type_ = 0;
  bool nanosecond_timestamps_ = false;
  int selectable_fd_ = -1;
  int ifindex_ = 0;  // of a named live interface, 0 for "any" and files
  std::string filter_text_;
  absl::Status broken_;  // sticky once the source has failed
  CaptureStats stats_;
};

absl::StatusOr<std::unique_ptr<PcapSource>> OpenLiveCapture(const LiveCaptureOptions& options);

// Replays `path` (pcap or pcapng); packet times are the capture's timestamps.
// Dispatch returns 0 at the end of the file.
absl::StatusOr<std::unique_ptr<PcapSource>> OpenCaptureFile(const std::string& path,
                                                             const CaptureScope& scope = CaptureScope::Everything());

}  // namespace sesame
