// forge_agent: what a stolen agent key can say to the controller. A test
// tool for the fleet scenarios (stolen_agent_key_test.py), not an agent: it
// opens AgentService.Session with the certificate and key it is given,
// says Hello, prints the snapshot it receives (what the key learns), sends
// the knock reports read from stdin as they are written, and prints every
// verdict.
//
//   forge_agent --controller HOST:PORT --ca-cert F --cert F --key F [--quiet-seconds 5] < REPORTS
//
// REPORTS, one a line ('#' comments):
//   ID SEQUENCE SOURCE KNOCKS [offline] [at=UNIX_SECONDS]
// SEQUENCE 0 reports by knocks; KNOCKS "7000:tcp,8000:udp", or "-" for
// none; at= sets the agent's time (default: now).
//
// Output, one a line: "held ID DOOR KNOCKS fleet|reserve" per sequence of
// the snapshot, "verdict ID OUTCOME SEQUENCE" per verdict, and at the end
// "none ID" per report without a verdict once nothing arrived for
// --quiet-seconds after the last report was sent. Exit 0, or 1 (message on
// stderr) when the session cannot be opened.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <optional>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sesame/v1/agent.grpc.pb.h"

namespace {

using sesame::v1::AgentMessage;
using sesame::v1::ControllerMessage;

int Fail(const std::string& message) {
  std::cerr << "forge_agent: " << message << "\n";
  return 1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string KnocksText(const google::protobuf::RepeatedPtrField<sesame::v1::Knock>& knocks) {
  std::string out;
  for (const sesame::v1::Knock& k : knocks) {
    absl::StrAppend(&out, out.empty() ? "" : ",", k.port(),
                    k.protocol() == sesame::v1::PROTOCOL_UDP ? ":udp" : ":tcp");
  }
  return out.empty() ? "-" : out;
}

const char* OutcomeText(sesame::v1::KnockOutcome o) {
  switch (o) {
    case sesame::v1::KNOCK_OUTCOME_OPENED: return "opened";
    case sesame::v1::KNOCK_OUTCOME_REPLAY: return "replay";
    case sesame::v1::KNOCK_OUTCOME_UNKNOWN: return "unknown";
    case sesame::v1::KNOCK_OUTCOME_REFUSED: return "refused";
    default: return "unspecified";
  }
}

// One line of REPORTS; false with why when it does not parse.
bool ParseReport(const std::string& line, AgentMessage& m, std::string& why) {
  std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
  uint64_t sequence = 0;
  if (f.size() < 4 || !absl::SimpleAtoi(f[1], &sequence)) {
    why = "expected ID SEQUENCE SOURCE KNOCKS [offline] [at=UNIX_SECONDS]";
    return false;
  }
  m.set_id(f[0]);
  sesame::v1::KnockMatched* k = m.mutable_knock_matched();
  k->set_sequence_id(sequence);
  k->set_source(f[2]);
  if (f[3] != "-") {
    for (const std::string& item : std::vector<std::string>(absl::StrSplit(f[3], ','))) {
      std::vector<std::string> pp = absl::StrSplit(item, ':');
      uint32_t port = 0;
      if (pp.size() != 2 || !absl::SimpleAtoi(pp[0], &port) || (pp[1] != "tcp" && pp[1] != "udp")) {
        why = absl::StrCat("knock \"", item, "\": expected PORT:tcp or PORT:udp");
        return false;
      }
      sesame::v1::Knock* knock = k->add_knocks();
      knock->set_port(port);
      knock->set_protocol(pp[1] == "udp" ? sesame::v1::PROTOCOL_UDP : sesame::v1::PROTOCOL_TCP);
    }
  }
  const absl::Time now = absl::Now();
  k->mutable_matched_at()->set_seconds(absl::ToUnixSeconds(now));
  for (size_t i = 4; i < f.size(); ++i) {
    int64_t at = 0;
    if (f[i] == "offline") {
      k->set_offline(true);
    } else if (f[i].rfind("at=", 0) == 0 && absl::SimpleAtoi(f[i].substr(3), &at)) {
      k->mutable_matched_at()->set_seconds(at);
    } else {
      why = absl::StrCat("\"", f[i], "\": expected offline or at=UNIX_SECONDS");
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string controller, ca, cert, key;
  int quiet_seconds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--controller") controller = value;
    else if (flag == "--ca-cert") ca = value;
    else if (flag == "--cert") cert = value;
    else if (flag == "--key") key = value;
    else if (flag == "--quiet-seconds" && absl::SimpleAtoi(value, &quiet_seconds) && quiet_seconds > 0) continue;
    else return Fail(absl::StrCat("unknown option or bad value: ", flag, " ", value));
  }
  if (controller.empty() || ca.empty() || cert.empty() || key.empty()) {
    return Fail("usage: forge_agent --controller HOST:PORT --ca-cert F --cert F --key F [--quiet-seconds N]");
  }

  std::vector<AgentMessage> reports;
  std::string line;
  for (int n = 1; std::getline(std::cin, line); ++n) {
    if (line.empty() || line[0] == '#') continue;
    AgentMessage m;
    std::string why;
    if (!ParseReport(line, m, why)) return Fail(absl::StrCat("stdin:", n, ": ", why));
    reports.push_back(std::move(m));
  }

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(ca);
  ssl.pem_cert_chain = ReadFile(cert);
  ssl.pem_private_key = ReadFile(key);
  auto stub = sesame::v1::AgentService::NewStub(grpc::CreateChannel(controller, grpc::SslCredentials(ssl)));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  auto stream = stub->Session(&context);

  absl::Mutex mu;
  std::deque<ControllerMessage> inbox;
  absl::Time last_arrival = absl::Now();
  bool closed = false;
  std::thread reader([&] {
    ControllerMessage m;
    while (stream->Read(&m)) {
      absl::MutexLock lock(&mu);
      inbox.push_back(m);
      last_arrival = absl::Now();
    }
    absl::MutexLock lock(&mu);
    closed = true;
  });

  AgentMessage hello;
  hello.set_id("forged-hello");
  hello.mutable_hello()->set_version("forged");
  if (!stream->Write(hello)) {
    reader.join();
    return Fail(absl::StrCat("the controller ended the session: ", stream->Finish().error_message()));
  }
  // The snapshot: everything this agent's key is told.
  std::optional<ControllerMessage> snapshot;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(60); !snapshot && absl::Now() < deadline;) {
    {
      absl::MutexLock lock(&mu);
      for (const ControllerMessage& m : inbox) {
        if (m.has_snapshot()) snapshot = m;
      }
      if (closed) break;
    }
    if (!snapshot) absl::SleepFor(absl::Milliseconds(10));
  }
  if (!snapshot) {
    context.TryCancel();
    reader.join();
    return Fail(absl::StrCat("no snapshot from the controller: ", stream->Finish().error_message()));
  }
  for (const sesame::v1::HeldSequence& q : snapshot->snapshot().sequences()) {
    std::cout << "held " << q.id() << " " << q.door() << " " << KnocksText(q.knocks()) << " "
              << (q.reserve() ? "reserve" : "fleet") << "\n";
  }
  std::cout.flush();

  std::set<std::string> waiting;
  for (const AgentMessage& m : reports) {
    waiting.insert(m.id());
    if (!stream->Write(m)) break;
  }
  {
    absl::MutexLock lock(&mu);
    last_arrival = absl::Now();
  }
  // Verdicts until each report has one, or nothing came for quiet_seconds.
  std::set<std::string> answered;
  for (;;) {
    absl::ReleasableMutexLock lock(&mu);
    while (!inbox.empty()) {
      const ControllerMessage m = inbox.front();
      inbox.pop_front();
      if (!m.has_knock_verdict()) continue;
      const sesame::v1::KnockVerdict& v = m.knock_verdict();
      if (!waiting.count(v.reply_to()) || !answered.insert(v.reply_to()).second) continue;
      std::cout << "verdict " << v.reply_to() << " " << OutcomeText(v.outcome()) << " " << v.sequence_id() << "\n";
    }
    if (answered.size() == waiting.size() || closed ||
        absl::Now() - last_arrival > absl::Seconds(quiet_seconds)) {
      break;
    }
    lock.Release();
    absl::SleepFor(absl::Milliseconds(20));
  }
  for (const std::string& id : waiting) {
    if (!answered.count(id)) std::cout << "none " << id << "\n";
  }
  std::cout.flush();
  stream->WritesDone();
  context.TryCancel();
  reader.join();
  (void)stream->Finish();
  return 0;
}
