// The daemon's captures: one per interface, opened and re-opened with
// backoff, serviced in bounded rounds (the packet path: each frame goes to
// the pipeline and, in managed mode, to the managed matcher), their filter
// kept in step with the doors, and the local addresses knocks must go to.
#include "agent/internal/daemon.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/local_addresses.h"
#include "common/log.h"

namespace sesame::daemon_internal {
namespace {

constexpr absl::Duration kMaxReopenBackoff = absl::Seconds(30);
constexpr int kFramesPerDispatch = 512;

}  // namespace

CaptureStats Add(CaptureStats a, const CaptureStats& b) {
  a.frames += b.frames;
  a.kernel_drops += b.kernel_drops;
  a.interface_drops += b.interface_drops;
  a.malformed += b.malformed;
  a.ignored += b.ignored;
  return a;
}

void Daemon::OpenCaptures(const std::vector<std::string>& interfaces) {
  captures_.clear();
  for (const std::string& name : interfaces) {
    captures_.emplace_back().interface = name;
    TryOpen(captures_.back());
  }
}

void Daemon::TryOpen(Capture& capture) {
  LiveCaptureOptions o;
  o.interface = capture.interface;
  absl::StatusOr<std::unique_ptr<PcapSource>> source = OpenLiveCapture(o);
  if (source.ok()) {
    if (capture.backoff > absl::Seconds(1)) LogInfo(absl::StrCat(capture.interface, ": capture open again"));
    capture.source = std::move(*source);
    capture.backoff = absl::Seconds(1);
    return;
  }
  // Said once per outage at warning level; the retries stay quiet.
  if (capture.backoff == absl::Seconds(1)) {
    LogWarning(absl::StrCat(capture.interface, ": ", source.status().message(), "; retrying"));
  }
  capture.retry_at = absl::Now() + capture.backoff;
  capture.backoff = std::min(capture.backoff * 2, kMaxReopenBackoff);
}

void Daemon::TellSystemdStatus() {
  if (!systemd_.enabled()) return;
  std::vector<std::string> waiting;
  for (const Capture& c : captures_) {
    if (!c.source) waiting.push_back(c.interface);
  }
  std::string status =
      waiting.empty()
          ? absl::StrCat("capturing on ", absl::StrJoin(config_.options.interfaces, ","), ", ", config_.doors.size(),
                         " door(s)")
          : absl::StrCat("waiting for the capture on ", absl::StrJoin(waiting, ","));
  if (status == systemd_status_) return;
  systemd_status_ = status;
  if (waiting.empty()) {
    systemd_.Ready(status);
  } else {
    systemd_.Status(status);
  }
}

void Daemon::ServiceCapture(Capture& capture) {
  // Bounded, so signals and ticks are served even under a flood.
  for (int round = 0; round < 64; ++round) {
    absl::StatusOr<int> n =
        capture.source->Dispatch(kFramesPerDispatch, [this](const Packet& p) {
          pipeline_->OnPacket(p);
          if (managed_) managed_->matcher().OnPacket(p);
        });
    if (!n.ok()) {
      LogWarning(absl::StrCat(capture.interface, ": capture failed (", n.status().message(),
                              "); re-opening when the interface is back"));
      capture.past = Add(capture.past, capture.source->Stats());
      capture.source.reset();
      capture.backoff = absl::Seconds(2);  // the first retry is not the first failure
      capture.retry_at = absl::Now() + absl::Seconds(1);
      return;
    }
    if (*n < kFramesPerDispatch) return;
  }
}

void Daemon::RefreshLocalAddresses() {
  absl::StatusOr<std::vector<IpAddress>> addresses = ListLocalAddresses();
  if (!addresses.ok()) {
    LogWarning(addresses.status().ToString());
    return;
  }
  if (*addresses == local_addresses_) return;
  local_addresses_ = std::move(*addresses);
  pipeline_->SetLocalAddresses(local_addresses_);
  if (managed_) managed_->matcher().SetLocalAddresses(local_addresses_);
}

}  // namespace sesame::daemon_internal
