// The keys of managed mode (agent/managed/): in [options], the controllers to
// reach, the TLS files and the connection's timing; in a door section,
// "Managed = yes". What managed mode requires of the whole file is checked in
// config_validation.cc.
#include <algorithm>
#include <cctype>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/config/internal/config_parser.h"
#include "agent/config/internal/config_text.h"
#include "common/ip_address.h"
#include "common/status_macros.h"

namespace sesame::config_internal {
namespace {

constexpr KeyName kManagedOptionKeys[] = {
    {"Controller", Key::kController},
    {"CaCert", Key::kCaCert},
    {"Cert", Key::kCert},
    {"Key", Key::kKey},
    {"AgentName", Key::kAgentName},
    {"ManagedBackend", Key::kManagedBackend},
    {"ReserveSize", Key::kReserveSize},
    {"SpoolLimitMB", Key::kSpoolLimitMB},
    {"Keepalive", Key::kKeepalive},
    {"BackoffMin", Key::kBackoffMin},
    {"BackoffMax", Key::kBackoffMax},
    {"ConnectTimeout", Key::kConnectTimeout},
    {"AdvertiseHosts", Key::kAdvertiseHosts},
};

constexpr KeyName kManagedDoorKeys[] = {
    {"Managed", Key::kManaged},
};

}  // namespace

std::span<const KeyName> ManagedOptionKeys() { return kManagedOptionKeys; }
std::span<const KeyName> ManagedDoorKeys() { return kManagedDoorKeys; }

absl::Status Parser::ManagedOptionKey(const KeyName& key, std::string_view value) {
  switch (key.key) {
    case Key::kController: {
      ASSIGN_OR_RETURN(options_.managed.controllers, Controllers(value));
      options_.managed.line = line_;
      return absl::OkStatus();
    }
    case Key::kCaCert:
    case Key::kCert:
    case Key::kKey: {
      ASSIGN_OR_RETURN(std::string path, AbsolutePath(key, value));
      if (ca_cert_line_ == 0) ca_cert_line_ = line_;
      (key.key == Key::kCaCert ? options_.managed.ca_cert
       : key.key == Key::kCert ? options_.managed.cert
                               : options_.managed.key) = std::move(path);
      (key.key == Key::kCaCert ? options_.managed.ca_cert_line
       : key.key == Key::kCert ? options_.managed.cert_line
                               : options_.managed.key_line) = line_;
      return absl::OkStatus();
    }
    case Key::kAgentName: {
      // What the PKI puts in a certificate: [A-Za-z0-9_.-]{1,64}.
      const bool ok = !value.empty() && value.size() <= 64 && std::all_of(value.begin(), value.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.';
      });
      if (!ok) {
        return Error(line_, absl::StrCat("AgentName: expected a name of letters, digits, _ - . (at most 64), got ",
                                         Quoted(value)));
      }
      options_.managed.agent_name = std::string(value);
      return absl::OkStatus();
    }
    case Key::kManagedBackend: {
      ASSIGN_OR_RETURN(const BackendKind kind, Backend(key, value));
      if (kind == BackendKind::kCommand) {
        return Error(line_, "ManagedBackend: the command backend needs commands; expected hosts_allow, nftables, "
                            "iptables or ufw (or a door section with Managed = yes and Backend = command)");
      }
      options_.managed.backend = kind;
      return absl::OkStatus();
    }
    case Key::kReserveSize: {
      ASSIGN_OR_RETURN(const int64_t n, Count(key, value, 0, 64));
      options_.managed.reserve_size = static_cast<int>(n);
      return absl::OkStatus();
    }
    case Key::kSpoolLimitMB: {
      ASSIGN_OR_RETURN(const int64_t n, Count(key, value, 1, 4096));
      options_.managed.spool_limit_bytes = static_cast<uint64_t>(n) << 20;
      return absl::OkStatus();
    }
    case Key::kKeepalive: {
      ASSIGN_OR_RETURN(options_.managed.keepalive, Duration(key, value, /*allow_zero=*/false));
      if (options_.managed.keepalive < absl::Seconds(1)) return Error(line_, "Keepalive: expected at least 1s");
      return absl::OkStatus();
    }
    case Key::kBackoffMin: {
      ASSIGN_OR_RETURN(options_.managed.backoff_min, Duration(key, value, /*allow_zero=*/false));
      return absl::OkStatus();
    }
    case Key::kBackoffMax: {
      ASSIGN_OR_RETURN(options_.managed.backoff_max, Duration(key, value, /*allow_zero=*/false));
      return absl::OkStatus();
    }
    case Key::kConnectTimeout: {
      ASSIGN_OR_RETURN(options_.managed.connect_timeout, Duration(key, value, /*allow_zero=*/false));
      return absl::OkStatus();
    }
    case Key::kAdvertiseHosts: {
      options_.managed.advertise_hosts.clear();
      for (std::string_view item : SplitOn(value, ',')) {
        item = Trim(item);
        const bool ok = !item.empty() && item.size() <= 253 && IsPrintable(item) &&
                        std::none_of(item.begin(), item.end(), [](char ch) { return IsSpace(ch); });
        if (!ok) {
          return Error(line_, absl::StrCat("AdvertiseHosts: expected host names or addresses separated by commas, "
                                           "got ",
                                           Quoted(item)));
        }
        options_.managed.advertise_hosts.emplace_back(item);
      }
      return absl::OkStatus();
    }
    default:
      return Error(line_, absl::StrCat(key.name, " is not an [options] key"));
  }
}

absl::Status Parser::ManagedDoorKey(const KeyName& key, std::string_view value) {
  DoorConfig& c = doors_.back().config;
  switch (key.key) {
    case Key::kManaged:
      if (EqualsIgnoreCase(value, "yes") || EqualsIgnoreCase(value, "true")) {
        c.managed = true;
      } else if (EqualsIgnoreCase(value, "no") || EqualsIgnoreCase(value, "false")) {
        c.managed = false;
      } else {
        return Error(line_, absl::StrCat("Managed: expected yes or no, got ", Quoted(value)));
      }
      return absl::OkStatus();
    default:
      return Error(line_, absl::StrCat(key.name, " is not a door key"));
  }
}

absl::StatusOr<std::vector<std::string>> Parser::Controllers(std::string_view value) const {
  std::vector<std::string> out;
  for (std::string_view item : SplitOn(value, ',')) {
    item = Trim(item);
    const auto bad = [&] {
      return Error(line_, absl::StrCat("Controller: expected HOST:PORT[, HOST:PORT...] (an IPv6 address in "
                                       "brackets: [2001:db8::1]:7443), got ",
                                       Quoted(item)));
    };
    const size_t colon = item.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return bad();
    std::string_view host = item.substr(0, colon);
    const std::optional<int64_t> port = ParseDigits(item.substr(colon + 1));
    if (!port.has_value() || *port < 1 || *port > 65535) return bad();
    if (host.front() == '[') {
      if (host.size() < 3 || host.back() != ']') return bad();
      const std::optional<IpAddress> v6 = IpAddress::Parse(host.substr(1, host.size() - 2));
      if (!v6.has_value() || !v6->is_v6()) return bad();
    } else {
      const bool ok = host.size() <= 253 && std::all_of(host.begin(), host.end(), [](char ch) {
                        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' || ch == '_';
                      });
      if (!ok) return bad();
    }
    out.emplace_back(item);
  }
  return out;
}

}  // namespace sesame::config_internal
