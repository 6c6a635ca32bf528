#include "controller/cli/sesamectl.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/prometheus_text.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_verifier.h"
#include "controller/service/tls_credentials.h"
#include "controller/service/wire_convert.h"
#include "sesame/v1/admin.grpc.pb.h"

namespace sesame::controller {
namespace {

struct Globals {
  std::string controller = "localhost:7443";
  std::string ca_cert, cert, key;
  std::string timeout = "10s";
  std::string output = "table";
};

// Columns padded to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const {
    std::vector<size_t> width;
    for (const auto& row : rows_) {
      for (size_t i = 0; i < row.size(); ++i) {
        if (width.size() <= i) width.push_back(0);
        width[i] = std::max(width[i], row[i].size());
      }
    }
    for (const auto& row : rows_) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        line += row[i];
        if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
      }
      out << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", FromWireTime(t), absl::UTCTimeZone());
}

std::string Knocks(const google::protobuf::RepeatedPtrField<v1::Knock>& knocks) {
  std::vector<std::string> parts;
  for (const v1::Knock& k : knocks) {
    parts.push_back(absl::StrCat(k.port(), ":", k.protocol() == v1::PROTOCOL_UDP ? "udp" : "tcp"));
  }
  return absl::StrJoin(parts, " ");
}

const char* StateName(v1::SequenceState s) {
  switch (s) {
    case v1::SEQUENCE_STATE_ISSUED: return "issued";
    case v1::SEQUENCE_STATE_LIVE: return "live";
    case v1::SEQUENCE_STATE_BURNT: return "burnt";
    default: return "?";
  }
}

const char* GrantStateText(v1::GrantState s) {
  switch (s) {
    case v1::GRANT_STATE_OPEN: return "open";
    case v1::GRANT_STATE_EXPIRED: return "expired";
    case v1::GRANT_STATE_REVOKED: return "revoked";
    default: return "?";
  }
}

class Ctl {
 public:
  Ctl(const Globals& g, std::ostream& out, std::ostream& err) : g_(g), out_(out), err_(err) {}

  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }
  bool json() const { return g_.output == "json"; }

  // Reads the certificate files and makes the channel; an exit code on
  // failure.
  int Connect() {
    if (!absl::ParseDuration(g_.timeout, &timeout_) || timeout_ <= absl::ZeroDuration()) {
      err_ << "sesamectl: --timeout " << g_.timeout << ": expected a duration like 10s\n";
      return kExitUsage;
    }
    if (g_.ca_cert.empty() || g_.cert.empty() || g_.key.empty()) {
      err_ << "sesamectl: --ca-cert, --cert and --key (or SESAME_CA_CERT, SESAME_CERT, SESAME_KEY) are required\n";
      return kExitUsage;
    }
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
        MakeClientCredentials(TlsFiles{g_.ca_cert, g_.cert, g_.key, ""});
    if (!creds.ok()) {
      err_ << "sesamectl: " << creds.status().message() << "\n";
      return absl::IsNotFound(creds.status()) ? kExitUsage : kExitFailure;
    }
    channel_ = grpc::CreateChannel(g_.controller, *creds);
    stub_ = v1::AdminService::NewStub(channel_);
    return kExitOk;
  }

  v1::AdminService::Stub& stub() { return *stub_; }
  grpc::Channel& channel() { return *channel_; }

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    return c;
  }
  absl::Duration timeout() const { return timeout_; }

  int Fail(const grpc::Status& s) {
    int code = kExitFailure;
    const char* what = "failed";
    switch (s.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        // A TLS alert means the controller answered and refused the
        // certificate (unknown CA, revoked), or ours did not trust it.
        if (s.error_message().find("Ssl handshake failed") != std::string::npos ||
            s.error_message().find("SSL_ERROR_SSL") != std::string::npos) {
          code = kExitRefused;
          what = "refused in the TLS handshake (certificate)";
          break;
        }
        code = kExitUnreachable;
        what = "controller unreachable";
        break;
      case grpc::StatusCode::UNAUTHENTICATED:
      case grpc::StatusCode::PERMISSION_DENIED:
        code = kExitRefused;
        what = "refused";
        break;
      case grpc::StatusCode::NOT_FOUND:
        code = kExitNotFound;
        what = "not found";
        break;
      case grpc::StatusCode::INVALID_ARGUMENT:
        code = kExitUsage;
        what = "invalid argument";
        break;
      default: break;
    }
    err_ << "sesamectl: " << what << ": " << s.error_message() << "\n";
    return code;
  }

  void Json(const google::protobuf::Message& m) {
    std::string text;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(m, &text, options);
    out_ << text;
    if (text.empty() || text.back() != '\n') out_ << "\n";
  }

 private:
  const Globals& g_;
  std::ostream& out_;
  std::ostream& err_;
  absl::Duration timeout_ = absl::Seconds(10);
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AdminService::Stub> stub_;
};

// --- Commands ---------------------------------------------------------------

int Health(Ctl& ctl) {
  grpc::GenericStub generic(ctl.channel().shared_from_this());
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  absl::Mutex mu;
  bool done = false;
  grpc::Status status;
  auto context = ctl.Context();
  generic.UnaryCall(context.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      absl::MutexLock lock(&mu);
                      status = std::move(s);
                      done = true;
                    });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&done));  // the deadline bounds it
  }
  if (!status.ok()) return ctl.Fail(status);
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status = 1}: SERVING.
  const bool serving = bytes == std::string("\x08\x01", 2);
  if (ctl.json()) {
    ctl.out() << "{\"status\": \"" << (serving ? "SERVING" : "NOT_SERVING") << "\"}\n";
  } else {
    ctl.out() << (serving ? "SERVING" : "NOT_SERVING") << "\n";
  }
  return serving ? kExitOk : kExitFailure;
}

// name{label="value",...}, labels sorted, as Prometheus shows a series.
std::string MetricName(const v1::Metric& m) {
  if (m.labels().empty()) return m.name();
  std::map<std::string, std::string> labels(m.labels().begin(), m.labels().end());
  std::string out = absl::StrCat(m.name(), "{");
  bool comma = false;
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&out, comma ? "," : "", k, "=\"", v, "\"");
    comma = true;
  }
  return out + "}";
}

void AgentRow(Table& t, const v1::AgentInfo& a) {
  t.Add({a.name(), a.connected() ? "yes" : "no", a.version().empty() ? "-" : a.version(), Time(a.last_heartbeat()),
         absl::StrCat(a.acked_revision(), "/", a.revision()), absl::StrCat(a.reserve_left()),
         absl::StrCat(a.spool_depth()), a.last_error().empty() ? "-" : a.last_error()});
}

int AgentsList(Ctl& ctl) {
  v1::ListAgentsResponse r;
  grpc::Status s = ctl.stub().ListAgents(ctl.Context().get(), v1::ListAgentsRequest(), &r);
  if (!s.ok()) return ctl.Fail(s);
  if (ctl.json()) return ctl.Json(r), kExitOk;
  Table t({"NAME", "CONNECTED", "VERSION", "LAST HEARTBEAT", "REVISION", "RESERVE", "SPOOL", "LAST ERROR"});
  for (const v1::AgentInfo& a : r.agents()) AgentRow(t, a);
  t.Print(ctl.out());
  return kExitOk;
}

int AgentsShow(Ctl& ctl, const std::string& name) {
  v1::GetAgentRequest request;
  request.set_name(name);
  v1::AgentInfo a;
  grpc::Status s = ctl.stub().GetAgent(ctl.Context().get(), request, &a);
  if (!s.ok()) return ctl.Fail(s);
  if (ctl.json()) return ctl.Json(a), kExitOk;
  std::ostream& o = ctl.out();
  o << "name:            " << a.name() << "\n"
    << "connected:       " << (a.connected() ? "yes" : "no") << "\n"
    << "version:         " << (a.version().empty() ? "-" : a.version()) << "\n"
    << "connected at:    " << Time(a.connected_at()) << "\n"
    << "disconnected at: " << Time(a.disconnected_at()) << "\n"
    << "last heartbeat:  " << Time(a.last_heartbeat()) << "\n"
    << "revision:        " << a.acked_revision() << " acknowledged of " << a.revision() << "\n"
    << "reserve left:    " << a.reserve_left() << "\n"
    << "spool depth:     " << a.spool_depth() << "\n"
    << "last error:      " << (a.last_error().empty() ? "-" : a.last_error()) << "\n"
    << "knock hosts:     " << (a.advertise_hosts().empty() ? "-" : absl::StrJoin(a.advertise_hosts(), ", ")) << "\n";
  if (a.metrics().empty()) {
    o << "metrics:         - (none since the controller started; heartbeats bring them)\n";
    return kExitOk;
  }
  o << "metrics (last heartbeat):\n";
  Table t({"  METRIC", "VALUE"});
  for (const v1::Metric& m : a.metrics()) t.Add({absl::StrCat("  ", MetricName(m)), FormatMetricValue(m.value())});
  t.Print(o);
  return kExitOk;
}

int DoorsList(Ctl& ctl) {
  v1::ListDoorsResponse r;
  grpc::Status s = ctl.stub().ListDoors(ctl.Context().get(), v1::ListDoorsRequest(), &r);
  if (!s.ok()) return ctl.Fail(s);
  if (ctl.json()) return ctl.Json(r), kExitOk;
  Table t({"DOOR", "LENGTH", "PROTOCOLS", "PORTS", "AVOID", "OPENS", "TTL", "FLEET-WIDE"});
  for (const v1::Door& d : r.doors()) {
    const v1::DoorPolicy& p = d.policy();
    std::vector<std::string> protocols;
    for (int proto : p.protocols()) protocols.push_back(proto == v1::PROTOCOL_UDP ? "udp" : "tcp");
    t.Add({d.name(), absl::StrCat(p.sequence_length()), absl::StrJoin(protocols, ","),
           absl::StrCat(p.port_range().first(), "-", p.port_range().last()),
           p.avoid_ports().empty() ? "-" : absl::StrJoin(p.avoid_ports(), ","), Knocks(p.grant_ports()),
           absl::FormatDuration(FromWireDuration(p.grant_ttl())), p.fleet_wide() ? "yes" : "no"});
  }
  t.Print(ctl.out());
  return kExitOk;
}

int SequencesIssue(Ctl& ctl, const std::string& door, int count, const std::string& for_name,
                   const std::string& reserve) {
  v1::IssueSequencesRequest request;
  request.set_door(door);
  request.set_count(static_cast<uint32_t>(count));
  request.set_issued_to(for_name);
  request.set_reserve_agent(reserve);
  v1::IssueSequencesResponse r;
  grpc::Status s = ctl.stub().IssueSequences(ctl.Context().get(), request, &r);
  if (!s.ok()) return ctl.Fail(s);
  if (ctl.json()) return ctl.Json(r), kExitOk;
  std::ostream& o = ctl.out();
  for (const v1::IssuedSequence& q : r.sequences()) {
    o << "sequence " << q.id() << " (door " << q.door() << "): " << Knocks(q.knocks()) << "\n";
    if (q.commands().empty()) o << "  knock HOST " << Knocks(q.knocks()) << "\n";
    for (const v1::KnockCommand& c : q.commands()) o << "  " << c.command() << "\n";
  }
  o << "# shown once: the controller never shows these sequences again\n";
  return kExitOk;
}

int SequencesList(Ctl& ctl, const std::string& door, const std::string& state, const std::string& reserve,
                  int limit) {
  v1::ListSequencesRequest request;
  request.set_door(door);
  if (state == "issued") request.set_state(v1::SEQUENCE_STATE_ISSUED);
  if (state == "live") request.set_state(v1::SEQUENCE_STATE_LIVE);
  if (state == "burnt") request.set_state(v1::SEQUENCE_STATE_BURNT);
  request.set_reserve_agent(reserve);
  request.set_limit(static_cast<uint32_t>(std::max(0, limit)));
  v1::ListSequencesResponse r;
  grpc::Status s = ctl.stub().ListSequences(ctl.Context().get(), request, &r);
  if (!s.ok()) return ctl.Fail(s);
  if (ctl.json()) return ctl.Json(r), kExitOk;
  Table t({"ID", "DOOR", "STATE", "ISSUED TO", "ISSUED AT", "RESERVE OF", "USED ON", "USED FROM", "USED AT"});
  for (const v1::SequenceInfo& q : r.sequences()) {
    const bool burnt = q.state() == v1::SEQUENCE_STATE_BURNT;
    t.Add({absl::StrCat(q.id()), q.door(), StateName(q.state()), q.issued_to(), Time(q.issued_at()),
           q.reserve_agent().empty() ? "-" : q.reserve_agent(), burnt ? q.consumed_by() : "-",
           burnt ? q.consumed_from() : "-", burnt ? Time(q.consumed_at()) : "-"});
  }
  t.Print(ctl.out());
  return kExitOk;
}

void GrantsTable(Ctl& ctl, const google::protobuf::RepeatedPtrField<v1::Grant>& grants) {
  Table t({"ID", "ADDRESS", "DOOR", "OPENS", "WHERE", "STATE", "EXPIRES", "BY", "APPLIED"});
  for (const v1::Grant& g : grants) {
    std::vector<std::string> applied;
    for (const v1::GrantAgentStatus& a : g.agents()) {
      applied.push_back(absl::StrCat(a.agent(), "=",
                                     a.state() == v1::GRANT_AGENT_STATE_APPLIED   ? "ok"
                                     : a.state() == v1::GRANT_AGENT_STATE_FAILED  ? "failed"
                                     : a.state() == v1::GRANT_AGENT_STATE_REMOVED ? "removed"
                                                                                  : "pending"));
    }
    t.Add({absl::StrCat(g.id()), g.address(), g.door(), Knocks(g.ports()), g.fleet_wide() ? "fleet" : g.agent(),
           GrantStateText(g.state()), Time(g.expires_at()), g.opened_by(),
           applied.empty() ? "pending" : absl::StrJoin(applied, ",")});
  }
  t.Print(ctl.out());
}

int GrantsList(Ctl& ctl, bool all, const std::string& ip) {
  v1::ListGrantsRequest request;
  request.set_all(all);
  request.set_address(ip);
  v1::ListGrantsResponse r;
  grpc::Status s = ctl.stub().ListGrants(ctl.Context().get(), request, &r);
  if (!s.ok()) return ctl.Fail(s);
  if (ctl.json()) return ctl.Json(r), kExitOk;
  GrantsTable(ctl, r.grants());
  return kExitOk;
}

int GrantsOpen(Ctl& ctl, const std::string& agent, bool fleet, const std::string& ip, const std::string& door,
               const std::string& ttl) {
  if (agent.empty() == !fleet) {
    ctl.err() << "sesamectl: grants open: give --agent NAME or --fleet\n";
    return kExitUsage;
  }
  v1::OpenGrantRequest request;
  request.set_agent(agent);
  request.set_fleet_wide(fleet);
  request.set_address(ip);
  request.set_door(door);
  if (!ttl.empty()) {
    absl::Duration d;
    if (!absl::ParseDuration(ttl, &d)) {
      ctl.err() << "sesamectl: --ttl " << ttl << ": expected a duration like 30s or 10m\n";
      return kExitUsage;
    }
    *request.mutable_ttl() = ToWireDuration(d);
  }
  v1::Grant g;
  grpc::Status s = ctl.stub().OpenGrant(ctl.Context().get(), request, &g);
  if (!s.ok()) return ctl.Fail(s);
  if (ctl.json()) return ctl.Json(g), kExitOk;
  google::protobuf::RepeatedPtrField<v1::Grant> one;
  *one.Add() = g;
  GrantsTable(ctl, one);
  return kExitOk;
}

int GrantsRevoke(Ctl& ctl, const std::string& id, const std::string& ip) {
  v1::RevokeGrantsRequest request;
  if (!id.empty() == !ip.empty()) {
    ctl.err() << "sesamectl: grants revoke: give a grant ID or --ip ADDR\n";
    return kExitUsage;
  }
  if (!id.empty()) {
    uint64_t value = 0;
    if (!absl::SimpleAtoi(id, &value) || value == 0) {
      ctl.err() << "sesamectl: grants revoke: \"" << id << "\" is not a grant id\n";
      return kExitUsage;
    }
    request.set_grant_id(value);
  } else {
    request.set_address(ip);
  }
  v1::RevokeGrantsResponse r;
  grpc::Status s = ctl.stub().RevokeGrants(ctl.Context().get(), request, &r);
  if (!s.ok()) return ctl.Fail(s);
  if (ctl.json()) return ctl.Json(r), kExitOk;
  if (r.grant_ids().empty()) {
    ctl.out() << "nothing to revoke: no open grant\n";
  } else {
    ctl.out() << "revoked " << absl::StrJoin(r.grant_ids(), ", ") << "\n";
  }
  return kExitOk;
}

int AuditTail(Ctl& ctl, bool follow, int n) {
  v1::TailAuditRequest request;
  request.set_from_end(true);
  request.set_from_index(static_cast<uint64_t>(std::max(0, n)));
  request.set_follow(follow);
  auto context = ctl.Context();
  if (follow) context->set_deadline(std::chrono::system_clock::time_point::max());
  auto reader = ctl.stub().TailAudit(context.get(), request);
  v1::AuditRecord r;
  while (reader->Read(&r)) {
    if (ctl.json()) {
      ctl.Json(r);
      continue;
    }
    std::vector<std::string> details;
    std::map<std::string, std::string> sorted(r.details().begin(), r.details().end());
    for (const auto& [k, v] : sorted) details.push_back(absl::StrCat(k, "=", v));
    ctl.out() << r.index() << "  " << Time(r.time()) << "  " << r.who() << "  " << r.what() << "  " << r.where()
              << (details.empty() ? "" : "  ") << absl::StrJoin(details, " ") << "\n";
    ctl.out().flush();
  }
  grpc::Status s = reader->Finish();
  return s.ok() ? kExitOk : ctl.Fail(s);
}

int AuditExport(Ctl& ctl, const std::string& path) {
  auto context = ctl.Context();
  auto reader = ctl.stub().ExportAudit(context.get(), v1::ExportAuditRequest());
  std::string text;
  v1::ExportAuditChunk chunk;
  while (reader->Read(&chunk)) text += chunk.data();
  grpc::Status s = reader->Finish();
  if (!s.ok()) return ctl.Fail(s);
  absl::Status written = WriteFileAtomically(path, text, 0644);
  if (!written.ok()) {
    ctl.err() << "sesamectl: " << written.message() << "\n";
    return kExitFailure;
  }
  ctl.out() << "exported " << text.size() << " bytes to " << path << "\n";
  return kExitOk;
}

int PrintVerification(std::ostream& out, std::ostream& err, bool json, bool ok, uint64_t records,
                      uint64_t checkpoints, uint64_t signed_records, uint64_t first_bad, const std::string& problem) {
  if (json) {
    out << "{\"ok\": " << (ok ? "true" : "false") << ", \"records\": " << records << ", \"checkpoints\": "
        << checkpoints << ", \"signed_records\": " << signed_records;
    if (!ok) out << ", \"first_bad_index\": " << first_bad << ", \"problem\": \"" << problem << "\"";
    out << "}\n";
  } else if (ok) {
    out << "OK: " << records << " records, " << checkpoints << " good checkpoints, signed through record "
        << (signed_records == 0 ? std::string("-") : absl::StrCat(signed_records - 1)) << "\n";
  }
  if (!ok) err << "sesamectl: audit log does NOT verify: " << problem << "\n";
  return ok ? kExitOk : kExitFailure;
}

int AuditVerifyRemote(Ctl& ctl) {
  v1::VerifyAuditResponse r;
  grpc::Status s = ctl.stub().VerifyAudit(ctl.Context().get(), v1::VerifyAuditRequest(), &r);
  if (!s.ok()) return ctl.Fail(s);
  return PrintVerification(ctl.out(), ctl.err(), ctl.json(), r.ok(), r.records(), r.checkpoints(),
                           r.signed_records(), r.first_bad_index(), r.problem());
}

int AuditVerifyFile(std::ostream& out, std::ostream& err, bool json, const std::string& file,
                    const std::string& pubkey) {
  if (pubkey.empty()) {
    err << "sesamectl: audit verify --file needs --pubkey FILE (the controller's audit public key; "
           "`sesamectl audit pubkey` prints it)\n";
    return kExitUsage;
  }
  absl::StatusOr<AuditPublicKey> key = AuditPublicKey::LoadFile(pubkey);
  if (!key.ok()) {
    err << "sesamectl: " << key.status().message() << "\n";
    return absl::IsNotFound(key.status()) ? kExitNotFound : kExitUsage;
  }
  absl::StatusOr<AuditVerification> v = VerifyAuditExportFile(file, *key);
  if (!v.ok()) {
    err << "sesamectl: audit log does NOT verify: " << v.status().message() << "\n";
    return absl::IsNotFound(v.status()) ? kExitNotFound : kExitFailure;
  }
  return PrintVerification(out, err, json, v->ok, v->records, v->checkpoints, v->signed_records,
                           v->first_bad_index, v->problem);
}

int AuditPubkey(Ctl& ctl) {
  v1::GetAuditPublicKeyResponse r;
  grpc::Status s = ctl.stub().GetAuditPublicKey(ctl.Context().get(), v1::GetAuditPublicKeyRequest(), &r);
  if (!s.ok()) return ctl.Fail(s);
  if (ctl.json()) return ctl.Json(r), kExitOk;
  ctl.out() << r.public_key_pem();
  return kExitOk;
}

int Stats(Ctl& ctl) {
  v1::GetStatsResponse r;
  grpc::Status s = ctl.stub().GetStats(ctl.Context().get(), v1::GetStatsRequest(), &r);
  if (!s.ok()) return ctl.Fail(s);
  if (ctl.json()) return ctl.Json(r), kExitOk;
  Table t({"METRIC", "VALUE"});
  for (const v1::Metric& m : r.metrics()) t.Add({MetricName(m), FormatMetricValue(m.value())});
  t.Print(ctl.out());
  return kExitOk;
}

}  // namespace

int RunSesamectl(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"sesamectl: manage a sesame fleet through sesame-controller"};
  app.require_subcommand(1);
  Globals g;
  app.add_option("--controller", g.controller, "controller address HOST:PORT")->envname("SESAME_CONTROLLER");
  app.add_option("--ca-cert", g.ca_cert, "CA certificate (PEM)")->envname("SESAME_CA_CERT");
  app.add_option("--cert", g.cert, "operator certificate (PEM)")->envname("SESAME_CERT");
  app.add_option("--key", g.key, "operator private key (PEM)")->envname("SESAME_KEY");
  app.add_option("--timeout", g.timeout, "deadline of every call (e.g. 10s)")->envname("SESAME_TIMEOUT");
  app.add_option("-o,--output", g.output, "output format")->check(CLI::IsMember({"table", "json"}));
  app.footer(
      "Exit codes: 0 ok, 1 failure (or an audit log that does not verify), 2 usage, 3 controller unreachable, "
      "4 refused (certificate), 5 not found.");

  std::function<int(Ctl&)> action;
  std::function<int()> offline_action;

  app.add_subcommand("health", "is the controller serving?")->callback([&] { action = Health; });

  CLI::App* agents = app.add_subcommand("agents", "the bastions' agents")->require_subcommand(1);
  agents->add_subcommand("list", "every agent")->callback([&] { action = AgentsList; });
  std::string agent_name;
  CLI::App* agents_show = agents->add_subcommand("show", "one agent");
  agents_show->add_option("name", agent_name, "agent name")->required();
  agents_show->callback([&] { action = [&](Ctl& c) { return AgentsShow(c, agent_name); }; });

  CLI::App* doors = app.add_subcommand("doors", "doors and their policies")->require_subcommand(1);
  doors->add_subcommand("list", "every door")->callback([&] { action = DoorsList; });

  CLI::App* sequences = app.add_subcommand("sequences", "one-time knock sequences")->require_subcommand(1);
  std::string door, for_name, reserve, state;
  int count = 1, limit = 0;
  CLI::App* issue = sequences->add_subcommand("issue", "new sequences, shown once");
  issue->add_option("--door", door, "door")->required();
  issue->add_option("--count", count, "how many (1-1000)")->check(CLI::Range(1, 1000));
  issue->add_option("--for", for_name, "who receives them (default: you)");
  issue->add_option("--reserve", reserve, "offline-reserve sequences valid on this agent alone");
  issue->callback([&] { action = [&](Ctl& c) { return SequencesIssue(c, door, count, for_name, reserve); }; });
  CLI::App* seq_list = sequences->add_subcommand("list", "ids and states, never the knocks");
  seq_list->add_option("--door", door, "only this door");
  seq_list->add_option("--state", state, "only this state")->check(CLI::IsMember({"issued", "live", "burnt"}));
  seq_list->add_option("--reserve", reserve, "only the reserve of this agent");
  seq_list->add_option("--limit", limit, "at most this many, newest first");
  seq_list->callback([&] { action = [&](Ctl& c) { return SequencesList(c, door, state, reserve, limit); }; });

  CLI::App* grants = app.add_subcommand("grants", "access opened for addresses")->require_subcommand(1);
  bool all = false, fleet = false;
  std::string ip, grant_agent, ttl, grant_id;
  CLI::App* grants_list = grants->add_subcommand("list", "open grants (--all: every grant)");
  grants_list->add_flag("--all", all, "include expired and revoked grants");
  grants_list->add_option("--ip", ip, "only this address");
  grants_list->callback([&] { action = [&](Ctl& c) { return GrantsList(c, all, ip); }; });
  CLI::App* grants_open = grants->add_subcommand("open", "open access without a knock");
  grants_open->add_option("--agent", grant_agent, "the bastion");
  grants_open->add_flag("--fleet", fleet, "every bastion");
  grants_open->add_option("--ip", ip, "address to let in")->required();
  grants_open->add_option("--door", door, "door")->required();
  grants_open->add_option("--ttl", ttl, "how long (default: the door's)");
  grants_open->callback([&] { action = [&](Ctl& c) { return GrantsOpen(c, grant_agent, fleet, ip, door, ttl); }; });
  CLI::App* grants_revoke = grants->add_subcommand("revoke", "remove access on every bastion");
  grants_revoke->add_option("id", grant_id, "grant id");
  grants_revoke->add_option("--ip", ip, "every open grant of this address");
  grants_revoke->callback([&] { action = [&](Ctl& c) { return GrantsRevoke(c, grant_id, ip); }; });

  CLI::App* audit = app.add_subcommand("audit", "the fleet's audit log")->require_subcommand(1);
  bool follow = false;
  int tail_n = 20;
  std::string out_file, file, pubkey;
  CLI::App* tail = audit->add_subcommand("tail", "the last records");
  tail->add_flag("-f,--follow", follow, "keep printing new records");
  tail->add_option("-n", tail_n, "how many records back (default 20)");
  tail->callback([&] { action = [&](Ctl& c) { return AuditTail(c, follow, tail_n); }; });
  CLI::App* exp = audit->add_subcommand("export", "the whole log, signed, to a file");
  exp->add_option("--out", out_file, "file to write")->required();
  exp->callback([&] { action = [&](Ctl& c) { return AuditExport(c, out_file); }; });
  CLI::App* verify = audit->add_subcommand("verify", "check the hash chain and signatures");
  verify->add_option("--file", file, "an export to verify offline (no controller needed)");
  verify->add_option("--pubkey", pubkey, "the controller's audit public key (PEM)");
  verify->callback([&] {
    if (file.empty()) {
      action = AuditVerifyRemote;
    } else {
      offline_action = [&] { return AuditVerifyFile(out, err, g.output == "json", file, pubkey); };
    }
  });
  audit->add_subcommand("pubkey", "print the audit public key (PEM)")->callback([&] { action = AuditPubkey; });

  app.add_subcommand("stats", "the controller's counters")->callback([&] { action = Stats; });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, out, err);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (offline_action) return offline_action();
  if (!action) return kExitUsage;
  Ctl ctl(g, out, err);
  if (int code = ctl.Connect(); code != kExitOk) return code;
  return action(ctl);
}

}  // namespace sesame::controller
