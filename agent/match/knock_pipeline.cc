#include "agent/match/knock_pipeline.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

MatcherDoor ToMatcherDoor(const AgentConfig& config, const DoorConfig& door) {
  MatcherDoor m;
  m.name = door.name;
  m.sequence = door.sequence;
  m.seq_timeout = door.seq_timeout;
  m.tcp_flags_set = door.tcp_flags_set;
  m.tcp_flags_clear = door.tcp_flags_clear;
  m.reset_mode = EffectiveResetMode(config, door);
  m.target = door.target;
  return m;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KnockPipeline>> KnockPipeline::Create(const AgentConfig& config,
                                                                     const PipelineOptions& options,
                                                                     GrantSink& sink) {
  std::vector<Door> doors;
  std::vector<MatcherDoor> matcher_doors;
  for (const DoorConfig& d : config.doors) {
    // A "Managed = yes" section only says how a controller's door is served;
    // its sequences are recognised by agent/managed/.
    if (d.managed) continue;
    Door door{d, std::nullopt};
    MatcherDoor m = ToMatcherDoor(config, d);
    if (!d.one_time_sequences.empty()) {
      ASSIGN_OR_RETURN(OneTimeSequences file, OneTimeSequences::Load(d.one_time_sequences));
      for (const std::string& w : file.warnings()) LogWarning(w);
      m.sequence = file.current();
      m.enabled = !file.exhausted();
      if (file.exhausted()) LogWarning(absl::StrCat(d.name, ": no unused one-time sequence left; door closed"));
      door.one_time.emplace(std::move(file));
    }
    doors.push_back(std::move(door));
    matcher_doors.push_back(std::move(m));
  }
  MatcherOptions mo;
  mo.max_sources = config.options.max_sources;
  mo.scan_threshold = config.options.scan_threshold;
  mo.scan_window = config.options.scan_window;
  mo.scan_ban = config.options.scan_ban;
  mo.report_stages = options.verbose;
  ScannerAggregator::Options scanners;
  scanners.window = config.options.scan_report_window;
  scanners.report_releases = true;
  auto pipeline = std::unique_ptr<KnockPipeline>(
      new KnockPipeline(std::move(doors), options, sink, scanners, config.options.scan_threshold));
  ASSIGN_OR_RETURN(pipeline->matcher_, KnockMatcher::Create(mo, std::move(matcher_doors)));
  KnockPipeline* self = pipeline.get();
  pipeline->matcher_->SetObserver([self](const MatcherEvent& e) { self->OnMatcherEvent(e); });
  return pipeline;
}

void KnockPipeline::OnPacket(const Packet& packet) {
  if (options_.only_ipv4 && packet.source.is_v6()) return;
  const MatchResult result = matcher_->Process(packet);
  if (result.completed.empty()) return;
  result.completed.ForEach([&](size_t door) { Completed(door, packet.source, packet.time); });
}

void KnockPipeline::Completed(size_t index, const IpAddress& source, absl::Time now) {
  Door& door = doors_[index];
  const DoorConfig& c = door.config;
  const bool v6 = source.is_v6();
  if (c.backend == BackendKind::kCommand && (v6 ? c.start_command_6 : c.start_command).empty()) {
    // knockd's rule: a door without a command for this family does nothing.
    LogInfo(absl::StrCat(source.ToString(), ": ", c.name, ": sequence complete, but the door has no ",
                         v6 ? "IPv6" : "IPv4", " command"));
    return;
  }
  if (door.one_time) {
    const std::vector<Knock> used = door.one_time->current();
    const absl::Status consumed = door.one_time->Consume(used);
    // Spent or not, the file decides what is current now.
    SyncOneTime(index);
    if (!consumed.ok()) {
      // Not granted: a sequence that cannot be marked used could be replayed.
      LogError(absl::StrCat(source.ToString(), ": ", c.name, ": cannot mark one-time sequence ",
                            KnocksToString(used), " used, not opening: ", consumed.ToString()));
      return;
    }
  }
  ++opened_;
  LogEvent(LogLevel::kInfo, "knock.opened", {{"source", source.ToString()}, {"door", c.name}},
           absl::StrCat(source.ToString(), ": ", c.name, ": OPEN SESAME"));
  Grant grant;
  grant.door = c.name;
  grant.address = source;
  grant.ports = c.ports;
  grant.opened = now;
  const bool closes = c.backend != BackendKind::kCommand || !(v6 ? c.stop_command_6 : c.stop_command).empty();
  grant.expires = closes ? now + c.cmd_timeout : absl::InfiniteFuture();
  sink_.Open(std::move(grant));
}

void KnockPipeline::SyncOneTime(size_t index) {
  Door& door = doors_[index];
  const OneTimeSequences& file = *door.one_time;
  const bool was_enabled = matcher_->door(index).enabled;
  absl::Status s = absl::OkStatus();
  if (file.exhausted()) {
    s = matcher_->SetDoorEnabled(index, false);
    if (was_enabled) {
      LogWarning(absl::StrCat(door.config.name, ": one-time sequences exhausted (", file.path(),
                              "); door closed until the file gets new lines"));
    }
  } else {
    s = matcher_->SetSequence(index, file.current());
    if (s.ok() && !was_enabled) s = matcher_->SetDoorEnabled(index, true);
    if (s.ok() && !was_enabled) LogInfo(absl::StrCat(door.config.name, ": one-time sequences available again"));
  }
  if (!s.ok()) {
    LogError(absl::StrCat(door.config.name, ": cannot use the next one-time sequence: ", s.ToString()));
    (void)matcher_->SetDoorEnabled(index, false);
  }
}

void KnockPipeline::Tick(absl::Time now) {
  matcher_->Expire(now);
  if (std::optional<ScannerSummary> s = scanners_.TakeDue(now)) LogWarning(ScannerSummaryText(*s));
  if (now - last_file_check_ < absl::Seconds(1)) return;
  last_file_check_ = now;
  for (size_t i = 0; i < doors_.size(); ++i) {
    if (!doors_[i].one_time) continue;
    absl::StatusOr<bool> changed = doors_[i].one_time->ReloadIfChanged();
    if (!changed.ok()) {
      if (matcher_->door(i).enabled) {
        LogError(absl::StrCat(doors_[i].config.name, ": ", changed.status().message(), "; door closed"));
        SyncOneTime(i);
      }
      continue;
    }
    if (*changed) {
      for (const std::string& w : doors_[i].one_time->warnings()) LogWarning(w);
      SyncOneTime(i);
    }
  }
}

void KnockPipeline::OnMatcherEvent(const MatcherEvent& e) {
  const std::string source = e.source.ToString();
  const std::string door = e.door >= 0 ? doors_[e.door].config.name : "";
  switch (e.kind) {
    case MatcherEventKind::kStage:
      LogEvent(LogLevel::kInfo, "knock.stage", {{"source", source}, {"door", door}, {"stage", absl::StrCat(e.stage)}},
               absl::StrCat(source, ": ", door, ": Stage ", e.stage));
      break;
    case MatcherEventKind::kCompleted:
      break;  // logged as OPEN SESAME by Completed()
    case MatcherEventKind::kTimeout:
      LogEvent(LogLevel::kInfo, "knock.timeout", {{"source", source}, {"door", door}, {"stage", absl::StrCat(e.stage)}},
               absl::StrCat(source, ": ", door, ": sequence timeout (stage ", e.stage, ")"));
      break;
    case MatcherEventKind::kReset:
      LogEvent(LogLevel::kInfo, "knock.reset",
               {{"source", source},
                {"door", door},
                {"stage", absl::StrCat(e.stage)},
                {"knock", KnockToString(e.knock)}},
               absl::StrCat(source, ": ", door, ": wrong knock ", KnockToString(e.knock), " at stage ", e.stage,
                            ", sequence reset"));
      break;
    case MatcherEventKind::kScannerFlagged:
      if (scanners_.Flagged(e.source, e.time, static_cast<uint64_t>(scan_threshold_)) !=
          ScannerAggregator::Verdict::kReportNow) {
        break;  // in the window's summary line
      }
      LogEvent(LogLevel::kWarning, "scanner.flagged", {{"source", source}},
               absl::StrCat(source,
                            ": knocks like a scanner (many distinct wrong ports); reported once while it goes on"));
      break;
    case MatcherEventKind::kScannerReleased:
      if (scanners_.Released(e.source, e.time, e.ignored_packets) != ScannerAggregator::Verdict::kReportNow) break;
      LogInfo(absl::StrCat(source, ": scanning stopped (", e.ignored_packets,
                           " packets while marked as a scanner)"));
      break;
  }
}

}  // namespace sesame
