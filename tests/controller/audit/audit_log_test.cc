#include "controller/audit/audit_log.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <memory>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/log.h"
#include "controller/audit/audit_export.h"
#include "controller/audit/audit_head.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_record.h"
#include "controller/audit/audit_verifier.h"
#include "controller/store/sqlite/sqlite_db.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace sesame::controller {
namespace {

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1700000000);

std::string Sha256(const std::string& bytes) {
  unsigned char out[32];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), out, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(out), n);
}

std::string U32(uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                     static_cast<char>(v)};
}

std::string U64(uint64_t v) { return U32(static_cast<uint32_t>(v >> 32)) + U32(static_cast<uint32_t>(v)); }

std::string Str(const std::string& s) { return U32(static_cast<uint32_t>(s.size())) + s; }

// --- Canonical encoding -------------------------------------------------------

TEST(AuditRecordTest, CanonicalBytesAreExactlyAsSpecified) {
  AuditEntry e;
  e.time = absl::FromUnixMicros(1700000000123456);
  e.who = "198.51.100.7";
  e.what = "knock.opened";
  e.where = "agent:b1";
  e.origin = "agent:b1/42";
  e.details = {{"z", "last"}, {"door", "ssh"}, {"B", ""}};
  const std::string expected = std::string("sesame-audit-record-v1") + U64(7) + U64(1700000000123456) +
                               Str("198.51.100.7") + Str("knock.opened") + Str("agent:b1") + Str("agent:b1/42") +
                               U32(3) + Str("B") + Str("") + Str("door") + Str("ssh") + Str("z") + Str("last");
  EXPECT_EQ(CanonicalRecordBytes(7, e), expected);

  ChainHash prev;
  for (size_t i = 0; i < prev.size(); ++i) prev[i] = static_cast<uint8_t>(i);
  const ChainHash next = NextChainHash(prev, 7, e);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(next.data()), 32),
            Sha256(std::string(reinterpret_cast<const char*>(prev.data()), 32) + expected));
}

TEST(AuditRecordTest, CheckpointBytesAreExactlyAsSpecified) {
  ChainHash h;
  h.fill(0xab);
  EXPECT_EQ(CanonicalCheckpointBytes(5, h, absl::FromUnixMicros(99)),
            std::string("sesame-audit-checkpoint-v1") + U64(5) + std::string(32, '\xab') + U64(99));
}

TEST(AuditRecordTest, SealingTruncatesTimeAndChains) {
  AuditHead head;
  AuditEntry e{kStart + absl::Nanoseconds(2999), "controller", "x", "controller", "", {}};
  const AuditRecord r0 = SealRecord(head, e);
  EXPECT_EQ(r0.index, 0u);
  EXPECT_EQ(r0.entry.time, kStart + absl::Microseconds(2));
  EXPECT_EQ(r0.prev_hash, ChainHash{});
  const AuditRecord r1 = SealRecord(AuditHead{1, r0.hash}, e);
  EXPECT_EQ(r1.index, 1u);
  EXPECT_EQ(r1.prev_hash, r0.hash);
  EXPECT_NE(r1.hash, r0.hash);  // same contents, different index
}

TEST(AuditRecordTest, FieldEscapingRoundTrips) {
  const std::string nasty = "a\tb\nc\rd%e=f;g\x01h\x7fi é";
  const std::string escaped = EscapeField(nasty);
  EXPECT_EQ(escaped.find_first_of("\t\n\r=;\x01\x7f"), std::string::npos) << escaped;
  EXPECT_EQ(*UnescapeField(escaped), nasty);
  const std::map<std::string, std::string> details = {{"k=1;", "v;=\t"}, {"", ""}, {"door", "ssh"}};
  EXPECT_EQ(*DetailsFromText(DetailsToText(details)), details);
  EXPECT_TRUE(DetailsFromText("").ok());
  EXPECT_FALSE(DetailsFromText("novalue").ok());
  EXPECT_FALSE(DetailsFromText("a=1;a=2").ok());
  EXPECT_FALSE(DetailsFromText("a=1;").ok());
  EXPECT_FALSE(UnescapeField("%4").ok());
  EXPECT_FALSE(UnescapeField("%zz").ok());
  EXPECT_FALSE(UnescapeField("a\tb").ok());
}

// --- Keys ---------------------------------------------------------------------

TEST(AuditKeyTest, SignVerifyAndPemRoundTrip) {
  const AuditSigningKey key = AuditSigningKey::Generate();
  absl::StatusOr<std::string> sig = key.Sign("hello");
  ASSERT_TRUE(sig.ok());
  EXPECT_EQ(sig->size(), 64u);
  EXPECT_TRUE(key.PublicKey().Verify("hello", *sig));
  EXPECT_FALSE(key.PublicKey().Verify("hellO", *sig));
  EXPECT_FALSE(AuditSigningKey::Generate().PublicKey().Verify("hello", *sig));

  absl::StatusOr<AuditSigningKey> again = AuditSigningKey::FromPem(key.ToPem());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->PublicKey().ToPem(), key.PublicKey().ToPem());
  absl::StatusOr<AuditPublicKey> pub = AuditPublicKey::FromPem(key.PublicKey().ToPem());
  ASSERT_TRUE(pub.ok());
  EXPECT_TRUE(pub->Verify("hello", *sig));
  EXPECT_FALSE(AuditPublicKey::FromPem("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n").ok());
}

TEST(AuditKeyTest, LoadOrCreateKeepsTheKeyPrivateAndStable) {
  testing::TempDir dir;
  const std::string path = dir.File("audit.key");
  absl::StatusOr<AuditSigningKey> created = AuditSigningKey::LoadOrCreate(path);
  ASSERT_TRUE(created.ok()) << created.status();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<AuditSigningKey> loaded = AuditSigningKey::LoadOrCreate(path);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->PublicKey().ToPem(), created->PublicKey().ToPem());

  // A file that is not a key is an error, and is left alone.
  ASSERT_TRUE(WriteFileAtomically(path, "garbage\n", 0600).ok());
  absl::StatusOr<AuditSigningKey> bad = AuditSigningKey::LoadOrCreate(path);
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr(path));
  EXPECT_EQ(*ReadFileToString(path), "garbage\n");
}

TEST(AuditKeyTest, KeyIdIsTheSha256OfTheSubjectPublicKeyInfo) {
  const AuditSigningKey key = AuditSigningKey::Generate();
  const std::string pem = key.PublicKey().ToPem();
  // The PEM body is the DER, in base64.
  std::string body;
  for (absl::string_view line : absl::StrSplit(pem, '\n')) {
    if (!line.empty() && line[0] != '-') body += std::string(line);
  }
  std::string der;
  ASSERT_TRUE(absl::Base64Unescape(body, &der));
  EXPECT_EQ(key.PublicKey().KeyId(), BytesToHex(Sha256(der)));
  EXPECT_EQ(AuditPublicKey::FromPem(pem)->KeyId(), key.PublicKey().KeyId());
  EXPECT_NE(AuditSigningKey::Generate().PublicKey().KeyId(), key.PublicKey().KeyId());
}

// --- The log, its export, and tampering ---------------------------------------

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteStoreOptions options;
    options.state_dir = dir_.File("state");
    options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    log_ = std::make_unique<AuditLog>(*store_, key_, clock_);
    for (int i = 0; i < kRecords; ++i) {
      clock_.Advance(absl::Milliseconds(250));
      AuditEntry e;
      e.who = i % 2 ? "admin:alice" : "203.0.113.9";
      e.what = i % 2 ? "grant.revoked" : "knock.opened";
      e.where = "agent:b1";
      e.details = {{"door", "ssh"}, {"n", absl::StrCat(i)}, {"note", "tab\there; a=b"}};
      ASSERT_TRUE(log_->Append(e).ok());
      if (i == 7) {
        ASSERT_TRUE(log_->Checkpoint().ok());
      }
    }
  }

  // Export lines, header first.
  std::vector<std::string> ExportLines() {
    absl::StatusOr<std::string> text = log_->ExportText();
    EXPECT_TRUE(text.ok()) << text.status();
    std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
    return lines;
  }

  // Index in ExportLines() of record i's line.
  static size_t RecordLine(const std::vector<std::string>& lines, uint64_t i) {
    const std::string prefix = absl::StrCat("R\t", i, "\t");
    for (size_t n = 0; n < lines.size(); ++n) {
      if (lines[n].rfind(prefix, 0) == 0) return n;
    }
    ADD_FAILURE() << "no line for record " << i;
    return 0;
  }

  AuditVerification VerifyLines(const std::vector<std::string>& lines, const AuditPublicKey& key) {
    const std::string path = dir_.File("export.txt");
    EXPECT_TRUE(WriteFileAtomically(path, absl::StrJoin(lines, "\n") + "\n", 0644).ok());
    absl::StatusOr<AuditVerification> v = VerifyAuditExportFile(path, key);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : AuditVerification{};
  }

  // Runs SQL on the database behind the controller's back.
  void Tamper(const std::string& sql) {
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(store_->path(), SqliteOpenOptions{});
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec(sql).ok()) << sql;
  }

  static constexpr int kRecords = 20;
  testing::TempDir dir_;
  ManualClock clock_{kStart};
  AuditSigningKey key_ = AuditSigningKey::Generate();
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<AuditLog> log_;
};

TEST_F(AuditLogTest, StoredChainVerifies) {
  absl::StatusOr<AuditVerification> v = log_->Verify();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->records, 20u);
  EXPECT_EQ(v->checkpoints, 1u);
  EXPECT_EQ(v->signed_records, 8u);
  ASSERT_TRUE(log_->Checkpoint().ok());
  v = log_->Verify();
  EXPECT_EQ(v->signed_records, 20u);
  // No new record: no new signature.
  const size_t checkpoints = store_->ListCheckpoints()->size();
  ASSERT_TRUE(log_->Checkpoint().ok());
  EXPECT_EQ(store_->ListCheckpoints()->size(), checkpoints);
}

TEST_F(AuditLogTest, EachNewCheckpointIsLoggedAsAHead) {
  std::vector<std::string> lines;
  LogOptions options;
  options.to_stderr = false;
  options.observer = [&lines](LogLevel, std::string_view m) { lines.emplace_back(m); };
  ASSERT_TRUE(ConfigureLogging(options).ok());
  absl::Cleanup restore = [] { (void)ConfigureLogging(LogOptions{}); };
  absl::StatusOr<AuditCheckpoint> signed_now = log_->Checkpoint();
  ASSERT_TRUE(signed_now.ok());
  ASSERT_TRUE(log_->Checkpoint().ok());  // nothing new: not signed again, not logged again
  std::string heads;
  for (const std::string& line : lines) {
    if (line.rfind("audit.checkpoint {", 0) == 0) heads += line + "\n";
  }
  absl::StatusOr<std::vector<AuditSignedHead>> parsed = ParseAuditHeads(heads, "journal");
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << heads;
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ((*parsed)[0].checkpoint, *signed_now);
  EXPECT_EQ((*parsed)[0].key_id, key_.PublicKey().KeyId());
  EXPECT_EQ(*log_->LatestCheckpoint(), *signed_now);
  absl::StatusOr<AuditVerification> v = log_->Verify(*parsed);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->heads, 1u);
}

TEST_F(AuditLogTest, TheLiveLogAllowsAnUnsignedTailYoungerThanTheInterval) {
  // Records 8..19 are not signed yet; the first is from kStart + 2.25 s.
  clock_.Advance(absl::Seconds(30));
  absl::StatusOr<AuditVerification> v = log_->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
  clock_.Advance(absl::Minutes(2));
  v = log_->Verify();
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_index, 8u);
  EXPECT_THAT(v->problem,
              HasSubstr("12 records (records 8 to 19) after the last checkpoint (over 8 records): not signed"));
  EXPECT_THAT(v->problem, HasSubstr("older than the checkpoint interval allows (1m10s)"));
  ASSERT_TRUE(log_->Checkpoint().ok());
  v = log_->Verify();
  EXPECT_TRUE(v->ok) << v->problem;
}

TEST_F(AuditLogTest, CheckpointsStrippedFromTheStoreFailTheLiveVerify) {
  ASSERT_TRUE(log_->Checkpoint().ok());
  Tamper("DELETE FROM audit_checkpoints");
  clock_.Advance(absl::Minutes(5));
  absl::StatusOr<AuditVerification> v = log_->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_index, 0u);
  EXPECT_THAT(v->problem, HasSubstr("20 records (records 0 to 19) without any checkpoint: not signed"));
}

TEST_F(AuditLogTest, AStoreRolledBackToAnEarlierCheckpointFailsAgainstASavedHead) {
  absl::StatusOr<AuditCheckpoint> head = log_->Checkpoint();
  ASSERT_TRUE(head.ok());
  const AuditSignedHead saved{*head, log_->key_id(), ""};
  Tamper("DELETE FROM audit WHERE idx >= 8; DELETE FROM audit_checkpoints WHERE record_count > 8");
  absl::StatusOr<AuditVerification> v = log_->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;  // consistent and signed: only the head tells
  v = log_->Verify({saved});
  EXPECT_FALSE(v->ok);
  EXPECT_THAT(v->problem, HasSubstr("the log holds 8 records, but the saved head over 20 records"));
  EXPECT_THAT(v->problem, HasSubstr("cut back"));
}

TEST_F(AuditLogTest, ExportRoundTripsAndVerifiesOffline) {
  ASSERT_TRUE(log_->Export(dir_.File("audit.export")).ok());
  absl::StatusOr<std::string> text = ReadFileToString(dir_.File("audit.export"));
  ASSERT_TRUE(text.ok());
  absl::StatusOr<AuditExport> parsed = ParseAuditExport(*text, "audit.export");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->records, *store_->ReadAudit(0, 100));
  ASSERT_EQ(parsed->checkpoints.size(), 2u);  // the one at 8 and the export's own
  EXPECT_EQ(parsed->checkpoints.back().record_count, 20u);

  // Offline: only the public key, from its PEM.
  absl::StatusOr<AuditPublicKey> pub = AuditPublicKey::FromPem(key_.PublicKey().ToPem());
  ASSERT_TRUE(pub.ok());
  absl::StatusOr<AuditVerification> v = VerifyAuditExportFile(dir_.File("audit.export"), *pub);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->records, 20u);
  EXPECT_EQ(v->signed_records, 20u);
}

TEST_F(AuditLogTest, ExportDetectsAlteration) {
  std::vector<std::string> lines = ExportLines();
  std::string& line = lines[RecordLine(lines, 5)];
  line.replace(line.find("admin:alice"), 11, "admin:mallo");
  AuditVerification v = VerifyLines(lines, key_.PublicKey());
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 5u);
  EXPECT_THAT(v.problem, HasSubstr("altered"));
}

TEST_F(AuditLogTest, ExportDetectsRemoval) {
  std::vector<std::string> lines = ExportLines();
  lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(RecordLine(lines, 12)));
  AuditVerification v = VerifyLines(lines, key_.PublicKey());
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 12u);
  EXPECT_THAT(v.problem, HasSubstr("removed"));
}

TEST_F(AuditLogTest, ExportDetectsReordering) {
  std::vector<std::string> lines = ExportLines();
  std::swap(lines[RecordLine(lines, 3)], lines[RecordLine(lines, 4)]);
  AuditVerification v = VerifyLines(lines, key_.PublicKey());
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 3u);
  EXPECT_THAT(v.problem, HasSubstr("reordered"));
}

TEST_F(AuditLogTest, ExportDetectsBadSignatureAndWrongKey) {
  std::vector<std::string> lines = ExportLines();
  std::string& last = lines.back();
  ASSERT_EQ(last[0], 'C');
  last.back() = last.back() == '0' ? '1' : '0';  // one hex digit of the signature
  AuditVerification v = VerifyLines(lines, key_.PublicKey());
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 20u);
  EXPECT_THAT(v.problem, HasSubstr("bad signature"));

  AuditVerification other = VerifyLines(ExportLines(), AuditSigningKey::Generate().PublicKey());
  EXPECT_FALSE(other.ok);
  EXPECT_THAT(other.problem, HasSubstr("bad signature"));
}

TEST_F(AuditLogTest, RehashingAfterAnAlterationIsCaughtByTheSignature) {
  // The forger changes record 2 and recomputes every hash after it, so the
  // chain is self-consistent; the signed checkpoint at 8 still disagrees.
  absl::StatusOr<std::string> text = log_->ExportText();
  ASSERT_TRUE(text.ok());
  absl::StatusOr<AuditExport> parsed = ParseAuditExport(*text, "x");
  ASSERT_TRUE(parsed.ok());
  parsed->records[2].entry.who = "203.0.113.66";
  ChainHash prev = parsed->records[1].hash;
  for (size_t i = 2; i < parsed->records.size(); ++i) {
    AuditRecord& r = parsed->records[i];
    r.prev_hash = prev;
    r.hash = NextChainHash(prev, r.index, r.entry);
    prev = r.hash;
  }
  AuditVerification v = VerifyAuditExport(parsed->records, parsed->checkpoints, key_.PublicKey());
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 8u);
  EXPECT_THAT(v.problem, HasSubstr("does not match what was signed"));
}

TEST_F(AuditLogTest, TruncationBelowACheckpointIsCaught) {
  std::vector<std::string> lines = ExportLines();
  // Drop records 15..19 but keep the final checkpoint line.
  std::vector<std::string> cut;
  for (const std::string& line : lines) {
    bool drop = false;
    for (int i = 15; i < 20; ++i) drop |= line.rfind(absl::StrCat("R\t", i, "\t"), 0) == 0;
    if (!drop) cut.push_back(line);
  }
  AuditVerification v = VerifyLines(cut, key_.PublicKey());
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 15u);
  EXPECT_THAT(v.problem, HasSubstr("removed from the end"));
}

TEST_F(AuditLogTest, MalformedExportIsAParseErrorWithItsLine) {
  std::vector<std::string> lines = ExportLines();
  lines[RecordLine(lines, 4)] += "\textra";
  const std::string path = dir_.File("bad.txt");
  ASSERT_TRUE(WriteFileAtomically(path, absl::StrJoin(lines, "\n"), 0644).ok());
  absl::StatusOr<AuditVerification> v = VerifyAuditExportFile(path, key_.PublicKey());
  EXPECT_TRUE(absl::IsInvalidArgument(v.status()));
  EXPECT_THAT(v.status().message(), HasSubstr(absl::StrCat(path, ":", RecordLine(lines, 4) + 1, ":")));
  EXPECT_THAT(v.status().message(), HasSubstr("expected 10"));

  ASSERT_TRUE(WriteFileAtomically(path, "not an export\n", 0644).ok());
  EXPECT_THAT(VerifyAuditExportFile(path, key_.PublicKey()).status().message(), HasSubstr(":1: expected the header"));
}

TEST_F(AuditLogTest, DatabaseAlterationIsCaughtWhereItHappened) {
  Tamper("UPDATE audit SET who = 'someone else' WHERE idx = 5");
  absl::StatusOr<AuditVerification> v = log_->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_index, 5u);
  EXPECT_THAT(v->problem, HasSubstr("altered"));
}

TEST_F(AuditLogTest, DatabaseDetailAlterationIsCaught) {
  Tamper("UPDATE audit SET details = 'door=ssh;n=9;note=x' WHERE idx = 9");
  absl::StatusOr<AuditVerification> v = log_->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_index, 9u);
}

TEST_F(AuditLogTest, DatabaseRemovalIsCaughtWhereItHappened) {
  Tamper("DELETE FROM audit WHERE idx = 11");
  absl::StatusOr<AuditVerification> v = log_->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_index, 11u);
  EXPECT_THAT(v->problem, HasSubstr("removed"));
}

TEST_F(AuditLogTest, DatabaseReorderingIsCaughtWhereItHappened) {
  // Swap the contents of records 6 and 7 (keeping their positions).
  Tamper(
      "UPDATE audit SET idx = -1 WHERE idx = 6;"
      "UPDATE audit SET idx = 6 WHERE idx = 7;"
      "UPDATE audit SET idx = 7 WHERE idx = -1;");
  absl::StatusOr<AuditVerification> v = log_->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_index, 6u);
}

TEST_F(AuditLogTest, DatabaseCheckpointTamperingIsCaught) {
  Tamper("UPDATE audit_checkpoints SET at_us = at_us + 1");
  absl::StatusOr<AuditVerification> v = log_->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_THAT(v->problem, HasSubstr("bad signature"));
}

}  // namespace
}  // namespace sesame::controller
