#include "agent/grants/netlink.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sesame {

NetlinkRequest::NetlinkRequest(uint16_t type, uint16_t flags) {
  nlmsghdr header{};
  header.nlmsg_type = type;
  header.nlmsg_flags = flags;
  Append(header);
}

void NetlinkRequest::Append(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  bytes_.insert(bytes_.end(), p, p + size);
  bytes_.resize(NLMSG_ALIGN(bytes_.size()), 0);
}

std::span<const uint8_t> NetlinkRequest::Finish(uint32_t sequence) {
  auto* header = reinterpret_cast<nlmsghdr*>(bytes_.data());
  header->nlmsg_len = static_cast<uint32_t>(bytes_.size());
  header->nlmsg_seq = sequence;
  return bytes_;
}

namespace {

// Calls fn(type, whole attribute, payload) for each well-formed attribute.
template <typename Fn>
void ForEachAttribute(std::span<const uint8_t> bytes, Fn fn) {
  size_t at = 0;
  while (at + NLA_HDRLEN <= bytes.size()) {
    nlattr a;
    std::memcpy(&a, bytes.data() + at, sizeof a);
    if (a.nla_len < NLA_HDRLEN || at + a.nla_len > bytes.size()) return;
    const std::span<const uint8_t> whole = bytes.subspan(at, a.nla_len);
    if (fn(static_cast<uint16_t>(a.nla_type & NLA_TYPE_MASK), whole, whole.subspan(NLA_HDRLEN))) return;
    at += NLA_ALIGN(a.nla_len);
  }
}

}  // namespace

std::span<const uint8_t> NetlinkAttributes::Find(uint16_t type) const {
  const std::span<const uint8_t> whole = FindWhole(type);
  return whole.empty() ? whole : whole.subspan(NLA_HDRLEN);
}

std::span<const uint8_t> NetlinkAttributes::FindWhole(uint16_t type) const {
  std::span<const uint8_t> found;
  ForEachAttribute(bytes_, [&](uint16_t t, std::span<const uint8_t> whole, std::span<const uint8_t>) {
    if (t != type) return false;
    found = whole;
    return true;
  });
  return found;
}

absl::StatusOr<NetlinkSocket> NetlinkSocket::Open(int protocol) {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("netlink socket (protocol ", protocol, ")"));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    const int error = errno;
    close(fd);
    return absl::ErrnoToStatus(error, "netlink bind");
  }
  // The kernel answers at once; the bound only keeps a caller (the grant
  // worker) from waiting forever on a kernel that never does.
  const timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  return NetlinkSocket(fd);
}

NetlinkSocket::~NetlinkSocket() {
  if (fd_ >= 0) close(fd_);
}

absl::Status NetlinkSocket::Exchange(NetlinkRequest& request,
                                     absl::FunctionRef<void(const nlmsghdr&, std::span<const uint8_t>)> on_reply) {
  const uint32_t sequence = ++sequence_;
  const std::span<const uint8_t> bytes = request.Finish(sequence);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel) < 0) {
    return absl::ErrnoToStatus(errno, "netlink send");
  }
  // Large enough for the kernel's dump batches (it fills up to a page or
  // two of messages per read).
  std::vector<uint8_t> buffer(64 * 1024);
  absl::Status failed;  // the kernel's error, once the exchange is over
  for (;;) {
    const ssize_t n = recv(fd_, buffer.data(), buffer.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "netlink receive");
    }
    size_t at = 0;
    while (at + sizeof(nlmsghdr) <= static_cast<size_t>(n)) {
      nlmsghdr header;
      std::memcpy(&header, buffer.data() + at, sizeof header);
      if (header.nlmsg_len < sizeof header || at + header.nlmsg_len > static_cast<size_t>(n)) {
        return absl::DataLossError("netlink: a reply message runs past what was received");
      }
      const std::span<const uint8_t> body(buffer.data() + at + NLMSG_HDRLEN,
                                          header.nlmsg_len - std::min<size_t>(header.nlmsg_len, NLMSG_HDRLEN));
      at += NLMSG_ALIGN(header.nlmsg_len);
      if (header.nlmsg_seq != sequence) continue;  // an answer to an earlier request
      if (header.nlmsg_type == NLMSG_DONE) return failed;
      if (header.nlmsg_type == NLMSG_ERROR) {
        nlmsgerr e{};
        if (body.size() >= sizeof e) std::memcpy(&e, body.data(), sizeof e);
        if (e.error != 0) failed = absl::ErrnoToStatus(-e.error, "netlink");
        // An error or the ack ends a request that is not a dump; a dump
        // that failed half-way still ends with NLMSG_DONE.
        if (!(header.nlmsg_flags & NLM_F_MULTI)) return failed;
        continue;
      }
      on_reply(header, body);
      if (!(header.nlmsg_flags & NLM_F_MULTI)) return failed;
    }
  }
}

}  // namespace sesame
