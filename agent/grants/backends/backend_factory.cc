#include "agent/grants/backends/backend_factory.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/grants/backends/command_backend.h"
#include "agent/grants/backends/hosts_allow_backend.h"
#include "agent/grants/backends/nftables_backend.h"
#include "agent/grants/backends/ufw_backend.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

std::string Where(const AgentConfig& config, const DoorConfig& door) {
  return absl::StrCat(config.path.empty() ? "config" : config.path, ":", door.line, ": door [", door.name, "]");
}

absl::Status DoorError(const AgentConfig& config, const DoorConfig& door, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(Where(config, door), ": ", what));
}

// A path that goes into hosts.allow as one pattern: absolute, one word.
bool IsPatternPath(const std::string& path) {
  if (path.empty() || path[0] != '/') return false;
  for (char ch : path) {
    if (absl::ascii_isspace(static_cast<unsigned char>(ch)) || ch == ',' || ch == ':' || ch == '#' ||
        !absl::ascii_isprint(static_cast<unsigned char>(ch))) {
      return false;
    }
  }
  return true;
}

// One daemon name of hosts_access(5), as config.cc accepts it.
bool IsServiceName(const std::string& service) {
  if (service.empty() || service.size() > 64) return false;
  for (char ch : service) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-' && ch != '.' && ch != '@' &&
        ch != '+') {
      return false;
    }
  }
  return true;
}

// The shared resources, built once each.
struct Resources {
  struct Include {
    const DoorConfig* first;
    std::shared_ptr<HostsAllowIncludeFile> file;
  };
  std::map<std::string, Include> include_files;                           // by include file
  std::map<std::string, std::shared_ptr<HostsAllowInlineTable>> inlines;  // by table
  std::map<std::string, std::shared_ptr<NftablesTable>> nft_tables;       // by table name
  std::map<std::string, std::shared_ptr<IptablesChain>> chains;           // by chain name
  std::shared_ptr<UfwRules> ufw;
};

}  // namespace

std::string HostsAllowFileOf(const AgentConfig& config, const DoorConfig& door) {
  if (!door.hosts_allow_file.empty()) return door.hosts_allow_file;
  return door.hosts_allow_form == HostsAllowForm::kInclude ? config.options.state_dir + "/hosts.allow"
                                                           : std::string("/etc/hosts.allow");
}

absl::StatusOr<std::unique_ptr<BackendSet>> BackendSet::Create(const AgentConfig& config, ProcessRunner& runner,
                                                                const Clock& clock, BackendToolPaths tools) {
  std::unique_ptr<BackendSet> set(new BackendSet());
  Resources r;

  // Files named by a door of the other hosts_allow form, to catch one file
  // used both ways.
  std::map<std::string, const DoorConfig*> include_paths, inline_paths;
  for (const DoorConfig& door : config.doors) {
    if (door.backend != BackendKind::kHostsAllow) continue;
    const std::string file = HostsAllowFileOf(config, door);
    (door.hosts_allow_form == HostsAllowForm::kInclude ? include_paths : inline_paths).emplace(file, &door);
  }

  for (const DoorConfig& door : config.doors) {
    if (set->backends_.count(door.name) > 0) return DoorError(config, door, "a door of that name exists already");
    std::unique_ptr<FirewallBackend> backend;
    switch (door.backend) {
      case BackendKind::kCommand: {
        RETURN_IF_ERROR(CommandBackend::Check(door));
        backend = std::make_unique<CommandBackend>(door, runner, clock);
        set->to_prepare_.emplace_back(absl::StrCat("command backend of door [", door.name, "]"), backend.get());
        break;
      }
      case BackendKind::kHostsAllow: {
        if (!IsServiceName(door.hosts_allow_service)) {
          return DoorError(config, door, absl::StrCat("HostsAllow_Service \"", door.hosts_allow_service,
                                                      "\" is not one daemon name such as sshd"));
        }
        const std::string file = HostsAllowFileOf(config, door);
        if (door.hosts_allow_form == HostsAllowForm::kInclude) {
          if (!IsPatternPath(file)) {
            return DoorError(config, door, absl::StrCat("HostsAllow_File \"", file,
                                                        "\" must be an absolute path without blanks, ',', ':' or "
                                                        "'#' (it becomes a pattern in hosts.allow)"));
          }
          if (door.hosts_allow_table.empty() || door.hosts_allow_table[0] != '/') {
            return DoorError(config, door, absl::StrCat("the hosts.allow table \"", door.hosts_allow_table,
                                                        "\" must be an absolute path"));
          }
          if (inline_paths.count(file) > 0 || include_paths.count(door.hosts_allow_table) > 0) {
            return DoorError(config, door, absl::StrCat(file, " is used both as an include file and as a "
                                                              "hosts.allow table"));
          }
          auto it = r.include_files.find(file);
          if (it == r.include_files.end()) {
            auto shared = std::make_shared<HostsAllowIncludeFile>(door.hosts_allow_table, file,
                                                                  door.hosts_allow_service);
            it = r.include_files.emplace(file, Resources::Include{&door, shared}).first;
            set->to_prepare_.emplace_back(absl::StrCat("hosts_allow include file ", file), nullptr);
          } else if (it->second.file->service() != door.hosts_allow_service ||
                     it->second.file->table() != door.hosts_allow_table) {
            const DoorConfig& first = *it->second.first;
            return DoorError(config, door,
                             absl::StrCat("shares the include file ", file, " with door [", first.name, "] (line ",
                                          first.line, ") but names another service or table; a grant of one "
                                          "would open the other: give each its own HostsAllow_File"));
          }
          backend = std::make_unique<HostsAllowBackend>(door.name, it->second.file);
        } else {
          if (file.empty() || file[0] != '/') {
            return DoorError(config, door, absl::StrCat("HostsAllow_File \"", file, "\" must be an absolute path"));
          }
          if (include_paths.count(file) > 0) {
            return DoorError(config, door, absl::StrCat(file, " is used both as an include file and as a "
                                                              "hosts.allow table"));
          }
          auto& shared = r.inlines[file];
          if (shared == nullptr) {
            shared = std::make_shared<HostsAllowInlineTable>(file);
            set->to_prepare_.emplace_back(absl::StrCat("hosts_allow table ", file), nullptr);
          }
          backend = std::make_unique<HostsAllowBackend>(door.name, door.hosts_allow_service, shared);
        }
        if (set->to_prepare_.back().second == nullptr) set->to_prepare_.back().second = backend.get();
        break;
      }
      case BackendKind::kNftables: {
        if (door.nft_table.empty()) return DoorError(config, door, "Nft_Table is empty");
        auto& shared = r.nft_tables[door.nft_table];
        bool first = false;
        if (shared == nullptr) {
          absl::StatusOr<std::shared_ptr<NftablesTable>> table = NftablesTable::Create(door.nft_table, clock);
          if (!table.ok()) return DoorError(config, door, std::string(table.status().message()));
          shared = *std::move(table);
          first = true;
        }
        backend = std::make_unique<NftablesBackend>(door.name, door.ports, shared);
        if (first) set->to_prepare_.emplace_back(absl::StrCat("nftables table inet ", door.nft_table), backend.get());
        break;
      }
      case BackendKind::kIptables: {
        if (door.iptables_chain.empty()) return DoorError(config, door, "Iptables_Chain is empty");
        auto& shared = r.chains[door.iptables_chain];
        const bool first = shared == nullptr;
        if (first) shared = std::make_shared<IptablesChain>(door.iptables_chain, runner, tools.iptables);
        backend = std::make_unique<IptablesBackend>(door.name, door.ports, shared);
        if (first) set->to_prepare_.emplace_back(absl::StrCat("iptables chain ", door.iptables_chain), backend.get());
        break;
      }
      case BackendKind::kUfw: {
        const bool first = r.ufw == nullptr;
        if (first) r.ufw = std::make_shared<UfwRules>(runner, tools.ufw);
        backend = std::make_unique<UfwBackend>(door.name, door.ports, r.ufw);
        if (first) set->to_prepare_.emplace_back("ufw", backend.get());
        break;
      }
    }
    set->backends_.emplace(door.name, std::move(backend));
  }

  return set;  // the backends own the shared resources
}

FirewallBackend* BackendSet::ForDoor(const std::string& door) const {
  const auto it = backends_.find(door);
  return it == backends_.end() ? nullptr : it->second.get();
}

absl::Status BackendSet::PrepareAll() {
  std::vector<std::string> failures;
  absl::StatusCode code = absl::StatusCode::kOk;
  for (const auto& [what, backend] : to_prepare_) {
    const absl::Status status = backend->Prepare();
    if (status.ok()) continue;
    if (code == absl::StatusCode::kOk) code = status.code();
    failures.push_back(absl::StrCat(what, ": ", status.message()));
  }
  if (failures.empty()) return absl::OkStatus();
  return absl::Status(code, absl::StrJoin(failures, "; "));
}

}  // namespace sesame
