#include "agent/grants/grant_queue.h"

#include <algorithm>

namespace sesame {

GrantQueue::GrantQueue(size_t max_pending) : max_pending_(std::max<size_t>(max_pending, 1)) {}

GrantQueue::Offered GrantQueue::Offer(Grant grant, bool held) {
  const auto it = entries_.find(Key(grant.door, grant.address));
  if (it != entries_.end()) {
    const absl::Time expires = std::max(it->second.grant.expires, grant.expires);
    it->second.grant = std::move(grant);
    it->second.grant.expires = expires;
    ++stats_.coalesced;
    return Offered::kCoalesced;
  }
  if (entries_.size() < max_pending_) {
    Push(std::move(grant), held);
    return Offered::kQueued;
  }
  if (held) {
    ++stats_.dropped_extensions;
    return Offered::kDropped;
  }
  const auto victim = Victim();
  ++(victim->second.extension ? stats_.dropped_extensions : stats_.dropped_new);
  Erase(victim);
  Push(std::move(grant), held);
  return Offered::kDisplaced;
}

std::optional<Grant> GrantQueue::Take() {
  if (lanes_.empty()) return std::nullopt;
  // The first door after the one served last, wrapping around.
  auto lane = served_any_ ? lanes_.upper_bound(last_served_) : lanes_.begin();
  if (lane == lanes_.end()) lane = lanes_.begin();
  last_served_ = lane->first;
  served_any_ = true;
  const auto it = entries_.find(lane->second.front());
  Grant grant = std::move(it->second.grant);
  Erase(it);
  return grant;
}

std::optional<Grant> GrantQueue::Remove(const std::string& door, const IpAddress& address) {
  const auto it = entries_.find(Key(door, address));
  if (it == entries_.end()) return std::nullopt;
  Grant grant = std::move(it->second.grant);
  Erase(it);
  return grant;
}

GrantQueueStats GrantQueue::stats() const {
  GrantQueueStats s = stats_;
  s.pending = entries_.size();
  return s;
}

void GrantQueue::Push(Grant grant, bool extension) {
  Key key(grant.door, grant.address);
  std::list<Key>& lane = lanes_[key.first];
  lane.push_back(key);
  Entry entry;
  entry.in_lane = std::prev(lane.end());
  entry.extension = extension;
  if (extension) {
    extensions_.push_back(key);
    entry.in_extensions = std::prev(extensions_.end());
  }
  entry.grant = std::move(grant);
  entries_.emplace(std::move(key), std::move(entry));
}

void GrantQueue::Erase(std::map<Key, Entry>::iterator it) {
  const auto lane = lanes_.find(it->first.first);
  lane->second.erase(it->second.in_lane);
  if (lane->second.empty()) lanes_.erase(lane);
  if (it->second.extension) extensions_.erase(it->second.in_extensions);
  entries_.erase(it);
}

std::map<GrantQueue::Key, GrantQueue::Entry>::iterator GrantQueue::Victim() {
  if (!extensions_.empty()) return entries_.find(extensions_.front());
  // Few doors (a configuration has at most kMaxDoors standalone ones): a
  // scan is cheaper than keeping them ordered by length.
  auto fullest = lanes_.begin();
  for (auto lane = lanes_.begin(); lane != lanes_.end(); ++lane) {
    if (lane->second.size() > fullest->second.size()) fullest = lane;
  }
  return entries_.find(fullest->second.front());
}

}  // namespace sesame
