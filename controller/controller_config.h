// sesame-controller's configuration (deploy/examples/controller.conf): the
// agent's syntax, "[section]" headers, "KEY = VALUE" lines, '#' comments on
// their own line, keys case-insensitive.
//
//   [controller]  Listen, StateDir, Heartbeat_Interval, Name, Store
//                 (sqlite or etcd), Etcd_Endpoints, Etcd_CaCert, Etcd_Cert,
//                 Etcd_Key, Etcd_Prefix
//   [tls]         CA_Cert, Cert, Key, CRL_Directory, Unknown_CA_Refused_At
//                 (handshake or call)
//   [audit]       Signing_Key, Checkpoint_Interval
//   [metrics]     File, Interval
//   [limits]      Knock_Reports_Per_Minute, Knock_Report_Burst,
//                 Grants_Per_Minute, Grant_Burst, Refusal_Audit_Window
//                 (per agent; agent_rate_limits.h)
//   [door NAME]   Sequence_Length, Protocols, Port_Range, Avoid_Ports,
//                 Grant_Ports, Grant_TTL, Fleet_Wide, Seq_Timeout,
//                 Offline_Reserve
//
// Durations are absl's ("30s", "1m", "1h30m"); booleans yes/no, true/false,
// on/off, 1/0. Errors read "FILE:LINE: what was expected".
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "controller/model/model.h"
#include "controller/service/agent_rate_limits.h"
#include "controller/service/tls_credentials.h"

namespace sesame::controller {

// Where the controller keeps its state: SQLite in StateDir (one
// controller), or etcd (any number of controllers sharing one state).
enum class StoreKind { kSqlite, kEtcd };

struct EtcdSettings {
  std::vector<std::string> endpoints;  // https://HOST:PORT
  TlsFiles tls;                        // etcd's own CA, our client certificate and key
  std::string prefix = "/sesame/";
};

struct ControllerConfig {
  std::string path;
  // This controller among others (audit records, the leader key, logs);
  // default: the host name.
  std::string name;
  StoreKind store = StoreKind::kSqlite;
  EtcdSettings etcd;
  std::string listen = "[::]:7443";
  std::string state_dir = "/var/lib/sesame-controller";
  // LogFormat = text | json (common/log.h).
  LogFormat log_format = LogFormat::kText;
  absl::Duration heartbeat_interval = absl::Seconds(10);
  // Sequence_Lifetime: how long an issued sequence lives unless
  // `sequences issue --expires` says (30d, 12h, ...; at most 366 days).
  absl::Duration sequence_lifetime = kDefaultSequenceLifetime;
  TlsFiles tls;
  // Unknown_CA_Refused_At = call: a certificate of another CA passes the
  // TLS handshake and is refused at its first call, audited with the
  // caller's address (the handshake's verifier is not told the address).
  // The default, handshake, keeps strangers out of HTTP/2 altogether.
  bool unknown_ca_at_call = false;
  std::string audit_key;  // default: STATE_DIR/audit.key
  absl::Duration checkpoint_interval = absl::Minutes(1);
  std::string metrics_file;  // empty: no metrics file
  absl::Duration metrics_interval = absl::Seconds(5);
  // Per agent: knock reports 12 a minute (burst 30), grants 6 a minute
  // (burst 20), refusals recorded once a minute.
  AgentLimits agent_limits;
  std::vector<Door> doors;
  // Door name -> reserve sequences each agent should hold for it (the
  // leader tops them up).
  std::map<std::string, int> offline_reserve;
};

absl::StatusOr<ControllerConfig> ParseControllerConfig(std::string_view text, std::string_view file_name);
absl::StatusOr<ControllerConfig> LoadControllerConfig(const std::string& path);

}  // namespace sesame::controller
