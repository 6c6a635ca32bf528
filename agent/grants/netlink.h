// A small netlink client for the kernel's connection tables: build one
// request, send it, read every reply up to the end of a dump or the ack.
// Used by session_killer.h (sock_diag and ctnetlink); nothing here knows
// what the messages mean.
#pragma once

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sesame {

// One request: the header, then what Append and the attribute helpers add.
class NetlinkRequest {
 public:
  NetlinkRequest(uint16_t type, uint16_t flags);
  void Append(const void* data, size_t size);
  template <typename T>
  void Append(const T& value) {
    Append(&value, sizeof value);
  }
  // Bytes as they are (an attribute copied from a reply).
  void AppendBytes(std::span<const uint8_t> bytes) { Append(bytes.data(), bytes.size()); }
  // The finished message (its length and sequence number filled in).
  std::span<const uint8_t> Finish(uint32_t sequence);

 private:
  std::vector<uint8_t> bytes_;
};

// The attributes of a message body or of a nested attribute, walked without
// trusting their lengths: one that runs past the end stops the walk.
class NetlinkAttributes {
 public:
  explicit NetlinkAttributes(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  // The first attribute of `type` (flags masked off): its payload, or empty.
  std::span<const uint8_t> Find(uint16_t type) const;
  // The whole attribute (header and payload), to copy into a request.
  std::span<const uint8_t> FindWhole(uint16_t type) const;

 private:
  std::span<const uint8_t> bytes_;
};

class NetlinkSocket {
 public:
  // A socket of `protocol` (NETLINK_SOCK_DIAG, NETLINK_NETFILTER).
  static absl::StatusOr<NetlinkSocket> Open(int protocol);
  NetlinkSocket(NetlinkSocket&& other) noexcept : fd_(other.fd_), sequence_(other.sequence_) { other.fd_ = -1; }
  NetlinkSocket& operator=(NetlinkSocket&&) = delete;
  ~NetlinkSocket();

  // Sends `request` and hands every reply message's body (after its
  // netlink header) to `on_reply`, up to NLMSG_DONE or the ack. An error
  // the kernel answers comes back as absl::ErrnoToStatus of its errno
  // (ENOENT: NotFound, EOPNOTSUPP: Unimplemented, EPERM: PermissionDenied).
  absl::Status Exchange(NetlinkRequest& request,
                        absl::FunctionRef<void(const nlmsghdr&, std::span<const uint8_t>)> on_reply);

 private:
  explicit NetlinkSocket(int fd) : fd_(fd) {}
  int fd_ = -1;
  uint32_t sequence_ = 0;
};

}  // namespace sesame
