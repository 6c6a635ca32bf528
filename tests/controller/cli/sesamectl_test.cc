// sesamectl against a real controller over mutual TLS: commands, output,
// offline audit verification and the exit codes.
#include "controller/cli/sesamectl.h"

#include <google/protobuf/struct.pb.h>
#include <grpcpp/grpcpp.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/log.h"
#include "controller/audit/audit_export.h"
#include "controller/audit/audit_head.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_record.h"
#include "controller/controller_config.h"
#include "controller/controller_daemon.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sesame/v1/agent.grpc.pb.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
  int code;
  std::string out, err;
};

class SesamectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status pki = testing::MakeTestPki(
        pki_.path(), {{"ctl", "controller", {"localhost"}, {"127.0.0.1"}},
                      {"alice", "admin"},
                      {"b1", "agent"},});
    ASSERT_TRUE(pki.ok()) << pki;
    const std::string conf = absl::StrCat(
        "[controller]\nListen = 127.0.0.1:0\nStateDir = ", state_.path(), "\n[tls]\nCA_Cert = ", pki_.File("ca.crt"),
        "\nCert = ", pki_.File("ctl.crt"), "\nKey = ", pki_.File("ctl.key"),
        "\n[door ssh]\nSequence_Length = 3\nPort_Range = 20000-30000\nGrant_Ports = 22\n");
    absl::StatusOr<ControllerConfig> config = ParseControllerConfig(conf, "test.conf");
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<std::unique_ptr<ControllerDaemon>> daemon = ControllerDaemon::Start(*config);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
  }

  // Ctl with -o json, parsed (the call must succeed).
  google::protobuf::Struct CtlJson(std::vector<std::string> args);
  Result Ctl(std::vector<std::string> args, const std::string& who = "alice", int port = 0,
             const std::string& timeout = "20s", const std::string& ca = "") {
    std::vector<std::string> argv = {"sesamectl",
                                     "--controller",
                                     absl::StrCat("127.0.0.1:", port == 0 ? daemon_->port() : port),
                                     "--ca-cert",
                                     ca.empty() ? pki_.File("ca.crt") : ca,
                                     "--cert",
                                     pki_.File(who + ".crt"),
                                     "--key",
                                     pki_.File(who + ".key"),
                                     "--timeout",
                                     timeout};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<const char*> raw;
    for (const std::string& a : argv) raw.push_back(a.c_str());
    std::ostringstream out, err;
    const int code = RunSesamectl(static_cast<int>(raw.size()), raw.data(), out, err);
    return {code, out.str(), err.str()};
  }

  testing::TempDir pki_, state_;
  std::unique_ptr<ControllerDaemon> daemon_;
};

TEST_F(SesamectlTest, HealthDoorsAndStats) {
  Result r = Ctl({"health"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  r = Ctl({"doors", "list"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ssh"));
  EXPECT_THAT(r.out, HasSubstr("20000-30000"));
  r = Ctl({"-o", "json", "stats"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"revision\""));
}

TEST_F(SesamectlTest, AListOfControllersUsesTheFirstServingOne) {
  // Port 1 on loopback refuses: a controller that is down.
  const std::string list = absl::StrCat("127.0.0.1:1, 127.0.0.1:", daemon_->port());
  std::vector<std::string> argv = {"sesamectl", "--controller", list, "--ca-cert", pki_.File("ca.crt"), "--cert",
                                   pki_.File("alice.crt"), "--key", pki_.File("alice.key"), "--timeout", "20s",
                                   "doors", "list"};
  std::vector<const char*> raw;
  for (const std::string& a : argv) raw.push_back(a.c_str());
  std::ostringstream out, err;
  EXPECT_EQ(RunSesamectl(static_cast<int>(raw.size()), raw.data(), out, err), kExitOk) << err.str();
  EXPECT_THAT(out.str(), HasSubstr("20000-30000"));
  EXPECT_EQ(err.str(), "");
  // None serving: said, and the call fails as before.
  argv[2] = "127.0.0.1:1,127.0.0.1:2";
  raw.clear();
  for (const std::string& a : argv) raw.push_back(a.c_str());
  std::ostringstream out2, err2;
  EXPECT_NE(RunSesamectl(static_cast<int>(raw.size()), raw.data(), out2, err2), kExitOk);
  EXPECT_THAT(err2.str(), HasSubstr("no controller is serving (127.0.0.1:1 unreachable, 127.0.0.1:2 unreachable)"));
}

TEST_F(SesamectlTest, SequencesAreShownOnce) {
  Result r = Ctl({"sequences", "issue", "--door", "ssh", "--count", "2", "--for", "bob"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sequence 1 (door ssh, expires "));
  EXPECT_THAT(r.out, HasSubstr("knock HOST "));  // no agent advertised a host yet
  // The knocks of sequence 1, e.g. "20514:tcp 27003:tcp 21998:tcp".
  const std::string first_line = std::vector<std::string>(absl::StrSplit(r.out, '\n'))[0];
  const std::string knocks = first_line.substr(first_line.find(": ") + 2);
  r = Ctl({"sequences", "list"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("issued"));
  EXPECT_THAT(r.out, HasSubstr("bob"));
  EXPECT_THAT(r.out, Not(HasSubstr(knocks)));
  r = Ctl({"-o", "json", "sequences", "list", "--state", "burnt"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("\"id\"")));
}

TEST_F(SesamectlTest, GrantsOpenListRevoke) {
  // An agent must be known before a grant can target it.
  Result r = Ctl({"grants", "open", "--agent", "b1", "--ip", "192.0.2.7", "--door", "ssh"});
  EXPECT_EQ(r.code, kExitNotFound) << r.err;
  r = Ctl({"grants", "open", "--fleet", "--ip", "192.0.2.7", "--door", "ssh", "--ttl", "10m"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("192.0.2.7"));
  EXPECT_THAT(r.out, HasSubstr("fleet"));
  r = Ctl({"grants", "list"});
  EXPECT_THAT(r.out, HasSubstr("admin:alice"));
  r = Ctl({"grants", "revoke", "--ip", "192.0.2.7"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("revoked 1"));
  EXPECT_THAT(r.out, HasSubstr("sessions already in stay up"));
  r = Ctl({"grants", "revoke", "--ip", "192.0.2.7"});
  EXPECT_THAT(r.out, HasSubstr("nothing to revoke"));
  // --kill-sessions is kept with the grant (the bastions act on it).
  ASSERT_EQ(Ctl({"grants", "open", "--fleet", "--ip", "192.0.2.8", "--door", "ssh"}).code, kExitOk);
  r = Ctl({"grants", "revoke", "--ip", "192.0.2.8", "--kill-sessions"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("the bastions end the live sessions too"));
  r = Ctl({"-o", "json", "grants", "list", "--all", "--ip", "192.0.2.8"});
  EXPECT_THAT(r.out, HasSubstr("\"kill_sessions\": true"));
  r = Ctl({"grants", "open", "--fleet", "--ip", "nope", "--door", "ssh"});
  EXPECT_EQ(r.code, kExitUsage) << r.err;
}

TEST_F(SesamectlTest, AuditExportVerifiesOfflineAndTamperingIsCaught) {
  ASSERT_EQ(Ctl({"sequences", "issue", "--door", "ssh", "--count", "3"}).code, kExitOk);
  Result r = Ctl({"audit", "tail", "-n", "5"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sequences.issued"));
  const std::string exported = state_.File("export.txt");
  ASSERT_EQ(Ctl({"audit", "export", "--out", exported}).code, kExitOk);
  r = Ctl({"audit", "pubkey"});
  ASSERT_EQ(r.code, kExitOk);
  const std::string pub = state_.File("audit.pub");
  ASSERT_TRUE(WriteFileAtomically(pub, r.out, 0644).ok());

  // Offline: no controller address works here.
  r = Ctl({"audit", "verify", "--file", exported, "--pubkey", pub}, "alice", /*port=*/1);
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("OK: "));

  std::string text = *ReadFileToString(exported);
  const size_t at = text.find("sequences.issued");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 9, "sequencez");
  ASSERT_TRUE(WriteFileAtomically(exported, text, 0644).ok());
  r = Ctl({"audit", "verify", "--file", exported, "--pubkey", pub});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("does NOT verify"));
  EXPECT_THAT(r.err, HasSubstr("altered"));

  r = Ctl({"audit", "verify"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
}

// The export's lines, and the same file with some lines changed.
std::vector<std::string> Lines(const std::string& path) {
  return absl::StrSplit(*ReadFileToString(path), '\n', absl::SkipEmpty());
}

std::string WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  EXPECT_TRUE(WriteFileAtomically(path, absl::StrJoin(lines, "\n") + "\n", 0644).ok());
  return path;
}

// A forger's rewrite of an export: record 1's `who` changed, every hash
// after it recomputed, every checkpoint signed again with key.
std::string Forge(const std::string& exported, const AuditSigningKey& key, const std::string& out) {
  absl::StatusOr<AuditExport> parsed = ParseAuditExport(*ReadFileToString(exported), exported);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  parsed->records[1].entry.who = "admin:mallory";
  ChainHash prev{};
  for (AuditRecord& r : parsed->records) {
    r.prev_hash = prev;
    r.hash = NextChainHash(prev, r.index, r.entry);
    prev = r.hash;
  }
  std::string text = absl::StrCat(std::string(kAuditExportHeader), "\n");
  size_t next = 0;
  for (AuditCheckpoint& c : parsed->checkpoints) {
    c.chain_hash = c.record_count == 0 ? ChainHash{} : parsed->records[c.record_count - 1].hash;
    c.signature = *key.Sign(CanonicalCheckpointBytes(c.record_count, c.chain_hash, c.time));
  }
  while (next < parsed->checkpoints.size() && parsed->checkpoints[next].record_count == 0) {
    text += FormatCheckpointLine(parsed->checkpoints[next++]);
  }
  for (const AuditRecord& r : parsed->records) {
    text += FormatRecordLine(r);
    while (next < parsed->checkpoints.size() && parsed->checkpoints[next].record_count == r.index + 1) {
      text += FormatCheckpointLine(parsed->checkpoints[next++]);
    }
  }
  EXPECT_TRUE(WriteFileAtomically(out, text, 0644).ok());
  return out;
}

TEST_F(SesamectlTest, AuditHeadsShowTruncationRollbackAndForgery) {
  // The controller logs every checkpoint it signs: collect the lines as
  // journald would, with its prefix.
  absl::Mutex mu;  // the controller's threads log
  std::vector<std::string> logged;
  LogOptions log_options;
  log_options.to_stderr = false;
  log_options.observer = [&mu, &logged](LogLevel, std::string_view m) {
    absl::MutexLock lock(&mu);
    logged.push_back(absl::StrCat("May 01 12:00:00 ctl sesame-controller[42]: ", std::string(m)));
  };
  ASSERT_TRUE(ConfigureLogging(log_options).ok());
  absl::Cleanup restore_log = [] { (void)ConfigureLogging(LogOptions{}); };

  Result r = Ctl({"audit", "pubkey"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const std::string pub = WriteLines(state_.File("audit.pub"), {r.out});
  r = Ctl({"audit", "head"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("records"));
  EXPECT_THAT(r.out, HasSubstr("chain hash"));
  EXPECT_THAT(r.out, HasSubstr("key id"));

  ASSERT_EQ(Ctl({"sequences", "issue", "--door", "ssh", "--count", "2"}).code, kExitOk);
  const std::string first = state_.File("first.export");
  ASSERT_EQ(Ctl({"audit", "export", "--out", first}).code, kExitOk);
  r = Ctl({"-o", "json", "audit", "head"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;  // one line
  const std::string first_head = WriteLines(state_.File("first.head"), {r.out});

  ASSERT_EQ(Ctl({"sequences", "issue", "--door", "ssh", "--count", "2"}).code, kExitOk);
  ASSERT_EQ(Ctl({"grants", "open", "--fleet", "--ip", "192.0.2.7", "--door", "ssh"}).code, kExitOk);
  const std::string second = state_.File("second.export");
  ASSERT_EQ(Ctl({"audit", "export", "--out", second}).code, kExitOk);
  r = Ctl({"-o", "json", "audit", "head"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const std::string second_head = WriteLines(state_.File("second.head"), {r.out});

  // Honest: both exports contain the heads saved when they were made, and
  // the second contains both. The controller's log serves as a head file.
  r = Ctl({"audit", "verify", "--file", second, "--pubkey", pub, "--head", first_head, "--head", second_head});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("contains 2 saved heads"));
  std::vector<std::string> journal_lines;
  {
    absl::MutexLock lock(&mu);
    journal_lines = logged;
  }
  const std::string journal = WriteLines(state_.File("journal.txt"), journal_lines);
  EXPECT_THAT(*ReadFileToString(journal), HasSubstr("audit.checkpoint {\"record_count\": "));
  r = Ctl({"audit", "verify", "--file", second, "--pubkey", pub, "--head", journal});
  EXPECT_EQ(r.code, kExitOk) << r.err << *ReadFileToString(journal);
  r = Ctl({"audit", "verify", "--file", first, "--pubkey", pub, "--head", first_head});
  EXPECT_EQ(r.code, kExitOk) << r.err;

  // Rollback: the first export is a consistent, signed log cut back to an
  // earlier checkpoint; the later head shows it.
  r = Ctl({"audit", "verify", "--file", first, "--pubkey", pub, "--head", second_head});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("but the saved head over "));
  EXPECT_THAT(r.err, HasSubstr("cut back (rolled back to an earlier checkpoint"));

  // Stripped checkpoints.
  std::vector<std::string> lines = Lines(second);
  std::vector<std::string> stripped;
  for (const std::string& line : lines) {
    if (line[0] != 'C') stripped.push_back(line);
  }
  r = Ctl({"audit", "verify", "--file", WriteLines(state_.File("stripped"), stripped), "--pubkey", pub});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("is covered by a signed checkpoint"));
  EXPECT_THAT(r.err, HasSubstr("checkpoint lines were removed"));

  // A cut tail: the last record and the checkpoint after it removed.
  std::vector<std::string> cut = lines;
  ASSERT_EQ(cut.back()[0], 'C');
  cut.pop_back();
  ASSERT_EQ(cut.back()[0], 'R');
  cut.pop_back();
  while (cut.back()[0] == 'C') cut.pop_back();  // one right at the cut would make it a rollback (above)
  r = Ctl({"audit", "verify", "--file", WriteLines(state_.File("cut"), cut), "--pubkey", pub});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("after the last checkpoint"));
  EXPECT_THAT(r.err, HasSubstr("not covered by a signature"));

  // A fork re-signed with the controller's own key (root on its disk has
  // it): consistent alone; the saved head shows it.
  absl::StatusOr<AuditSigningKey> real_key = AuditSigningKey::LoadOrCreate(state_.File("audit.key"));
  ASSERT_TRUE(real_key.ok()) << real_key.status();
  const std::string forked = Forge(second, *real_key, state_.File("forked"));
  r = Ctl({"audit", "verify", "--file", forked, "--pubkey", pub});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  r = Ctl({"audit", "verify", "--file", forked, "--pubkey", pub, "--head", second_head});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("differs from the saved head"));
  EXPECT_THAT(r.err, HasSubstr("forked"));

  // A rehashed chain re-signed with another key: the auditor's public key
  // refuses it; the new public key refuses the saved head.
  const AuditSigningKey other = AuditSigningKey::Generate();
  const std::string resigned = Forge(second, other, state_.File("resigned"));
  r = Ctl({"audit", "verify", "--file", resigned, "--pubkey", pub});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("bad signature"));
  const std::string other_pub = WriteLines(state_.File("other.pub"), {other.PublicKey().ToPem()});
  r = Ctl({"audit", "verify", "--file", resigned, "--pubkey", other_pub, "--head", second_head});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("the audit key was replaced"));

  // The live log against saved heads: the controller checks them.
  r = Ctl({"audit", "verify", "--head", second_head});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("contains 1 saved head"));
  AuditCheckpoint beyond;  // signed with the real key, over more than the log holds
  beyond.record_count = 100000;
  beyond.time = TruncateToMicros(absl::Now());
  beyond.signature = *real_key->Sign(CanonicalCheckpointBytes(beyond.record_count, beyond.chain_hash, beyond.time));
  const std::string beyond_head =
      WriteLines(state_.File("beyond.head"), {FormatAuditHeadJson(beyond, real_key->PublicKey().KeyId())});
  r = Ctl({"audit", "verify", "--head", beyond_head});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("but the saved head over 100000 records"));

  // A malformed head file is a usage error naming its line.
  const std::string bad_head = WriteLines(state_.File("bad.head"), {"{\"record_count\": 1}"});
  r = Ctl({"audit", "verify", "--file", second, "--pubkey", pub, "--head", bad_head});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("bad.head:1: head: no \"chain_hash\""));
}

TEST_F(SesamectlTest, AuditVerifyJsonEscapesTheProblem) {
  ASSERT_EQ(Ctl({"sequences", "issue", "--door", "ssh", "--count", "1"}).code, kExitOk);
  const std::string exported = state_.File("export.txt");
  ASSERT_EQ(Ctl({"audit", "export", "--out", exported}).code, kExitOk);
  Result r = Ctl({"audit", "pubkey"});
  const std::string pub = WriteLines(state_.File("audit.pub"), {r.out});
  // An altered head, in a file whose name has a quote and a backslash: the
  // problem names the file.
  std::string json = Ctl({"-o", "json", "audit", "head"}).out;
  json.insert(json.find("\"record_count\": ") + 16, "9");  // claims more than was signed
  const std::string head = WriteLines(state_.File("saved \"head\" \\1.json"), {json});
  r = Ctl({"-o", "json", "audit", "verify", "--file", exported, "--pubkey", pub, "--head", head});
  EXPECT_EQ(r.code, kExitFailure);
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  EXPECT_FALSE(parsed.fields().at("ok").bool_value());
  const std::string problem = parsed.fields().at("problem").string_value();
  EXPECT_THAT(problem, HasSubstr("saved \"head\" \\1.json:1"));
  EXPECT_THAT(r.err, HasSubstr(problem));
  r = Ctl({"-o", "json", "audit", "verify", "--file", exported, "--pubkey", pub});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  EXPECT_TRUE(parsed.fields().at("ok").bool_value());
}

TEST_F(SesamectlTest, GlobalFlagsWorkBeforeAndAfterTheSubcommand) {
  // The connection flags of Ctl come first; -o and --timeout after the
  // subcommand, and between a subcommand and its own options.
  Result r = Ctl({"sequences", "issue", "--door", "ssh", "-o", "json", "--for", "bob"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"knocks\""));
  r = Ctl({"doors", "list", "--output", "json", "--timeout", "5s"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"name\": \"ssh\""));
  std::vector<std::string> argv = {"sesamectl", "health", "--controller", absl::StrCat("127.0.0.1:", daemon_->port()),
                                   "--ca-cert", pki_.File("ca.crt"), "--cert", pki_.File("alice.crt"),
                                   "--key", pki_.File("alice.key")};
  std::vector<const char*> raw;
  for (const std::string& a : argv) raw.push_back(a.c_str());
  std::ostringstream out, err;
  EXPECT_EQ(RunSesamectl(static_cast<int>(raw.size()), raw.data(), out, err), kExitOk) << err.str();
  EXPECT_EQ(out.str(), "SERVING\n");
  // What neither the subcommand nor sesamectl knows is still refused.
  EXPECT_EQ(Ctl({"doors", "list", "--frobnicate"}).code, kExitUsage);
}

TEST_F(SesamectlTest, AuditTailAsJsonIsOneObjectALine) {
  ASSERT_EQ(Ctl({"sequences", "issue", "--door", "ssh", "--count", "2"}).code, kExitOk);
  const Result r = Ctl({"audit", "tail", "-o", "json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u) << r.out;
  for (const std::string& line : lines) {
    google::protobuf::Struct parsed;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok()) << line;
    EXPECT_TRUE(parsed.fields().contains("what")) << line;
  }
}

// The kind of a JSON value as google.protobuf.Value holds it.
std::string Kind(const google::protobuf::Value& v) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kNullValue: return "null";
    case google::protobuf::Value::kNumberValue: return "number";
    case google::protobuf::Value::kStringValue: return "string";
    case google::protobuf::Value::kBoolValue: return "bool";
    case google::protobuf::Value::kStructValue: return "object";
    case google::protobuf::Value::kListValue: return "list";
    default: return "?";
  }
}

// "key:kind key:kind ..." of an object, keys sorted (Struct's map is).
std::string Shape(const google::protobuf::Struct& object) {
  std::map<std::string, std::string> kinds;
  for (const auto& [key, value] : object.fields()) kinds[key] = Kind(value);
  std::vector<std::string> parts;
  for (const auto& [key, kind] : kinds) parts.push_back(absl::StrCat(key, ":", kind));
  return absl::StrJoin(parts, " ");
}

google::protobuf::Struct ParseObject(const std::string& text) {
  google::protobuf::Struct parsed;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &parsed).ok()) << text;
  return parsed;
}

google::protobuf::Struct SesamectlTest::CtlJson(std::vector<std::string> args) {
  args.insert(args.begin(), {"-o", "json"});
  Result r = Ctl(args);
  EXPECT_EQ(r.code, kExitOk) << r.err;
  return ParseObject(r.out);
}

// The first object of the list under `list`; empty when there is none.
google::protobuf::Struct First(const google::protobuf::Struct& object, const std::string& list) {
  const auto it = object.fields().find(list);
  if (it == object.fields().end() || it->second.list_value().values_size() == 0) return google::protobuf::Struct();
  return it->second.list_value().values(0).struct_value();
}

google::protobuf::Value Field(const google::protobuf::Struct& object, const std::string& key) {
  const auto it = object.fields().find(key);
  return it == object.fields().end() ? google::protobuf::Value() : it->second;
}

// What scripts read, pinned: every key and the kind of its value, per command
// (controller/README.md, "JSON output" documents them).
TEST_F(SesamectlTest, JsonShapesArePinned) {
  auto Json = [this](std::vector<std::string> args) { return CtlJson(std::move(args)); };

  const google::protobuf::Struct door = First(Json({"doors", "list"}), "doors");
  EXPECT_EQ(Shape(door), "name:string policy:object revision:number");
  const google::protobuf::Struct policy = Field(door, "policy").struct_value();
  EXPECT_EQ(Shape(policy),
            "avoid_ports:list fleet_wide:bool grant_ports:list grant_ttl:string port_range:object protocols:list "
            "seq_timeout:string sequence_length:number");
  EXPECT_EQ(Field(policy, "grant_ttl").string_value(), "30s");
  EXPECT_EQ(Field(policy, "protocols").list_value().values(0).string_value(), "tcp");
  EXPECT_EQ(Shape(Field(policy, "port_range").struct_value()), "first:number last:number");

  const google::protobuf::Struct issued = First(Json({"sequences", "issue", "--door", "ssh"}), "sequences");
  EXPECT_EQ(Shape(issued), "commands:list door:string expires_at:string id:number knocks:list");
  EXPECT_EQ(Shape(First(issued, "knocks")), "port:number protocol:string");
  EXPECT_EQ(Field(First(issued, "knocks"), "protocol").string_value(), "tcp");

  const google::protobuf::Struct listed = First(Json({"sequences", "list"}), "sequences");
  EXPECT_EQ(Shape(listed),
            "consumed_at:null consumed_by:string consumed_from:string door:string expired:bool "
            "expires_at:string id:number issued_at:string issued_to:string reserve_agent:string state:string");
  EXPECT_EQ(Field(listed, "state").string_value(), "issued");
  EXPECT_THAT(Field(listed, "issued_at").string_value(),
              ::testing::MatchesRegex("20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9.]+Z"));

  const std::string grant_shape =
      "address:string agent:string agents:list door:string expires_at:string fleet_wide:bool id:number "
      "kill_sessions:bool opened_at:string opened_by:string ports:list revision:number sequence_id:number "
      "state:string";
  EXPECT_EQ(Shape(Json({"grants", "open", "--fleet", "--ip", "192.0.2.7", "--door", "ssh"})), grant_shape);
  const google::protobuf::Struct grant = First(Json({"grants", "list"}), "grants");
  EXPECT_EQ(Shape(grant), grant_shape);
  EXPECT_EQ(Field(grant, "state").string_value(), "open");
  EXPECT_EQ(Shape(Json({"grants", "revoke", "--ip", "192.0.2.7"})), "grant_ids:list");

  EXPECT_EQ(Shape(Json({"agents", "list"})), "agents:list");
  const google::protobuf::Struct stats = Json({"stats"});
  EXPECT_EQ(Shape(stats), "metrics:list revision:number");
  EXPECT_EQ(Shape(First(stats, "metrics")), "counter:bool labels:object name:string value:number");
  // A Unix time survives whole (a float printed with 6 digits would not).
  const google::protobuf::Value metrics = Field(stats, "metrics");
  for (const google::protobuf::Value& m : metrics.list_value().values()) {
    if (Field(m.struct_value(), "name").string_value() == "sesame_controller_start_time_seconds") {
      EXPECT_GT(Field(m.struct_value(), "value").number_value(), 1.7e9);
      EXPECT_NE(std::fmod(Field(m.struct_value(), "value").number_value(), 1000.0), 0.0);
    }
  }
  const google::protobuf::Struct record = Json({"audit", "tail", "-n", "1"});
  EXPECT_EQ(Shape(record),
            "details:object hash:string index:number origin:string prev_hash:string time:string what:string "
            "where:string who:string");
  EXPECT_THAT(Field(record, "hash").string_value(), ::testing::MatchesRegex("[0-9a-f]{64}"));
  EXPECT_EQ(Shape(Json({"audit", "pubkey"})), "public_key_pem:string");
  EXPECT_EQ(Shape(Json({"health"})), "status:string");
}

TEST_F(SesamectlTest, AgentsListWarnsOfAnEmptyReserveAndAFullMatcher) {
  // bastion b1's session: a Hello, then heartbeats saying what it holds.
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = *ReadFileToString(pki_.File("ca.crt"));
  tls.pem_cert_chain = *ReadFileToString(pki_.File("b1.crt"));
  tls.pem_private_key = *ReadFileToString(pki_.File("b1.key"));
  auto stub = v1::AgentService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", daemon_->port()), grpc::SslCredentials(tls)));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(2));
  auto stream = stub->Session(&context);
  absl::Cleanup end = [&] {
    context.TryCancel();
    (void)stream->Finish();
  };
  v1::AgentMessage hello;
  hello.set_id("hello");
  hello.mutable_hello()->set_version("0.1.0");
  ASSERT_TRUE(stream->Write(hello));
  auto heartbeat = [&](uint32_t reserve_left) {
    v1::AgentMessage m;
    m.set_id(absl::StrCat("hb", reserve_left));
    m.mutable_heartbeat()->set_reserve_left(reserve_left);
    ASSERT_TRUE(stream->Write(m));
  };
  heartbeat(0);
  Result r;
  ASSERT_TRUE(testing::Eventually([&] {
    r = Ctl({"agents", "list"});
    return absl::StrContains(r.out, "b1");
  })) << r.out << r.err;
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("0 (EMPTY)"));
  EXPECT_THAT(r.err, HasSubstr("warning: b1 holds no offline-reserve sequence"));
  EXPECT_THAT(r.err, HasSubstr("--reserve b1"));
  heartbeat(2);
  ASSERT_TRUE(testing::Eventually([&] {
    r = Ctl({"agents", "list"});
    return !absl::StrContains(r.out, "EMPTY");
  })) << r.out;
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.err, "");

  // Near its matcher's capacity: `agents list` shows held/capacity, and an
  // issue that would not all be recognised on b1 is refused, naming it.
  v1::AgentMessage full;
  full.set_id("hb-full");
  full.mutable_heartbeat()->set_reserve_left(2);
  v1::Metric* held = full.mutable_heartbeat()->add_metrics();
  held->set_name("sesame_agent_managed_sequences");
  held->set_value(95);
  v1::Metric* capacity = full.mutable_heartbeat()->add_metrics();
  capacity->set_name("sesame_agent_managed_sequences_capacity");
  capacity->set_value(100);
  ASSERT_TRUE(stream->Write(full));
  ASSERT_TRUE(testing::Eventually([&] {
    r = Ctl({"agents", "list"});
    return absl::StrContains(r.out, "95/100");
  })) << r.out;
  r = Ctl({"sequences", "issue", "--door", "ssh", "--count", "6"});
  EXPECT_EQ(r.code, kExitFailure) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("bastion b1 holds 95 sequences and recognises at most 100 at once"));
  EXPECT_EQ(Ctl({"sequences", "issue", "--door", "ssh", "--count", "5"}).code, kExitOk);
  r = Ctl({"agents", "list", "-o", "json"});
  EXPECT_THAT(r.out, HasSubstr("\"sequences_capacity\": 100"));
}

TEST_F(SesamectlTest, ExitCodes) {
  EXPECT_EQ(Ctl({"agents", "list"}, "b1").code, kExitRefused);  // an agent's certificate
  EXPECT_EQ(Ctl({"agents", "show", "nope"}).code, kExitNotFound);
  EXPECT_EQ(Ctl({"sequences", "issue"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"frobnicate"}).code, kExitUsage);
  Result r = Ctl({"health"}, "alice", /*port=*/1, "2s");
  EXPECT_EQ(r.code, kExitUnreachable) << r.err;
  // A controller whose certificate this client does not trust: the TLS
  // handshake fails on our side, and sesamectl says it is a certificate
  // matter, not an unreachable controller.
  testing::TempDir other;
  ASSERT_TRUE(testing::MakeTestPki(other.path(), {{"x", "admin"}}).ok());
  r = Ctl({"health"}, "alice", 0, "5s", other.File("ca.crt"));
  EXPECT_EQ(r.code, kExitRefused) << r.err;
  EXPECT_THAT(r.err, HasSubstr("TLS handshake"));
}

TEST_F(SesamectlTest, SequencesExpireWhenTheirIssuerSays) {
  // A lifetime from now; the JSON says when.
  const absl::Time before = absl::Now();
  const google::protobuf::Struct issued =
      First(CtlJson({"sequences", "issue", "--door", "ssh", "--expires", "2h"}), "sequences");
  absl::Time expires;
  std::string error;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, Field(issued, "expires_at").string_value(), &expires, &error));
  EXPECT_GE(expires, before + absl::Hours(2) - absl::Seconds(1));
  EXPECT_LE(expires, absl::Now() + absl::Hours(2));
  // Without --expires: the controller's default, 30 days.
  const google::protobuf::Struct by_default = First(CtlJson({"sequences", "issue", "--door", "ssh"}), "sequences");
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, Field(by_default, "expires_at").string_value(), &expires, &error));
  EXPECT_GE(expires, before + absl::Hours(24 * 30) - absl::Seconds(1));

  // What it refuses, saying why.
  Result r = Ctl({"sequences", "issue", "--door", "ssh", "--expires", "soon"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--expires soon: expected a lifetime like 12h or 7d"));
  r = Ctl({"sequences", "issue", "--door", "ssh", "--expires", "400d"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("at most 366 days ahead"));
  r = Ctl({"sequences", "issue", "--door", "ssh", "--expires", "2020-01-01T00:00:00Z"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("a time in the future"));

  // One that lives a second: the controller's tick burns it, and list says so.
  r = Ctl({"sequences", "issue", "--door", "ssh", "--expires", "1s"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  absl::SleepFor(absl::Milliseconds(1100));
  daemon_->Tick();
  r = Ctl({"sequences", "list", "--state", "burnt"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("burnt (expired)"));
  const google::protobuf::Struct burnt = First(CtlJson({"sequences", "list", "--state", "burnt"}), "sequences");
  EXPECT_TRUE(Field(burnt, "expired").bool_value());
  EXPECT_EQ(Field(burnt, "consumed_by").string_value(), "");
}

}  // namespace
}  // namespace sesame::controller
