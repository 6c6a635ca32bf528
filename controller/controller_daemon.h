// sesame-controller assembled: store, audit log, fleet hub, AgentService,
// AdminService and the standard health service on one mTLS port, plus the
// periodic work (Tick): signed audit checkpoints, closing expired grants,
// the health status and the Prometheus text file.
//
// Health: SERVING only while the store is usable, which Tick checks each
// time: the store answers a read; on SQLite, its database file is still the
// one it opened (deleted or replaced under it, commits would land in a file
// that is gone at the next start), and the state directory's filesystem is
// writable with at least kMinFreeBytes free; on etcd, a linearizable read
// answers (an etcd quorum is reachable). NOT_SERVING is logged with the
// reason once, and so is the recovery.
//
// With Store = etcd, several controllers share one state; the singleton
// work of Tick (closing expired grants, signing checkpoints, closing the
// sessions of agents whose controller died) runs on the one holding the
// leader lease (etcd_leader.h), fenced so that a controller that lost it
// changes nothing more.
//
// Metrics (controller_metrics.h): one ControllerMetrics shared by
// AgentService (counts), AdminService (GetStats, GetAgent) and the file
// written every [metrics] Interval.
//
// Start order: store (doors from the configuration are written there, each
// change audited), audit key, hub, services, server. Shutdown: the server
// first (sessions end, agents reconnect with backoff elsewhere or later),
// then a last checkpoint, then the rest.
#pragma once

#include <memory>

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "controller/controller_config.h"

namespace grpc {
class Server;
}

namespace sesame::controller {

class AdminServiceImpl;
class AgentServiceImpl;
class AuditLog;
class ClientCertificates;
class EtcdLeader;
class EtcdStore;
class ControllerMetrics;
class FleetHub;
class RefusalAudit;
class SequenceGenerator;
class SqliteStore;
class Store;
class WorkQueue;

class ControllerDaemon {
 public:
  static absl::StatusOr<std::unique_ptr<ControllerDaemon>> Start(const ControllerConfig& config,
                                                                  const Clock& clock = RealClock::Instance());
  ~ControllerDaemon();

  // The port actually bound (for Listen = ADDR:0).
  int port() const { return port_; }

  // Below this much free space in the state directory the store is not
  // usable: the next commits may fail.
  static constexpr uint64_t kMinFreeBytes = 1 << 20;

  // Periodic work; call every second or so.
  void Tick();
  // Whether the store is usable now (see the top); the reason when not.
  absl::Status CheckStore();
  // What health said at the last Tick, in a line: "SERVING" or
  // "NOT_SERVING: why" (systemd's STATUS=).
  std::string HealthLine() const { return serving_ ? "SERVING" : absl::StrCat("NOT_SERVING: ", unusable_); }
  // Re-reads the doors of the configuration file (SIGHUP).
  absl::Status ReloadDoors(const ControllerConfig& config);
  // Re-reads the CA bundle and the CRLs now (SIGHUP; otherwise within a
  // second of a change, at the next client certificate judged).
  absl::Status ReloadClientCertificates();
  void Shutdown();

 private:
  ControllerDaemon(const ControllerConfig& config, const Clock& clock);
  absl::Status OpenStore();
  absl::Status CloseStaleSessions();
  // With etcd: agents marked connected whose heartbeats stopped (their
  // controller died) are marked disconnected.
  void SweepSilentAgents();
  // Whether this controller does the singleton work now.
  bool Leading();
  absl::Status SyncDoors(const ControllerConfig& config);
  void ExpireGrants();
  // Burns the sequences whose expiry has come (the leader's work).
  void ExpireSequences();
  // Issues each bastion's missing reserve sequences ([door] Offline_Reserve),
  // unclaimed (sesamectl sequences claim), every kReserveTopUpInterval.
  void TopUpReserves(absl::Time now);
  static constexpr absl::Duration kReserveTopUpInterval = absl::Seconds(10);
  void WriteMetrics();
  void UpdateHealth();
  // New CA bundle or CRLs: the agents' sessions are judged again.
  void RecheckSessions();

  ControllerConfig config_;
  const Clock& clock_;
  std::unique_ptr<Store> store_;
  SqliteStore* sqlite_ = nullptr;  // the store, when it is SQLite
  EtcdStore* etcd_ = nullptr;      // the store, when it is etcd
  std::unique_ptr<EtcdLeader> leader_;
  dev_t db_device_ = 0;  // the database file as opened
  ino_t db_inode_ = 0;
  std::unique_ptr<ControllerMetrics> metrics_;
  std::unique_ptr<AuditLog> audit_;
  std::shared_ptr<ClientCertificates> clients_;
  std::unique_ptr<RefusalAudit> refusals_;
  uint64_t client_reloads_seen_ = 0;  // clients_->reloads() at the last sessions' recheck
  std::unique_ptr<FleetHub> hub_;
  std::unique_ptr<WorkQueue> work_;
  std::unique_ptr<SequenceGenerator> generator_;  // the reserves' top-up
  absl::Time last_reserve_top_up_ = absl::InfinitePast();
  std::unique_ptr<AgentServiceImpl> agent_service_;
  std::unique_ptr<AdminServiceImpl> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Time last_checkpoint_ = absl::InfinitePast();
  absl::Time last_metrics_ = absl::InfinitePast();
  bool serving_ = false;
  bool health_set_ = false;  // serving_ has been told to the health service
  std::string unusable_;       // why the store was last found unusable
  std::string metrics_error_;  // the metrics file's last error, said once
};

}  // namespace sesame::controller
