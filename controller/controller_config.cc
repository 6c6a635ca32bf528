#include "controller/controller_config.h"

#include <unistd.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace sesame::controller {
namespace {

class Parser {
 public:
  Parser(std::string_view text, std::string_view file_name) : text_(text), file_(file_name) {}

  absl::StatusOr<ControllerConfig> Parse() {
    config_.path = file_;
    int line_number = 0;
    for (absl::string_view raw : absl::StrSplit(absl::string_view(text_.data(), text_.size()), '\n')) {
      ++line_number;
      line_ = line_number;
      const absl::string_view line = absl::StripAsciiWhitespace(raw);
      if (line.empty() || line[0] == '#') continue;
      absl::Status status = line[0] == '[' ? Section(line) : KeyValue(line);
      if (!status.ok()) return status;
    }
    if (absl::Status s = FinishDoor(); !s.ok()) return s;
    return Finish();
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ":", line_, ": ", what));
  }

  absl::Status Section(absl::string_view line) {
    if (line.back() != ']') return Error("expected a section header like [controller] or [door NAME]");
    if (absl::Status s = FinishDoor(); !s.ok()) return s;
    const std::string inner(absl::StripAsciiWhitespace(line.substr(1, line.size() - 2)));
    const std::string lower = absl::AsciiStrToLower(inner);
    if (lower == "controller" || lower == "tls" || lower == "audit" || lower == "metrics" || lower == "limits") {
      section_ = lower;
      return absl::OkStatus();
    }
    if (lower.rfind("door ", 0) == 0 || lower.rfind("door\t", 0) == 0) {
      const std::string name(absl::StripAsciiWhitespace(absl::string_view(inner).substr(5)));
      if (!IsValidName(name)) return Error(absl::StrCat("door name \"", name, "\": expected [A-Za-z0-9_.-]{1,64}"));
      for (const Door& d : config_.doors) {
        if (d.name == name) return Error(absl::StrCat("door ", name, " is defined twice"));
      }
      section_ = "door";
      door_ = Door{};
      door_.name = name;
      door_line_ = line_;
      in_door_ = true;
      return absl::OkStatus();
    }
    return Error(
        absl::StrCat("unknown section [", inner, "]: expected controller, tls, audit, metrics, limits or door NAME"));
  }

  absl::Status KeyValue(absl::string_view line) {
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) return Error("expected KEY = VALUE");
    const std::string key = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, eq)));
    const std::string value(absl::StripAsciiWhitespace(line.substr(eq + 1)));
    if (section_.empty()) return Error("a key before any section");
    if (value.empty()) return Error(absl::StrCat(key, ": expected a value"));
    if (section_ == "controller") {
      if (key == "listen") return Set(config_.listen, value);
      if (key == "statedir" || key == "state_dir") return Set(config_.state_dir, value);
      if (key == "heartbeat_interval") return Duration(value, config_.heartbeat_interval);
      if (key == "sequence_lifetime") {
        const std::optional<absl::Duration> d = ParseLifetime(value);
        if (!d || *d > kMaxSequenceLifetime) {
          return Error(absl::StrCat("Sequence_Lifetime: \"", value, "\": expected a duration like 30d or 12h, at most ",
                                    absl::ToInt64Hours(kMaxSequenceLifetime) / 24, "d"));
        }
        config_.sequence_lifetime = *d;
        return absl::OkStatus();
      }
      if (key == "logformat" || key == "log_format") {
        const std::optional<LogFormat> format = ParseLogFormat(value);
        if (!format) return Error(absl::StrCat("LogFormat: \"", value, "\": expected text or json"));
        config_.log_format = *format;
        return absl::OkStatus();
      }
      if (key == "name") {
        if (!IsValidName(value)) return Error(absl::StrCat("Name: \"", value, "\": expected [A-Za-z0-9_.-]{1,64}"));
        return Set(config_.name, value);
      }
      if (key == "store") {
        const std::string kind = absl::AsciiStrToLower(value);
        if (kind != "sqlite" && kind != "etcd") return Error(absl::StrCat("Store: \"", value, "\": expected sqlite or etcd"));
        config_.store = kind == "etcd" ? StoreKind::kEtcd : StoreKind::kSqlite;
        return absl::OkStatus();
      }
      if (absl::StartsWith(key, "etcd_")) return EtcdKey(key, value);
    } else if (section_ == "tls") {
      if (key == "ca_cert") return Set(config_.tls.ca_cert, value);
      if (key == "cert") return Set(config_.tls.cert, value);
      if (key == "key") return Set(config_.tls.key, value);
      if (key == "crl_directory") return Set(config_.tls.crl_dir, value);
      if (key == "unknown_ca_refused_at") {
        const std::string stage = absl::AsciiStrToLower(value);
        if (stage != "handshake" && stage != "call") {
          return Error(absl::StrCat("Unknown_CA_Refused_At: \"", value, "\": expected handshake or call"));
        }
        config_.unknown_ca_at_call = stage == "call";
        return absl::OkStatus();
      }
    } else if (section_ == "audit") {
      if (key == "signing_key") return Set(config_.audit_key, value);
      if (key == "checkpoint_interval") return Duration(value, config_.checkpoint_interval);
    } else if (section_ == "metrics") {
      if (key == "file") return Set(config_.metrics_file, value);
      if (key == "interval") return Duration(value, config_.metrics_interval);
    } else if (section_ == "limits") {
      AgentLimits& l = config_.agent_limits;
      if (key == "knock_reports_per_minute") return Rate("Knock_Reports_Per_Minute", value, l.knock_reports.per_minute);
      if (key == "knock_report_burst") return Rate("Knock_Report_Burst", value, l.knock_reports.burst);
      if (key == "grants_per_minute") return Rate("Grants_Per_Minute", value, l.grants.per_minute);
      if (key == "grant_burst") return Rate("Grant_Burst", value, l.grants.burst);
      if (key == "refusal_audit_window") {
        RETURN_IF_ERROR(Duration(value, l.audit_window));
        if (l.audit_window > absl::Hours(24)) return Error("Refusal_Audit_Window: expected at most 24h");
        return absl::OkStatus();
      }
    } else if (section_ == "door") {
      return DoorKey(key, value);
    }
    return Error(absl::StrCat("unknown key \"", key, "\" in [", section_, "]"));
  }

  absl::Status EtcdKey(const std::string& key, const std::string& value) {
    EtcdSettings& etcd = config_.etcd;
    etcd_line_ = line_;
    if (key == "etcd_endpoints") {
      etcd.endpoints.clear();
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        const std::string endpoint(absl::StripAsciiWhitespace(item));
        const size_t colon = endpoint.rfind(':');
        int port = 0;
        if (!absl::StartsWith(endpoint, "https://") || endpoint.size() <= 8 || colon <= 8 ||
            !absl::SimpleAtoi(endpoint.substr(colon + 1), &port) || port < 1 || port > 65535) {
          return Error(absl::StrCat("Etcd_Endpoints: \"", endpoint,
                                    "\": expected https://HOST:PORT, comma-separated (etcd is spoken with TLS only)"));
        }
        etcd.endpoints.push_back(endpoint);
      }
      return absl::OkStatus();
    }
    if (key == "etcd_cacert" || key == "etcd_ca_cert") return Set(etcd.tls.ca_cert, value);
    if (key == "etcd_cert") return Set(etcd.tls.cert, value);
    if (key == "etcd_key") return Set(etcd.tls.key, value);
    if (key == "etcd_prefix") {
      if (value.front() != '/' || value.back() != '/' || value.find_first_of(" \t") != std::string::npos) {
        return Error(absl::StrCat("Etcd_Prefix: \"", value, "\": expected a key prefix like /sesame/ (starting and ending with /)"));
      }
      return Set(etcd.prefix, value);
    }
    return Error(absl::StrCat("unknown key \"", key, "\" in [controller]"));
  }

  absl::Status DoorKey(const std::string& key, const std::string& value) {
    DoorPolicy& p = door_.policy;
    if (key == "sequence_length") {
      int n = 0;
      if (!absl::SimpleAtoi(value, &n)) return Error("Sequence_Length: expected a number");
      p.sequence_length = n;
      return absl::OkStatus();
    }
    if (key == "protocols") {
      p.protocols.clear();
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(item));
        if (name == "tcp") {
          p.protocols.push_back(Protocol::kTcp);
        } else if (name == "udp") {
          p.protocols.push_back(Protocol::kUdp);
        } else {
          return Error(absl::StrCat("Protocols: \"", name, "\": expected tcp and/or udp"));
        }
      }
      return absl::OkStatus();
    }
    if (key == "port_range") {
      std::vector<absl::string_view> parts = absl::StrSplit(value, '-');
      uint32_t first = 0, last = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(absl::StripAsciiWhitespace(parts[0]), &first) ||
          !absl::SimpleAtoi(absl::StripAsciiWhitespace(parts[1]), &last) || first == 0 || last > 65535 ||
          first > last) {
        return Error("Port_Range: expected FIRST-LAST within 1-65535");
      }
      p.port_first = static_cast<uint16_t>(first);
      p.port_last = static_cast<uint16_t>(last);
      return absl::OkStatus();
    }
    if (key == "avoid_ports") {
      p.avoid_ports.clear();
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        uint32_t port = 0;
        if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(item), &port) || port == 0 || port > 65535) {
          return Error(absl::StrCat("Avoid_Ports: \"", item, "\": expected ports 1-65535, comma-separated"));
        }
        p.avoid_ports.push_back(static_cast<uint16_t>(port));
      }
      return absl::OkStatus();
    }
    if (key == "grant_ports") {
      std::string text;
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        std::string k(absl::StripAsciiWhitespace(item));
        if (k.find(':') == std::string::npos) k += ":tcp";
        absl::StrAppend(&text, text.empty() ? "" : ",", absl::AsciiStrToLower(k));
      }
      absl::StatusOr<std::vector<Knock>> ports = ParseKnocksText(text);
      if (!ports.ok()) return Error(absl::StrCat("Grant_Ports: ", ports.status().message()));
      p.grant_ports = *std::move(ports);
      return absl::OkStatus();
    }
    if (key == "grant_ttl") return Duration(value, p.grant_ttl);
    if (key == "seq_timeout") return Duration(value, p.seq_timeout);
    if (key == "fleet_wide") return Bool(value, p.fleet_wide);
    if (key == "offline_reserve") {
      int n = 0;
      if (!absl::SimpleAtoi(value, &n) || n < 0 || n > 100) return Error("Offline_Reserve: expected 0-100");
      config_.offline_reserve[door_.name] = n;
      return absl::OkStatus();
    }
    return Error(absl::StrCat("unknown key \"", key, "\" in [door ", door_.name, "]"));
  }

  absl::Status FinishDoor() {
    if (!in_door_) return absl::OkStatus();
    in_door_ = false;
    if (absl::Status s = ValidateDoorPolicy(door_.policy); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(file_, ":", door_line_, ": door ", door_.name, ": ", s.message()));
    }
    config_.doors.push_back(door_);
    return absl::OkStatus();
  }

  absl::StatusOr<ControllerConfig> Finish() {
    for (const auto& [name, path] : {std::pair<const char*, const std::string*>{"CA_Cert", &config_.tls.ca_cert},
                                     {"Cert", &config_.tls.cert},
                                     {"Key", &config_.tls.key}}) {
      if (path->empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(file_, ": [tls] ", name, " is required: the controller only speaks mutual TLS"));
      }
    }
    if (config_.audit_key.empty()) config_.audit_key = absl::StrCat(config_.state_dir, "/audit.key");
    const EtcdSettings& etcd = config_.etcd;
    const bool etcd_keys = !etcd.endpoints.empty() || !etcd.tls.ca_cert.empty() || !etcd.tls.cert.empty() ||
                           !etcd.tls.key.empty();
    if (config_.store == StoreKind::kSqlite && etcd_keys) {
      return absl::InvalidArgumentError(absl::StrCat(file_, ":", etcd_line_,
                                                     ": Etcd_* keys, but the store is SQLite; expected Store = etcd "
                                                     "in [controller] to use them"));
    }
    if (config_.store == StoreKind::kEtcd) {
      for (const auto& [name, missing] : {std::pair<const char*, bool>{"Etcd_Endpoints", etcd.endpoints.empty()},
                                          {"Etcd_CaCert", etcd.tls.ca_cert.empty()},
                                          {"Etcd_Cert", etcd.tls.cert.empty()},
                                          {"Etcd_Key", etcd.tls.key.empty()}}) {
        if (missing) {
          return absl::InvalidArgumentError(absl::StrCat(file_, ": [controller] Store = etcd needs ", name,
                                                         " (etcd is spoken with mutual TLS only)"));
        }
      }
    }
    if (config_.name.empty()) {
      char host[256] = {};
      if (gethostname(host, sizeof(host) - 1) == 0 && IsValidName(host)) config_.name = host;
      if (config_.name.empty()) config_.name = "controller";
    }
    return config_;
  }

  absl::Status Set(std::string& field, const std::string& value) {
    field = value;
    return absl::OkStatus();
  }

  absl::Status Duration(const std::string& value, absl::Duration& out) {
    absl::Duration d;
    if (!absl::ParseDuration(value, &d) || d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
      return Error(absl::StrCat("\"", value, "\": expected a positive duration like 30s, 5m or 1h"));
    }
    out = d;
    return absl::OkStatus();
  }

  absl::Status Rate(const char* key, const std::string& value, int& out) {
    int n = 0;
    if (!absl::SimpleAtoi(value, &n) || n < 1 || n > kMaxRate) {
      return Error(absl::StrCat(key, ": \"", value, "\": expected a whole number of 1..", kMaxRate));
    }
    out = n;
    return absl::OkStatus();
  }

  absl::Status Bool(const std::string& value, bool& out) {
    const std::string v = absl::AsciiStrToLower(value);
    if (v == "yes" || v == "true" || v == "on" || v == "1") {
      out = true;
    } else if (v == "no" || v == "false" || v == "off" || v == "0") {
      out = false;
    } else {
      return Error(absl::StrCat("\"", value, "\": expected yes or no"));
    }
    return absl::OkStatus();
  }

  std::string_view text_;
  std::string file_;
  int line_ = 0;
  std::string section_;
  ControllerConfig config_;
  Door door_;
  int door_line_ = 0;
  int etcd_line_ = 0;  // the last Etcd_* key
  bool in_door_ = false;
};

}  // namespace

absl::StatusOr<ControllerConfig> ParseControllerConfig(std::string_view text, std::string_view file_name) {
  return Parser(text, file_name).Parse();
}

absl::StatusOr<ControllerConfig> LoadControllerConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  return ParseControllerConfig(*text, path);
}

}  // namespace sesame::controller
