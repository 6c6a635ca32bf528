#include "agent/pcap_replay.h"

#include <filesystem>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/capture/pcap_source.h"
#include "agent/match/knock_pipeline.h"
#include "common/json_quote.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

class RecordingSink final : public GrantSink {
 public:
  void Open(Grant grant) override { grants.push_back(std::move(grant)); }
  std::vector<Grant> grants;
};

std::string JsonTime(absl::Time t) {
  return JsonQuote(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone()));
}

// One-time files are consumed during the replay: work on copies.
absl::StatusOr<std::string> PrivateOneTimeCopies(AgentConfig& config) {
  std::string dir;
  for (DoorConfig& door : config.doors) {
    if (door.one_time_sequences.empty()) continue;
    if (dir.empty()) {
      std::string templ = (std::filesystem::temp_directory_path() / "sesame-replay.XXXXXX").string();
      if (mkdtemp(templ.data()) == nullptr) return absl::InternalError("cannot create a temporary directory");
      dir = templ;
    }
    const std::string copy = absl::StrCat(dir, "/", &door - config.doors.data());
    std::error_code ec;
    std::filesystem::copy_file(door.one_time_sequences, copy, ec);
    if (ec) return absl::NotFoundError(absl::StrCat(door.one_time_sequences, ": ", ec.message()));
    door.one_time_sequences = copy;
  }
  return dir;
}

}  // namespace

absl::StatusOr<std::string> ReplayCaptureFile(AgentConfig config, const DaemonOptions& options,
                                              const std::string& capture_path) {
  LogOptions log;
  log.ident = "sesame-agent";
  log.min_level = options.debug ? LogLevel::kDebug : (options.verbose ? LogLevel::kInfo : LogLevel::kWarning);
  RETURN_IF_ERROR(ConfigureLogging(log));

  ASSIGN_OR_RETURN(const std::string copies, PrivateOneTimeCopies(config));
  absl::Cleanup remove_copies = [&copies] {
    std::error_code ignored;
    if (!copies.empty()) std::filesystem::remove_all(copies, ignored);
  };

  RecordingSink sink;
  PipelineOptions po;
  po.verbose = options.verbose;
  po.only_ipv4 = options.only_ipv4;
  ASSIGN_OR_RETURN(std::unique_ptr<KnockPipeline> pipeline, KnockPipeline::Create(config, po, sink));
  // No filter: the matcher sees everything the file holds, as on the wire.
  ASSIGN_OR_RETURN(std::unique_ptr<PcapSource> source, OpenCaptureFile(capture_path));

  absl::Time first = absl::InfiniteFuture();
  absl::Time last = absl::InfinitePast();
  absl::Time next_tick = absl::InfinitePast();
  for (;;) {
    ASSIGN_OR_RETURN(const int frames, source->Dispatch(4096, [&](const Packet& p) {
                       first = std::min(first, p.time);
                       last = std::max(last, p.time);
                       if (p.time >= next_tick) {
                         pipeline->Tick(p.time);
                         next_tick = p.time + absl::Milliseconds(100);
                       }
                       pipeline->OnPacket(p);
                     }));
    if (frames == 0) break;
  }
  if (last != absl::InfinitePast()) pipeline->Tick(last);

  const CaptureStats stats = source->Stats();
  const MatcherCounters& m = pipeline->matcher().counters();
  std::vector<std::string> opened, closed, open_at_end;
  for (const Grant& g : sink.grants) {
    const std::string who = absl::StrCat("\"door\": ", JsonQuote(g.door), ", \"address\": ",
                                         JsonQuote(g.address.ToString()));
    const std::string expires = g.expires == absl::InfiniteFuture() ? "null" : JsonTime(g.expires);
    opened.push_back(absl::StrCat("{", who, ", \"time\": ", JsonTime(g.opened), ", \"expires\": ", expires, "}"));
    if (g.expires <= last) {
      closed.push_back(absl::StrCat("{", who, ", \"time\": ", JsonTime(g.expires), "}"));
    } else {
      open_at_end.push_back(absl::StrCat("{", who, ", \"expires\": ", expires, "}"));
    }
  }
  return absl::StrCat(
      "{\n  \"capture\": ", JsonQuote(capture_path),
      ",\n  \"first_packet\": ", first == absl::InfiniteFuture() ? "null" : JsonTime(first),
      ",\n  \"last_packet\": ", last == absl::InfinitePast() ? "null" : JsonTime(last),
      ",\n  \"frames\": ", stats.frames, ", \"malformed\": ", stats.malformed, ", \"ignored\": ", stats.ignored,
      ",\n  \"knocks\": ", m.knocks, ", \"completions\": ", m.completions, ", \"resets\": ", m.resets,
      ", \"timeouts\": ", m.timeouts, ", \"scanners\": ", m.scanners,
      ",\n  \"opened\": [", absl::StrJoin(opened, ",\n    "), "]",
      ",\n  \"closed\": [", absl::StrJoin(closed, ",\n    "), "]",
      ",\n  \"open_at_end\": [", absl::StrJoin(open_at_end, ",\n    "), "]\n}");
}

}  // namespace sesame
