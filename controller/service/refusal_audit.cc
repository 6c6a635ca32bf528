#include "controller/service/refusal_audit.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controller/audit/audit_log.h"
#include "controller/service/controller_metrics.h"
#include "controller/service/work_queue.h"

namespace sesame::controller {

RefusalAudit::RefusalAudit(AuditLog& audit, WorkQueue& work, const Clock& clock, ControllerMetrics* metrics,
                           RefusalAuditOptions options)
    : audit_(audit), work_(work), clock_(clock), metrics_(metrics), options_(options) {}

bool RefusalAudit::Record(AuditEntry entry) {
  const absl::Time now = clock_.Now();
  bool audited = false;
  {
    absl::MutexLock lock(&mu_);
    auto [it, fresh] = kinds_.try_emplace(entry.what);
    Kind& k = it->second;
    if (fresh) {
      k.tokens = options_.burst;
      k.refilled = now;
    }
    k.tokens = std::min<double>(options_.burst,
                                k.tokens + absl::ToDoubleMinutes(std::max(now - k.refilled, absl::ZeroDuration())) *
                                               options_.per_minute);
    k.refilled = now;
    if (k.tokens >= 1) {
      k.tokens -= 1;
      audited = true;
    } else {
      if (k.suppressed++ == 0) k.first_suppressed = now;
    }
  }
  if (metrics_ != nullptr) metrics_->CallerRefused(entry.what, audited);
  if (audited) Append(std::move(entry));
  return audited;
}

void RefusalAudit::Flush(bool all) {
  const absl::Time now = clock_.Now();
  std::vector<AuditEntry> summaries;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [what, k] : kinds_) {
      if (k.suppressed == 0 || (!all && now - k.first_suppressed < options_.summary_interval)) continue;
      AuditEntry e;
      e.time = now;
      e.who = "controller";
      e.what = "audit.refusals_suppressed";
      e.where = "controller";
      e.details = {{"refusal", what},
                   {"count", absl::StrCat(k.suppressed)},
                   {"since", absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", k.first_suppressed, absl::UTCTimeZone())}};
      summaries.push_back(std::move(e));
      k.suppressed = 0;
    }
  }
  std::sort(summaries.begin(), summaries.end(),
            [](const AuditEntry& a, const AuditEntry& b) { return a.details.at("refusal") < b.details.at("refusal"); });
  for (AuditEntry& e : summaries) Append(std::move(e));
}

// The work holds the AuditLog, not this object: it may run after this is
// gone (the log outlives the work queue).
void RefusalAudit::Append(AuditEntry entry) {
  work_.Post([audit = &audit_, entry = std::move(entry)]() mutable {
    const std::string what = entry.what;
    absl::StatusOr<AuditRecord> r = audit->Append(std::move(entry));
    if (!r.ok()) LogWarning(absl::StrCat("cannot audit ", what, ": ", r.status().message()));
  });
}

AuditEntry TlsRefusalEntry(const CertificateRefusal& refusal, absl::Time now) {
  AuditEntry e;
  e.time = now;
  e.who = "unidentified";
  e.what = "tls.refused";
  e.where = "controller";
  e.details = {{"stage", CertificateRefusalStageName(refusal.stage)},
               {"peer", refusal.peer.empty() ? "unknown" : refusal.peer.substr(0, 256)},
               {"reason", refusal.reason.substr(0, 512)}};
  for (const auto& [key, value] : {std::pair<const char*, const std::string&>{"subject", refusal.subject},
                                   {"serial", refusal.serial},
                                   {"issuer", refusal.issuer},
                                   {"claimed", refusal.claimed}}) {
    if (!value.empty()) e.details[key] = value;
  }
  return e;
}

}  // namespace sesame::controller
