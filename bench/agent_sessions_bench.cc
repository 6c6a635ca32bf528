// 1,000 agent sessions on one controller: the controller's memory per
// session, and how long a burn takes to reach every agent.
//
// The controller runs in a child process (real mutual TLS on loopback, its
// own SQLite store), so its resident memory is measured alone; this process
// simulates the agents, each with its own certificate and TLS connection
// (gRPC callback API). One agent reports a knock; the clock runs from just
// before the report is written until each agent has read the SequenceBurnt
// delta. Repeated for several sequences.
//
//   build-NAME/bench/agent_sessions_bench                 # 1000 agents
//   SESAME_BENCH_AGENTS=200 build-NAME/bench/agent_sessions_bench
#include <benchmark/benchmark.h>
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "controller/controller_config.h"
#include "controller/controller_daemon.h"
#include "controller/service/tls_credentials.h"
#include "sesame/v1/admin.grpc.pb.h"
#include "sesame/v1/agent.grpc.pb.h"

namespace sesame::controller {
namespace {

constexpr int kBurns = 20;

// --- Certificates, made with OpenSSL in-process (openssl(1) per agent
// would take minutes) ---------------------------------------------------------

struct Pki {
  EVP_PKEY* ca_key = nullptr;
  X509* ca = nullptr;
};

void AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) std::abort();
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// Writes DIR/NAME.crt and DIR/NAME.key; a CA when pki.ca is null.
void MakeCert(Pki& pki, const std::string& dir, const std::string& name, const std::string& san, const char* eku) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
  X509_NAME* subject = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1,
                             0);
  X509_set_pubkey(cert, key);
  const bool is_ca = pki.ca == nullptr;
  X509* issuer = is_ca ? cert : pki.ca;
  X509_set_issuer_name(cert, X509_get_subject_name(issuer));
  if (is_ca) {
    AddExt(cert, issuer, NID_basic_constraints, "critical,CA:TRUE");
    AddExt(cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExt(cert, issuer, NID_basic_constraints, "CA:FALSE");
    AddExt(cert, issuer, NID_ext_key_usage, eku);
    AddExt(cert, issuer, NID_subject_alt_name, san);
  }
  X509_sign(cert, is_ca ? key : pki.ca_key, EVP_sha256());
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(out, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  (void)WriteFileAtomically(absl::StrCat(dir, "/", name, ".crt"), std::string(data, static_cast<size_t>(n)), 0644);
  BIO_free(out);
  out = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr);
  n = BIO_get_mem_data(out, &data);
  (void)WriteFileAtomically(absl::StrCat(dir, "/", name, ".key"), std::string(data, static_cast<size_t>(n)), 0600);
  BIO_free(out);
  if (is_ca) {
    pki.ca = cert;
    pki.ca_key = key;
  } else {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
}

long RssKib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

// --- Simulated agents -----------------------------------------------------------

struct Shared {
  absl::Mutex mu;
  int attached ABSL_GUARDED_BY(mu) = 0;
  int ended ABSL_GUARDED_BY(mu) = 0;
  // Per burn: when the report left, and each agent's arrival.
  std::vector<absl::Time> sent ABSL_GUARDED_BY(mu);
  std::vector<std::vector<double>> latency_ms ABSL_GUARDED_BY(mu);
  std::vector<uint64_t> sequence_ids;  // set before the burns start
  std::vector<v1::IssuedSequence> sequences;  // their knocks, which a report carries
};

class SimAgent final : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ControllerMessage> {
 public:
  SimAgent(const std::shared_ptr<grpc::Channel>& channel, Shared& shared) : shared_(shared) {
    stub_ = v1::AgentService::NewStub(channel);
    stub_->async()->Session(&context_, this);
    out_.set_id("hello");
    out_.mutable_hello()->set_version("bench");
    StartWrite(&out_);
    StartRead(&in_);
    StartCall();
  }

  // Reports a knock of burn `index` (only one agent does).
  void Report(int index) {
    absl::MutexLock lock(&write_mu_);
    v1::AgentMessage m;
    m.set_id(absl::StrCat("k", index));
    m.mutable_knock_matched()->set_sequence_id(shared_.sequence_ids[static_cast<size_t>(index)]);
    *m.mutable_knock_matched()->mutable_knocks() = shared_.sequences[static_cast<size_t>(index)].knocks();
    m.mutable_knock_matched()->set_source("198.51.100.1");
    queue_.push_back(std::move(m));
    if (!writing_) WriteNextLocked();
  }

  void Stop() { context_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&write_mu_);
    writing_ = false;
    if (ok && !queue_.empty()) WriteNextLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    const absl::Time now = absl::Now();
    if (in_.has_snapshot()) {
      absl::MutexLock lock(&shared_.mu);
      ++shared_.attached;
    } else if (in_.has_delta() && in_.delta().has_sequence_burnt()) {
      const uint64_t id = in_.delta().sequence_burnt().sequence_id();
      absl::MutexLock lock(&shared_.mu);
      for (size_t i = 0; i < shared_.sequence_ids.size(); ++i) {
        if (shared_.sequence_ids[i] == id && i < shared_.sent.size()) {
          shared_.latency_ms[i].push_back(absl::ToDoubleMilliseconds(now - shared_.sent[i]));
        }
      }
    }
    StartRead(&in_);
  }

  void OnDone(const grpc::Status&) override {
    absl::MutexLock lock(&shared_.mu);
    ++shared_.ended;
  }

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    out_ = std::move(queue_.front());
    queue_.erase(queue_.begin());
    writing_ = true;
    StartWrite(&out_);
  }

  Shared& shared_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  grpc::ClientContext context_;
  v1::ControllerMessage in_;
  absl::Mutex write_mu_;
  v1::AgentMessage out_;
  std::vector<v1::AgentMessage> queue_ ABSL_GUARDED_BY(write_mu_);
  bool writing_ ABSL_GUARDED_BY(write_mu_) = true;  // the hello
};

std::shared_ptr<grpc::Channel> Channel(const std::string& dir, const std::string& name, int port) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = MakeClientCredentials(
      TlsFiles{dir + "/ca.crt", absl::StrCat(dir, "/", name, ".crt"), absl::StrCat(dir, "/", name, ".key"), ""});
  if (!creds.ok()) std::abort();
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per agent, as on real bastions
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), *creds, args);
}

template <typename Pred>
bool WaitFor(Shared& shared, Pred pred, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  while (absl::Now() < deadline) {
    {
      absl::MutexLock lock(&shared.mu);
      if (pred()) return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

void BM_AgentSessions(benchmark::State& state) {
  const int agents = std::getenv("SESAME_BENCH_AGENTS") ? std::atoi(std::getenv("SESAME_BENCH_AGENTS")) : 1000;
  // Two sockets per agent in these two processes, plus files.
  rlimit limit;
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);

  char dir_template[] = "/var/tmp/sesame-sessions-bench-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  Pki pki;
  MakeCert(pki, dir, "ca", "", "");
  MakeCert(pki, dir, "ctl", "DNS:localhost,IP:127.0.0.1,URI:spiffe://sesame/controller/ctl", "serverAuth");
  MakeCert(pki, dir, "alice", "URI:spiffe://sesame/admin/alice", "clientAuth");
  for (int i = 0; i < agents; ++i) {
    MakeCert(pki, dir, absl::StrCat("b", i), absl::StrCat("URI:spiffe://sesame/agent/b", i), "clientAuth");
  }

  // The controller, alone in a child process (forked before this process
  // touches gRPC). It reports its port through a pipe.
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    const std::string conf = absl::StrCat(
        "[controller]\nListen = 127.0.0.1:0\nStateDir = ", dir, "/state\n[tls]\nCA_Cert = ", dir, "/ca.crt\nCert = ",
        dir, "/ctl.crt\nKey = ", dir, "/ctl.key\n[door ssh]\nSequence_Length = 3\nPort_Range = 20000-60000\n",
        // Fan-out is measured here, not the per-agent limits.
        "[limits]\nKnock_Reports_Per_Minute = 100000\nKnock_Report_Burst = 100000\nGrants_Per_Minute = 100000\n"
        "Grant_Burst = 100000\n");
    absl::StatusOr<ControllerConfig> config = ParseControllerConfig(conf, "bench.conf");
    if (!config.ok()) _exit(2);
    absl::StatusOr<std::unique_ptr<ControllerDaemon>> daemon = ControllerDaemon::Start(*config);
    if (!daemon.ok()) _exit(3);
    const int port = (*daemon)->port();
    if (write(fds[1], &port, sizeof port) != sizeof port) _exit(4);
    for (;;) {
      sleep(1);
      (*daemon)->Tick();
    }
  }
  close(fds[1]);
  int port = 0;
  if (read(fds[0], &port, sizeof port) != sizeof port) {
    state.SkipWithError("the controller did not start");
    return;
  }
  close(fds[0]);
  const long rss_before = RssKib(child);

  Shared shared;
  std::vector<std::unique_ptr<SimAgent>> sims;
  absl::Time connect_start = absl::Now();
  for (int i = 0; i < agents; ++i) {
    sims.push_back(std::make_unique<SimAgent>(Channel(dir, absl::StrCat("b", i), port), shared));
  }
  const bool all_attached = WaitFor(shared, [&] { return shared.attached == agents; }, absl::Minutes(5));
  const double connect_s = absl::ToDoubleSeconds(absl::Now() - connect_start);
  absl::SleepFor(absl::Seconds(2));  // settle before measuring memory
  const long rss_after = RssKib(child);

  // Sequences to burn, issued by an operator.
  auto admin = v1::AdminService::NewStub(Channel(dir, "alice", port));
  v1::IssueSequencesRequest issue;
  issue.set_door("ssh");
  issue.set_count(kBurns);
  v1::IssueSequencesResponse issued;
  grpc::ClientContext issue_context;
  issue_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  grpc::Status status = admin->IssueSequences(&issue_context, issue, &issued);
  if (!all_attached || !status.ok()) {
    state.SkipWithError(all_attached ? "cannot issue sequences" : "not every agent attached");
  } else {
    for (const v1::IssuedSequence& q : issued.sequences()) {
      shared.sequence_ids.push_back(q.id());
      shared.sequences.push_back(q);
    }
    {
      absl::MutexLock lock(&shared.mu);
      shared.latency_ms.assign(kBurns, {});
    }
    absl::SleepFor(absl::Seconds(1));  // let the sequence_added deltas drain
    for (auto _ : state) {
      for (int b = 0; b < kBurns; ++b) {
        {
          absl::MutexLock lock(&shared.mu);
          shared.sent.push_back(absl::Now());
        }
        sims[static_cast<size_t>(b % agents)]->Report(b);
        WaitFor(shared, [&] { return static_cast<int>(shared.latency_ms[static_cast<size_t>(b)].size()) == agents; },
                absl::Seconds(30));
        absl::SleepFor(absl::Milliseconds(100));
      }
    }
    std::vector<double> all, last;
    {
      absl::MutexLock lock(&shared.mu);
      for (const auto& burn : shared.latency_ms) {
        all.insert(all.end(), burn.begin(), burn.end());
        if (!burn.empty()) last.push_back(*std::max_element(burn.begin(), burn.end()));
      }
    }
    std::sort(all.begin(), all.end());
    std::sort(last.begin(), last.end());
    state.counters["agents"] = agents;
    state.counters["connect_s"] = connect_s;
    state.counters["rss_per_session_kib"] = static_cast<double>(rss_after - rss_before) / agents;
    state.counters["controller_rss_mib"] = static_cast<double>(rss_after) / 1024.0;
    state.counters["burn_p50_ms"] = all.empty() ? -1 : all[all.size() / 2];
    state.counters["burn_p99_ms"] = all.empty() ? -1 : all[all.size() * 99 / 100];
    state.counters["burn_all_reached_max_ms"] = last.empty() ? -1 : last.back();
    state.counters["deliveries"] = static_cast<double>(all.size());
  }

  for (auto& s : sims) s->Stop();
  WaitFor(shared, [&] { return shared.ended == agents; }, absl::Seconds(60));
  sims.clear();
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  std::filesystem::remove_all(dir);
}

BENCHMARK(BM_AgentSessions)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sesame::controller
