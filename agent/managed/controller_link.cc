#include "agent/managed/controller_link.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "sesame/v1/agent.grpc.pb.h"

namespace sesame {
namespace {

int Millis(absl::Duration d) { return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX)); }

std::chrono::system_clock::time_point ToChrono(absl::Time t) { return absl::ToChronoTime(t); }

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace

ControllerLink::ControllerLink(LinkOptions options, LinkListener& listener)
    : options_(std::move(options)), listener_(listener), backoff_(options_.backoff_min, options_.backoff_max) {}

ControllerLink::~ControllerLink() { Stop(); }

void ControllerLink::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void ControllerLink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    if (context_ != nullptr) static_cast<grpc::ClientContext*>(context_)->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void ControllerLink::EndSession(uint64_t session) {
  absl::MutexLock lock(&mu_);
  if (session != 0 && session == current_ && context_ != nullptr) {
    static_cast<grpc::ClientContext*>(context_)->TryCancel();
  }
}

bool ControllerLink::Stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool ControllerLink::Send(uint64_t session, std::vector<v1::AgentMessage> messages) {
  absl::MutexLock lock(&mu_);
  if (session == 0 || session != current_) return false;
  for (v1::AgentMessage& m : messages) queue_.push_back(std::move(m));
  return true;
}

bool ControllerLink::Send(uint64_t session, v1::AgentMessage message) {
  std::vector<v1::AgentMessage> one;
  one.push_back(std::move(message));
  return Send(session, std::move(one));
}

LinkStats ControllerLink::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void ControllerLink::Run() {
  const size_t n = options_.addresses.size();
  size_t next = 0;
  size_t failed_in_round = 0;
  while (!Stopping()) {
    const std::string& address = options_.addresses[next];
    bool started = false;
    bool carried = false;
    const absl::Status ended = RunSession(address, &started, &carried);
    if (Stopping()) break;
    absl::Duration wait = absl::ZeroDuration();
    if (carried && n > 1) {
      // A session ended (its controller died, or stopped serving and shed
      // its agents): the next controller at once.
      backoff_.Reset();
      failed_in_round = 0;
      next = (next + 1) % n;
    } else if (carried) {
      // The only controller: back to the first step of the backoff.
      backoff_.Reset();
      failed_in_round = 0;
      wait = backoff_.Next();
    } else {
      next = (next + 1) % n;
      if (++failed_in_round >= n) {
        failed_in_round = 0;
        wait = backoff_.Next();
      }
    }
    if (!started) {
      {
        absl::MutexLock lock(&mu_);
        ++stats_.connect_failures;
      }
      listener_.OnConnectFailed(address, ended, wait);
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait);
  }
}

absl::Status ControllerLink::RunSession(const std::string& address, bool* started, bool* carried) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(options_.keepalive));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(options_.keepalive_timeout));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // A channel of our own per attempt, with subchannels of its own: a shared
  // subchannel would carry gRPC's own reconnect backoff from one attempt
  // into the next.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (!options_.ssl_target_name.empty()) args.SetSslTargetNameOverride(options_.ssl_target_name);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(address, options_.credentials, args);

  // Connect, watching for Stop() every 100 ms.
  const absl::Time deadline = absl::Now() + options_.connect_timeout;
  grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      return absl::UnavailableError(absl::StrCat("cannot connect to ", address,
                                                 " (refused, unreachable, or the TLS handshake failed)"));
    }
    if (Stopping()) return absl::CancelledError("stopping");
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no connection to ", address, " within ",
                                                      absl::FormatDuration(options_.connect_timeout)));
    }
    channel->WaitForStateChange(state, ToChrono(std::min(deadline, now + absl::Milliseconds(100))));
    state = channel->GetState(/*try_to_connect=*/true);
  }

  std::unique_ptr<v1::AgentService::Stub> stub = v1::AgentService::NewStub(channel);
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("stopping");
    context_ = &context;
  }
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> stream = stub->Session(&context);
  const uint64_t session = ++last_session_;
  {
    absl::MutexLock lock(&mu_);
    current_ = session;
    reader_done_ = false;
    queue_.clear();
    ++stats_.sessions;
    stats_.connected = true;
    stats_.address = address;
  }
  *started = true;
  listener_.OnSessionStarted(session, address);

  std::atomic<bool> got_message{false};
  std::thread reader([&] {
    v1::ControllerMessage message;
    while (stream->Read(&message)) {
      got_message.store(true, std::memory_order_relaxed);
      listener_.OnMessage(session, std::move(message));
      message.Clear();
    }
    absl::MutexLock lock(&mu_);
    reader_done_ = true;
  });

  bool write_failed = false;
  for (;;) {
    std::deque<v1::AgentMessage> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ControllerLink* l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(l->mu_) {
            return !l->queue_.empty() || l->reader_done_ || l->stopping_;
          },
          this));
      if (reader_done_ || stopping_) break;
      batch.swap(queue_);
    }
    for (const v1::AgentMessage& m : batch) {
      if (!stream->Write(m)) {
        write_failed = true;
        break;
      }
    }
    if (write_failed) break;
  }

  bool reader_finished = false;
  {
    absl::MutexLock lock(&mu_);
    current_ = 0;
    queue_.clear();
    stats_.connected = false;
    reader_finished = reader_done_;
    // The reader is still reading: we are the ones ending the session.
    if (!reader_finished) context.TryCancel();
  }
  reader.join();
  const grpc::Status status = stream->Finish();
  {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
  }
  *carried = got_message.load(std::memory_order_relaxed);
  absl::Status ended = status.ok() ? absl::UnavailableError("the controller ended the session") : FromGrpc(status);
  if (write_failed && status.ok()) ended = absl::UnavailableError("write failed");
  listener_.OnSessionEnded(session, ended);
  return ended;
}

}  // namespace sesame
