#include "controller/sequences/sequence_issuer.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace sesame::controller {

absl::StatusOr<std::vector<Sequence>> IssueSequences(Store& store, SequenceGenerator& generator,
                                                     const IssueRequest& request, const Clock& clock,
                                                     IssueCache* cache) {
  if (request.count < 1 || request.count > kMaxIssueCount) {
    return absl::InvalidArgumentError(absl::StrCat("count ", request.count, ": expected 1..", kMaxIssueCount));
  }
  if (!request.reserve_agent.empty() && !IsValidName(request.reserve_agent)) {
    return absl::InvalidArgumentError(absl::StrCat("bad agent name \"", request.reserve_agent, "\""));
  }
  ASSIGN_OR_RETURN(Door door, store.GetDoor(request.door));
  IssueCache own;
  IssueCache& c = cache != nullptr ? *cache : own;
  absl::MutexLock lock(&c.mu_);
  absl::Status last;
  // A clash means another issuer stored a sequence in between; three clashes
  // in a row would need a pathological race.
  for (int attempt = 0; attempt < 3; ++attempt) {
    ASSIGN_OR_RETURN(const uint64_t revision, store.CurrentRevision());
    if (!c.valid_ || c.revision_ != revision) {
      SequenceFilter unused;
      unused.unused_only = true;
      ASSIGN_OR_RETURN(std::vector<Sequence> live, store.ListSequences(unused));
      c.index_ = SequenceIndex();
      for (const Sequence& q : live) c.index_.Add(q.knocks);
      c.valid_ = true;
      c.revision_ = revision;
    }
    // The generator adds what it makes to the index: stored, they belong in it.
    c.valid_ = false;
    ASSIGN_OR_RETURN(std::vector<std::vector<Knock>> fresh, generator.Generate(door.policy, c.index_, request.count));
    std::vector<NewSequence> sequences;
    for (std::vector<Knock>& knocks : fresh) {
      sequences.push_back(
          NewSequence{door.name, std::move(knocks), request.issued_to, request.reserve_agent, request.expires_at});
    }
    AuditEntry audit;
    audit.time = clock.Now();
    audit.who = request.actor;
    audit.what = "sequences.issued";
    audit.where = "controller";
    audit.details["door"] = door.name;
    audit.details["count"] = absl::StrCat(request.count);
    audit.details["issued_to"] = request.issued_to;
    if (!request.reserve_agent.empty()) audit.details["reserve_agent"] = request.reserve_agent;
    if (request.expires_at != absl::InfiniteFuture()) {
      audit.details["expires_at"] = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", request.expires_at, absl::UTCTimeZone());
    }
    absl::StatusOr<std::vector<Sequence>> stored = store.AddSequences(sequences, {std::move(audit)});
    if (stored.ok() && !stored->empty()) {
      // Still exact when this issue's sequences were the only writes since.
      absl::StatusOr<uint64_t> now = store.CurrentRevision();
      if (now.ok() && stored->front().revision == revision + 1 && *now == stored->back().revision) {
        c.valid_ = true;
        c.revision_ = *now;
      }
    }
    if (stored.ok() || !absl::IsAlreadyExists(stored.status())) return stored;
    last = stored.status();
  }
  return absl::AbortedError(absl::StrCat("sequences kept clashing with concurrent issues: ", last.message()));
}

}  // namespace sesame::controller
