// knocklat: knock-to-door-open latency of one or more daemons watching the
// same link. For each trial a fresh source address knocks the sequence; the
// clock starts just before the last knock is sent and stops when the door's
// effect appears: a file named after the source address created in that
// daemon's watched directory (its start command is e.g.
// `/usr/bin/touch DIR/%IP%`), seen through inotify.
//
// Bounded: at most --trials trials (ceiling 100,000), each waiting at most
// --timeout-ms, and the whole run stops at --max-seconds.
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <limits.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/tools/frame_sink.h"
#include "bench/tools/knock_factory.h"
#include "bench/tools/knock_frame.h"
#include "bench/tools/source_addresses.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace sesame::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr uint64_t kMaxTrials = 100'000;

struct Options {
  std::string interface;
  std::string destination;
  std::string destination_mac;
  std::string tcp_flags = "syn";
  std::string sequence;
  std::string source_base;
  uint64_t trials = 200;
  double gap_ms = 2;
  double pause_ms = 20;
  double timeout_ms = 1000;
  double max_seconds = 600;
  uint64_t seed = 1;
  std::vector<std::string> watches;  // NAME=DIR
  std::string raw_out;
};

struct Subject {
  std::string name;
  std::string directory;
  int watch = -1;
  std::vector<double> latencies_ms;  // opened trials only
  uint64_t missed = 0;
};

// Nearest-rank percentile of sorted values.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return NAN;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

class InotifyWatcher {
 public:
  static absl::StatusOr<std::unique_ptr<InotifyWatcher>> Create() {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return absl::UnavailableError(absl::StrCat("inotify_init1: ", std::strerror(errno)));
    return std::unique_ptr<InotifyWatcher>(new InotifyWatcher(fd));
  }
  ~InotifyWatcher() { close(fd_); }

  absl::StatusOr<int> Watch(const std::string& directory) {
    int watch = inotify_add_watch(fd_, directory.c_str(), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR);
    if (watch < 0) return absl::UnavailableError(absl::StrCat("watching ", directory, ": ", std::strerror(errno)));
    return watch;
  }

  // Waits until `deadline` for events; calls on_event(watch, name, time) for
  // each. Returns once `done()` holds or the deadline passes.
  template <typename OnEvent, typename Done>
  absl::Status WaitUntil(SteadyClock::time_point deadline, OnEvent on_event, Done done) {
    alignas(inotify_event) char buffer[16 * (sizeof(inotify_event) + NAME_MAX + 1)];
    while (!done()) {
      const auto now = SteadyClock::now();
      if (now >= deadline) return absl::OkStatus();
      const int timeout_ms =
          static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count());
      pollfd descriptor{fd_, POLLIN, 0};
      const int ready = poll(&descriptor, 1, timeout_ms);
      const auto seen = SteadyClock::now();
      if (ready < 0 && errno != EINTR) return absl::UnavailableError(absl::StrCat("poll: ", std::strerror(errno)));
      if (ready <= 0) continue;
      const ssize_t size = read(fd_, buffer, sizeof(buffer));
      if (size < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return absl::UnavailableError(absl::StrCat("read inotify: ", std::strerror(errno)));
      }
      for (ssize_t offset = 0; offset < size;) {
        const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
        if (event->mask & IN_Q_OVERFLOW) return absl::ResourceExhaustedError("inotify queue overflowed");
        if (event->len > 0) on_event(event->wd, std::string(event->name), seen);
        offset += sizeof(inotify_event) + event->len;
      }
    }
    return absl::OkStatus();
  }

 private:
  explicit InotifyWatcher(int fd) : fd_(fd) {}
  int fd_;
};

absl::Status RunTrials(const Options& options) {
  if (options.trials == 0 || options.trials > kMaxTrials) {
    return absl::InvalidArgumentError(absl::StrCat("--trials must be in 1..", kMaxTrials));
  }
  if (options.watches.empty()) return absl::InvalidArgumentError("give at least one --watch NAME=DIR");
  ASSIGN_OR_RETURN(std::vector<Knock> knocks, ParseKnockList(options.sequence));
  std::optional<IpAddress> destination = IpAddress::Parse(options.destination);
  std::optional<IpAddress> base = IpAddress::Parse(options.source_base);
  std::optional<MacAddress> destination_mac = MacAddress::Parse(options.destination_mac);
  if (!destination || !base || base->family() != destination->family()) {
    return absl::InvalidArgumentError("--dst and --src-base must be addresses of the same family");
  }
  if (!destination_mac) return absl::InvalidArgumentError("--dst-mac is not a MAC address");
  ASSIGN_OR_RETURN(uint8_t flags, ParseTcpFlags(options.tcp_flags));

  ASSIGN_OR_RETURN(std::unique_ptr<InotifyWatcher> watcher, InotifyWatcher::Create());
  std::vector<Subject> subjects;
  std::map<int, size_t> subject_of_watch;
  for (const std::string& watch : options.watches) {
    const size_t equals = watch.find('=');
    if (equals == std::string::npos || equals == 0 || equals + 1 == watch.size()) {
      return absl::InvalidArgumentError(absl::StrCat("--watch '", watch, "': expected NAME=DIR"));
    }
    Subject subject;
    subject.name = watch.substr(0, equals);
    subject.directory = watch.substr(equals + 1);
    ASSIGN_OR_RETURN(subject.watch, watcher->Watch(subject.directory));
    subject_of_watch[subject.watch] = subjects.size();
    subjects.push_back(std::move(subject));
  }

  ASSIGN_OR_RETURN(std::unique_ptr<PacketSocketSink> sink,
                   PacketSocketSink::Open(options.interface, absl::Seconds(options.max_seconds)));
  KnockFactory factory(KnockTemplate{.source_mac = sink->interface_mac(),
                                     .destination_mac = *destination_mac,
                                     .destination = *destination,
                                     .tcp_flags = flags,
                                     .seed = options.seed});

  std::string raw = "trial,source,subject,latency_us\n";
  const auto run_deadline = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                                     std::chrono::duration<double>(options.max_seconds));
  uint64_t trial = 0;
  for (; trial < options.trials && SteadyClock::now() < run_deadline; ++trial) {
    const IpAddress source = OffsetAddress(*base, trial);
    const std::string name = source.ToString();
    for (size_t j = 0; j + 1 < knocks.size(); ++j) {
      ASSIGN_OR_RETURN(std::span<const uint8_t> frame, factory.Make(source, knocks[j]));
      RETURN_IF_ERROR(sink->SendNow(frame));
      absl::SleepFor(absl::Milliseconds(options.gap_ms));
    }
    ASSIGN_OR_RETURN(std::span<const uint8_t> last, factory.Make(source, knocks.back()));
    std::vector<std::optional<double>> latency(subjects.size());
    size_t pending = subjects.size();
    const auto sent = SteadyClock::now();
    RETURN_IF_ERROR(sink->SendNow(last));
    const auto trial_deadline = std::min(
        run_deadline, sent + std::chrono::duration_cast<SteadyClock::duration>(
                                 std::chrono::duration<double, std::milli>(options.timeout_ms)));
    RETURN_IF_ERROR(watcher->WaitUntil(
        trial_deadline,
        [&](int watch, const std::string& file, SteadyClock::time_point seen) {
          auto it = subject_of_watch.find(watch);
          if (it == subject_of_watch.end() || file != name || latency[it->second]) return;
          latency[it->second] = std::chrono::duration<double, std::milli>(seen - sent).count();
          --pending;
        },
        [&] { return pending == 0; }));
    for (size_t s = 0; s < subjects.size(); ++s) {
      if (latency[s]) {
        subjects[s].latencies_ms.push_back(*latency[s]);
        absl::StrAppend(&raw, trial, ",", name, ",", subjects[s].name, ",",
                        absl::StrFormat("%.1f", *latency[s] * 1000), "\n");
      } else {
        ++subjects[s].missed;
        absl::StrAppend(&raw, trial, ",", name, ",", subjects[s].name, ",\n");
      }
    }
    absl::SleepFor(absl::Milliseconds(options.pause_ms));
  }

  if (!options.raw_out.empty()) RETURN_IF_ERROR(WriteFileAtomically(options.raw_out, raw));
  std::printf("%-10s %7s %7s %9s %9s %9s %9s\n", "subject", "trials", "opened", "p50_ms", "p90_ms", "p99_ms",
              "max_ms");
  for (Subject& subject : subjects) {
    std::sort(subject.latencies_ms.begin(), subject.latencies_ms.end());
    const auto& v = subject.latencies_ms;
    std::printf("%-10s %7llu %7zu %9.2f %9.2f %9.2f %9.2f\n", subject.name.c_str(),
                static_cast<unsigned long long>(trial), v.size(), Percentile(v, 50), Percentile(v, 90),
                Percentile(v, 99), v.empty() ? NAN : v.back());
  }
  if (trial < options.trials) {
    std::fprintf(stderr, "knocklat: stopped after %llu of %llu trials (--max-seconds)\n",
                 static_cast<unsigned long long>(trial), static_cast<unsigned long long>(options.trials));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace sesame::bench

int main(int argc, char** argv) {
  using namespace sesame::bench;
  Options options;
  CLI::App app{
      "knocklat: knock-to-door-open latency. Each trial knocks --sequence from a new source (consecutive from\n"
      "--src-base) and times the last knock until a file named after the source appears in each --watch DIR."};
  app.add_option("-i,--interface", options.interface, "Send on this interface (AF_PACKET)")->required();
  app.add_option("--dst", options.destination, "Destination address")->required();
  app.add_option("--dst-mac", options.destination_mac, "Destination MAC")->required();
  app.add_option("--tcp-flags", options.tcp_flags, "Flags of TCP knocks")->capture_default_str();
  app.add_option("--sequence", options.sequence, "PORT[:tcp|:udp],...")->required();
  app.add_option("--src-base", options.source_base, "First trial's source address")->required();
  app.add_option("--trials", options.trials, "Number of trials")->capture_default_str();
  app.add_option("--gap-ms", options.gap_ms, "Time between knocks of a trial")->capture_default_str();
  app.add_option("--pause-ms", options.pause_ms, "Time between trials")->capture_default_str();
  app.add_option("--timeout-ms", options.timeout_ms, "A door not open after this long counts as missed")
      ->capture_default_str();
  app.add_option("--max-seconds", options.max_seconds, "Bound on the whole run")->capture_default_str();
  app.add_option("--seed", options.seed, "Seed for source ports and sequence numbers")->capture_default_str();
  app.add_option("--watch", options.watches, "NAME=DIR: a daemon and the directory its command writes to")
      ->required();
  app.add_option("--raw-out", options.raw_out, "CSV of every trial: trial,source,subject,latency_us");
  CLI11_PARSE(app, argc, argv);

  absl::Status status = RunTrials(options);
  if (!status.ok()) {
    std::fprintf(stderr, "knocklat: %s\n", std::string(status.message()).c_str());
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
