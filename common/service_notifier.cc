#include "common/service_notifier.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

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

ServiceNotifier::ServiceNotifier(ServiceNotifier&& other) noexcept { *this = std::move(other); }

ServiceNotifier& ServiceNotifier::operator=(ServiceNotifier&& other) noexcept {
  if (this == &other) return *this;
  if (fd_ >= 0) close(fd_);
  socket_ = std::move(other.socket_);
  watchdog_ = other.watchdog_;
  next_ping_ = other.next_ping_;
  ready_ = other.ready_;
  failed_ = other.failed_;
  fd_ = std::exchange(other.fd_, -1);
  other.socket_.clear();
  return *this;
}

ServiceNotifier::~ServiceNotifier() {
  if (fd_ >= 0) close(fd_);
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
  if (fd_ < 0) fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0 || sendto(fd_, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&address),
                        length) < 0) {
    if (!failed_) LogWarning(absl::StrCat("cannot notify systemd at ", socket_, ": ", std::strerror(errno)));
    failed_ = true;
    return;
  }
  failed_ = false;
}

}  // namespace sesame
