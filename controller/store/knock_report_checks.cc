// What an agent's knock report must be (knock_report_checks.h).
#include "controller/store/knock_report_checks.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace sesame::controller {
namespace {

// Why no knock comes from this address; nullptr when one can.
const char* NotAKnocker(const IpAddress& a) {
  const uint8_t* b = a.bytes();
  if (a.is_v4()) {
    if (b[0] == 0) return "an unspecified (\"this network\", 0.0.0.0/8) address";
    if (b[0] == 127) return "a loopback address";
    if ((b[0] & 0xf0) == 0xe0) return "a multicast address";
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return "the broadcast address";
    if ((b[0] & 0xf0) == 0xf0) return "a reserved (240.0.0.0/4) address";
    return nullptr;
  }
  bool zero_to_14 = true;
  for (int i = 0; i < 15; ++i) zero_to_14 = zero_to_14 && b[i] == 0;
  if (zero_to_14 && b[15] == 0) return "the unspecified address";
  if (zero_to_14 && b[15] == 1) return "the loopback address";
  if (b[0] == 0xff) return "a multicast address";
  bool zero_to_9 = true;
  for (int i = 0; i < 10; ++i) zero_to_9 = zero_to_9 && b[i] == 0;
  if (zero_to_9 && b[10] == 0xff && b[11] == 0xff) return "an IPv4-mapped address, never a source on the wire";
  return nullptr;
}

}  // namespace

const char* RefusalReasonName(RefusalReason reason) {
  switch (reason) {
    case RefusalReason::kSourceNotUnicast: return "source_not_unicast";
    case RefusalReason::kSourceOwnAddress: return "source_own_address";
    case RefusalReason::kAgentTime: return "agent_time";
    case RefusalReason::kOtherBastion: return "other_bastion";
    case RefusalReason::kOfflineFleetSequence: return "offline_fleet_sequence";
    case RefusalReason::kKnocksDiffer: return "knocks_differ";
    case RefusalReason::kExpired: return "expired";
  }
  return "?";
}

std::optional<Refusal> CheckKnockerAddress(const IpAddress& source, const std::vector<OwnAddress>* own) {
  if (const char* what = NotAKnocker(source)) {
    return Refusal{RefusalReason::kSourceNotUnicast,
                   absl::StrCat("the knocker's address ", source.ToString(), " is ", what)};
  }
  if (own != nullptr) {
    for (const OwnAddress& o : *own) {
      if (o.address == source) {
        return Refusal{RefusalReason::kSourceOwnAddress,
                       absl::StrCat("the knocker's address ", source.ToString(), " is ", o.owner, "'s own")};
      }
    }
  }
  return std::nullopt;
}

std::optional<Refusal> CheckAgentTime(absl::Time agent_time, absl::Time now, absl::Time earliest) {
  if (agent_time >= earliest - kMaxAgentClockSkew && agent_time <= now + kMaxAgentClockSkew) return std::nullopt;
  return Refusal{RefusalReason::kAgentTime,
                 absl::StrCat("the agent's time ", AgentTimeText(agent_time), " is more than ",
                              absl::FormatDuration(kMaxAgentClockSkew), " ",
                              agent_time > now ? "ahead of" : "behind", " the controller's clock")};
}

std::optional<Refusal> CheckSequenceScope(const ConsumeRequest& request, const Sequence& found) {
  if (!found.reserve_agent.empty() && found.reserve_agent != request.agent) {
    return Refusal{RefusalReason::kOtherBastion,
                   absl::StrCat("sequence ", found.id, " is a reserve sequence of agent ", found.reserve_agent,
                                ", valid there alone")};
  }
  if (request.offline && found.reserve_agent.empty()) {
    return Refusal{RefusalReason::kOfflineFleetSequence,
                   absl::StrCat("sequence ", found.id,
                                " is reported as admitted offline, but agents admit only their reserve offline")};
  }
  return std::nullopt;
}

std::optional<Refusal> CheckKnocks(const ConsumeRequest& request, const Sequence& found) {
  if (request.sequence_id == 0 || request.knocks == found.knocks) return std::nullopt;
  return Refusal{RefusalReason::kKnocksDiffer,
                 request.knocks.empty()
                     ? absl::StrCat("the report names sequence ", found.id, " without the knocks received")
                     : absl::StrCat("the knocks reported are not sequence ", found.id, "'s")};
}

std::optional<Refusal> CheckExpiry(const ConsumeRequest& request, const Sequence& found, absl::Time now) {
  const absl::Time knocked = request.offline && request.agent_time ? *request.agent_time : now;
  if (found.expired || (found.unused() && knocked >= found.expires_at)) {
    return Refusal{RefusalReason::kExpired, absl::StrCat("sequence ", found.id, " expired at ",
                                                         AgentTimeText(found.expires_at))};
  }
  return std::nullopt;
}

std::string AgentTimeText(absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()); }

}  // namespace sesame::controller
