// The completions waiting for the grant worker: bounded, coalescing, and
// fair across doors, so that a flood of completions at one door (a static
// sequence forged from 20,000 spoofed sources, say) costs bounded memory and
// cannot keep another door's knocker waiting.
//
//  - Coalescing. One entry per (door, address): a completion for an entry
//    already waiting extends it in place (the later expiry wins, the latest
//    ports and knock time are kept) and keeps its place.
//  - Two kinds of entry. A completion for a source the grant book holds
//    open on that door (the caller says so) is an extension: the source has
//    access now, only its expiry would move. Any other is new: someone
//    waits at a closed door.
//  - Fair order. Take() serves the doors in turn (round robin by door name),
//    each door's entries in arrival order; a door with one waiting knocker
//    is served within one turn of every other door, however long their
//    lines are.
//  - Bounded. At most `max_pending` entries. When full:
//      an arriving extension is dropped (its grant stays open until its
//      current expiry; the knocker can knock again). An extension never
//      takes a new source's place;
//      an arriving new completion takes the place of the oldest waiting
//      extension if there is one, else of the oldest entry of the door with
//      the most entries waiting. The flooded door pays for its flood, and a
//      door with a few knockers loses nothing to it. Oldest first because
//      the newest completion is the one whose knocker is waiting at the
//      prompt now, and because it bounds how stale an applied grant can be;
//      dropping the newest instead would keep the line full of the flood's
//      first arrivals and refuse every later knocker of that door, real or
//      not, for as long as the flood lasts.
//
// Not thread-safe: the grant worker guards it with its mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "agent/grants/firewall.h"
#include "common/ip_address.h"

namespace sesame {

struct GrantQueueStats {
  size_t pending = 0;            // entries waiting now
  uint64_t coalesced = 0;        // completions merged into a waiting entry
  uint64_t dropped_new = 0;      // new completions dropped at the limit (never applied)
  uint64_t dropped_extensions = 0;  // extensions dropped at the limit
};

class GrantQueue {
 public:
  enum class Offered {
    kQueued,     // a new entry
    kCoalesced,  // merged into the entry already waiting for that source
    kDisplaced,  // queued in place of an older entry, which was dropped
    kDropped,    // the queue is full and this extension was dropped
  };

  explicit GrantQueue(size_t max_pending);

  // `held`: the grant book holds an open grant for (door, address) now.
  Offered Offer(Grant grant, bool held);
  // The next entry in fair order; nullopt when empty.
  std::optional<Grant> Take();
  // Takes out the entry waiting for (door, address), wherever it is in line:
  // a revocation that arrives after it has it applied first.
  std::optional<Grant> Remove(const std::string& door, const IpAddress& address);

  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  size_t max_pending() const { return max_pending_; }
  GrantQueueStats stats() const;

 private:
  using Key = std::pair<std::string, IpAddress>;
  struct Entry {
    Grant grant;
    bool extension = false;
    std::list<Key>::iterator in_lane;       // position in its door's line
    std::list<Key>::iterator in_extensions;  // position among extensions (extensions only)
  };

  void Push(Grant grant, bool extension);
  // Removes an entry from every index.
  void Erase(std::map<Key, Entry>::iterator it);
  // The entry to drop for a new arrival: the oldest extension, else the
  // oldest entry of the door with the most entries.
  std::map<Key, Entry>::iterator Victim();

  const size_t max_pending_;
  std::map<Key, Entry> entries_;
  std::map<std::string, std::list<Key>> lanes_;  // door -> its entries, oldest first
  std::list<Key> extensions_;                    // every extension, oldest first
  std::string last_served_;                      // door of the last Take()
  bool served_any_ = false;
  GrantQueueStats stats_;
};

}  // namespace sesame
