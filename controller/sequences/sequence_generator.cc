#include "controller/sequences/sequence_generator.h"

#include <algorithm>
#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"

namespace sesame::controller {
namespace {

// Three bytes per knock: port (big-endian) and protocol number. Prefixes of
// a key are keys of prefixes of the sequence.
std::string Key(const std::vector<Knock>& knocks, size_t length) {
  std::string key;
  key.reserve(length * 3);
  for (size_t i = 0; i < length; ++i) {
    key.push_back(static_cast<char>(knocks[i].port >> 8));
    key.push_back(static_cast<char>(knocks[i].port & 0xff));
    key.push_back(static_cast<char>(knocks[i].protocol));
  }
  return key;
}

}  // namespace

void SequenceIndex::Add(const std::vector<Knock>& knocks) {
  if (!members_.insert(Key(knocks, knocks.size())).second) return;
  for (size_t len = 1; len < knocks.size(); ++len) ++proper_prefixes_[Key(knocks, len)];
}

void SequenceIndex::Remove(const std::vector<Knock>& knocks) {
  if (members_.erase(Key(knocks, knocks.size())) == 0) return;
  for (size_t len = 1; len < knocks.size(); ++len) {
    auto it = proper_prefixes_.find(Key(knocks, len));
    if (it != proper_prefixes_.end() && --it->second == 0) proper_prefixes_.erase(it);
  }
}

bool SequenceIndex::Conflicts(const std::vector<Knock>& knocks) const {
  const std::string whole = Key(knocks, knocks.size());
  if (members_.contains(whole) || proper_prefixes_.contains(whole)) return true;
  for (size_t len = 1; len < knocks.size(); ++len) {
    if (members_.contains(Key(knocks, len))) return true;
  }
  return false;
}

std::vector<Knock> CandidateKnocks(const DoorPolicy& policy) {
  std::set<uint16_t> avoided(policy.avoid_ports.begin(), policy.avoid_ports.end());
  for (const Knock& k : policy.grant_ports) avoided.insert(k.port);
  const std::set<Protocol> protocols(policy.protocols.begin(), policy.protocols.end());
  std::vector<Knock> out;
  for (uint32_t port = policy.port_first; port <= policy.port_last && port != 0; ++port) {
    if (avoided.contains(static_cast<uint16_t>(port))) continue;
    for (Protocol p : protocols) out.push_back(Knock{static_cast<uint16_t>(port), p});
  }
  return out;
}

absl::StatusOr<std::vector<Knock>> SequenceGenerator::DrawOne(const std::vector<Knock>& candidates, int length) {
  std::vector<Knock> knocks;
  knocks.reserve(static_cast<size_t>(length));
  // A policy whose range is too narrow for the step rule would redraw forever.
  size_t redraws_left = 64 * candidates.size() * static_cast<size_t>(length);
  while (knocks.size() < static_cast<size_t>(length)) {
    if (redraws_left-- == 0) {
      return absl::ResourceExhaustedError(absl::StrCat("no sequence of ", length, " knocks with ports more than ",
                                                       kMinPortStep, " apart: widen the door's port range"));
    }
    absl::StatusOr<uint32_t> i = UniformBelow(random_, static_cast<uint32_t>(candidates.size()));
    if (!i.ok()) return i.status();
    const Knock k = candidates[*i];
    // Redrawing a knock already in the sequence keeps every sequence of
    // distinct knocks equally likely; the same for a port next to the
    // previous knock's.
    if (std::find(knocks.begin(), knocks.end(), k) != knocks.end()) continue;
    if (!knocks.empty() && std::abs(int{k.port} - int{knocks.back().port}) <= kMinPortStep) continue;
    knocks.push_back(k);
  }
  return knocks;
}

absl::StatusOr<std::vector<std::vector<Knock>>> SequenceGenerator::Generate(const DoorPolicy& policy,
                                                                            SequenceIndex& index, size_t count) {
  if (absl::Status s = ValidateDoorPolicy(policy); !s.ok()) return s;
  const std::vector<Knock> candidates = CandidateKnocks(policy);
  std::vector<std::vector<Knock>> out;
  out.reserve(count);
  while (out.size() < count) {
    bool found = false;
    for (int attempt = 0; attempt < max_attempts_ && !found; ++attempt) {
      absl::StatusOr<std::vector<Knock>> knocks = DrawOne(candidates, policy.sequence_length);
      if (!knocks.ok()) return knocks.status();
      if (index.Conflicts(*knocks)) continue;
      index.Add(*knocks);
      out.push_back(*std::move(knocks));
      found = true;
    }
    if (!found) {
      return absl::ResourceExhaustedError(absl::StrCat("no fresh sequence after ", max_attempts_, " draws (",
                                                       index.size(), " unused): widen the door's port range, ",
                                                       "lengthen its sequences or let unused ones be consumed"));
    }
  }
  return out;
}

}  // namespace sesame::controller
