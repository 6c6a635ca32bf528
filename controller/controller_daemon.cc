#include "controller/controller_daemon.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "controller/admin_service.h"
#include "controller/agent_service.h"
#include "controller/audit_log.h"
#include "controller/fleet_hub.h"
#include "controller/sqlite_store.h"
#include "controller/work_queue.h"

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
  SqliteStoreOptions store_options;
  store_options.state_dir = config.state_dir;
  store_options.clock = &clock;
  ASSIGN_OR_RETURN(d->store_, SqliteStore::Open(store_options));
  RETURN_IF_ERROR(d->SyncDoors(config));
  ASSIGN_OR_RETURN(AuditSigningKey key, AuditSigningKey::LoadOrCreate(config.audit_key));
  d->audit_ = std::make_unique<AuditLog>(*d->store_, std::move(key), clock);
  ASSIGN_OR_RETURN(d->hub_, FleetHub::Create(*d->store_, clock));
  d->work_ = std::make_unique<WorkQueue>(kWorkers);
  AgentServiceOptions agent_options;
  agent_options.heartbeat_interval = config.heartbeat_interval;
  d->agent_service_ = std::make_unique<AgentServiceImpl>(*d->store_, *d->hub_, *d->work_, TlsIdentityResolver(),
                                                         clock, agent_options);
  d->admin_service_ =
      std::make_unique<AdminServiceImpl>(*d->store_, *d->audit_, *d->work_, TlsIdentityResolver(), clock);

  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, MakeServerCredentials(config.tls));
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
  LogInfo(absl::StrCat("sesame-controller listening on ", config.listen, " (port ", d->port_, "), state in ",
                       config.state_dir));
  d->Tick();
  return d;
}

absl::Status ControllerDaemon::SyncDoors(const ControllerConfig& config) {
  for (const Door& door : config.doors) {
    absl::StatusOr<Door> known = store_->GetDoor(door.name);
    if (known.ok() && known->policy == door.policy) continue;
    if (!known.ok() && !absl::IsNotFound(known.status())) return known.status();
    AuditEntry audit = ControllerAudit(clock_.Now(), known.ok() ? "door.changed" : "door.added");
    audit.details = {{"door", door.name}, {"config", config.path}};
    ASSIGN_OR_RETURN(Door stored, store_->PutDoor(door, {std::move(audit)}));
    LogInfo(absl::StrCat("door ", stored.name, (known.ok() ? " changed" : " added"), " at revision ",
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
  // Health: SERVING only while the store answers.
  const bool usable = store_->CurrentRevision().ok();
  if (server_ != nullptr && usable != serving_) {
    server_->GetHealthCheckService()->SetServingStatus(usable);
    serving_ = usable;
    if (!usable) LogError("the store does not answer: health is NOT_SERVING");
  }
  if (now - last_checkpoint_ >= config_.checkpoint_interval) {
    absl::StatusOr<AuditCheckpoint> c = audit_->Checkpoint();
    if (c.ok()) {
      last_checkpoint_ = now;
    } else {
      LogWarning(absl::StrCat("audit checkpoint failed: ", c.status().message()));
    }
  }
  ExpireGrants();
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
    absl::StatusOr<GrantRecord> closed = store_->CloseGrant(g.id, GrantState::kExpired, {std::move(audit)});
    if (!closed.ok()) LogWarning(absl::StrCat("cannot expire grant ", g.id, ": ", closed.status().message()));
  }
}

void ControllerDaemon::WriteMetrics() {
  std::string out;
  auto gauge = [&out](const char* name, const char* help, double value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " gauge\n", name, " ", value, "\n");
  };
  auto counter = [&out](const char* name, const char* help, double value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " counter\n", name, " ", value, "\n");
  };
  gauge("sesame_controller_sessions", "Agent sessions open.", static_cast<double>(hub_->sessions()));
  gauge("sesame_controller_revision", "The store's revision.", static_cast<double>(hub_->revision()));
  gauge("sesame_controller_up", "1 while the store answers.", serving_ ? 1 : 0);
  if (absl::StatusOr<AuditHead> head = store_->GetAuditHead(); head.ok()) {
    gauge("sesame_controller_audit_records", "Records in the audit chain.", static_cast<double>(head->record_count));
  }
  if (absl::StatusOr<std::vector<GrantRecord>> open = store_->ListGrants(GrantFilter{}); open.ok()) {
    gauge("sesame_controller_grants_open", "Grants open.", static_cast<double>(open->size()));
  }
  const GroupCommitStats stats = store_->commit_stats();
  counter("sesame_controller_store_commits_total", "Store transactions committed.", static_cast<double>(stats.batches));
  counter("sesame_controller_store_operations_total", "Store writes committed.", static_cast<double>(stats.operations));
  absl::Status s = WriteFileAtomically(config_.metrics_file, out, 0644);
  if (!s.ok()) LogWarning(absl::StrCat("metrics: ", s.message()));
}

void ControllerDaemon::Shutdown() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
    server_.reset();
  }
  admin_service_.reset();
  agent_service_.reset();  // finishes the sessions' bookkeeping
  work_.reset();
  hub_.reset();
  if (audit_ != nullptr && store_ != nullptr) {
    (void)store_->AppendAudit({ControllerAudit(clock_.Now(), "controller.stopped")});
    (void)audit_->Checkpoint();
  }
  audit_.reset();
  store_.reset();
}

}  // namespace sesame::controller
