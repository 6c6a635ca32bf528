// The audit record of a ScannerSeen report: one record per report, whether
// it names one scanner or stands for a whole reporting window of them (the
// aggregate form, agent/managed/scanner_notices.h). A flood of spoofed
// scanners thus costs the audit log a few records a minute per agent.
#pragma once

#include <cstdint>

#include "controller/audit/audit_record.h"
#include "sesame/v1/agent.pb.h"

namespace sesame::controller {

// At most this many sample addresses are recorded from an aggregate.
inline constexpr int kMaxScannerSample = 16;

// Completes `audit` (made by the agent's session: time, what, where,
// origin, maybe details of its own, which are kept) for `seen`: who is the
// scanner's address, or for an aggregate the agent that counted them (who
// stays as given); details add how many sources, packets, a sample
// (addresses re-printed; what does not parse is left out) and the agent's
// times. Returns how many scanners the report stands for.
uint64_t DescribeScannerSeen(const v1::ScannerSeen& seen, AuditEntry& audit);

}  // namespace sesame::controller
