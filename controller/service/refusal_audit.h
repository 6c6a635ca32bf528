// Refused callers in the audit log, within bounds: a flood of bad TLS
// handshakes or refused calls must not grow the log one record per attempt.
//
// Each kind of refusal (the record's `what`: "tls.refused",
// "admin.refused") has a token bucket: `burst` records at once, then
// `per_minute`. A refusal over its budget is counted, not recorded; the
// counts go into one "audit.refusals_suppressed" record per kind a minute
// (Flush, from the daemon's tick) and into the metric
// sesame_controller_refusals_total{what, audited="false"}. Records are
// appended on the work queue, never on gRPC's thread. Thread-safe; bounded
// (the kinds are the code's own strings).
#pragma once

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/audit/audit_record.h"
#include "controller/service/client_certificates.h"

namespace sesame::controller {

class AuditLog;
class ControllerMetrics;
class WorkQueue;

struct RefusalAuditOptions {
  int per_minute = 10;
  int burst = 20;
  absl::Duration summary_interval = absl::Minutes(1);
};

class RefusalAudit {
 public:
  // `metrics` may be null.
  RefusalAudit(AuditLog& audit, WorkQueue& work, const Clock& clock, ControllerMetrics* metrics,
               RefusalAuditOptions options = {});

  // Audits `entry` (its `what` is the kind) or counts it; whether audited.
  bool Record(AuditEntry entry);
  // One "audit.refusals_suppressed" record per kind with refusals counted
  // and not recorded, once summary_interval has passed since that kind's
  // first one (all of them when `all`, at shutdown).
  void Flush(bool all = false);

 private:
  struct Kind {
    double tokens = 0;
    absl::Time refilled;
    uint64_t suppressed = 0;
    absl::Time first_suppressed;
  };
  void Append(AuditEntry entry);

  AuditLog& audit_;
  WorkQueue& work_;
  const Clock& clock_;
  ControllerMetrics* const metrics_;
  const RefusalAuditOptions options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Kind> kinds_ ABSL_GUARDED_BY(mu_);
};

// The "tls.refused" record of a refused client certificate: who =
// "unidentified" (nothing about it is verified), details stage, peer (or
// "unknown" in the handshake: gRPC does not tell), subject, serial, issuer,
// claimed (its spiffe:// URI) and reason.
AuditEntry TlsRefusalEntry(const CertificateRefusal& refusal, absl::Time now);

}  // namespace sesame::controller
