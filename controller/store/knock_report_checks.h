// What an agent's knock report must be for the controller to believe it:
// what that bastion could have seen. A bastion is trusted for its own
// traffic only, so a stolen agent key must not burn other bastions'
// sequences, name the fleet's own hosts as knockers or date records at
// will. Pure functions of the report, the sequence found and the clock:
// DecideConsume (consume_decision.h) runs them for every store, and
// AgentService checks the agent times of its other reports with
// CheckAgentTime.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/ip_address.h"
#include "controller/model/model.h"
#include "controller/store/store.h"

namespace sesame::controller {

// Why a report was refused. The names (RefusalReasonName) are the metric
// label `reason` and the audit detail "reason".
enum class RefusalReason {
  kSourceNotUnicast,      // "source_not_unicast": unspecified, loopback, multicast, broadcast, reserved, IPv4-mapped
  kSourceOwnAddress,      // "source_own_address": the controller's or a known bastion's own address
  kAgentTime,             // "agent_time": the agent's clock is more than kMaxAgentClockSkew off
  kOtherBastion,          // "other_bastion": a reserve sequence of another bastion
  kOfflineFleetSequence,  // "offline_fleet_sequence": admitted offline, but not a reserve sequence
  kKnocksDiffer,          // "knocks_differ": by id, without the sequence's knocks
  kExpired,               // "expired": knocked after the sequence's expiry
};
const char* RefusalReasonName(RefusalReason reason);
inline constexpr RefusalReason kAllRefusalReasons[] = {
    RefusalReason::kSourceNotUnicast, RefusalReason::kSourceOwnAddress,      RefusalReason::kAgentTime,
    RefusalReason::kOtherBastion,     RefusalReason::kOfflineFleetSequence, RefusalReason::kKnocksDiffer,
    RefusalReason::kExpired};

struct Refusal {
  RefusalReason reason;
  std::string why;  // one sentence for the audit record and the log
};

// How far an agent's clock may be from the controller's. Beyond it the
// agent's time is refused: a knock report is refused, another report keeps
// its record (with the controller's time) but not the agent's time.
inline constexpr absl::Duration kMaxAgentClockSkew = absl::Hours(24);

// The knocker's address must be one a knock can come from: unicast, not
// unspecified, loopback, multicast, limited broadcast or reserved (IPv4
// 240/4), not IPv4-mapped IPv6, and none of own (may be null).
std::optional<Refusal> CheckKnockerAddress(const IpAddress& source, const std::vector<OwnAddress>* own);

// agent_time must lie within [earliest - kMaxAgentClockSkew, now +
// kMaxAgentClockSkew]. earliest is now, except for an offline report of the
// agent's own reserve, where it is the sequence's issue time: a controller
// outage may last longer than the skew, but no knock predates its sequence.
std::optional<Refusal> CheckAgentTime(absl::Time agent_time, absl::Time now, absl::Time earliest);

// The sequence found may be consumed by this report: not another bastion's
// reserve sequence, and a report of a knock admitted offline names a
// reserve sequence (an agent admits only those on its own).
std::optional<Refusal> CheckSequenceScope(const ConsumeRequest& request, const Sequence& found);

// A report by id carries exactly the sequence's knocks (what the bastion
// saw). A report by knocks found the sequence by them.
std::optional<Refusal> CheckKnocks(const ConsumeRequest& request, const Sequence& found);

// The sequence had not expired when it was knocked: at the agent's time for
// a knock admitted offline (it came before its report), else now. One burnt
// by its expiry is refused the same way, not reported as a replay.
std::optional<Refusal> CheckExpiry(const ConsumeRequest& request, const Sequence& found, absl::Time now);

// A time as an audit detail: RFC 3339 in UTC to the second
// ("2024-05-01T12:00:00Z"); "infinite-past" / "infinite-future" at the ends.
std::string AgentTimeText(absl::Time t);

}  // namespace sesame::controller
