#include "controller/controller_daemon.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/prometheus_text.h"
#include "common/status_macros.h"
#include "controller/audit/audit_log.h"
#include "controller/sequences/sequence_generator.h"
#include "controller/sequences/sequence_issuer.h"
#include "controller/service/admin_service.h"
#include "controller/service/agent_service.h"
#include "controller/service/client_certificates.h"
#include "controller/service/controller_metrics.h"
#include "controller/service/fleet_hub.h"
#include "controller/service/own_addresses.h"
#include "controller/service/refusal_audit.h"
#include "controller/service/work_queue.h"
#include "controller/store/etcd/etcd_leader.h"
#include "controller/store/etcd/etcd_store.h"
#include "controller/store/sqlite/sqlite_store.h"

namespace sesame::controller {
namespace {

constexpr size_t kWorkers = 4;

AuditEntry ControllerAudit(absl::Time now, const std::string& what) {
  AuditEntry e;
  e.time = now;
  e.who = "controller";
  e.what = what;
  e.where = "controller";
  return e;
}

}  // namespace

ControllerDaemon::ControllerDaemon(const ControllerConfig& config, const Clock& clock)
    : config_(config), clock_(clock) {}

ControllerDaemon::~ControllerDaemon() { Shutdown(); }

absl::StatusOr<std::unique_ptr<ControllerDaemon>> ControllerDaemon::Start(const ControllerConfig& config,
                                                                          const Clock& clock) {
  std::unique_ptr<ControllerDaemon> d(new ControllerDaemon(config, clock));
  RETURN_IF_ERROR(d->OpenStore());
  RETURN_IF_ERROR(d->SyncDoors(config));
  // Other controllers' agents are alive on a shared store: the leader
  // sweeps the silent ones instead.
  if (d->sqlite_ != nullptr) RETURN_IF_ERROR(d->CloseStaleSessions());
  ASSIGN_OR_RETURN(AuditSigningKey key, AuditSigningKey::LoadOrCreate(config.audit_key));
  d->audit_ = std::make_unique<AuditLog>(*d->store_, std::move(key), clock, config.checkpoint_interval);
  ASSIGN_OR_RETURN(d->hub_, FleetHub::Create(*d->store_, clock));
  d->work_ = std::make_unique<WorkQueue>(kWorkers);
  d->generator_ = std::make_unique<SequenceGenerator>();
  ASSIGN_OR_RETURN(d->clients_, ClientCertificates::Load(config.tls.ca_cert, config.tls.crl_dir));
  d->clients_->SetUnknownCaAtCall(config.unknown_ca_at_call);
  d->refusals_ = std::make_unique<RefusalAudit>(*d->audit_, *d->work_, clock, d->metrics_.get());
  d->clients_->SetRefusalSink([refusals = d->refusals_.get(), &clock](const CertificateRefusal& refusal) {
    refusals->Record(TlsRefusalEntry(refusal, clock.Now()));
  });
  AgentServiceOptions agent_options;
  agent_options.heartbeat_interval = config.heartbeat_interval;
  agent_options.metrics = d->metrics_.get();
  agent_options.limits = config.agent_limits;
  agent_options.controller_addresses = LocalAddresses(config.listen);
  d->agent_service_ = std::make_unique<AgentServiceImpl>(*d->store_, *d->hub_, *d->work_,
                                                         TlsIdentityResolver(d->clients_), clock, agent_options);
  AdminServiceOptions admin_options;
  admin_options.metrics = d->metrics_.get();
  admin_options.refusals = d->refusals_.get();
  admin_options.sequence_lifetime = config.sequence_lifetime;
  d->admin_service_ = std::make_unique<AdminServiceImpl>(*d->store_, *d->audit_, *d->work_,
                                                         TlsIdentityResolver(d->clients_), clock, admin_options);

  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, MakeServerCredentials(config.tls, d->clients_));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, creds, &d->port_);
  builder.RegisterService(d->agent_service_.get());
  builder.RegisterService(d->admin_service_.get());
  // Dead agents are noticed without waiting for TCP: ping every 20 s, give
  // up after 10 s without an answer; agents may ping every 10 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  d->server_ = builder.BuildAndStart();
  if (d->server_ == nullptr || d->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen));
  }
  (void)d->store_->AppendAudit({ControllerAudit(clock.Now(), "controller.started")});
  LogEvent(LogLevel::kInfo, "controller.listening",
           {{"listen", config.listen}, {"port", absl::StrCat(d->port_)}, {"state_dir", config.state_dir}},
           absl::StrCat("sesame-controller listening on ", config.listen, " (port ", d->port_, "), state in ",
                        config.state_dir));
  d->Tick();
  return d;
}

absl::Status ControllerDaemon::OpenStore() {
  if (config_.store == StoreKind::kEtcd) {
    EtcdStoreOptions options;
    options.client.endpoints = config_.etcd.endpoints;
    options.client.tls = config_.etcd.tls;
    options.prefix = config_.etcd.prefix;
    options.controller = config_.name;
    options.clock = &clock_;
    ASSIGN_OR_RETURN(std::unique_ptr<EtcdStore> store, EtcdStore::Open(options));
    etcd_ = store.get();
    store_ = std::move(store);
    leader_ = std::make_unique<EtcdLeader>(etcd_->client(), etcd_->keys().leader(), config_.name);
    EtcdStore* etcd = etcd_;
    metrics_ = std::make_unique<ControllerMetrics>([etcd] { return etcd->commit_stats(); });
    LogInfo(absl::StrCat("store: etcd at ", absl::StrJoin(config_.etcd.endpoints, ", "), " under ",
                         config_.etcd.prefix, ", as controller ", config_.name));
    return absl::OkStatus();
  }
  SqliteStoreOptions options;
  options.state_dir = config_.state_dir;
  options.clock = &clock_;
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteStore> store, SqliteStore::Open(options));
  struct stat db {};
  if (stat(store->path().c_str(), &db) != 0) {
    return absl::InternalError(absl::StrCat("cannot stat ", store->path(), ": ", std::strerror(errno)));
  }
  db_device_ = db.st_dev;
  db_inode_ = db.st_ino;
  sqlite_ = store.get();
  store_ = std::move(store);
  SqliteStore* sqlite = sqlite_;
  metrics_ = std::make_unique<ControllerMetrics>([sqlite] { return sqlite->commit_stats(); });
  return absl::OkStatus();
}

bool ControllerDaemon::Leading() { return leader_ == nullptr || leader_->leading(); }

void ControllerDaemon::SweepSilentAgents() {
  absl::StatusOr<std::vector<AgentRecord>> agents = store_->ListAgents();
  if (!agents.ok()) return;
  const absl::Time now = clock_.Now();
  for (AgentRecord& agent : *agents) {
    if (!agent.connected || now - agent.last_heartbeat < 3 * config_.heartbeat_interval) continue;
    agent.connected = false;
    agent.disconnected_at = now;
    AuditEntry audit = ControllerAudit(now, "agent.disconnected");
    audit.who = absl::StrCat("agent:", agent.name);
    audit.where = audit.who;
    audit.details["reason"] = "no heartbeat for three intervals (its controller stopped)";
    absl::Status s = store_->PutAgent(agent, {std::move(audit)});
    if (!s.ok()) {
      LogEvent(LogLevel::kWarning, "agent.disconnect_not_recorded",
               {{"agent", agent.name}, {"error", std::string(s.message())}},
               absl::StrCat("cannot mark agent ", agent.name, " disconnected: ", s.message()));
    }
  }
}

// A controller that was killed could not record its agents' disconnects:
// no session survives a restart, so every agent starts disconnected until it
// says Hello again.
absl::Status ControllerDaemon::CloseStaleSessions() {
  ASSIGN_OR_RETURN(std::vector<AgentRecord> agents, store_->ListAgents());
  for (AgentRecord& agent : agents) {
    if (!agent.connected) continue;
    agent.connected = false;
    agent.disconnected_at = clock_.Now();
    AuditEntry audit;
    audit.time = agent.disconnected_at;
    audit.who = absl::StrCat("agent:", agent.name);
    audit.what = "agent.disconnected";
    audit.where = audit.who;
    audit.details["reason"] = "controller restarted without a clean shutdown";
    RETURN_IF_ERROR(store_->PutAgent(agent, {std::move(audit)}));
  }
  return absl::OkStatus();
}

absl::Status ControllerDaemon::SyncDoors(const ControllerConfig& config) {
  for (const Door& door : config.doors) {
    // Whether one bastion's report opens a door on every bastion is each
    // door's explicit choice (Fleet_Wide, default no): said at every start
    // and reload, and recorded with each change.
    if (door.policy.fleet_wide) {
      LogEvent(LogLevel::kInfo, "door.fleet_wide", {{"door", door.name}},
               absl::StrCat("door ", door.name, " is fleet-wide (Fleet_Wide = yes): one bastion's knock report ",
                            "opens it on every bastion"));
    }
    absl::StatusOr<Door> known = store_->GetDoor(door.name);
    if (known.ok() && known->policy == door.policy) continue;
    if (!known.ok() && !absl::IsNotFound(known.status())) return known.status();
    AuditEntry audit = ControllerAudit(clock_.Now(), known.ok() ? "door.changed" : "door.added");
    audit.details = {
        {"door", door.name}, {"config", config.path}, {"fleet_wide", door.policy.fleet_wide ? "yes" : "no"}};
    ASSIGN_OR_RETURN(Door stored, store_->PutDoor(door, {std::move(audit)}));
    LogEvent(LogLevel::kInfo, known.ok() ? "door.changed" : "door.added",
             {{"door", stored.name}, {"revision", absl::StrCat(stored.revision)}},
             absl::StrCat("door ", stored.name, (known.ok() ? " changed" : " added"), " at revision ",
                          stored.revision));
  }
  return absl::OkStatus();
}

absl::Status ControllerDaemon::ReloadDoors(const ControllerConfig& config) {
  RETURN_IF_ERROR(SyncDoors(config));
  config_.doors = config.doors;
  config_.offline_reserve = config.offline_reserve;
  return absl::OkStatus();
}

void ControllerDaemon::Tick() {
  if (store_ == nullptr) return;
  const absl::Time now = clock_.Now();
  UpdateHealth();
  RecheckSessions();
  if (!Leading()) {
    if (agent_service_ != nullptr) agent_service_->FlushRefusalWindows();
    if (refusals_ != nullptr) refusals_->Flush();
    if (!config_.metrics_file.empty() && now - last_metrics_ >= config_.metrics_interval) {
      WriteMetrics();
      last_metrics_ = now;
    }
    return;
  }
  // The leader's writes below fail once another controller holds the lease.
  std::optional<EtcdStore::FencedScope> fence;
  if (leader_ != nullptr) fence.emplace(leader_->revision());
  if (etcd_ != nullptr) SweepSilentAgents();
  if (now - last_checkpoint_ >= config_.checkpoint_interval) {
    absl::StatusOr<AuditCheckpoint> c = audit_->Checkpoint();
    if (c.ok()) {
      last_checkpoint_ = now;
    } else {
      LogEvent(LogLevel::kWarning, "audit.checkpoint_failed", {{"error", std::string(c.status().message())}},
               absl::StrCat("audit checkpoint failed: ", c.status().message()));
    }
  }
  ExpireGrants();
  ExpireSequences();
  TopUpReserves(now);
  if (agent_service_ != nullptr) agent_service_->FlushRefusalWindows();
  if (refusals_ != nullptr) refusals_->Flush();
  if (!config_.metrics_file.empty() && now - last_metrics_ >= config_.metrics_interval) {
    WriteMetrics();
    last_metrics_ = now;
  }
}

void ControllerDaemon::ExpireGrants() {
  absl::StatusOr<std::vector<GrantRecord>> open = store_->ListGrants(GrantFilter{});
  if (!open.ok()) return;
  const absl::Time now = clock_.Now();
  for (const GrantRecord& g : *open) {
    if (g.expires_at > now) continue;
    AuditEntry audit = ControllerAudit(now, "grant.expired");
    audit.details = {{"address", g.address.ToString()}, {"door", g.door}};
    absl::StatusOr<GrantRecord> closed = store_->CloseGrant(g.id, GrantState::kExpired, /*kill_sessions=*/false, {std::move(audit)});
    if (!closed.ok()) {
      LogEvent(LogLevel::kWarning, "grant.expire_failed",
               {{"grant", absl::StrCat(g.id)}, {"error", std::string(closed.status().message())}},
               absl::StrCat("cannot expire grant ", g.id, ": ", closed.status().message()));
    }
  }
}

absl::Status ControllerDaemon::CheckStore() {
  if (absl::StatusOr<uint64_t> r = store_->CurrentRevision(); !r.ok()) {
    return absl::UnavailableError(absl::StrCat("the store does not answer: ", r.status().message()));
  }
  if (etcd_ != nullptr) return absl::OkStatus();  // a quorum answered the read above
  SqliteStore* store = sqlite_;
  struct stat db {};
  if (stat(store->path().c_str(), &db) != 0 || db.st_dev != db_device_ || db.st_ino != db_inode_) {
    return absl::UnavailableError(
        absl::StrCat("the database file ", store->path(), " was removed or replaced since the start"));
  }
  struct statvfs fs {};
  if (statvfs(config_.state_dir.c_str(), &fs) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot stat ", config_.state_dir, ": ", std::strerror(errno)));
  }
  if ((fs.f_flag & ST_RDONLY) != 0) {
    return absl::UnavailableError(absl::StrCat("the state directory ", config_.state_dir, " is on a read-only filesystem"));
  }
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (free_bytes < kMinFreeBytes) {
    return absl::UnavailableError(
        absl::StrCat("the state directory ", config_.state_dir, " has ", free_bytes, " bytes free (less than ",
                     kMinFreeBytes, "): commits may fail"));
  }
  return absl::OkStatus();
}

void ControllerDaemon::UpdateHealth() {
  const absl::Status usable = CheckStore();
  if (!usable.ok() && usable.message() != unusable_) {
    LogEvent(LogLevel::kError, "health.not_serving", {{"reason", std::string(usable.message())}},
             absl::StrCat(usable.message(), ": health is NOT_SERVING"));
  }
  unusable_ = usable.ok() ? "" : std::string(usable.message());
  metrics_->SetStoreUsable(usable.ok());
  if (server_ == nullptr || (health_set_ && usable.ok() == serving_)) return;
  server_->GetHealthCheckService()->SetServingStatus(usable.ok());
  if (agent_service_ != nullptr) agent_service_->SetServing(usable.ok(), std::string(usable.message()));
  if (health_set_ && usable.ok()) {
    LogEvent(LogLevel::kInfo, "health.serving", {}, "the store is usable again: health is SERVING");
  }
  serving_ = usable.ok();
  health_set_ = true;
}

void ControllerDaemon::WriteMetrics() {
  absl::Status s = WritePrometheusFile(config_.metrics_file, metrics_->Collect(*store_));
  if (!s.ok() && s.message() != metrics_error_) {
    LogEvent(LogLevel::kWarning, "metrics.write_failed",
             {{"file", config_.metrics_file}, {"error", std::string(s.message())}},
             absl::StrCat("metrics: ", s.message()));
  }
  if (s.ok() && !metrics_error_.empty()) {
    LogEvent(LogLevel::kInfo, "metrics.written_again", {{"file", config_.metrics_file}},
             absl::StrCat("metrics: ", config_.metrics_file, " written again"));
  }
  metrics_error_ = s.ok() ? "" : std::string(s.message());
}

void ControllerDaemon::ExpireSequences() {
  // A bounded share of each tick: a day's worth expiring at once drains
  // over a few ticks, and the tick's other work still runs.
  constexpr int kMaxCallsPerTick = 25;
  for (int i = 0; i < kMaxCallsPerTick; ++i) {
    absl::StatusOr<std::vector<Sequence>> burnt = store_->ExpireSequences(kMaxExpiredPerCall);
    if (!burnt.ok()) {
      LogEvent(LogLevel::kWarning, "sequences.expire_failed", {{"error", std::string(burnt.status().message())}},
               absl::StrCat("cannot burn expired sequences: ", burnt.status().message()));
      return;
    }
    if (burnt->size() < kMaxExpiredPerCall) return;
  }
}

void ControllerDaemon::TopUpReserves(absl::Time now) {
  if (config_.offline_reserve.empty() || now - last_reserve_top_up_ < kReserveTopUpInterval) return;
  absl::StatusOr<std::vector<AgentRecord>> agents = store_->ListAgents();
  if (!agents.ok() || agents->empty()) return;  // the first agent gets its reserve at once
  last_reserve_top_up_ = now;
  const std::map<std::pair<std::string, std::string>, size_t> held = hub_->UnusedReserves();
  for (const auto& [door, wanted] : config_.offline_reserve) {
    for (const AgentRecord& agent : *agents) {
      const auto it = held.find({agent.name, door});
      const size_t have = it == held.end() ? 0 : it->second;
      if (have >= static_cast<size_t>(wanted)) continue;
      IssueRequest request;
      request.door = door;
      request.count = static_cast<size_t>(wanted) - have;
      request.issued_to = kUnclaimedReserve;
      request.reserve_agent = agent.name;
      request.actor = "controller";
      request.expires_at = now + config_.sequence_lifetime;
      absl::StatusOr<std::vector<Sequence>> issued = IssueSequences(*store_, *generator_, request, clock_);
      if (issued.ok()) {
        LogEvent(LogLevel::kInfo, "reserve.topped_up",
                 {{"agent", agent.name}, {"door", door}, {"count", absl::StrCat(issued->size())}},
                 absl::StrCat("reserve of ", agent.name, " for door ", door, ": ", issued->size(),
                              " sequence(s) issued, unclaimed (sesamectl sequences claim --reserve ", agent.name,
                              ")"));
      } else {
        LogEvent(LogLevel::kWarning, "reserve.top_up_failed",
                 {{"agent", agent.name}, {"door", door}, {"error", std::string(issued.status().message())}},
                 absl::StrCat("cannot top up the reserve of ", agent.name, " for door ", door, ": ",
                              issued.status().message()));
      }
    }
  }
}

absl::Status ControllerDaemon::ReloadClientCertificates() {
  absl::Status s = clients_ != nullptr ? clients_->Reload() : absl::OkStatus();
  RecheckSessions();
  return s;
}

void ControllerDaemon::RecheckSessions() {
  if (clients_ == nullptr || agent_service_ == nullptr) return;
  clients_->ReloadIfChanged();
  const uint64_t reloads = clients_->reloads();
  if (reloads == client_reloads_seen_) return;
  client_reloads_seen_ = reloads;
  agent_service_->RecheckCertificates(*clients_);
}

void ControllerDaemon::Shutdown() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
    server_.reset();
  }
  admin_service_.reset();
  agent_service_.reset();  // finishes the sessions' bookkeeping
  if (clients_ != nullptr) clients_->SetRefusalSink(nullptr);  // gRPC may hold it a while longer
  if (refusals_ != nullptr) refusals_->Flush(/*all=*/true);
  work_.reset();
  refusals_.reset();
  hub_.reset();
  if (audit_ != nullptr && store_ != nullptr) {
    (void)store_->AppendAudit({ControllerAudit(clock_.Now(), "controller.stopped")});
    if (Leading()) {
      std::optional<EtcdStore::FencedScope> fence;
      if (leader_ != nullptr) fence.emplace(leader_->revision());
      (void)audit_->Checkpoint();
    }
  }
  audit_.reset();
  leader_.reset();  // gives the lease up: another controller leads at once
  store_.reset();
  sqlite_ = nullptr;
  etcd_ = nullptr;
}

}  // namespace sesame::controller
