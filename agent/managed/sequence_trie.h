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
// Where a child is found, so that a lookup touches as little memory as it
// can (with 100,000 sequences the trie is megabytes, and a random knock's
// lookups miss the cache): a root with many children indexes them by knock
// in a table of its own (any port, TCP or UDP: 1 MiB, from
// kDirectRootChildren children on), with what a first knock needs to know
// of the child (First), so that it reads no node; below the root a node
// nearly always has one child, kept in the node itself; the others, and a
// small root's, go to the edge map.
//
// Single-threaded (the capture thread owns it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "agent/match/knock_set.h"

namespace sesame {

class SequenceTrie {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  // A root's children go to a table indexed by knock once they are this
  // many: the table (1 MiB) costs what about 2,000 sequences' records do.
  static constexpr uint32_t kDirectRootChildren = 2048;

  struct Node {
    uint32_t parent = kNone;
    uint32_t knock = 0;     // the knock that leads here from the parent
    uint32_t refs = 0;      // sequences through or ending here
    uint32_t children = 0;  // child nodes
    uint32_t ends = 0;      // sequences ending here
    uint32_t inline_child = kNone;  // one child kept here, not in the edge map
    uint32_t inline_knock = 0;      // ... and the knock that leads to it
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

  // A root's child as a first knock sees it.
  struct First {
    uint32_t node = kNone;  // kNone: no sequence starts with the knock
    uint16_t generation = 0;
    bool continues = false;  // it has children
    bool ends = false;       // a sequence ends there
  };
  First FirstChild(uint32_t root, uint32_t knock) const {
    const std::vector<First>& direct = direct_[nodes_[root].klass];
    if (!direct.empty()) return direct[KnockIndex(knock)];
    auto it = children_.find(EdgeKey(root, knock));  // a root keeps no child inline
    return it == children_.end() ? First{} : Summary(it->second);
  }
  uint32_t Child(uint32_t node, uint32_t knock) const {
    const Node& n = nodes_[node];
    if (n.inline_child != kNone && n.inline_knock == knock) return n.inline_child;
    return n.children > (n.inline_child != kNone ? 1u : 0u) ? OtherChild(n, node, knock) : kNone;
  }
  const Node& node(uint32_t index) const { return nodes_[index]; }
  // Nodes freed so far: while it stays the same, every reference that was
  // Current still is.
  uint64_t freed() const { return freed_; }
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
  // Child past the one kept in the node: the direct table or the edge map.
  uint32_t OtherChild(const Node& n, uint32_t node, uint32_t knock) const;
  void Link(uint32_t parent, uint32_t knock, uint32_t child);
  void Unlink(uint32_t parent, uint32_t knock, uint32_t child);
  // Moves a root's children into a direct table.
  void MakeDirect(uint32_t root);
  First Summary(uint32_t index) const {
    if (index == kNone) return First{};
    const Node& n = nodes_[index];
    return First{index, n.generation, n.children > 0, n.ends > 0};
  }
  // After a change to node `index`: its entry in its root's direct table.
  void SyncFirst(uint32_t index) {
    const Node& n = nodes_[index];
    if (n.depth == 1 && !direct_[n.klass].empty()) direct_[n.klass][KnockIndex(n.knock)] = Summary(index);
  }

  std::vector<Node> nodes_;
  std::vector<uint32_t> free_;
  uint64_t freed_ = 0;
  absl::flat_hash_map<uint64_t, uint32_t> children_;  // (parent, knock) -> child
  std::vector<std::vector<First>> direct_;            // by class: its root's children by knock, or empty
};

}  // namespace sesame
