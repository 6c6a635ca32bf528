// One-time knock sequences from a CSPRNG, per door policy.
//
// A generated sequence:
// - has policy.sequence_length knocks, each drawn uniformly (no modulo
//   bias) from the candidates: every port of the policy's range that is not
//   avoided (avoid_ports and the grant ports) times every allowed protocol;
// - never repeats a knock within itself (a repeated port would look like a
//   retransmission to the matcher);
// - never puts a knock's port within kMinPortStep of the previous knock's:
//   a sequential sweep could walk through such a sequence without the
//   wrong knocks that reset it (docs/design.md, "Forged packets");
// - is fresh against a SequenceIndex of the unused sequences: not equal to
//   one, not a proper prefix of one, and none of them a proper prefix of it
//   (knocking the longer one would complete the shorter first).
// Drawing uniformly and rejecting what is not fresh samples uniformly among
// the fresh sequences.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/knock.h"
#include "controller/model/model.h"
#include "controller/sequences/random_source.h"

namespace sesame::controller {

// Unused sequences, indexed for equality and prefix checks in both
// directions in O(length).
class SequenceIndex {
 public:
  void Add(const std::vector<Knock>& knocks);
  // Removes one Add of knocks (no-op if absent).
  void Remove(const std::vector<Knock>& knocks);
  // knocks equals a member, is a proper prefix of one, or has one as a
  // proper prefix.
  bool Conflicts(const std::vector<Knock>& knocks) const;
  size_t size() const { return members_.size(); }

 private:
  absl::flat_hash_set<std::string> members_;
  absl::flat_hash_map<std::string, int> proper_prefixes_;  // of members, with counts
};

// The knocks a policy allows, in a fixed order.
std::vector<Knock> CandidateKnocks(const DoorPolicy& policy);

// Consecutive knocks' ports differ by more than this.
inline constexpr int kMinPortStep = 2;

class SequenceGenerator {
 public:
  explicit SequenceGenerator(RandomSource& random = OpenSslRandom::Instance()) : random_(random) {}

  // count fresh sequences for the policy. Each is added to index as it is
  // made, so they are fresh among themselves too. ResourceExhausted when no
  // fresh sequence turns up after max_attempts draws in a row (the policy's
  // space is used up); InvalidArgument for a bad policy.
  absl::StatusOr<std::vector<std::vector<Knock>>> Generate(const DoorPolicy& policy, SequenceIndex& index,
                                                           size_t count);

  void set_max_attempts(int n) { max_attempts_ = n; }

 private:
  absl::StatusOr<std::vector<Knock>> DrawOne(const std::vector<Knock>& candidates, int length);

  RandomSource& random_;
  int max_attempts_ = 10000;
};

}  // namespace sesame::controller
