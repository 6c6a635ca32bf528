// The verifier against forged logs: what each forgery leaves behind and the
// message that names it. Chains are built in memory (no store): 30 records,
// checkpoints after 10, 20 and 30 records, and saved heads as an auditor
// keeps them.
#include "controller/audit/audit_verifier.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "controller/audit/audit_head.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_record.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sesame::controller {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1700000000);
constexpr uint64_t kRecords = 30;

std::vector<AuditRecord> MakeChain(uint64_t n) {
  std::vector<AuditRecord> out;
  AuditHead head;
  for (uint64_t i = 0; i < n; ++i) {
    AuditEntry e;
    e.time = kStart + absl::Seconds(static_cast<int64_t>(i));
    e.who = "203.0.113.9";
    e.what = "knock.opened";
    e.where = "agent:b1";
    e.details = {{"n", absl::StrCat(i)}};
    out.push_back(SealRecord(head, std::move(e)));
    head = AuditHead{i + 1, out.back().hash};
  }
  return out;
}

// Recomputes every hash, as a forger does after changing a record.
void Rehash(std::vector<AuditRecord>& records) {
  ChainHash prev{};
  for (AuditRecord& r : records) {
    r.prev_hash = prev;
    r.hash = NextChainHash(prev, r.index, r.entry);
    prev = r.hash;
  }
}

AuditCheckpoint Sign(const AuditSigningKey& key, const std::vector<AuditRecord>& records, uint64_t count) {
  AuditCheckpoint c;
  c.record_count = count;
  c.chain_hash = count == 0 ? ChainHash{} : records[count - 1].hash;
  c.time = kStart + absl::Seconds(static_cast<int64_t>(count)) + absl::Milliseconds(500);
  c.signature = *key.Sign(CanonicalCheckpointBytes(c.record_count, c.chain_hash, c.time));
  return c;
}

class AuditVerifierTest : public ::testing::Test {
 protected:
  std::vector<AuditCheckpoint> Checkpoints(const AuditSigningKey& key, const std::vector<AuditRecord>& records,
                                           std::vector<uint64_t> counts) {
    std::vector<AuditCheckpoint> out;
    for (uint64_t n : counts) out.push_back(Sign(key, records, n));
    return out;
  }
  // A head saved from the honest log, as `audit head -o json` gives it.
  AuditSignedHead SavedHead(uint64_t count) {
    return AuditSignedHead{Sign(key_, records_, count), pub_.KeyId(), absl::StrCat("heads.json:", count / 10)};
  }

  AuditSigningKey key_ = AuditSigningKey::Generate();
  AuditPublicKey pub_ = key_.PublicKey();
  std::vector<AuditRecord> records_ = MakeChain(kRecords);
};

TEST_F(AuditVerifierTest, AnHonestExportPassesWithItsHeads) {
  AuditVerification v = VerifyAuditExport(records_, Checkpoints(key_, records_, {10, 20, 30}), pub_,
                                          {SavedHead(30), SavedHead(10), SavedHead(20)});
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 30u);
  EXPECT_EQ(v.checkpoints, 3u);
  EXPECT_EQ(v.signed_records, 30u);
  EXPECT_EQ(v.heads, 3u);
  // An empty log exports a checkpoint over nothing.
  v = VerifyAuditExport({}, Checkpoints(key_, records_, {0}), pub_);
  EXPECT_TRUE(v.ok) << v.problem;
}

TEST_F(AuditVerifierTest, StrippedCheckpointsFail) {
  AuditVerification v = VerifyAuditExport(records_, {}, pub_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 0u);
  EXPECT_THAT(v.problem, AllOf(HasSubstr("none of the 30 records is covered by a signed checkpoint"),
                               HasSubstr("checkpoint lines were removed")));
  v = VerifyAuditExport({}, {}, pub_);
  EXPECT_FALSE(v.ok);
  EXPECT_THAT(v.problem, HasSubstr("no signed checkpoint"));

  // Only the export's own (last) checkpoint stripped: the tail says how many.
  v = VerifyAuditExport(records_, Checkpoints(key_, records_, {10, 20}), pub_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 20u);
  EXPECT_EQ(v.signed_records, 20u);
  EXPECT_THAT(v.problem, HasSubstr("10 records (records 20 to 29) after the last checkpoint (over 20 records): not "
                                   "covered by a signature"));
}

TEST_F(AuditVerifierTest, ACutTailFails) {
  // Records 25..29 cut, and the checkpoint over 30 with them.
  const std::vector<AuditRecord> cut(records_.begin(), records_.begin() + 25);
  AuditVerification v = VerifyAuditExport(cut, Checkpoints(key_, records_, {10, 20}), pub_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 20u);
  EXPECT_THAT(v.problem, HasSubstr("5 records (records 20 to 24) after the last checkpoint"));
  // One unsigned record is named as one.
  const std::vector<AuditRecord> one(records_.begin(), records_.begin() + 21);
  v = VerifyAuditExport(one, Checkpoints(key_, records_, {10, 20}), pub_);
  EXPECT_THAT(v.problem, HasSubstr("1 record (record 20) after the last checkpoint"));
}

TEST_F(AuditVerifierTest, ARollbackToAnEarlierCheckpointFailsAgainstALaterHead) {
  // Cut back exactly to the checkpoint over 20: consistent and signed.
  const std::vector<AuditRecord> rolled_back(records_.begin(), records_.begin() + 20);
  const std::vector<AuditCheckpoint> checkpoints = Checkpoints(key_, records_, {10, 20});
  AuditVerification alone = VerifyAuditExport(rolled_back, checkpoints, pub_);
  EXPECT_TRUE(alone.ok) << alone.problem;  // why heads are kept elsewhere

  AuditVerification v = VerifyAuditExport(rolled_back, checkpoints, pub_, {SavedHead(10), SavedHead(30)});
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 20u);
  EXPECT_THAT(v.problem, AllOf(HasSubstr("the log holds 20 records, but the saved head over 30 records signed at "
                                         "2023-11-14T22:13:50.500000Z (heads.json:3)"),
                               HasSubstr("cut back (rolled back to an earlier checkpoint")));
  // An earlier head alone is contained.
  v = VerifyAuditExport(rolled_back, checkpoints, pub_, {SavedHead(20)});
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.heads, 1u);
}

TEST_F(AuditVerifierTest, AForkedChainReSignedWithTheSameKeyFailsAgainstAHead) {
  // Root on the controller's disk has the signing key: record 5 rewritten,
  // every hash recomputed, every checkpoint signed again.
  std::vector<AuditRecord> forged = records_;
  forged[5].entry.who = "198.51.100.66";
  Rehash(forged);
  const std::vector<AuditCheckpoint> resigned = Checkpoints(key_, forged, {10, 20, 30});
  EXPECT_TRUE(VerifyAuditExport(forged, resigned, pub_).ok);

  AuditVerification v = VerifyAuditExport(forged, resigned, pub_, {SavedHead(20)});
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 20u);
  EXPECT_THAT(v.problem, AllOf(HasSubstr("the chain after 20 records differs from the saved head over 20 records"),
                               HasSubstr("forked")));
}

TEST_F(AuditVerifierTest, ARehashedChainReSignedWithAnotherKeyFails) {
  std::vector<AuditRecord> forged = records_;
  forged[5].entry.who = "198.51.100.66";
  Rehash(forged);
  const AuditSigningKey other = AuditSigningKey::Generate();
  const std::vector<AuditCheckpoint> resigned = Checkpoints(other, forged, {10, 20, 30});

  // With the auditor's copy of the public key: every signature is wrong.
  AuditVerification v = VerifyAuditExport(forged, resigned, pub_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 10u);
  EXPECT_THAT(v.problem, HasSubstr("checkpoint over 10 records: bad signature"));

  // With the new key (fetched from the controller after the forgery), a saved
  // head shows the key changed.
  v = VerifyAuditExport(forged, resigned, other.PublicKey(), {SavedHead(30)});
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 30u);
  EXPECT_THAT(v.problem,
              AllOf(HasSubstr(absl::StrCat("was signed by key ", pub_.KeyId().substr(0, 16))),
                    HasSubstr(absl::StrCat("not by the key given (", other.PublicKey().KeyId().substr(0, 16))),
                    HasSubstr("the audit key was replaced")));
  // A head without its key id still fails on its signature.
  AuditSignedHead anonymous = SavedHead(30);
  anonymous.key_id.clear();
  v = VerifyAuditExport(forged, resigned, other.PublicKey(), {anonymous});
  EXPECT_FALSE(v.ok);
  EXPECT_THAT(v.problem, HasSubstr("bad signature for the key given"));
}

TEST_F(AuditVerifierTest, AnAlteredHeadFails) {
  AuditSignedHead h = SavedHead(30);
  h.checkpoint.record_count = 25;  // claims less than was signed
  AuditVerification v = VerifyAuditExport(records_, Checkpoints(key_, records_, {10, 20, 30}), pub_, {h});
  EXPECT_FALSE(v.ok);
  EXPECT_THAT(v.problem, HasSubstr("the saved head over 25 records"));
  EXPECT_THAT(v.problem, HasSubstr("bad signature for the key given"));
  EXPECT_THAT(v.problem, HasSubstr("the head was altered"));
}

TEST_F(AuditVerifierTest, TheLiveLogAllowsAYoungUnsignedTailOnly) {
  const std::vector<AuditCheckpoint> checkpoints = Checkpoints(key_, records_, {10});  // signed at +10.5s
  AuditVerifyOptions options;
  options.unsigned_tail_allowance = absl::Seconds(70);
  auto verify = [&](absl::Time now, std::vector<AuditRecord> records) {
    options.now = now;
    AuditChainVerifier verifier(pub_, checkpoints, options);
    for (const AuditRecord& r : records) verifier.Add(r);
    return verifier.Finish();
  };
  // Record 10 (the first unsigned) is from +10s.
  AuditVerification v = verify(kStart + absl::Seconds(60), records_);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.signed_records, 10u);
  v = verify(kStart + absl::Seconds(200), records_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 10u);
  EXPECT_THAT(v.problem, AllOf(HasSubstr("20 records (records 10 to 29) after the last checkpoint"),
                               HasSubstr("older than the checkpoint interval allows (1m10s)"),
                               HasSubstr("checkpoints were removed from the store")));
  // A recent checkpoint means the controller signs: an old record just
  // appended after it is not yet due.
  std::vector<AuditCheckpoint> recent = checkpoints;
  recent.back().time = kStart + absl::Seconds(190);
  recent.back().signature =
      *key_.Sign(CanonicalCheckpointBytes(recent.back().record_count, recent.back().chain_hash, recent.back().time));
  options.now = kStart + absl::Seconds(200);
  AuditChainVerifier verifier(pub_, recent, options);
  for (const AuditRecord& r : records_) verifier.Add(r);
  EXPECT_TRUE(verifier.Finish().ok);
}

}  // namespace
}  // namespace sesame::controller
