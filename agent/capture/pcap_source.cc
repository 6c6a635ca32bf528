#include "agent/capture/pcap_source.h"

#include <net/if.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace sesame {
namespace {

std::string LinkTypeDescription(int link_type) {
  const char* name = pcap_datalink_val_to_name(link_type);
  return absl::StrCat(link_type, " (", name != nullptr ? name : "unknown", ")");
}

// An error of pcap_activate as a Status that names the interface.
absl::Status ActivationError(int code, pcap_t* pcap, const std::string& interface) {
  const std::string where = absl::StrCat("capture on interface '", interface, "'");
  const std::string detail = pcap_geterr(pcap);
  switch (code) {
    case PCAP_ERROR_NO_SUCH_DEVICE:
      return absl::NotFoundError(absl::StrCat(where, ": no such interface (", detail, ")"));
    case PCAP_ERROR_PERM_DENIED:
      return absl::PermissionDeniedError(absl::StrCat(where, ": permission denied, needs CAP_NET_RAW (", detail, ")"));
    case PCAP_ERROR_IFACE_NOT_UP:
      return absl::UnavailableError(absl::StrCat(where, ": the interface is not up"));
    default:
      return absl::UnavailableError(absl::StrCat(where, ": ", pcap_statustostr(code), " (", detail, ")"));
  }
}

}  // namespace

struct PcapSource::DispatchContext {
  PcapSource* source;
  absl::FunctionRef<void(const Packet&)>* sink;
};

PcapSource::PcapSource(pcap_t* pcap, std::string name, bool live)
    : pcap_(pcap), name_(std::move(name)), live_(live) {}

void PcapSource::ReadHandleProperties() {
  link_type_ = pcap_datalink(pcap_);
  nanosecond_timestamps_ = pcap_get_tstamp_precision(pcap_) == PCAP_TSTAMP_PRECISION_NANO;
}

PcapSource::~PcapSource() { pcap_close(pcap_); }

void PcapSource::OnFrame(u_char* user, const pcap_pkthdr* header, const u_char* bytes) {
  auto* context = reinterpret_cast<DispatchContext*>(user);
  PcapSource& self = *context->source;
  ++self.stats_.frames;
  const absl::Time time =
      absl::FromUnixSeconds(header->ts.tv_sec) + (self.nanosecond_timestamps_ ? absl::Nanoseconds(header->ts.tv_usec)
                                                                              : absl::Microseconds(header->ts.tv_usec));
  Packet packet;
  const DecodeResult result =
      DecodeFrame(self.link_type_, std::span<const uint8_t>(bytes, header->caplen), time, &packet);
  if (result == DecodeResult::kOk) {
    (*context->sink)(packet);
  } else if (IsMalformed(result)) {
    ++self.stats_.malformed;
  } else {
    ++self.stats_.ignored;
  }
}

absl::StatusOr<int> PcapSource::Dispatch(int max, absl::FunctionRef<void(const Packet&)> sink) {
  if (!broken_.ok()) return broken_;
  DispatchContext context{this, &sink};
  const int n = pcap_dispatch(pcap_, max, &PcapSource::OnFrame, reinterpret_cast<u_char*>(&context));
  if (n == PCAP_ERROR) {
    const std::string detail = pcap_geterr(pcap_);
    broken_ = live_ ? absl::UnavailableError(absl::StrCat("capture on interface '", name_, "': ", detail))
                    : absl::DataLossError(absl::StrCat(name_, ": ", detail));
    return broken_;
  }
  if (n == PCAP_ERROR_BREAK) return 0;
  // libpcap reports a deleted interface itself, but an interface taken down
  // only wakes the poller once and then stays silent: look when idle.
  if (n == 0 && live_ && ifindex_ != 0) {
    broken_ = CheckInterface();
    if (!broken_.ok()) return broken_;
  }
  return n;
}

absl::Status PcapSource::CheckInterface() {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name_.c_str(), IFNAMSIZ - 1);
  // Packet sockets answer the interface ioctls like inet sockets do.
  if (ioctl(selectable_fd_, SIOCGIFINDEX, &ifr) != 0 || ifr.ifr_ifindex != ifindex_) {
    return absl::UnavailableError(absl::StrCat("capture on interface '", name_, "': the interface disappeared"));
  }
  if (ioctl(selectable_fd_, SIOCGIFFLAGS, &ifr) != 0) {
    return absl::UnavailableError(
        absl::StrCat("capture on interface '", name_, "': cannot read its flags: ", std::strerror(errno)));
  }
  if ((ifr.ifr_flags & IFF_UP) == 0) {
    return absl::UnavailableError(absl::StrCat("capture on interface '", name_, "': the interface went down"));
  }
  return absl::OkStatus();
}

CaptureStats PcapSource::Stats() {
  if (live_ && broken_.ok()) {
    pcap_stat ps{};
    if (pcap_stats(pcap_, &ps) == 0) {
      stats_.kernel_drops = ps.ps_drop;
      stats_.interface_drops = ps.ps_ifdrop;
    }
  }
  return stats_;
}

absl::Status PcapSource::SetScope(const CaptureScope& scope) {
  return SetFilterText(CaptureFilterText(scope, link_type_));
}

absl::Status PcapSource::SetFilterText(const std::string& text) {
  bpf_program program{};
  if (pcap_compile(pcap_, &program, text.c_str(), /*optimize=*/1, PCAP_NETMASK_UNKNOWN) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": capture filter \"", text, "\" does not compile: ", pcap_geterr(pcap_)));
  }
  absl::Cleanup free_program = [&program] { pcap_freecode(&program); };
  if (pcap_setfilter(pcap_, &program) != 0) {
    return absl::InternalError(absl::StrCat(name_, ": cannot install the capture filter: ", pcap_geterr(pcap_)));
  }
  filter_text_ = text;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PcapSource>> OpenLiveCapture(const LiveCaptureOptions& options) {
  if (options.interface.empty()) return absl::InvalidArgumentError("capture: no interface given");
  char errbuf[PCAP_ERRBUF_SIZE] = "";
  pcap_t* pcap = pcap_create(options.interface.c_str(), errbuf);
  if (pcap == nullptr) {
    return absl::UnavailableError(absl::StrCat("capture on interface '", options.interface, "': ", errbuf));
  }
  // Owned by `source` from here on; it closes the handle on every path.
  std::unique_ptr<PcapSource> source(new PcapSource(pcap, options.interface, /*live=*/true));

  const int timeout_ms =
      std::max<int>(1, static_cast<int>(absl::ToInt64Milliseconds(options.read_timeout + absl::Microseconds(999))));
  pcap_set_snaplen(pcap, options.snaplen);
  pcap_set_buffer_size(pcap, options.buffer_bytes);
  pcap_set_timeout(pcap, timeout_ms);
  pcap_set_promisc(pcap, options.promiscuous ? 1 : 0);
  pcap_set_immediate_mode(pcap, options.immediate ? 1 : 0);
  pcap_set_tstamp_precision(pcap, PCAP_TSTAMP_PRECISION_NANO);  // falls back to micro if refused

  const int activated = pcap_activate(pcap);
  if (activated < 0) return ActivationError(activated, pcap, options.interface);
  if (activated > 0) {
    LogWarning(absl::StrCat("capture on interface '", options.interface, "': ", pcap_statustostr(activated), " (",
                            pcap_geterr(pcap), ")"));
  }

  // Cooked v2 on "any" carries the interface index and is the richer form.
  if (pcap_datalink(pcap) == DLT_LINUX_SLL) {
    int* links = nullptr;
    const int count = pcap_list_datalinks(pcap, &links);
    for (int i = 0; i < count; ++i) {
      if (links[i] == DLT_LINUX_SLL2) pcap_set_datalink(pcap, DLT_LINUX_SLL2);
    }
    if (count >= 0) pcap_free_datalinks(links);
  }
  source->ReadHandleProperties();
  if (!IsSupportedLinkType(source->link_type_)) {
    return absl::FailedPreconditionError(absl::StrCat("capture on interface '", options.interface, "': link type ",
                                                      LinkTypeDescription(source->link_type_),
                                                      " is not one the decoder knows"));
  }

  if (pcap_setdirection(pcap, PCAP_D_IN) != 0) {
    return absl::UnavailableError(absl::StrCat("capture on interface '", options.interface,
                                               "': cannot restrict to incoming packets: ", pcap_geterr(pcap)));
  }
  if (pcap_setnonblock(pcap, 1, errbuf) != 0) {
    return absl::UnavailableError(
        absl::StrCat("capture on interface '", options.interface, "': cannot make non-blocking: ", errbuf));
  }
  source->selectable_fd_ = pcap_get_selectable_fd(pcap);
  if (source->selectable_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("capture on interface '", options.interface, "': no selectable fd"));
  }
  if (options.interface != "any") {
    source->ifindex_ = static_cast<int>(if_nametoindex(options.interface.c_str()));
    if (source->ifindex_ == 0) {
      return absl::NotFoundError(
          absl::StrCat("capture on interface '", options.interface, "': no such interface (it just disappeared)"));
    }
  }
  if (absl::Status s = source->SetScope(options.scope); !s.ok()) return s;
  return source;
}

absl::StatusOr<std::unique_ptr<PcapSource>> OpenCaptureFile(const std::string& path, const CaptureScope& scope) {
  char errbuf[PCAP_ERRBUF_SIZE] = "";
  pcap_t* pcap = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (pcap == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read as a capture file: ", errbuf));
  }
  std::unique_ptr<PcapSource> source(new PcapSource(pcap, path, /*live=*/false));
  source->ReadHandleProperties();
  if (!IsSupportedLinkType(source->link_type_)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": link type ", LinkTypeDescription(source->link_type_), " is not one the decoder knows"));
  }
  if (absl::Status s = source->SetScope(scope); !s.ok()) return s;
  return source;
}

}  // namespace sesame
