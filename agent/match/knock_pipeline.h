// From decoded packets to grants: the matcher recognises sequences, the
// pipeline applies the door's rules (one-time sequences, IPv6 commands,
// cmd_timeout) and hands each grant to a GrantSink. Single-threaded, driven
// by packet timestamps and Tick(), so live capture and --pcap replay run the
// same code. Scanners are logged through a ScannerAggregator
// (ScanReportWindow): the first of a window and the first whose mark ended
// get a line each, the rest one summary line when Tick finds the window
// over, so a spoofed flood writes a few lines a minute.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/config/config.h"
#include "agent/grants/grant_manager.h"
#include "agent/match/matcher.h"
#include "agent/match/one_time_sequences.h"
#include "agent/match/scanner_aggregator.h"

namespace sesame {

struct PipelineOptions {
  bool verbose = false;    // log every stage (knockd -v)
  bool only_ipv4 = false;  // knockd -4
};

class KnockPipeline {
 public:
  // Loads each door's one-time file; "Managed = yes" sections are not doors
  // here (agent/managed/ matches those). `sink` must outlive the pipeline.
  static absl::StatusOr<std::unique_ptr<KnockPipeline>> Create(const AgentConfig& config,
                                                               const PipelineOptions& options, GrantSink& sink);

  void OnPacket(const Packet& packet);
  // Periodic work at `now`: timeouts, one-time files changed on disk.
  void Tick(absl::Time now);
  void SetLocalAddresses(const std::vector<IpAddress>& addresses) { matcher_->SetLocalAddresses(addresses); }

  const KnockMatcher& matcher() const { return *matcher_; }
  uint64_t opened() const { return opened_; }

 private:
  struct Door {
    DoorConfig config;
    std::optional<OneTimeSequences> one_time;
  };

  KnockPipeline(std::vector<Door> doors, const PipelineOptions& options, GrantSink& sink,
                const ScannerAggregator::Options& scanners, int scan_threshold)
      : doors_(std::move(doors)),
        options_(options),
        sink_(sink),
        scanners_(scanners),
        scan_threshold_(scan_threshold) {}

  void Completed(size_t door, const IpAddress& source, absl::Time now);
  // After a one-time file changed (used or edited): the matcher follows it.
  void SyncOneTime(size_t door);
  void OnMatcherEvent(const MatcherEvent& event);

  std::vector<Door> doors_;
  PipelineOptions options_;
  GrantSink& sink_;
  std::unique_ptr<KnockMatcher> matcher_;
  ScannerAggregator scanners_;  // what the log says about scanners
  int scan_threshold_ = 0;      // wrong knocks that flag a source
  absl::Time last_file_check_ = absl::InfinitePast();
  uint64_t opened_ = 0;
};

}  // namespace sesame
