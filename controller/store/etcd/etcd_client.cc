#include "controller/store/etcd/etcd_client.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"

namespace sesame::controller {
namespace {

absl::Status FromGrpc(const grpc::Status& status, const std::string& endpoint, const char* call) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("etcd ", endpoint, " ", call, ": ", status.error_message()));
}

// A member that is down, cut off or without a leader: try another.
bool MemberUnavailable(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
         absl::StrContains(status.message(), "no leader");
}

}  // namespace

std::string EtcdPrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Connect(const EtcdClientOptions& options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("etcd: no endpoints");
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials, MakeClientCredentials(options.tls));
  std::unique_ptr<EtcdClient> client(new EtcdClient(options));
  for (const std::string& endpoint : options.endpoints) {
    std::string target = endpoint;
    if (absl::StartsWith(target, "https://")) target = target.substr(8);
    if (target.empty() || absl::StartsWith(target, "http://")) {
      return absl::InvalidArgumentError(absl::StrCat("etcd endpoint \"", endpoint, "\": expected https://HOST:PORT"));
    }
    grpc::ChannelArguments args;
    // Reconnect to a member that came back within a second or so, not
    // after gRPC's default backoff of up to two minutes.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetMaxReceiveMessageSize(64 << 20);
    Member m;
    m.endpoint = endpoint;
    m.channel = grpc::CreateCustomChannel(target, credentials, args);
    m.kv = etcdserverpb::KV::NewStub(m.channel);
    m.lease = etcdserverpb::Lease::NewStub(m.channel);
    m.watch = etcdserverpb::Watch::NewStub(m.channel);
    client->members_.push_back(std::move(m));
  }
  return client;
}

EtcdClient::Member& EtcdClient::Current(size_t* index) {
  absl::MutexLock lock(&mu_);
  *index = current_;
  return members_[current_];
}

void EtcdClient::FailedIndex(size_t index) {
  absl::MutexLock lock(&mu_);
  if (current_ == index) current_ = (current_ + 1) % members_.size();
}

void EtcdClient::Failed(const std::string& endpoint) {
  for (size_t i = 0; i < members_.size(); ++i) {
    if (members_[i].endpoint == endpoint) FailedIndex(i);
  }
}

std::unique_ptr<grpc::ClientContext> EtcdClient::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
  return context;
}

template <typename Call>
absl::Status EtcdClient::OnMembers(bool retry, const Call& call) {
  std::vector<std::string> errors;
  const size_t attempts = retry ? members_.size() : 1;
  for (size_t attempt = 0; attempt < attempts; ++attempt) {
    size_t index = 0;
    Member& m = Current(&index);
    absl::Status status = call(m);
    if (!MemberUnavailable(status)) return status;
    FailedIndex(index);
    errors.push_back(std::string(status.message()));
  }
  return absl::UnavailableError(absl::StrJoin(errors, "; "));
}

absl::StatusOr<etcdserverpb::RangeResponse> EtcdClient::Range(const std::string& key, const std::string& range_end,
                                                              int64_t limit, int64_t revision, bool serializable) {
  etcdserverpb::RangeRequest request;
  request.set_serializable(serializable);
  request.set_key(key);
  request.set_range_end(range_end);
  request.set_limit(limit);
  request.set_revision(revision);
  etcdserverpb::RangeResponse response;
  RETURN_IF_ERROR(OnMembers(true, [&](Member& m) {
    response.Clear();
    return FromGrpc(m.kv->Range(NewContext().get(), request, &response), m.endpoint, "Range");
  }));
  return response;
}

absl::StatusOr<etcdserverpb::TxnResponse> EtcdClient::Txn(const etcdserverpb::TxnRequest& request) {
  etcdserverpb::TxnResponse response;
  RETURN_IF_ERROR(OnMembers(false, [&](Member& m) {
    return FromGrpc(m.kv->Txn(NewContext().get(), request, &response), m.endpoint, "Txn");
  }));
  return response;
}

absl::StatusOr<etcdserverpb::LeaseGrantResponse> EtcdClient::LeaseGrant(int64_t ttl_seconds) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  etcdserverpb::LeaseGrantResponse response;
  RETURN_IF_ERROR(OnMembers(true, [&](Member& m) {
    response.Clear();
    return FromGrpc(m.lease->LeaseGrant(NewContext().get(), request, &response), m.endpoint, "LeaseGrant");
  }));
  if (!response.error().empty()) return absl::UnavailableError(absl::StrCat("etcd LeaseGrant: ", response.error()));
  return response;
}

absl::Status EtcdClient::LeaseRevoke(int64_t lease_id) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  etcdserverpb::LeaseRevokeResponse response;
  return OnMembers(true, [&](Member& m) {
    return FromGrpc(m.lease->LeaseRevoke(NewContext().get(), request, &response), m.endpoint, "LeaseRevoke");
  });
}

absl::StatusOr<int64_t> EtcdClient::LeaseKeepAliveOnce(int64_t lease_id) {
  int64_t ttl = 0;
  RETURN_IF_ERROR(OnMembers(true, [&](Member& m) -> absl::Status {
    std::unique_ptr<grpc::ClientContext> context = NewContext();
    auto stream = m.lease->LeaseKeepAlive(context.get());
    etcdserverpb::LeaseKeepAliveRequest request;
    request.set_id(lease_id);
    etcdserverpb::LeaseKeepAliveResponse response;
    const bool sent = stream->Write(request);
    const bool got = sent && stream->Read(&response);
    stream->WritesDone();
    grpc::Status finished = stream->Finish();
    if (!got) {
      if (finished.ok()) return absl::UnavailableError(absl::StrCat("etcd ", m.endpoint, " LeaseKeepAlive: no answer"));
      return FromGrpc(finished, m.endpoint, "LeaseKeepAlive");
    }
    ttl = response.ttl();
    return absl::OkStatus();
  }));
  return ttl;
}

etcdserverpb::Watch::Stub& EtcdClient::WatchStub(std::string* endpoint) {
  size_t index = 0;
  Member& m = Current(&index);
  *endpoint = m.endpoint;
  return *m.watch;
}

}  // namespace sesame::controller
