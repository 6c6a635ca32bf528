// LD_PRELOAD shim for daemons that never report libpcap's counters (knockd):
// when the daemon closes a live capture, append its pcap_stats() to the file
// named by $SX_PCAP_STATS_OUT, one line per handle:
//   pid=123 recv=456 drop=7 ifdrop=0
// (recv counts every packet that passed the filter, dropped ones included;
// drop is what the kernel ring had no room for). Nothing else changes.
#include <dlfcn.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace {

// The daemon is loaded: its children (the door's command) must not load the
// shim, and libpcap with it, or every door would open a millisecond later.
// The output path is kept for pcap_close.
const char* stats_path = nullptr;

__attribute__((constructor)) void ForgetPreloadForChildren() {
  stats_path = std::getenv("SX_PCAP_STATS_OUT");
  unsetenv("LD_PRELOAD");
}

}  // namespace

extern "C" void pcap_close(pcap_t* handle) {
  using CloseFunction = void (*)(pcap_t*);
  static CloseFunction real_close = reinterpret_cast<CloseFunction>(dlsym(RTLD_NEXT, "pcap_close"));
  const char* path = stats_path;
  pcap_stat stats{};
  if (handle != nullptr && path != nullptr && pcap_stats(handle, &stats) == 0) {
    if (FILE* out = std::fopen(path, "a")) {
      std::fprintf(out, "pid=%d recv=%u drop=%u ifdrop=%u\n", static_cast<int>(getpid()), stats.ps_recv,
                   stats.ps_drop, stats.ps_ifdrop);
      std::fclose(out);
    }
  }
  if (real_close != nullptr) real_close(handle);
}
