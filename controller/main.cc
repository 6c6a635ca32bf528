// sesame-controller: see deploy/man/sesame-controller.8.
//
//   sesame-controller --config /etc/sesame/controller.conf
//   sesame-controller --check-config /etc/sesame/controller.conf
//   sesame-controller --config CONF migrate --from sqlite:/var/lib/sesame-controller --to etcd
//
// Signals are taken synchronously (sigtimedwait on the main thread, every
// other thread has them blocked), which also paces the periodic work.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/service_notifier.h"
#include "controller/controller_config.h"
#include "controller/controller_daemon.h"
#include "controller/migrate.h"
#include "controller/service/client_certificates.h"
#include "controller/service/tls_credentials.h"

namespace {

constexpr char kVersion[] = "0.1.0";

int CheckConfig(const std::string& path) {
  absl::StatusOr<sesame::controller::ControllerConfig> config = sesame::controller::LoadControllerConfig(path);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::shared_ptr<sesame::controller::ClientCertificates>> clients =
      sesame::controller::ClientCertificates::Load(config->tls.ca_cert, config->tls.crl_dir);
  absl::Status tls = clients.ok() ? sesame::controller::MakeServerCredentials(config->tls, *clients).status()
                                  : clients.status();
  if (!tls.ok()) {
    std::fprintf(stderr, "%s: [tls]: %s\n", path.c_str(), std::string(tls.message()).c_str());
    return 1;
  }
  if (config->store == sesame::controller::StoreKind::kEtcd) {
    // etcd's CA, our client certificate and its key, read and matched
    // (the cluster itself is not contacted).
    absl::Status etcd = sesame::controller::MakeClientCredentials(config->etcd.tls).status();
    if (!etcd.ok()) {
      std::fprintf(stderr, "%s: [controller] Etcd_*: %s\n", path.c_str(), std::string(etcd.message()).c_str());
      return 1;
    }
    std::printf("%s: OK (%zu doors, store etcd at %zu endpoints under %s, controller %s)\n", path.c_str(),
                config->doors.size(), config->etcd.endpoints.size(), config->etcd.prefix.c_str(),
                config->name.c_str());
    return 0;
  }
  std::printf("%s: OK (%zu doors)\n", path.c_str(), config->doors.size());
  return 0;
}

int Migrate(const std::string& config_path, const std::string& from, const std::string& to) {
  absl::StatusOr<sesame::controller::ControllerConfig> config = sesame::controller::LoadControllerConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::string> done = sesame::controller::Migrate(from, to, *config);
  if (!done.ok()) {
    std::fprintf(stderr, "%s\n", std::string(done.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", done->c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sesame-controller: one-time knock sequences, grants and audit for a fleet of sesame agents"};
  std::string config_path = "/etc/sesame/controller.conf";
  std::string check_path;
  app.add_option("-c,--config", config_path, "configuration file");
  app.add_option("--check-config", check_path, "check a configuration file and exit");
  app.set_version_flag("-V,--version", kVersion);
  CLI::App* migrate = app.add_subcommand("migrate", "copy a stopped controller's SQLite store into etcd");
  std::string migrate_from, migrate_to;
  migrate->add_option("--from", migrate_from, "sqlite:PATH (the state directory or its controller.db)")->required();
  migrate->add_option("--to", migrate_to, "etcd (as the configuration's Etcd_* keys say)")->required();
  CLI11_PARSE(app, argc, argv);
  if (!check_path.empty()) return CheckConfig(check_path);
  if (migrate->parsed()) return Migrate(config_path, migrate_from, migrate_to);

  sesame::LogOptions log_options;
  log_options.ident = "sesame-controller";
  (void)sesame::ConfigureLogging(log_options);

  absl::StatusOr<sesame::controller::ControllerConfig> config = sesame::controller::LoadControllerConfig(config_path);
  if (!config.ok()) {
    sesame::LogError(std::string(config.status().message()));
    return 1;
  }
  log_options.format = config->log_format;
  (void)sesame::ConfigureLogging(log_options);

  // Block the signals in every thread; the main thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  sesame::ServiceNotifier systemd = sesame::ServiceNotifier::FromEnvironment();
  absl::StatusOr<std::unique_ptr<sesame::controller::ControllerDaemon>> daemon =
      sesame::controller::ControllerDaemon::Start(*config);
  if (!daemon.ok()) {
    sesame::LogError(absl::StrCat("cannot start: ", daemon.status().message()));
    return 1;
  }
  // Ready: the store is open and the listener bound. The watchdog is pinged
  // after each tick, so a tick that hangs (a store call that never returns)
  // gets the daemon restarted.
  std::string status = absl::StrCat("listening on port ", (*daemon)->port(), "; ", (*daemon)->HealthLine());
  systemd.Ready(status);
  for (;;) {
    systemd.PingWatchdog(absl::Now());
    timespec tick{1, 0};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) break;
    if (sig == SIGHUP) {
      absl::StatusOr<sesame::controller::ControllerConfig> reloaded =
          sesame::controller::LoadControllerConfig(config_path);
      absl::Status s = reloaded.ok() ? (*daemon)->ReloadDoors(*reloaded) : reloaded.status();
      if (s.ok()) s = (*daemon)->ReloadClientCertificates();
      if (s.ok()) {
        sesame::LogInfo(
            "configuration reloaded (doors, CA bundle and CRLs; listen address, TLS file names and state take a "
            "restart)");
      } else {
        sesame::LogError(absl::StrCat("reload refused, keeping the running configuration: ", s.message()));
      }
    }
    (*daemon)->Tick();
    if (std::string now = absl::StrCat("listening on port ", (*daemon)->port(), "; ", (*daemon)->HealthLine());
        now != status) {
      status = std::move(now);
      systemd.Status(status);
    }
  }
  systemd.Stopping();
  sesame::LogInfo("stopping");
  (*daemon)->Shutdown();
  return 0;
}
