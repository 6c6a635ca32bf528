#include "controller/store/etcd/etcd_leader.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "etcd_rows.pb.h"

namespace sesame::controller {

EtcdLeader::EtcdLeader(EtcdClient& client, std::string key, std::string controller, absl::Duration ttl)
    : client_(client), key_(std::move(key)), controller_(std::move(controller)), ttl_(ttl) {
  Round();  // a lone controller leads from its first tick
  thread_ = std::thread([this] { Loop(); });
}

EtcdLeader::~EtcdLeader() {
  stop_.Notify();
  thread_.join();
  int64_t lease = 0;
  {
    absl::MutexLock lock(&mu_);
    lease = lease_;
    revision_ = 0;
  }
  if (lease != 0) (void)client_.LeaseRevoke(lease);
}

bool EtcdLeader::leading() const {
  absl::MutexLock lock(&mu_);
  return revision_ != 0 && absl::Now() < valid_until_;
}

int64_t EtcdLeader::revision() const {
  absl::MutexLock lock(&mu_);
  return absl::Now() < valid_until_ ? revision_ : 0;
}

void EtcdLeader::Loop() {
  while (!stop_.WaitForNotificationWithTimeout(ttl_ / 6)) Round();
}

void EtcdLeader::Round() {
  int64_t lease = 0;
  {
    absl::MutexLock lock(&mu_);
    lease = lease_;
  }
  const absl::Time sent = absl::Now();
  if (lease == 0) {
    absl::StatusOr<etcdserverpb::LeaseGrantResponse> granted = client_.LeaseGrant(absl::ToInt64Seconds(ttl_));
    if (!granted.ok()) return;
    absl::MutexLock lock(&mu_);
    lease_ = granted->id();
    valid_until_ = sent + absl::Seconds(granted->ttl()) - ttl_ / 3;
  } else {
    absl::StatusOr<int64_t> left = client_.LeaseKeepAliveOnce(lease);
    if (!left.ok()) return;  // leading ends by itself at valid_until_
    absl::MutexLock lock(&mu_);
    if (*left <= 0) {
      if (revision_ != 0) {
        LogEvent(LogLevel::kWarning, "leader.lost", {{"controller", controller_}, {"why", "lease expired"}},
                 "etcd store: this controller's lease expired; it no longer leads");
      }
      lease_ = 0;
      revision_ = 0;
      return;
    }
    valid_until_ = sent + absl::Seconds(*left) - ttl_ / 3;
  }
  Campaign();
}

void EtcdLeader::Campaign() {
  int64_t lease = 0;
  {
    absl::MutexLock lock(&mu_);
    lease = lease_;
  }
  store::etcd::LeaderRow row;
  row.set_controller(controller_);
  row.set_since_us(absl::ToUnixMicros(absl::Now()));
  etcdserverpb::TxnRequest txn;
  etcdserverpb::Compare* nobody = txn.add_compare();
  nobody->set_key(key_);
  nobody->set_target(etcdserverpb::Compare::CREATE);
  nobody->set_result(etcdserverpb::Compare::EQUAL);
  nobody->set_create_revision(0);
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key_);
  put->set_value(row.SerializeAsString());
  put->set_lease(lease);
  txn.add_failure()->mutable_request_range()->set_key(key_);
  absl::StatusOr<etcdserverpb::TxnResponse> r = client_.Txn(txn);
  if (!r.ok()) return;
  int64_t revision = 0;
  if (r->succeeded()) {
    revision = r->header().revision();
  } else if (r->responses_size() > 0 && r->responses(0).response_range().kvs_size() > 0) {
    const mvccpb::KeyValue& holder = r->responses(0).response_range().kvs(0);
    if (holder.lease() == lease) revision = holder.create_revision();  // ours already
  }
  absl::MutexLock lock(&mu_);
  if (revision != 0 && revision_ == 0) {
    LogEvent(LogLevel::kInfo, "leader.won", {{"controller", controller_}, {"revision", absl::StrCat(revision)}},
             absl::StrCat("etcd store: controller ", controller_, " leads"));
  }
  if (revision == 0 && revision_ != 0) {
    LogEvent(LogLevel::kWarning, "leader.lost", {{"controller", controller_}},
             absl::StrCat("etcd store: controller ", controller_, " no longer leads"));
  }
  revision_ = revision;
}

}  // namespace sesame::controller
