// SqliteStore's sequences: AddSequences (with its equal-or-prefix checks
// against unused sequences), ExpireSequences, GetSequence, ListSequences. Consumption is in
// sqlite_consume.cc.
#include <algorithm>
#include <cstddef>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "controller/store/sqlite/internal/sqlite_queries.h"
#include "controller/store/sqlite/internal/sqlite_rows.h"
#include "controller/store/sqlite/internal/sqlite_writer.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "controller/store/store_checks.h"

namespace sesame::controller {

using internal::FindDoor;
using internal::FindSequence;
using internal::kEffectiveState;
using internal::Micros;
using internal::SequenceColumns;
using internal::SequenceFromRow;

absl::StatusOr<std::vector<Sequence>> SqliteStore::AddSequences(const std::vector<NewSequence>& sequences,
                                                                std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateNewSequences(sequences));
  std::vector<Sequence> out;
  const absl::Time now = TruncateToMicros(clock_.Now());
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.clear();
    SqliteDb& db = w.db();
    for (size_t i = 0; i < sequences.size(); ++i) {
      const NewSequence& n = sequences[i];
      ASSIGN_OR_RETURN(std::optional<Door> door, FindDoor(db, n.door));
      if (!door) return absl::NotFoundError(absl::StrCat("no door \"", n.door, "\""));
      const std::string text = KnocksToText(n.knocks);
      // Equal to an unused sequence, or a proper prefix of one.
      {
        ASSIGN_OR_RETURN(SqliteStatement s,
                         db.Prepare("SELECT id FROM sequences WHERE knocks >= ?1 AND knocks < ?2 AND "
                                    "state != 'burnt' LIMIT 1"));
        // text itself and every knock list starting with text + "," sort in
        // [text, text + "-"): '-' follows ',' in ASCII, and a knock list
        // ends in "tcp" or "udp", so only ',' can follow text.
        s.BindAll(text, text + "-");
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (row) {
          return absl::AlreadyExistsError(
              absl::StrCat("new sequence ", i, " equals or is a prefix of unused sequence ", s.Int(0)));
        }
      }
      // An unused sequence is a proper prefix of it.
      for (size_t len = 1; len < n.knocks.size(); ++len) {
        const std::string prefix =
            KnocksToText(std::vector<Knock>(n.knocks.begin(), n.knocks.begin() + static_cast<std::ptrdiff_t>(len)));
        ASSIGN_OR_RETURN(SqliteStatement s,
                         db.Prepare("SELECT id FROM sequences WHERE state != 'burnt' AND knocks = ? LIMIT 1"));
        s.BindAll(prefix);
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (row) {
          return absl::AlreadyExistsError(
              absl::StrCat("unused sequence ", s.Int(0), " is a prefix of new sequence ", i));
        }
      }
      Sequence q = IssuedSequence(n, /*id: below*/ 0, w.NextRevision(), now);
      ASSIGN_OR_RETURN(SqliteStatement s,
                       db.Prepare("INSERT INTO sequences (door, knocks, state, issued_to, issued_at_us, "
                                  "reserve_agent, revision, expires_at_us) VALUES (?, ?, 'issued', ?, ?, ?, ?, ?)"));
      s.BindAll(q.door, text, q.issued_to, Micros(now), q.reserve_agent, static_cast<int64_t>(q.revision));
      if (q.expires_at != absl::InfiniteFuture()) s.Bind(7, Micros(q.expires_at));
      RETURN_IF_ERROR(s.Run());
      q.id = static_cast<uint64_t>(db.LastInsertRowId());
      w.Changed(StoreChange{StoreChange::Kind::kSequenceAdded, q.revision, q, {}, {}});
      out.push_back(std::move(q));
    }
    std::vector<uint64_t> ids;
    for (const Sequence& q : out) ids.push_back(q.id);
    for (AuditEntry& e : audit) e.details.emplace("sequences", absl::StrJoin(ids, ","));
    return w.AppendAll(std::move(audit));
  }));
  return out;
}

absl::StatusOr<std::vector<Sequence>> SqliteStore::ExpireSequences(size_t limit) {
  limit = std::min(limit, kMaxExpiredPerCall);
  std::vector<Sequence> out;
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.clear();
    SqliteDb& db = w.db();
    const absl::Time now = TruncateToMicros(clock_.Now());
    std::vector<Sequence> due;
    {
      // sequences_by_expiry: the unused ones, soonest first.
      ASSIGN_OR_RETURN(SqliteStatement s,
                       db.Prepare(absl::StrCat("SELECT ", SequenceColumns(), " FROM sequences WHERE state = 'issued' "
                                               "AND expires_at_us <= ? ORDER BY expires_at_us LIMIT ?")));
      s.BindAll(Micros(now), static_cast<int64_t>(limit));
      ASSIGN_OR_RETURN(due, s.ReadAll(SequenceFromRow));
    }
    std::vector<AuditEntry> audit;
    for (Sequence& q : due) {
      Sequence burnt = ExpiredSequence(std::move(q), w.NextRevision(), now);
      ASSIGN_OR_RETURN(SqliteStatement s,
                       db.Prepare("UPDATE sequences SET state = 'burnt', expired = 1, consumed_at_us = ?, "
                                  "revision = ? WHERE id = ? AND state = 'issued'"));
      s.BindAll(Micros(burnt.consumed_at), static_cast<int64_t>(burnt.revision), static_cast<int64_t>(burnt.id));
      RETURN_IF_ERROR(s.Run());
      if (db.Changes() != 1) {
        return absl::InternalError(absl::StrCat("sequence ", burnt.id, " changed under the writer"));
      }
      audit.push_back(ExpiredAudit(burnt, now));
      w.Changed(StoreChange{StoreChange::Kind::kSequenceBurnt, burnt.revision, burnt, {}, {}});
      out.push_back(std::move(burnt));
    }
    return w.AppendAll(std::move(audit));
  }));
  return out;
}

absl::StatusOr<std::vector<Sequence>> SqliteStore::ClaimSequences(const SequenceClaim& claim,
                                                                  std::vector<AuditEntry> audit) {
  RETURN_IF_ERROR(ValidateSequenceClaim(claim));
  std::vector<Sequence> out;
  RETURN_IF_ERROR(Write([&](Writer& w) -> absl::Status {
    out.clear();
    SqliteDb& db = w.db();
    {
      ASSIGN_OR_RETURN(SqliteStatement s,
                       db.Prepare(absl::StrCat("SELECT ", SequenceColumns(),
                                               " FROM sequences WHERE state = 'issued' AND reserve_agent = ?1 AND "
                                               "issued_to = ?2 AND (?3 = '' OR door = ?3) ORDER BY id LIMIT ?4")));
      s.BindAll(claim.reserve_agent, std::string(kUnclaimedReserve), claim.door, static_cast<int64_t>(claim.count));
      ASSIGN_OR_RETURN(out, s.ReadAll(SequenceFromRow));
    }
    std::vector<uint64_t> ids;
    for (Sequence& q : out) {
      ASSIGN_OR_RETURN(SqliteStatement s, db.Prepare("UPDATE sequences SET issued_to = ? WHERE id = ?"));
      s.BindAll(claim.claimant, static_cast<int64_t>(q.id));
      RETURN_IF_ERROR(s.Run());
      q.issued_to = claim.claimant;
      ids.push_back(q.id);
    }
    if (out.empty()) return absl::OkStatus();
    for (AuditEntry& e : audit) e.details.emplace("sequences", absl::StrJoin(ids, ","));
    return w.AppendAll(std::move(audit));
  }));
  return out;
}

absl::StatusOr<Sequence> SqliteStore::GetSequence(uint64_t id) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(std::optional<Sequence> q, FindSequence(*reader_, id));
  if (!q) return absl::NotFoundError(absl::StrCat("no sequence ", id));
  return *std::move(q);
}

absl::StatusOr<std::vector<Sequence>> SqliteStore::ListSequences(const SequenceFilter& filter) {
  // Only the conditions asked for, so that SQLite can use the partial index
  // on unused sequences; each shape of query is prepared once.
  std::string sql = absl::StrCat("SELECT ", SequenceColumns(), " FROM sequences WHERE 1");
  if (!filter.door.empty()) sql += " AND door = ?1";
  if (filter.state) sql += absl::StrCat(" AND (", kEffectiveState, ") = ?2");
  if (filter.unused_only) sql += " AND state != 'burnt'";
  if (!filter.reserve_agent.empty()) sql += " AND reserve_agent = ?3";
  sql += filter.limit > 0 ? " ORDER BY id DESC LIMIT ?4" : " ORDER BY id";
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(SqliteStatement s, reader_->Prepare(sql));
  if (!filter.door.empty()) s.Bind(1, filter.door);
  if (filter.state) s.Bind(2, SequenceStateName(*filter.state));
  if (!filter.reserve_agent.empty()) s.Bind(3, filter.reserve_agent);
  if (filter.limit > 0) s.Bind(4, static_cast<int64_t>(filter.limit));
  return s.ReadAll(SequenceFromRow);
}

}  // namespace sesame::controller
