// sesame-agent: knockd's command line, plus --check-config, --pcap and
// --state-dir. Foreground by default, as knockd.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/agent_daemon.h"
#include "agent/config/config.h"
#include "agent/config_check.h"
#include "agent/pcap_replay.h"

#ifndef SESAME_VERSION
#define SESAME_VERSION "0.1.0"
#endif

namespace {

// Exit codes: 0 fine, 1 runtime failure, 2 bad configuration or usage.
constexpr int kExitFailure = 1;
constexpr int kExitBadConfig = 2;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sesame-agent: recognises port-knock sequences and opens access through the host firewall.\n"
      "Reads knockd.conf unchanged; runs in the foreground unless -d is given."};
  sesame::DaemonOptions options;
  std::vector<std::string> interfaces;
  std::string config_path = "/etc/knockd.conf";
  std::string check_config;
  std::string pcap_file;
  std::string state_dir;
  std::string pid_file;
  std::string log_file;
  bool daemonize = false;
  bool salvage_grants = false;

  app.set_version_flag("-V,--version", "sesame-agent " SESAME_VERSION);
  app.add_option("-i,--interface", interfaces,
                 "interface to listen on (repeat, or a comma list; default: the config's Interface, else eth0)");
  app.add_option("-c,--config", config_path, "configuration file (knockd.conf syntax)")->capture_default_str();
  app.add_flag("-d,--daemon", daemonize, "run in the background");
  app.add_flag("-D,--debug", options.debug, "log debugging messages");
  app.add_flag("-v,--verbose", options.verbose, "log every knock stage");
  app.add_flag("-l,--lookup", options.lookup_names, "resolve host names of knockers in log entries");
  app.add_flag("-4,--only-ip-v4", options.only_ipv4, "ignore IPv6 packets");
  app.add_option("-p,--pidfile", pid_file, "write the process id to this file (overrides PidFile)");
  app.add_option("-g,--logfile", log_file, "log to this file (overrides LogFile)");
  app.add_option("--check-config", check_config,
                 "check a configuration file and exit: 0 when it is fine, else FILE:LINE: message and 2");
  app.add_option("--pcap", pcap_file,
                 "read packets from a capture file instead of an interface, with its timestamps as the clock; "
                 "print a JSON summary of what opened and closed, change nothing, and exit");
  app.add_option("--state-dir", state_dir, "where grants are remembered (overrides StateDir)");
  app.add_flag("--salvage-grants", salvage_grants,
               "start even if the grants file is corrupt: keep the lines that parse, move the file aside");
  CLI11_PARSE(app, argc, argv);

  if (!check_config.empty()) {
    std::vector<std::string> notices;
    const absl::Status status = sesame::CheckConfigFile(check_config, &notices);
    for (const std::string& notice : notices) std::printf("%s\n", notice.c_str());
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
      return kExitBadConfig;
    }
    std::printf("%s: OK\n", check_config.c_str());
    return 0;
  }

  absl::StatusOr<sesame::AgentConfig> config = sesame::LoadConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "sesame-agent: %s\n", std::string(config.status().message()).c_str());
    return kExitBadConfig;
  }
  sesame::ConfigOverrides overrides;
  for (const std::string& list : interfaces) {
    for (absl::string_view name : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
      overrides.interfaces.emplace_back(absl::StripAsciiWhitespace(name));
    }
  }
  overrides.pid_file = pid_file;
  overrides.log_file = log_file;
  overrides.state_dir = state_dir;
  sesame::ApplyOverrides(overrides, *config);
  options.salvage_grants = salvage_grants;

  if (!pcap_file.empty()) {
    absl::StatusOr<std::string> report = sesame::ReplayCaptureFile(*config, options, pcap_file);
    if (!report.ok()) {
      std::fprintf(stderr, "sesame-agent: %s\n", std::string(report.status().message()).c_str());
      return kExitFailure;
    }
    std::cout << *report << std::endl;
    return 0;
  }

  options.daemonize = daemonize;
  const absl::Status status = sesame::RunAgentDaemon(std::move(*config), config_path, overrides, options);
  if (!status.ok()) {
    std::fprintf(stderr, "sesame-agent: %s\n", std::string(status.message()).c_str());
    return absl::IsInvalidArgument(status) ? kExitBadConfig : kExitFailure;
  }
  return 0;
}
