// sesame-controller with Store = etcd: two controllers on one store, one of
// them leading; the leader marks disconnected an agent whose controller
// died (its heartbeats stopped), and only the leader signs checkpoints.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "controller/controller_config.h"
#include "controller/controller_daemon.h"
#include "controller/store/etcd/etcd_store.h"
#include "gtest/gtest.h"
#include "tests/support/etcd_cluster.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace sesame::controller {
namespace {

using testing::Eventually;

class ControllerDaemonEtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::EtcdCluster>> cluster = testing::EtcdCluster::Start(1);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    const absl::Status pki =
        testing::MakeTestPki(pki_.path(), {{"ctl", "controller", {"localhost"}, {"127.0.0.1"}}});
    ASSERT_TRUE(pki.ok()) << pki;
  }

  ControllerConfig Config(const std::string& name) {
    const std::string conf = absl::StrCat(
        "[controller]\nListen = 127.0.0.1:0\nStateDir = ", state_.File(name), "\nName = ", name,
        "\nStore = etcd\nEtcd_Endpoints = ", absl::StrJoin(cluster_->endpoints(), ", "),
        "\nEtcd_CaCert = ", cluster_->ca_cert(), "\nEtcd_Cert = ", cluster_->client_cert(),
        "\nEtcd_Key = ", cluster_->client_key(), "\n[tls]\nCA_Cert = ", pki_.File("ca.crt"),
        "\nCert = ", pki_.File("ctl.crt"), "\nKey = ", pki_.File("ctl.key"), "\n[audit]\nSigning_Key = ",
        state_.File("audit.key"), "\n[door ssh]\nSequence_Length = 3\n");
    absl::StatusOr<ControllerConfig> config = ParseControllerConfig(conf, "test.conf");
    EXPECT_TRUE(config.ok()) << config.status();
    return *config;
  }

  std::unique_ptr<EtcdStore> Store() {
    EtcdStoreOptions options;
    options.client.endpoints = cluster_->endpoints();
    options.client.tls = TlsFiles{cluster_->ca_cert(), cluster_->client_cert(), cluster_->client_key(), ""};
    absl::StatusOr<std::unique_ptr<EtcdStore>> store = EtcdStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return *std::move(store);
  }

  std::unique_ptr<testing::EtcdCluster> cluster_;
  testing::TempDir pki_, state_;
  ManualClock clock_{absl::Now()};
};

TEST_F(ControllerDaemonEtcdTest, TheLeaderClosesTheSessionsOfAgentsWhoseControllerDied) {
  absl::StatusOr<std::unique_ptr<ControllerDaemon>> first = ControllerDaemon::Start(Config("controller1"), clock_);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<ControllerDaemon>> second = ControllerDaemon::Start(Config("controller2"), clock_);
  ASSERT_TRUE(second.ok()) << second.status();

  // An agent a third controller had, which died: connected, heartbeats stopped.
  std::unique_ptr<EtcdStore> store = Store();
  AgentRecord agent;
  agent.name = "bastion1";
  agent.connected = true;
  agent.connected_at = agent.last_heartbeat = clock_.Now();
  ASSERT_TRUE(store->PutAgent(agent, {}).ok());
  (*first)->Tick();
  (*second)->Tick();
  EXPECT_TRUE(store->GetAgent("bastion1")->connected);  // one interval: still there

  clock_.Advance(absl::Seconds(31));  // three heartbeat intervals of 10 s
  ASSERT_TRUE(Eventually([&] {
    (*first)->Tick();
    (*second)->Tick();
    return !store->GetAgent("bastion1")->connected;
  }));
  absl::StatusOr<std::vector<AuditRecord>> audit = store->ReadAudit(0, 1000);
  ASSERT_TRUE(audit.ok());
  int disconnected = 0;
  for (const AuditRecord& r : *audit) {
    if (r.entry.what == "agent.disconnected" && r.entry.who == "agent:bastion1") ++disconnected;
  }
  EXPECT_EQ(disconnected, 1);  // by the leader alone
}

}  // namespace
}  // namespace sesame::controller
