// libFuzzer target for the decoder. The first input byte picks the link type,
// the rest is the captured frame, copied to a buffer of exactly its size so
// the address sanitizer sees any read past caplen.
//
//   CXX=clang++ CC=clang cmake -S . -B build-fuzz -DSESAME_BUILD_FUZZ=ON \
//       -DSESAME_BUILD_TESTS=OFF -DSESAME_BUILD_BENCH=OFF
//   cmake --build build-fuzz --target decoder_fuzz
//   build-fuzz/fuzz/decoder_fuzz -max_total_time=60
#include <pcap/dlt.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "agent/packet/decoder.h"

namespace {

constexpr int kLinkTypes[] = {DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_RAW, DLT_IPV4,
                              DLT_IPV6,   DLT_NULL,      DLT_LOOP,       DLT_IEEE802_11};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int link_type = kLinkTypes[data[0] % (sizeof kLinkTypes / sizeof kLinkTypes[0])];
  const size_t n = size - 1;
  auto frame = std::make_unique<uint8_t[]>(n == 0 ? 1 : n);
  if (n > 0) std::memcpy(frame.get(), data + 1, n);

  sesame::Packet packet;
  const sesame::DecodeResult r =
      sesame::DecodeFrame(link_type, std::span<const uint8_t>(frame.get(), n), absl::UnixEpoch(), &packet);
  // The classes partition the results.
  const bool ok = r == sesame::DecodeResult::kOk;
  if (ok + sesame::IsIgnored(r) + sesame::IsMalformed(r) != 1) std::abort();
  if (ok) {
    if (packet.source.family() != packet.destination.family()) std::abort();
    if (packet.protocol == sesame::Protocol::kUdp && packet.tcp_flags != 0) std::abort();
  }
  return 0;
}
