#include "bench/tools/frame_sink.h"

#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sesame::bench {
namespace {

absl::Status ErrnoError(const std::string& what, int error) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(error)));
}

// A full transmit queue is transient: retry for at most this long per frame.
constexpr absl::Duration kRetryBudget = absl::Seconds(1);
constexpr absl::Duration kRetrySleep = absl::Microseconds(50);

}  // namespace

absl::StatusOr<std::unique_ptr<PacketSocketSink>> PacketSocketSink::Open(const std::string& interface,
                                                                         absl::Duration max_duration) {
  if (interface.empty() || interface.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(absl::StrCat("interface name '", interface, "' is not valid"));
  }
  // Protocol 0: this socket receives nothing, it only sends.
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket(AF_PACKET)", errno);
  ifreq request{};
  std::memcpy(request.ifr_name, interface.data(), interface.size());
  if (ioctl(fd, SIOCGIFINDEX, &request) < 0) {
    const int error = errno;
    close(fd);
    return ErrnoError(absl::StrCat("interface ", interface), error);
  }
  const int index = request.ifr_ifindex;
  if (ioctl(fd, SIOCGIFHWADDR, &request) < 0) {
    const int error = errno;
    close(fd);
    return ErrnoError(absl::StrCat("hardware address of ", interface), error);
  }
  MacAddress mac;
  std::memcpy(mac.bytes.data(), request.ifr_hwaddr.sa_data, 6);
  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_ifindex = index;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
    const int error = errno;
    close(fd);
    return ErrnoError(absl::StrCat("bind to ", interface), error);
  }
  return std::unique_ptr<PacketSocketSink>(new PacketSocketSink(fd, mac, max_duration));
}

PacketSocketSink::PacketSocketSink(int fd, MacAddress mac, absl::Duration max_duration)
    : fd_(fd), mac_(mac), start_(absl::Now()), deadline_(start_ + max_duration) {}

PacketSocketSink::~PacketSocketSink() {
  if (fd_ >= 0) close(fd_);
}

absl::Status PacketSocketSink::Emit(std::span<const uint8_t> frame, absl::Duration offset) {
  const absl::Time due = start_ + offset;
  if (due > deadline_) {
    return absl::DeadlineExceededError("the run reached its time bound (--max-seconds)");
  }
  // Sleep, never spin: the sender shares the machine with the daemons it
  // measures. A sleep that overshoots makes the next frames due at once, so
  // the rate holds on average.
  if (const absl::Duration wait = due - absl::Now(); wait > absl::ZeroDuration()) absl::SleepFor(wait);
  return SendNow(frame);
}

absl::Status PacketSocketSink::SendNow(std::span<const uint8_t> frame) {
  absl::Time now = absl::Now();
  if (now > deadline_) {
    return absl::DeadlineExceededError("the run reached its time bound (--max-seconds)");
  }
  const absl::Time give_up = now + kRetryBudget;
  while (true) {
    ssize_t sent = send(fd_, frame.data(), frame.size(), 0);
    if (sent == static_cast<ssize_t>(frame.size())) break;
    if (sent >= 0) return absl::InternalError("short send on packet socket");
    if (errno == EINTR) continue;
    if ((errno != ENOBUFS && errno != EAGAIN) || absl::Now() > give_up) {
      return ErrnoError("send on packet socket", errno);
    }
    ++stats_.retries;
    absl::SleepFor(kRetrySleep);
  }
  ++stats_.frames;
  stats_.bytes += frame.size();
  return absl::OkStatus();
}

absl::Status PacketSocketSink::Finish() { return absl::OkStatus(); }

absl::StatusOr<std::unique_ptr<PcapFileSink>> PcapFileSink::Open(const std::string& path, absl::Time start) {
  pcap_t* pcap = pcap_open_dead(DLT_EN10MB, 65535);
  if (pcap == nullptr) return absl::InternalError("pcap_open_dead failed");
  const std::string partial = path + ".partial";
  pcap_dumper_t* dumper = pcap_dump_open(pcap, partial.c_str());
  if (dumper == nullptr) {
    std::string error = pcap_geterr(pcap);
    pcap_close(pcap);
    return absl::UnavailableError(absl::StrCat("cannot write ", partial, ": ", error));
  }
  return std::unique_ptr<PcapFileSink>(new PcapFileSink(path, pcap, dumper, start));
}

PcapFileSink::PcapFileSink(std::string path, pcap_t* pcap, pcap_dumper_t* dumper, absl::Time start)
    : path_(std::move(path)), pcap_(pcap), dumper_(dumper), start_(start) {}

PcapFileSink::~PcapFileSink() {
  if (dumper_ != nullptr) {  // not finished: drop the partial file
    pcap_dump_close(dumper_);
    std::remove((path_ + ".partial").c_str());
  }
  pcap_close(pcap_);
}

absl::Status PcapFileSink::Emit(std::span<const uint8_t> frame, absl::Duration offset) {
  if (dumper_ == nullptr) return absl::FailedPreconditionError("pcap file already finished");
  const timeval stamp = absl::ToTimeval(start_ + offset);
  pcap_pkthdr header{};
  header.ts = stamp;
  header.caplen = header.len = static_cast<bpf_u_int32>(frame.size());
  pcap_dump(reinterpret_cast<u_char*>(dumper_), &header, frame.data());
  ++stats_.frames;
  stats_.bytes += frame.size();
  return absl::OkStatus();
}

absl::Status PcapFileSink::Finish() {
  if (dumper_ == nullptr) return absl::FailedPreconditionError("pcap file already finished");
  const std::string partial = path_ + ".partial";
  FILE* file = pcap_dump_file(dumper_);
  const bool failed = pcap_dump_flush(dumper_) != 0 || std::ferror(file) != 0;
  const int error = errno;
  pcap_dump_close(dumper_);
  dumper_ = nullptr;
  if (failed) {
    std::remove(partial.c_str());
    return ErrnoError(absl::StrCat("writing ", partial), error);
  }
  if (std::rename(partial.c_str(), path_.c_str()) != 0) {
    const int rename_error = errno;
    std::remove(partial.c_str());
    return ErrnoError(absl::StrCat("renaming ", partial, " to ", path_), rename_error);
  }
  return absl::OkStatus();
}

}  // namespace sesame::bench
