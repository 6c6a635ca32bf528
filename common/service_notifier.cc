#include "common/service_notifier.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace sesame {

ServiceNotifier ServiceNotifier::FromEnvironment() {
  ServiceNotifier n;
  const char* socket = std::getenv("NOTIFY_SOCKET");
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  if (socket != nullptr && (socket[0] == '/' || socket[0] == '@')) n.socket_ = socket;
  uint64_t interval_us = 0;
  int64_t for_pid = 0;
  const bool ours = pid == nullptr || (absl::SimpleAtoi(pid, &for_pid) && for_pid == getpid());
  if (n.enabled() && usec != nullptr && ours && absl::SimpleAtoi(usec, &interval_us) && interval_us > 0) {
    n.watchdog_ = absl::Microseconds(static_cast<int64_t>(interval_us));
  }
  for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) unsetenv(name);
  return n;
}

void ServiceNotifier::Ready(absl::string_view status) {
  if (ready_) return Status(status);
  ready_ = true;
  Send(absl::StrCat("READY=1\nSTATUS=", status));
}

void ServiceNotifier::Status(absl::string_view status) { Send(absl::StrCat("STATUS=", status)); }

void ServiceNotifier::Stopping() { Send("STOPPING=1"); }

void ServiceNotifier::PingWatchdog(absl::Time now) {
  if (watchdog_ == absl::ZeroDuration() || now < next_ping_) return;
  next_ping_ = now + watchdog_ / 2;
  Send("WATCHDOG=1");
}

void ServiceNotifier::Send(absl::string_view message) {
  if (!enabled()) return;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_.size() >= sizeof(address.sun_path)) {
    if (!failed_) LogWarning(absl::StrCat("NOTIFY_SOCKET ", socket_, ": path too long; not telling systemd"));
    failed_ = true;
    return;
  }
  std::memcpy(address.sun_path, socket_.data(), socket_.size());
  if (socket_[0] == '@') address.sun_path[0] = '\0';  // abstract namespace
  const socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size());
  // A socket per message (a few a minute), as sd_notify(3) does: nothing
  // to keep open or hand over.
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const bool sent = fd >= 0 && sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                                      reinterpret_cast<sockaddr*>(&address), length) >= 0;
  const int error = errno;
  if (fd >= 0) close(fd);
  if (!sent && !failed_) LogWarning(absl::StrCat("cannot notify systemd at ", socket_, ": ", std::strerror(error)));
  failed_ = !sent;
}

}  // namespace sesame
