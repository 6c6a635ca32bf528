// The [controller] keys that choose the store: SQLite by default, etcd with
// its endpoints and its own TLS files, each mistake a FILE:LINE error.
#include "controller/controller_config.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;

const std::string kTls = "[tls]\nCA_Cert=/a\nCert=/b\nKey=/c\n";

TEST(ControllerConfigStoreTest, SqliteIsTheDefaultAndNameDefaultsToTheHost) {
  absl::StatusOr<ControllerConfig> c = ParseControllerConfig(kTls, "c.conf");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->store, StoreKind::kSqlite);
  EXPECT_FALSE(c->name.empty());
  EXPECT_TRUE(IsValidName(c->name)) << c->name;
}

TEST(ControllerConfigStoreTest, LogFormatIsTextOrJson) {
  absl::StatusOr<ControllerConfig> c = ParseControllerConfig(kTls, "c.conf");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log_format, LogFormat::kText);
  c = ParseControllerConfig(std::string("[controller]\nLogFormat = JSON\n") + kTls, "c.conf");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log_format, LogFormat::kJson);
  c = ParseControllerConfig(std::string("[controller]\nLogFormat = yaml\n") + kTls, "c.conf");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "c.conf:2: LogFormat: \"yaml\": expected text or json");
}

TEST(ControllerConfigStoreTest, EtcdWithEndpointsAndItsOwnTls) {
  absl::StatusOr<ControllerConfig> c = ParseControllerConfig(
      "[controller]\n  Name = ctl-2\n  Store = etcd\n"
      "  Etcd_Endpoints = https://10.0.0.1:2379, https://[2001:db8::1]:2379 ,https://etcd3.example:2379\n"
      "  Etcd_CaCert = /etc/sesame/etcd/ca.crt\n  Etcd_Cert = /etc/sesame/etcd/client.crt\n"
      "  Etcd_Key = /etc/sesame/etcd/client.key\n  Etcd_Prefix = /fleet-a/\n" +
          kTls,
      "c.conf");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->store, StoreKind::kEtcd);
  EXPECT_EQ(c->name, "ctl-2");
  EXPECT_EQ(c->etcd.endpoints, (std::vector<std::string>{"https://10.0.0.1:2379", "https://[2001:db8::1]:2379",
                                                         "https://etcd3.example:2379"}));
  EXPECT_EQ(c->etcd.tls.ca_cert, "/etc/sesame/etcd/ca.crt");
  EXPECT_EQ(c->etcd.tls.cert, "/etc/sesame/etcd/client.crt");
  EXPECT_EQ(c->etcd.tls.key, "/etc/sesame/etcd/client.key");
  EXPECT_EQ(c->etcd.prefix, "/fleet-a/");
}

TEST(ControllerConfigStoreTest, MistakesAreClearErrors) {
  const std::string etcd_files = "  Etcd_CaCert = /ca\n  Etcd_Cert = /crt\n  Etcd_Key = /key\n";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[controller]\nStore = postgres\n", "c.conf:2: Store: \"postgres\": expected sqlite or etcd"},
      {"[controller]\nName = a b\n", "c.conf:2: Name: \"a b\""},
      {"[controller]\nStore = etcd\nEtcd_Endpoints = http://10.0.0.1:2379\n",
       "c.conf:3: Etcd_Endpoints: \"http://10.0.0.1:2379\": expected https://HOST:PORT"},
      {"[controller]\nStore = etcd\nEtcd_Endpoints = https://10.0.0.1\n", "c.conf:3: Etcd_Endpoints"},
      {"[controller]\nStore = etcd\nEtcd_Endpoints = https://10.0.0.1:99999\n", "c.conf:3: Etcd_Endpoints"},
      {"[controller]\nStore = etcd\nEtcd_Prefix = sesame\n", "c.conf:3: Etcd_Prefix"},
      {"[controller]\nStore = etcd\nEtcd_Color = blue\n", "c.conf:3: unknown key \"etcd_color\""},
      {"[controller]\nStore = etcd\n" + etcd_files, "Store = etcd needs Etcd_Endpoints"},
      {"[controller]\nStore = etcd\nEtcd_Endpoints = https://e:2379\n  Etcd_CaCert = /ca\n  Etcd_Cert = /crt\n",
       "Store = etcd needs Etcd_Key"},
      {"[controller]\nEtcd_Endpoints = https://e:2379\n" + etcd_files,
       "c.conf:5: Etcd_* keys, but the store is SQLite"},
  };
  for (const auto& [text, expected] : bad) {
    absl::StatusOr<ControllerConfig> r = ParseControllerConfig(text + kTls, "c.conf");
    EXPECT_FALSE(r.ok()) << text;
    EXPECT_THAT(r.status().message(), HasSubstr(expected)) << text;
  }
}

}  // namespace
}  // namespace sesame::controller
