// The managed sequences an agent recognises, as a trie of knocks per
// matching class (sequences whose MatchParams are equal share a root).
//
// A node is a prefix: the knocks a source has made in order so far. Sources
// in progress point at nodes, so a knock advances every sequence that
// shares the prefix with one lookup (parent, knock) -> child, however many
// sequences there are: this is what lets an agent hold 100,000 sequences at
// the cost of 10 per packet. Nodes are shared by the sequences through them
// (refs) and freed when the last one goes; a freed node's index is reused
// with a new generation, so progress that pointed at it is recognised as
// stale instead of being carried over to another prefix.
//
// Single-threaded (the capture thread owns it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"

namespace sesame {

class SequenceTrie {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  struct Node {
    uint32_t parent = kNone;
    uint32_t knock = 0;     // the knock that leads here from the parent
    uint32_t refs = 0;      // sequences through or ending here
    uint32_t children = 0;  // child nodes
    uint32_t ends = 0;      // sequences ending here
    uint16_t generation = 0;
    uint8_t depth = 0;  // knocks from the root
    uint8_t klass = 0;
  };

  // A new root for a class; roots are never freed.
  uint32_t AddRoot(uint8_t klass);
  // Adds a sequence (knock keys, at least one) under `root`; returns the
  // node it ends at.
  uint32_t Insert(uint32_t root, absl::Span<const uint32_t> knocks);
  // Removes one sequence that Insert placed at `end`.
  void Remove(uint32_t end);

  uint32_t Child(uint32_t node, uint32_t knock) const {
    auto it = children_.find(EdgeKey(node, knock));
    return it == children_.end() ? kNone : it->second;
  }
  const Node& node(uint32_t index) const { return nodes_[index]; }
  // Whether a reference (index, generation) still names the node it named.
  bool Current(uint32_t index, uint16_t generation) const {
    return index < nodes_.size() && nodes_[index].generation == generation && nodes_[index].refs > 0;
  }

  size_t node_count() const { return nodes_.size() - free_.size(); }
  // Heap bytes held (nodes, the edge map, the free list).
  size_t MemoryBytes() const;

 private:
  static uint64_t EdgeKey(uint32_t node, uint32_t knock) { return (static_cast<uint64_t>(node) << 32) | knock; }
  uint32_t NewNode(uint32_t parent, uint32_t knock, uint8_t depth, uint8_t klass);

  std::vector<Node> nodes_;
  std::vector<uint32_t> free_;
  absl::flat_hash_map<uint64_t, uint32_t> children_;  // (parent, knock) -> child
};

}  // namespace sesame
