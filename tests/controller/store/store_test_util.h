// What the store tests share: knocks, addresses, a door, and adding and
// consuming the way agents and operators do, on any Store.
#pragma once

#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "controller/store/etcd/etcd_store.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/support/etcd_cluster.h"

namespace sesame::controller::store_test {

inline const absl::Time kStart = absl::FromUnixSeconds(1700000000);

inline std::vector<Knock> K(std::initializer_list<uint16_t> ports, Protocol p = Protocol::kTcp) {
  std::vector<Knock> out;
  for (uint16_t port : ports) out.push_back(Knock{port, p});
  return out;
}

inline IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

inline Door SshDoor(const std::string& name = "ssh") {
  Door d;
  d.name = name;
  d.policy.sequence_length = 3;
  d.policy.protocols = {Protocol::kTcp, Protocol::kUdp};
  d.policy.port_first = 2000;
  d.policy.port_last = 60000;
  d.policy.avoid_ports = {8080, 443};
  d.policy.grant_ports = {{22, Protocol::kTcp}};
  d.policy.grant_ttl = absl::Seconds(45);
  d.policy.seq_timeout = absl::Seconds(7);
  return d;
}

// Sequences of door "ssh" issued to alice (reserve: for that agent).
inline std::vector<Sequence> AddTo(Store& store, std::vector<std::vector<Knock>> list, const std::string& reserve = "") {
  std::vector<NewSequence> sequences;
  for (auto& knocks : list) sequences.push_back(NewSequence{"ssh", knocks, "alice", reserve});
  absl::StatusOr<std::vector<Sequence>> added = store.AddSequences(sequences, {});
  EXPECT_TRUE(added.ok()) << added.status();
  return added.ok() ? *added : std::vector<Sequence>{};
}

// A knock report of agent, from 198.51.100.7.
inline ConsumeResult ConsumeOn(Store& store, const std::vector<Knock>& knocks, const std::string& agent,
                               const std::string& request_id = "") {
  ConsumeRequest r;
  r.knocks = knocks;
  r.agent = agent;
  r.source = Ip("198.51.100.7");
  r.request_id = request_id;
  absl::StatusOr<ConsumeResult> result = store.Consume(r);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : ConsumeResult{};
}

// One etcd cluster for every etcd test of a test binary, started on first
// use and stopped at exit.
inline testing::EtcdCluster& SharedEtcdCluster() {
  static std::unique_ptr<testing::EtcdCluster> cluster = [] {
    absl::StatusOr<std::unique_ptr<testing::EtcdCluster>> c = testing::EtcdCluster::Start(1);
    if (!c.ok()) {
      ADD_FAILURE() << c.status();
      return std::unique_ptr<testing::EtcdCluster>();
    }
    return *std::move(c);
  }();
  if (cluster == nullptr) std::abort();
  return *cluster;
}

// The store under test, by kind: "sqlite" (its state in state_dir) or
// "etcd" (under prefix on the shared cluster). Opening again the same
// state_dir or prefix is a restart.
inline absl::StatusOr<std::unique_ptr<Store>> OpenStoreUnderTest(const std::string& kind, const std::string& state_dir,
                                                                 const std::string& prefix, const Clock* clock) {
  if (kind == "sqlite") {
    SqliteStoreOptions options;
    options.state_dir = state_dir;
    options.clock = clock;
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(*std::move(store));
  }
  testing::EtcdCluster& cluster = SharedEtcdCluster();
  EtcdStoreOptions options;
  options.client.endpoints = cluster.endpoints();
  options.client.tls.ca_cert = cluster.ca_cert();
  options.client.tls.cert = cluster.client_cert();
  options.client.tls.key = cluster.client_key();
  options.prefix = prefix;
  options.clock = clock;
  absl::StatusOr<std::unique_ptr<EtcdStore>> store = EtcdStore::Open(options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(*std::move(store));
}

// A key prefix no other test of the binary uses.
inline std::string FreshPrefix() {
  static int count = 0;
  return absl::StrCat("/test-", ++count, "/");
}

}  // namespace sesame::controller::store_test
