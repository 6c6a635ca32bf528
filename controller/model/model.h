// The controller's data model: doors, one-time sequences, agents and grants,
// as the store keeps them. Plain values; the wire forms are in
// protos/sesame/v1 and the store's rows in sqlite_schema.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/ip_address.h"
#include "common/knock.h"

namespace sesame::controller {

// How sequences of a door are generated and what a won knock opens.
struct DoorPolicy {
  int sequence_length = 3;  // 1..kMaxSequenceLength
  std::vector<Protocol> protocols = {Protocol::kTcp};
  uint16_t port_first = 1024;
  uint16_t port_last = 65535;
  // Port numbers no knock uses, whatever the protocol (the ports the
  // bastions serve). grant_ports are avoided too without being listed.
  std::vector<uint16_t> avoid_ports;
  std::vector<Knock> grant_ports = {{22, Protocol::kTcp}};
  absl::Duration grant_ttl = absl::Seconds(30);
  absl::Duration seq_timeout = absl::Seconds(10);
  bool fleet_wide = false;  // a won knock opens the door on every bastion

  friend bool operator==(const DoorPolicy&, const DoorPolicy&) = default;
};

struct Door {
  std::string name;
  DoorPolicy policy;
  uint64_t revision = 0;  // set by the store

  friend bool operator==(const Door&, const Door&) = default;
};

// Door names: [A-Za-z0-9_.-]{1,64}. Agent names follow the same rule plus
// nothing else, since they come from certificates and appear in audit text.
bool IsValidName(std::string_view name);
// The policy is usable: bounds, at least one protocol, and enough candidate
// knocks for a sequence of distinct elements.
absl::Status ValidateDoorPolicy(const DoorPolicy& policy);

enum class SequenceState { kIssued, kLive, kBurnt };
const char* SequenceStateName(SequenceState state);  // "issued", "live", "burnt"
std::optional<SequenceState> ParseSequenceState(std::string_view name);

struct Sequence {
  uint64_t id = 0;  // assigned by the store, from 1, never reused
  std::string door;
  std::vector<Knock> knocks;
  SequenceState state = SequenceState::kIssued;
  std::string issued_to;  // who it was shown to
  absl::Time issued_at;
  // Non-empty: an offline-reserve sequence valid on this agent alone.
  std::string reserve_agent;
  // From then on it opens nothing; the leading controller burns it
  // (expired = true) within a second or so. InfiniteFuture: never (only
  // rows written before sequences had an expiry read that way).
  absl::Time expires_at = absl::InfiniteFuture();
  // Set once burnt: by a knock (consumed_*), or by its expiry (expired,
  // consumed_at the burn's time, consumed_by and consumed_from empty).
  std::string consumed_by;  // agent
  std::optional<IpAddress> consumed_from;
  absl::Time consumed_at = absl::InfinitePast();
  bool expired = false;
  uint64_t revision = 0;  // revision of its last change

  bool unused() const { return state != SequenceState::kBurnt; }
};

// A sequence to add: everything the caller decides.
struct NewSequence {
  std::string door;
  std::vector<Knock> knocks;
  std::string issued_to;
  std::string reserve_agent;
  absl::Time expires_at = absl::InfiniteFuture();  // required: after the issue
};

// issued_to of a reserve sequence the controller issued on its own (to
// keep a bastion's Offline_Reserve) that nobody has claimed yet: its knocks
// have been shown to no one. Not a name an operator can issue to.
inline constexpr char kUnclaimedReserve[] = "unclaimed";

// Reserve sequences handed to someone (sesamectl sequences claim): up to
// count unclaimed reserve sequences of reserve_agent (of door, or any door
// when empty), oldest first, become issued to claimant.
struct SequenceClaim {
  std::string door;
  std::string reserve_agent;
  size_t count = 1;
  std::string claimant;
};

// How long a sequence lives when its issuer does not say ([controller]
// Sequence_Lifetime), and the longest it may (sequences issue --expires).
inline constexpr absl::Duration kDefaultSequenceLifetime = absl::Hours(24 * 30);
inline constexpr absl::Duration kMaxSequenceLifetime = absl::Hours(24 * 366);
// A lifetime as operators write it: "30d", "12h", "90m", "1h30m" (days, or
// what absl::ParseDuration reads); positive and finite, else nullopt.
std::optional<absl::Duration> ParseLifetime(std::string_view text);

struct SequenceFilter {
  std::string door;                    // empty: any
  std::optional<SequenceState> state;  // unset: any
  bool unused_only = false;            // issued or live
  std::string reserve_agent;           // empty: any
  size_t limit = 0;                    // 0: no limit; newest first when set
};

// The canonical text of a knock list, "7000:tcp,8000:udp": the store's key
// for uniqueness and prefix checks (a proper prefix of B is A with B
// starting with A + ",").
std::string KnocksToText(const std::vector<Knock>& knocks);
absl::StatusOr<std::vector<Knock>> ParseKnocksText(std::string_view text);

struct AgentRecord {
  std::string name;
  std::string version;
  bool connected = false;
  absl::Time connected_at = absl::InfinitePast();
  absl::Time disconnected_at = absl::InfinitePast();
  absl::Time last_heartbeat = absl::InfinitePast();
  uint64_t acked_revision = 0;
  int reserve_left = 0;
  int spool_depth = 0;
  std::string last_error;
  std::vector<std::string> advertise_hosts;

  friend bool operator==(const AgentRecord&, const AgentRecord&) = default;
};

enum class GrantState { kOpen, kExpired, kRevoked };
const char* GrantStateName(GrantState state);  // "open", "expired", "revoked"
std::optional<GrantState> ParseGrantState(std::string_view name);

enum class GrantAgentState { kPending, kApplied, kFailed, kRemoved };
const char* GrantAgentStateName(GrantAgentState state);
std::optional<GrantAgentState> ParseGrantAgentState(std::string_view name);

struct GrantAgentStatus {
  std::string agent;
  GrantAgentState state = GrantAgentState::kPending;
  std::string detail;
  absl::Time at;
  friend bool operator==(const GrantAgentStatus&, const GrantAgentStatus&) = default;
};

struct GrantRecord {
  uint64_t id = 0;  // assigned by the store, from 1, never reused
  std::string door;
  IpAddress address;
  std::vector<Knock> ports;
  std::string agent;  // the bastion; empty when fleet_wide
  bool fleet_wide = false;
  absl::Time opened_at;
  absl::Time expires_at;
  GrantState state = GrantState::kOpen;
  absl::Time closed_at = absl::InfinitePast();  // expired or revoked
  bool kill_sessions = false;  // revoked, and the bastions end its live sessions
  uint64_t sequence_id = 0;  // 0: an operator's grant
  std::string opened_by;     // "agent:NAME" or "admin:NAME"
  uint64_t revision = 0;
  // Per-bastion reports, by agent name; a bastion without one has not
  // reported yet (pending).
  std::vector<GrantAgentStatus> agents;
};

// A grant to order: everything the caller decides.
struct NewGrant {
  std::string door;
  IpAddress address;
  std::vector<Knock> ports;
  std::string agent;
  bool fleet_wide = false;
  absl::Time expires_at;
  uint64_t sequence_id = 0;
  std::string opened_by;
};

struct GrantFilter {
  bool open_only = true;
  std::optional<IpAddress> address;
  std::string agent;  // grants this agent must hold (its own and fleet-wide)
  size_t limit = 0;   // 0: no limit; newest first when set
};

}  // namespace sesame::controller
