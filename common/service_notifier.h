// Telling systemd how a daemon is doing, for units of Type=notify with
// WatchdogSec= (sd_notify(3)'s protocol, spoken directly: one datagram to
// the socket named by $NOTIFY_SOCKET; Debian's libsystemd is not needed for
// that). Outside systemd (no $NOTIFY_SOCKET) every call does nothing.
//
// READY=1 tells systemd the daemon does its job (the agent captures, the
// controller's store and listener are up): `systemctl start` returns then,
// and units ordered after it start. WATCHDOG=1, sent from the daemon's main
// loop, tells it the loop still turns: a loop that stops (a hang, a
// deadlock) stops the pings, and systemd kills and restarts the daemon
// after WatchdogSec.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sesame {

class ServiceNotifier {
 public:
  // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and removes them
  // from the environment, so that commands the daemon runs do not inherit
  // them. A WATCHDOG_PID naming another process leaves the watchdog off.
  static ServiceNotifier FromEnvironment();

  bool enabled() const { return !socket_.empty(); }
  // Zero when systemd watches nothing.
  absl::Duration watchdog_interval() const { return watchdog_; }

  // READY=1 with a STATUS= line (`systemctl status` shows it). Once.
  void Ready(absl::string_view status);
  bool ready() const { return ready_; }
  void Status(absl::string_view status);
  void Stopping();
  // WATCHDOG=1 when half the interval has passed since the last one; call
  // it from the main loop at every turn.
  void PingWatchdog(absl::Time now);

 private:
  void Send(absl::string_view message);

  std::string socket_;  // a path, or "@name" for an abstract socket
  absl::Duration watchdog_ = absl::ZeroDuration();
  absl::Time next_ping_ = absl::InfinitePast();
  bool ready_ = false;
  bool failed_ = false;  // logged once
};

}  // namespace sesame
