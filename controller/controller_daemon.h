// sesame-controller assembled: store, audit log, fleet hub, AgentService,
// AdminService and the standard health service on one mTLS port, plus the
// periodic work (Tick): signed audit checkpoints, closing expired grants,
// the health status and the Prometheus text file.
//
// Start order: store (doors from the configuration are written there, each
// change audited), audit key, hub, services, server. Shutdown: the server
// first (sessions end, agents reconnect with backoff elsewhere or later),
// then a last checkpoint, then the rest.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "controller/controller_config.h"

namespace grpc {
class Server;
}

namespace sesame::controller {

class AdminServiceImpl;
class AgentServiceImpl;
class AuditLog;
class FleetHub;
class SqliteStore;
class WorkQueue;

class ControllerDaemon {
 public:
  static absl::StatusOr<std::unique_ptr<ControllerDaemon>> Start(const ControllerConfig& config,
                                                                  const Clock& clock = RealClock::Instance());
  ~ControllerDaemon();

  // The port actually bound (for Listen = ADDR:0).
  int port() const { return port_; }

  // Periodic work; call every second or so.
  void Tick();
  // Re-reads the doors of the configuration file (SIGHUP).
  absl::Status ReloadDoors(const ControllerConfig& config);
  void Shutdown();

 private:
  ControllerDaemon(const ControllerConfig& config, const Clock& clock);
  absl::Status SyncDoors(const ControllerConfig& config);
  void ExpireGrants();
  void WriteMetrics();

  ControllerConfig config_;
  const Clock& clock_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<FleetHub> hub_;
  std::unique_ptr<WorkQueue> work_;
  std::unique_ptr<AgentServiceImpl> agent_service_;
  std::unique_ptr<AdminServiceImpl> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Time last_checkpoint_ = absl::InfinitePast();
  absl::Time last_metrics_ = absl::InfinitePast();
  bool serving_ = false;
};

}  // namespace sesame::controller
