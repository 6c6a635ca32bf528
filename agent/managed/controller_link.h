// The agent's end of AgentService.Session: one long-lived bidirectional
// stream to the controller over mutual TLS, re-established whenever it
// ends. The model is Envoy's GrpcStream (grpc_stream.h): a retry timer with
// jittered exponential backoff, reset once a session has carried a message.
//
// - Addresses are tried in turn; after a whole round without a session the
//   link waits Backoff::Next() (BackoffMin .. BackoffMax, jittered). A
//   refused connection or a failed TLS handshake fails the attempt at once;
//   one that hangs fails after connect_timeout. A session that ends moves
//   the link to the next address at once when there are several (several
//   controllers share one store: any of them will do), else it waits the
//   backoff's first step and tries the same one.
// - HTTP/2 keepalive pings (keepalive, keepalive_timeout) notice a dead
//   peer or path; the controller must allow pings that often (its
//   GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS at most
//   `keepalive`, and GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS).
// - Each session has a number. The listener hears OnSessionStarted, then
//   the session's messages, then OnSessionEnded, in that order, exactly once
//   per session. Nothing is written until the listener sends (its Hello
//   first). Send() for a session that is not the current one drops the
//   messages and returns false: what must not be lost is in the spool and
//   is resent after the next OnSessionStarted.
//
// Threads: a link thread (connects, writes) and, per session, a reader
// thread (the sync streaming API, one reader and one writer at a time).
// Listener callbacks run on those threads and must only enqueue. Send() is
// safe from any thread and never blocks on the network.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/managed/backoff.h"
#include "grpcpp/security/credentials.h"
#include "sesame/v1/agent.pb.h"

namespace sesame {

struct LinkOptions {
  std::vector<std::string> addresses;  // host:port, at least one
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  absl::Duration keepalive = absl::Seconds(20);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration backoff_min = absl::Seconds(1);
  absl::Duration backoff_max = absl::Seconds(30);
  // The name the controller's certificate must carry; empty: the host part
  // of the address (gRPC's default).
  std::string ssl_target_name;
};

class LinkListener {
 public:
  virtual ~LinkListener() = default;
  virtual void OnSessionStarted(uint64_t session, const std::string& address) = 0;
  virtual void OnMessage(uint64_t session, v1::ControllerMessage message) = 0;
  virtual void OnSessionEnded(uint64_t session, const absl::Status& status) = 0;
  // An attempt that never became a session; the next one is in `retry_in`
  // (zero: the next address right away).
  virtual void OnConnectFailed(const std::string& address, const absl::Status& status, absl::Duration retry_in) {}
};

struct LinkStats {
  uint64_t sessions = 0;          // started
  uint64_t connect_failures = 0;  // attempts that never became a session
  bool connected = false;
  std::string address;            // of the current session
};

class ControllerLink {
 public:
  // `listener` must outlive the link.
  ControllerLink(LinkOptions options, LinkListener& listener);
  ~ControllerLink();  // Stop()
  ControllerLink(const ControllerLink&) = delete;
  ControllerLink& operator=(const ControllerLink&) = delete;

  void Start();
  // Ends the session (the controller sees a cancelled stream) and joins the
  // threads. Idempotent.
  void Stop();

  // Ends `session` if it is still the open one (the link connects again,
  // with backoff): for a session whose messages the agent cannot use.
  void EndSession(uint64_t session);

  bool Send(uint64_t session, std::vector<v1::AgentMessage> messages);
  bool Send(uint64_t session, v1::AgentMessage message);

  LinkStats stats() const;

 private:
  void Run();
  // One attempt on one address: connect, run the session until it ends.
  // Returns the reason it ended; *carried: the session received a message.
  absl::Status RunSession(const std::string& address, bool* started, bool* carried);
  bool Stopping() const;

  const LinkOptions options_;
  LinkListener& listener_;
  Backoff backoff_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t current_ ABSL_GUARDED_BY(mu_) = 0;  // the open session, 0: none
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::AgentMessage> queue_ ABSL_GUARDED_BY(mu_);
  void* context_ ABSL_GUARDED_BY(mu_) = nullptr;  // grpc::ClientContext of the open session
  LinkStats stats_ ABSL_GUARDED_BY(mu_);
  uint64_t last_session_ = 0;  // link thread only
};

}  // namespace sesame
