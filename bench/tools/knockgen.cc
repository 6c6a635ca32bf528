// knockgen: crafts knock-shaped packets (any source address, IPv4 or IPv6,
// TCP with chosen flags or UDP) and sends them on an interface through
// AF_PACKET, or writes them to a pcap file for tcpreplay. See --help.
//
// Every mode is bounded: it emits a fixed number of frames (each count has a
// ceiling) and a live run stops at --max-seconds whatever its schedule says.
#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/tools/frame_sink.h"
#include "bench/tools/knock_factory.h"
#include "bench/tools/knock_frame.h"
#include "bench/tools/source_addresses.h"
#include "common/file_util.h"
#include "common/ip_address.h"
#include "common/status_macros.h"

namespace sesame::bench {
namespace {

constexpr uint64_t kMaxClients = 1'000'000;
constexpr uint64_t kMaxFloodFrames = 100'000'000;
constexpr uint64_t kMaxSpoofSources = 10'000'000;
constexpr uint64_t kMaxKnockers = 100'000;
constexpr double kMaxSecondsCeiling = 3600;
constexpr const char* kDefaultFileSourceMac = "02:00:00:00:00:01";

struct CommonOptions {
  std::string interface;
  std::string write_path;
  std::string destination = "";
  std::string destination_mac;
  std::string source_mac;
  std::string tcp_flags = "syn";
  double max_seconds = 60;
  uint64_t seed = 1;
  std::string knockers_out;
};

// What every mode works with once the common options are checked.
struct Run {
  std::unique_ptr<FrameSink> sink;
  std::unique_ptr<KnockFactory> factory;
  IpAddress destination;
  bool live = false;
  absl::Time started;
};

absl::StatusOr<IpAddress> ParseAddress(const std::string& text, const char* option) {
  std::optional<IpAddress> address = IpAddress::Parse(text);
  if (!address) return absl::InvalidArgumentError(absl::StrCat(option, ": '", text, "' is not an IP address"));
  return *address;
}

absl::StatusOr<IpAddress> ParseSourceOfFamily(const std::string& text, const char* option, const IpAddress& destination) {
  ASSIGN_OR_RETURN(IpAddress address, ParseAddress(text, option));
  if (address.family() != destination.family()) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, ": ", text, " is not of the same family as --dst ", destination.ToString()));
  }
  return address;
}

absl::StatusOr<Run> OpenRun(const CommonOptions& options) {
  if (options.interface.empty() == options.write_path.empty()) {
    return absl::InvalidArgumentError("give exactly one of --interface (send) and --write (pcap file)");
  }
  if (!(options.max_seconds > 0 && options.max_seconds <= kMaxSecondsCeiling)) {
    return absl::InvalidArgumentError(absl::StrCat("--max-seconds must be in (0, ", kMaxSecondsCeiling, "]"));
  }
  Run run;
  ASSIGN_OR_RETURN(run.destination, ParseAddress(options.destination, "--dst"));
  std::optional<MacAddress> destination_mac = MacAddress::Parse(options.destination_mac);
  if (!destination_mac) {
    return absl::InvalidArgumentError(absl::StrCat("--dst-mac: '", options.destination_mac, "' is not a MAC address"));
  }
  ASSIGN_OR_RETURN(uint8_t flags, ParseTcpFlags(options.tcp_flags));

  MacAddress source_mac;
  if (!options.interface.empty()) {
    ASSIGN_OR_RETURN(std::unique_ptr<PacketSocketSink> socket,
                     PacketSocketSink::Open(options.interface, absl::Seconds(options.max_seconds)));
    source_mac = socket->interface_mac();
    run.sink = std::move(socket);
    run.live = true;
  } else {
    ASSIGN_OR_RETURN(run.sink, PcapFileSink::Open(options.write_path, absl::Now()));
    source_mac = *MacAddress::Parse(kDefaultFileSourceMac);
  }
  if (!options.source_mac.empty()) {
    std::optional<MacAddress> mac = MacAddress::Parse(options.source_mac);
    if (!mac) return absl::InvalidArgumentError(absl::StrCat("--src-mac: '", options.source_mac, "' is not a MAC address"));
    source_mac = *mac;
  }
  run.factory = std::make_unique<KnockFactory>(KnockTemplate{
      .source_mac = source_mac,
      .destination_mac = *destination_mac,
      .destination = run.destination,
      .tcp_flags = flags,
      .seed = options.seed,
  });
  run.started = absl::Now();
  return run;
}

// Emits one knock; on failure (the time bound, a send error) says how far
// the run got before passing the error on.
absl::Status Emit(Run& run, const IpAddress& source, const Knock& knock, absl::Duration offset) {
  absl::StatusOr<std::span<const uint8_t>> frame = run.factory->Make(source, knock);
  absl::Status status = frame.ok() ? run.sink->Emit(*frame, offset) : frame.status();
  if (!status.ok()) {
    std::fprintf(stderr, "knockgen: stopped after %llu frames\n",
                 static_cast<unsigned long long>(run.sink->stats().frames));
  }
  return status;
}

absl::Status WriteKnockers(const std::string& path, const std::vector<IpAddress>& knockers) {
  if (path.empty()) return absl::OkStatus();
  std::string text;
  for (const IpAddress& address : knockers) absl::StrAppend(&text, address.ToString(), "\n");
  return WriteFileAtomically(path, text);
}

// Closes the sink and prints one summary line; `detail` says what was sent.
absl::Status Finish(Run& run, const std::string& mode, const std::string& detail) {
  RETURN_IF_ERROR(run.sink->Finish());
  const SinkStats stats = run.sink->stats();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - run.started);
  std::printf("knockgen %s: %s; %llu frames, %llu bytes, %.3f s, %.0f frames/s%s\n", mode.c_str(),
              detail.c_str(), static_cast<unsigned long long>(stats.frames),
              static_cast<unsigned long long>(stats.bytes), seconds, seconds > 0 ? stats.frames / seconds : 0.0,
              run.live ? absl::StrFormat(", %llu send retries", static_cast<unsigned long long>(stats.retries)).c_str()
                       : " (written)");
  return absl::OkStatus();
}

// --- sequence -------------------------------------------------------------

struct SequenceOptions {
  std::string source;
  std::string sequence;
  double gap_ms = 10;
};

absl::Status RunSequence(const CommonOptions& common, const SequenceOptions& options) {
  ASSIGN_OR_RETURN(std::vector<Knock> knocks, ParseKnockList(options.sequence));
  ASSIGN_OR_RETURN(Run run, OpenRun(common));
  ASSIGN_OR_RETURN(IpAddress source, ParseSourceOfFamily(options.source, "--src", run.destination));
  const absl::Duration gap = absl::Milliseconds(options.gap_ms);
  for (size_t i = 0; i < knocks.size(); ++i) {
    RETURN_IF_ERROR(Emit(run, source, knocks[i], gap * static_cast<double>(i)));
  }
  RETURN_IF_ERROR(WriteKnockers(common.knockers_out, {source}));
  return Finish(run, "sequence", absl::StrCat(knocks.size(), " knocks from ", source.ToString()));
}

// --- clients --------------------------------------------------------------

struct ClientsOptions {
  uint64_t clients = 30;
  std::string source_base;
  std::string sequence;
  double gap_ms = 10;
  double spacing_us = 0;
};

absl::Status RunClients(const CommonOptions& common, const ClientsOptions& options) {
  if (options.clients == 0 || options.clients > kMaxClients) {
    return absl::InvalidArgumentError(absl::StrCat("--clients must be in 1..", kMaxClients));
  }
  ASSIGN_OR_RETURN(std::vector<Knock> knocks, ParseKnockList(options.sequence));
  ASSIGN_OR_RETURN(Run run, OpenRun(common));
  ASSIGN_OR_RETURN(IpAddress base, ParseSourceOfFamily(options.source_base, "--src-base", run.destination));
  std::vector<IpAddress> sources;
  for (uint64_t c = 0; c < options.clients; ++c) sources.push_back(OffsetAddress(base, c));
  // Round j: every client sends knock j, so all sequences are in progress at
  // the same time.
  const absl::Duration gap = absl::Milliseconds(options.gap_ms);
  const absl::Duration spacing = absl::Microseconds(options.spacing_us);
  for (size_t j = 0; j < knocks.size(); ++j) {
    for (uint64_t c = 0; c < options.clients; ++c) {
      RETURN_IF_ERROR(Emit(run, sources[c], knocks[j], gap * static_cast<double>(j) + spacing * static_cast<double>(c)));
    }
  }
  RETURN_IF_ERROR(WriteKnockers(common.knockers_out, sources));
  return Finish(run, "clients",
                absl::StrCat(options.clients, " clients from ", base.ToString(), ", ", knocks.size(), " rounds"));
}

// --- flood ----------------------------------------------------------------

struct FloodOptions {
  uint64_t count = 1'000'000;
  std::string port;
  std::string random_prefix;
  uint64_t knockers = 100;
  std::string source_base;
  std::string sequence;
  double pps = -1;  // unset: as fast as possible live, 1,000,000 in a file
  uint64_t knock_spacing = 0;
};

absl::Status RunFlood(const CommonOptions& common, const FloodOptions& options) {
  if (options.count == 0 || options.count > kMaxFloodFrames) {
    return absl::InvalidArgumentError(absl::StrCat("--count must be in 1..", kMaxFloodFrames));
  }
  if (options.knockers > kMaxKnockers) {
    return absl::InvalidArgumentError(absl::StrCat("--knockers must be at most ", kMaxKnockers));
  }
  // --port random[:tcp|:udp]: every flood packet to a random port 1..65535,
  // TCP or UDP at random unless one is named.
  std::vector<Knock> flood_knock;
  std::vector<Protocol> random_protocols;
  if (options.port == "random" || options.port == "random:tcp" || options.port == "random:udp") {
    if (options.port != "random:udp") random_protocols.push_back(Protocol::kTcp);
    if (options.port != "random:tcp") random_protocols.push_back(Protocol::kUdp);
  } else {
    ASSIGN_OR_RETURN(flood_knock, ParseKnockList(options.port));
    if (flood_knock.size() != 1) {
      return absl::InvalidArgumentError("--port takes one PORT[:tcp|:udp], or random[:tcp|:udp]");
    }
  }
  std::vector<Knock> knocks;
  if (options.knockers > 0) {
    if (options.sequence.empty() || options.source_base.empty()) {
      return absl::InvalidArgumentError("real knockers (--knockers > 0) need --sequence and --src-base");
    }
    ASSIGN_OR_RETURN(knocks, ParseKnockList(options.sequence));
  }
  ASSIGN_OR_RETURN(Run run, OpenRun(common));

  std::string prefix_text = options.random_prefix;
  if (prefix_text.empty()) prefix_text = run.destination.is_v4() ? "198.18.0.0/15" : "2001:db8:5e5a::/48";
  ASSIGN_OR_RETURN(AddressPrefix prefix, AddressPrefix::Parse(prefix_text));
  if (prefix.network().family() != run.destination.family()) {
    return absl::InvalidArgumentError("--random-prefix is not of the family of --dst");
  }

  std::vector<IpAddress> knockers;
  if (options.knockers > 0) {
    ASSIGN_OR_RETURN(IpAddress base, ParseSourceOfFamily(options.source_base, "--src-base", run.destination));
    for (uint64_t k = 0; k < options.knockers; ++k) {
      knockers.push_back(OffsetAddress(base, k));
      if (prefix.Contains(knockers.back())) {
        return absl::InvalidArgumentError(absl::StrCat("knocker ", knockers.back().ToString(),
                                                       " lies inside --random-prefix ", prefix_text));
      }
    }
  }

  // Knocker k works inside its own band of the flood, band = count / K
  // packets; its knocks are `spacing` flood packets apart.
  struct Insertion {
    uint64_t before;  // emitted just before flood packet number `before`
    uint64_t knocker;
    size_t knock;
  };
  std::vector<Insertion> insertions;
  if (!knockers.empty()) {
    const uint64_t band = options.count / knockers.size();
    const uint64_t spacing = options.knock_spacing > 0 ? options.knock_spacing : std::max<uint64_t>(1, band / knocks.size());
    for (uint64_t k = 0; k < knockers.size(); ++k) {
      for (size_t j = 0; j < knocks.size(); ++j) {
        insertions.push_back({std::min(options.count, k * band + j * spacing), k, j});
      }
    }
    std::stable_sort(insertions.begin(), insertions.end(),
                     [](const Insertion& a, const Insertion& b) { return a.before < b.before; });
  }

  const double pps = options.pps >= 0 ? options.pps : (run.live ? 0 : 1'000'000);
  const absl::Duration interval = pps > 0 ? absl::Seconds(1) / pps : absl::ZeroDuration();
  uint64_t slot = 0;
  size_t next_insertion = 0;
  auto emit_insertions_before = [&](uint64_t flood_index) -> absl::Status {
    while (next_insertion < insertions.size() && insertions[next_insertion].before <= flood_index) {
      const Insertion& insertion = insertions[next_insertion++];
      RETURN_IF_ERROR(Emit(run, knockers[insertion.knocker], knocks[insertion.knock], interval * static_cast<double>(slot++)));
    }
    return absl::OkStatus();
  };
  for (uint64_t i = 0; i < options.count; ++i) {
    RETURN_IF_ERROR(emit_insertions_before(i));
    const IpAddress source = prefix.Random(run.factory->random());
    Knock knock;
    if (random_protocols.empty()) {
      knock = flood_knock[0];
    } else {
      const uint64_t r = run.factory->random()();
      knock = Knock{static_cast<uint16_t>(1 + r % 65535), random_protocols[(r >> 32) % random_protocols.size()]};
    }
    RETURN_IF_ERROR(Emit(run, source, knock, interval * static_cast<double>(slot++)));
  }
  RETURN_IF_ERROR(emit_insertions_before(options.count));
  RETURN_IF_ERROR(WriteKnockers(common.knockers_out, knockers));
  return Finish(run, "flood",
                absl::StrCat(options.count, " flood packets to ",
                             random_protocols.empty() ? KnockToString(flood_knock[0]) : options.port, " from ",
                             prefix_text, ", ", insertions.size(), " knocks from ", knockers.size(), " knockers"));
}

// --- spoof ----------------------------------------------------------------

struct SpoofOptions {
  uint64_t sources = 100'000;
  std::string source_base;
  std::string port;
  double rate = 5000;
};

absl::Status RunSpoof(const CommonOptions& common, const SpoofOptions& options) {
  if (options.sources == 0 || options.sources > kMaxSpoofSources) {
    return absl::InvalidArgumentError(absl::StrCat("--sources must be in 1..", kMaxSpoofSources));
  }
  if (!(options.rate >= 0)) return absl::InvalidArgumentError("--rate must be >= 0 (0: as fast as possible)");
  ASSIGN_OR_RETURN(std::vector<Knock> knock, ParseKnockList(options.port));
  if (knock.size() != 1) return absl::InvalidArgumentError("--port takes one PORT[:tcp|:udp]");
  ASSIGN_OR_RETURN(Run run, OpenRun(common));
  std::string base_text = options.source_base;
  if (base_text.empty()) base_text = run.destination.is_v4() ? "198.18.0.0" : "2001:db8:5e5a::";
  ASSIGN_OR_RETURN(IpAddress base, ParseSourceOfFamily(base_text, "--src-base", run.destination));
  const absl::Duration interval = options.rate > 0 ? absl::Seconds(1) / options.rate : absl::ZeroDuration();
  for (uint64_t i = 0; i < options.sources; ++i) {
    RETURN_IF_ERROR(Emit(run, OffsetAddress(base, i), knock[0], interval * static_cast<double>(i)));
  }
  return Finish(run, "spoof",
                absl::StrCat(options.sources, " sources from ", base.ToString(), " upward, one ",
                             KnockToString(knock[0]), " each"));
}

// --- sweep ----------------------------------------------------------------

struct SweepOptions {
  std::string source;
  uint32_t first = 1;
  uint32_t last = 65535;
  std::string protocol = "tcp";
  double rate = 20000;
};

// A port scan as a scanner sends it: one source, every port of a range in
// increasing order; with --protocol both, TCP then UDP to each port.
absl::Status RunSweep(const CommonOptions& common, const SweepOptions& options) {
  if (options.first < 1 || options.last > 65535 || options.first > options.last) {
    return absl::InvalidArgumentError("--first and --last must satisfy 1 <= first <= last <= 65535");
  }
  std::vector<Protocol> protocols;
  if (options.protocol == "tcp") {
    protocols = {Protocol::kTcp};
  } else if (options.protocol == "udp") {
    protocols = {Protocol::kUdp};
  } else if (options.protocol == "both") {
    protocols = {Protocol::kTcp, Protocol::kUdp};
  } else {
    return absl::InvalidArgumentError("--protocol is tcp, udp or both");
  }
  if (!(options.rate >= 0)) return absl::InvalidArgumentError("--rate must be >= 0 (0: as fast as possible)");
  ASSIGN_OR_RETURN(Run run, OpenRun(common));
  ASSIGN_OR_RETURN(IpAddress source, ParseSourceOfFamily(options.source, "--src", run.destination));
  const absl::Duration interval = options.rate > 0 ? absl::Seconds(1) / options.rate : absl::ZeroDuration();
  uint64_t slot = 0;
  for (uint32_t port = options.first; port <= options.last; ++port) {
    for (const Protocol protocol : protocols) {
      const Knock knock{static_cast<uint16_t>(port), protocol};
      RETURN_IF_ERROR(Emit(run, source, knock, interval * static_cast<double>(slot++)));
    }
  }
  return Finish(run, "sweep",
                absl::StrCat(options.protocol, " ports ", options.first, "-", options.last, " from ",
                             source.ToString()));
}

// --- halfknock ------------------------------------------------------------

struct HalfKnockOptions {
  uint64_t sources = 150'000;
  std::string source_base;
  std::string sequence;
  uint32_t knocks = 2;
  double pps = 136'000;
  uint64_t knockers = 20;
  std::string knocker_base;
  std::string knockers_when = "after";
  double gap_ms = 10;
  double after_ms = 100;
  double spacing_ms = 20;
};

// Spoofed half-finished sequences: --sources distinct sources (consecutive
// from --src-base) each send the first --knocks knocks of --sequence back to
// back, --pps packets per second; real knockers complete the sequence either
// after the flood (one after another) or spread through it.
absl::Status RunHalfKnock(const CommonOptions& common, const HalfKnockOptions& options) {
  if (options.sources == 0 || options.sources > kMaxSpoofSources) {
    return absl::InvalidArgumentError(absl::StrCat("--sources must be in 1..", kMaxSpoofSources));
  }
  if (options.knockers > kMaxKnockers) {
    return absl::InvalidArgumentError(absl::StrCat("--knockers must be at most ", kMaxKnockers));
  }
  if (!(options.pps > 0)) return absl::InvalidArgumentError("--pps must be > 0");
  if (options.knockers_when != "after" && options.knockers_when != "during") {
    return absl::InvalidArgumentError("--knockers-when is after or during");
  }
  if (!(options.gap_ms >= 0 && options.after_ms >= 0 && options.spacing_ms >= 0)) {
    return absl::InvalidArgumentError("--gap-ms, --after-ms and --spacing-ms must be >= 0");
  }
  ASSIGN_OR_RETURN(std::vector<Knock> knocks, ParseKnockList(options.sequence));
  if (options.knocks < 1 || options.knocks >= knocks.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--knocks must be in 1..", knocks.size() - 1, " (fewer than the sequence's knocks)"));
  }
  ASSIGN_OR_RETURN(Run run, OpenRun(common));
  std::string base_text = options.source_base;
  if (base_text.empty()) base_text = run.destination.is_v4() ? "10.0.0.0" : "2001:db8:5e5b::";
  ASSIGN_OR_RETURN(IpAddress base, ParseSourceOfFamily(base_text, "--src-base", run.destination));

  std::vector<IpAddress> knockers;
  std::set<IpAddress> knocker_set;
  if (options.knockers > 0) {
    if (options.knocker_base.empty()) return absl::InvalidArgumentError("real knockers need --knocker-base");
    ASSIGN_OR_RETURN(IpAddress first, ParseSourceOfFamily(options.knocker_base, "--knocker-base", run.destination));
    for (uint64_t k = 0; k < options.knockers; ++k) {
      knockers.push_back(OffsetAddress(first, k));
      knocker_set.insert(knockers.back());
    }
  }

  // Every frame's time, in seconds from the start: flood packet p at p / pps;
  // knocker k's knock j at its start plus j gaps.
  const uint64_t flood_frames = options.sources * options.knocks;
  const double flood_seconds = static_cast<double>(flood_frames) / options.pps;
  struct Timed {
    double at;
    uint64_t knocker;
    size_t knock;
  };
  std::vector<Timed> real;
  for (uint64_t k = 0; k < knockers.size(); ++k) {
    const double start = options.knockers_when == "after"
                             ? flood_seconds + (options.after_ms + options.spacing_ms * static_cast<double>(k)) / 1000
                             : flood_seconds * (static_cast<double>(k) + 0.5) / static_cast<double>(knockers.size());
    for (size_t j = 0; j < knocks.size(); ++j) {
      real.push_back({start + options.gap_ms * static_cast<double>(j) / 1000, k, j});
    }
  }
  std::stable_sort(real.begin(), real.end(), [](const Timed& a, const Timed& b) { return a.at < b.at; });

  size_t next_real = 0;
  auto emit_real_until = [&](double t) -> absl::Status {
    while (next_real < real.size() && real[next_real].at <= t) {
      const Timed& r = real[next_real++];
      RETURN_IF_ERROR(Emit(run, knockers[r.knocker], knocks[r.knock], absl::Seconds(r.at)));
    }
    return absl::OkStatus();
  };
  for (uint64_t p = 0; p < flood_frames; ++p) {
    const double at = static_cast<double>(p) / options.pps;
    RETURN_IF_ERROR(emit_real_until(at));
    const IpAddress source = OffsetAddress(base, p / options.knocks);
    if (knocker_set.contains(source)) {
      return absl::InvalidArgumentError(
          absl::StrCat("knocker ", source.ToString(), " lies inside the flood's sources (--src-base ", base_text, ")"));
    }
    RETURN_IF_ERROR(Emit(run, source, knocks[p % options.knocks], absl::Seconds(at)));
  }
  // Live, the rate the flood actually went out at (the sender may fall behind).
  const double flood_sent_s = absl::ToDoubleSeconds(absl::Now() - run.started);
  RETURN_IF_ERROR(emit_real_until(std::numeric_limits<double>::infinity()));
  RETURN_IF_ERROR(WriteKnockers(common.knockers_out, knockers));
  return Finish(run, "halfknock",
                absl::StrFormat("%d sources from %s each sent %d of %d knocks (%d frames, %.2f s at %.0f pps%s); "
                                "%d knockers %s the flood",
                                options.sources, base.ToString(), options.knocks, knocks.size(), flood_frames,
                                flood_seconds, options.pps,
                                run.live ? absl::StrFormat("; sent in %.2f s: %.0f flood pps", flood_sent_s,
                                                           static_cast<double>(flood_frames) / flood_sent_s)
                                         : "",
                                knockers.size(), options.knockers_when == "after" ? "after" : "inside"));
}

void AddCommonOptions(CLI::App& command, CommonOptions& options) {
  auto* group = command.add_option_group("output and addressing");
  group->add_option("-i,--interface", options.interface, "Send on this interface (AF_PACKET)");
  group->add_option("-w,--write", options.write_path, "Write a pcap file instead of sending");
  group->add_option("--dst", options.destination, "Destination address (IPv4 or IPv6)")->required();
  group->add_option("--dst-mac", options.destination_mac, "Destination MAC, e.g. the daemon side's veth")->required();
  group->add_option("--src-mac", options.source_mac,
                    "Source MAC (default: the interface's; 02:00:00:00:00:01 in a file)");
  group->add_option("--tcp-flags", options.tcp_flags, "Flags of TCP knocks, e.g. syn or syn,ack")
      ->capture_default_str();
  group->add_option("--max-seconds", options.max_seconds, "A live run stops after this long")
      ->capture_default_str();
  group->add_option("--seed", options.seed, "Seed for source ports, sequence numbers and random sources")
      ->capture_default_str();
  group->add_option("--knockers-out", options.knockers_out,
                    "Write the real knockers' addresses here, one a line");
}

}  // namespace
}  // namespace sesame::bench

int main(int argc, char** argv) {
  using namespace sesame::bench;
  CLI::App app{
      "knockgen: send knock-shaped packets from any source address (AF_PACKET), or write them to a pcap\n"
      "file for tcpreplay. Each mode sends a bounded number of frames; a live run also stops at --max-seconds.\n"
      "Example: knockgen sequence -i sx-cl0 --dst 198.19.250.1 --dst-mac 02:5e:5a:00:00:01 \\\n"
      "           --src 198.19.201.1 --sequence 7000:tcp,8000:udp,9000"};
  app.require_subcommand(1);

  CommonOptions common;

  SequenceOptions sequence;
  CLI::App* sequence_command = app.add_subcommand("sequence", "One source knocks a sequence, --gap-ms apart");
  AddCommonOptions(*sequence_command, common);
  sequence_command->add_option("--src", sequence.source, "Source address")->required();
  sequence_command->add_option("--sequence", sequence.sequence, "PORT[:tcp|:udp],... as in knockd.conf")->required();
  sequence_command->add_option("--gap-ms", sequence.gap_ms, "Time between knocks")->capture_default_str();

  ClientsOptions clients;
  CLI::App* clients_command = app.add_subcommand(
      "clients", "N sources knock interleaved: all send knock 1, then all knock 2, ... (round gap --gap-ms)");
  AddCommonOptions(*clients_command, common);
  clients_command->add_option("--clients", clients.clients, "Number of sources (consecutive from --src-base)")
      ->capture_default_str();
  clients_command->add_option("--src-base", clients.source_base, "First source address")->required();
  clients_command->add_option("--sequence", clients.sequence, "PORT[:tcp|:udp],...")->required();
  clients_command->add_option("--gap-ms", clients.gap_ms, "Time between rounds")->capture_default_str();
  clients_command->add_option("--spacing-us", clients.spacing_us, "Time between clients within a round")
      ->capture_default_str();

  FloodOptions flood;
  CLI::App* flood_command = app.add_subcommand(
      "flood",
      "--count knock-shaped packets to --port from random sources in --random-prefix, with --knockers real\n"
      "knockers (consecutive from --src-base) completing --sequence spread through it");
  AddCommonOptions(*flood_command, common);
  flood_command->add_option("--count", flood.count, "Flood packets (real knocks come on top)")->capture_default_str();
  flood_command->add_option("--port", flood.port,
                            "Flood port, PORT[:tcp|:udp], or random[:tcp|:udp] (a random port per packet)")
      ->required();
  flood_command->add_option("--random-prefix", flood.random_prefix,
                            "Spoofed sources (default 198.18.0.0/15 or 2001:db8:5e5a::/48)");
  flood_command->add_option("--knockers", flood.knockers, "Real knockers inside the flood")->capture_default_str();
  flood_command->add_option("--src-base", flood.source_base, "First real knocker's address");
  flood_command->add_option("--sequence", flood.sequence, "The real knockers' sequence");
  flood_command->add_option("--pps", flood.pps,
                            "Packets per second: pacing when live (default: as fast as possible), timestamps in "
                            "a file (default 1000000)");
  flood_command->add_option("--knock-spacing", flood.knock_spacing,
                            "Flood packets between a knocker's knocks (default: spread over its share)");

  SpoofOptions spoof;
  CLI::App* spoof_command =
      app.add_subcommand("spoof", "--sources distinct sources each send one knock to --port, at --rate per second");
  AddCommonOptions(*spoof_command, common);
  spoof_command->add_option("--sources", spoof.sources, "Distinct sources (consecutive)")->capture_default_str();
  spoof_command->add_option("--src-base", spoof.source_base, "First source (default 198.18.0.0 or 2001:db8:5e5a::)");
  spoof_command->add_option("--port", spoof.port, "The knock, PORT[:tcp|:udp] (a door's first)")->required();
  spoof_command->add_option("--rate", spoof.rate, "Sources per second (0: as fast as possible)")
      ->capture_default_str();

  SweepOptions sweep;
  CLI::App* sweep_command =
      app.add_subcommand("sweep", "One source knocks every port from --first to --last in order (a port scan)");
  AddCommonOptions(*sweep_command, common);
  sweep_command->add_option("--src", sweep.source, "Source address")->required();
  sweep_command->add_option("--first", sweep.first, "First port")->capture_default_str();
  sweep_command->add_option("--last", sweep.last, "Last port")->capture_default_str();
  sweep_command->add_option("--protocol", sweep.protocol, "tcp, udp, or both (TCP then UDP to each port)")
      ->capture_default_str();
  sweep_command->add_option("--rate", sweep.rate, "Packets per second (0: as fast as possible)")
      ->capture_default_str();

  HalfKnockOptions half;
  CLI::App* half_command = app.add_subcommand(
      "halfknock",
      "--sources spoofed sources each send the first --knocks knocks of --sequence (a half-finished\n"
      "sequence), --pps packets per second; --knockers real knockers complete it after or inside the flood");
  AddCommonOptions(*half_command, common);
  half_command->add_option("--sources", half.sources, "Spoofed sources (consecutive from --src-base)")
      ->capture_default_str();
  half_command->add_option("--src-base", half.source_base, "First spoofed source (default 10.0.0.0 or 2001:db8:5e5b::)");
  half_command->add_option("--sequence", half.sequence, "The door's sequence, PORT[:tcp|:udp],...")->required();
  half_command->add_option("--knocks", half.knocks, "Leading knocks each spoofed source sends")->capture_default_str();
  half_command->add_option("--pps", half.pps, "Flood packets per second (pacing live, timestamps in a file)")
      ->capture_default_str();
  half_command->add_option("--knockers", half.knockers, "Real knockers (consecutive from --knocker-base)")
      ->capture_default_str();
  half_command->add_option("--knocker-base", half.knocker_base, "First real knocker's address");
  half_command->add_option("--knockers-when", half.knockers_when,
                           "after: one after another once the flood ended; during: spread through it")
      ->capture_default_str();
  half_command->add_option("--gap-ms", half.gap_ms, "Time between a real knocker's knocks")->capture_default_str();
  half_command->add_option("--after-ms", half.after_ms, "after: first knocker starts this long after the flood")
      ->capture_default_str();
  half_command->add_option("--spacing-ms", half.spacing_ms, "after: time between knockers' starts")
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);

  absl::Status status;
  if (*sequence_command) status = RunSequence(common, sequence);
  else if (*clients_command) status = RunClients(common, clients);
  else if (*flood_command) status = RunFlood(common, flood);
  else if (*spoof_command) status = RunSpoof(common, spoof);
  else if (*half_command) status = RunHalfKnock(common, half);
  else status = RunSweep(common, sweep);
  if (!status.ok()) {
    std::fprintf(stderr, "knockgen: %s\n", std::string(status.message()).c_str());
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
