#include "controller/model/model.h"

#include <algorithm>
#include <charconv>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sesame::controller {
namespace {

// Generous upper bound; the agent's matcher has the same limit.
constexpr int kMaxSequenceLength = 32;

}  // namespace

std::optional<absl::Duration> ParseLifetime(std::string_view text) {
  absl::Duration d;
  if (!text.empty() && text.back() == 'd') {
    int days = 0;
    const char* end = text.data() + text.size() - 1;
    const auto [ptr, ec] = std::from_chars(text.data(), end, days);
    if (ec != std::errc() || ptr != end || days <= 0 || days > 100000) return std::nullopt;
    d = absl::Hours(24) * days;
  } else if (!absl::ParseDuration(std::string(text), &d)) {
    return std::nullopt;
  }
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) return std::nullopt;
  return d;
}

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
  });
}

absl::Status ValidateDoorPolicy(const DoorPolicy& p) {
  if (p.sequence_length < 1 || p.sequence_length > kMaxSequenceLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence length ", p.sequence_length, ": expected 1..", kMaxSequenceLength));
  }
  if (p.protocols.empty()) return absl::InvalidArgumentError("no protocol for knocks: expected tcp and/or udp");
  if (p.port_first == 0 || p.port_first > p.port_last) {
    return absl::InvalidArgumentError(
        absl::StrCat("port range ", p.port_first, "-", p.port_last, ": expected 1 <= first <= last <= 65535"));
  }
  if (p.grant_ports.empty()) return absl::InvalidArgumentError("no grant port: expected at least one (e.g. 22:tcp)");
  for (const Knock& k : p.grant_ports) {
    if (k.port == 0) return absl::InvalidArgumentError("grant port 0: expected 1..65535");
  }
  if (p.grant_ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("grant TTL: expected a positive duration");
  if (p.seq_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("sequence timeout: expected a positive duration");
  }
  std::set<uint16_t> avoided(p.avoid_ports.begin(), p.avoid_ports.end());
  for (const Knock& k : p.grant_ports) avoided.insert(k.port);
  size_t ports = p.port_last - p.port_first + 1;
  for (uint16_t port : avoided) {
    if (port >= p.port_first && port <= p.port_last) --ports;
  }
  const std::set<Protocol> protocols(p.protocols.begin(), p.protocols.end());
  const size_t candidates = ports * protocols.size();
  if (candidates < static_cast<size_t>(p.sequence_length)) {
    return absl::InvalidArgumentError(absl::StrCat("only ", candidates, " knocks usable in the port range, fewer than ",
                                                   "the sequence length ", p.sequence_length));
  }
  return absl::OkStatus();
}

const char* SequenceStateName(SequenceState state) {
  switch (state) {
    case SequenceState::kIssued: return "issued";
    case SequenceState::kLive: return "live";
    case SequenceState::kBurnt: return "burnt";
  }
  return "?";
}

std::optional<SequenceState> ParseSequenceState(std::string_view name) {
  if (name == "issued") return SequenceState::kIssued;
  if (name == "live") return SequenceState::kLive;
  if (name == "burnt") return SequenceState::kBurnt;
  return std::nullopt;
}

std::string KnocksToText(const std::vector<Knock>& knocks) {
  std::string out;
  for (const Knock& k : knocks) {
    if (!out.empty()) out += ',';
    out += KnockToString(k);
  }
  return out;
}

absl::StatusOr<std::vector<Knock>> ParseKnocksText(std::string_view text) {
  std::vector<Knock> knocks;
  if (text.empty()) return knocks;
  for (absl::string_view item : absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    const size_t colon = item.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("knock \"", item, "\": expected PORT:tcp or PORT:udp"));
    }
    const absl::string_view port_text = item.substr(0, colon);
    const absl::string_view proto = item.substr(colon + 1);
    unsigned port = 0;
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("knock \"", item, "\": expected a port 1..65535"));
    }
    Knock k;
    k.port = static_cast<uint16_t>(port);
    if (proto == "tcp") {
      k.protocol = Protocol::kTcp;
    } else if (proto == "udp") {
      k.protocol = Protocol::kUdp;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("knock \"", item, "\": expected protocol tcp or udp"));
    }
    knocks.push_back(k);
  }
  return knocks;
}

const char* GrantStateName(GrantState state) {
  switch (state) {
    case GrantState::kOpen: return "open";
    case GrantState::kExpired: return "expired";
    case GrantState::kRevoked: return "revoked";
  }
  return "?";
}

std::optional<GrantState> ParseGrantState(std::string_view name) {
  if (name == "open") return GrantState::kOpen;
  if (name == "expired") return GrantState::kExpired;
  if (name == "revoked") return GrantState::kRevoked;
  return std::nullopt;
}

const char* GrantAgentStateName(GrantAgentState state) {
  switch (state) {
    case GrantAgentState::kPending: return "pending";
    case GrantAgentState::kApplied: return "applied";
    case GrantAgentState::kFailed: return "failed";
    case GrantAgentState::kRemoved: return "removed";
  }
  return "?";
}

std::optional<GrantAgentState> ParseGrantAgentState(std::string_view name) {
  if (name == "pending") return GrantAgentState::kPending;
  if (name == "applied") return GrantAgentState::kApplied;
  if (name == "failed") return GrantAgentState::kFailed;
  if (name == "removed") return GrantAgentState::kRemoved;
  return std::nullopt;
}

}  // namespace sesame::controller
