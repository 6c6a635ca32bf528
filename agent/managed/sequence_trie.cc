#include "agent/managed/sequence_trie.h"

namespace sesame {

uint32_t SequenceTrie::NewNode(uint32_t parent, uint32_t knock, uint8_t depth, uint8_t klass) {
  uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  Node& n = nodes_[index];
  const uint16_t generation = n.generation;  // bumped when it was freed
  n = Node{};
  n.parent = parent;
  n.knock = knock;
  n.generation = generation;
  n.depth = depth;
  n.klass = klass;
  return index;
}

uint32_t SequenceTrie::AddRoot(uint8_t klass) {
  const uint32_t root = NewNode(kNone, 0, 0, klass);
  nodes_[root].refs = 1;  // held for good: a root is never Current-stale
  return root;
}

uint32_t SequenceTrie::Insert(uint32_t root, absl::Span<const uint32_t> knocks) {
  uint32_t at = root;
  for (uint32_t knock : knocks) {
    uint32_t next = Child(at, knock);
    if (next == kNone) {
      next = NewNode(at, knock, static_cast<uint8_t>(nodes_[at].depth + 1), nodes_[root].klass);
      children_.emplace(EdgeKey(at, knock), next);
      ++nodes_[at].children;
    }
    ++nodes_[next].refs;
    at = next;
  }
  ++nodes_[at].ends;
  return at;
}

void SequenceTrie::Remove(uint32_t end) {
  --nodes_[end].ends;
  for (uint32_t at = end; nodes_[at].parent != kNone;) {
    Node& n = nodes_[at];
    const uint32_t parent = n.parent;
    if (--n.refs == 0) {
      children_.erase(EdgeKey(parent, n.knock));
      --nodes_[parent].children;
      ++n.generation;
      free_.push_back(at);
    }
    at = parent;
  }
}

size_t SequenceTrie::MemoryBytes() const {
  return nodes_.capacity() * sizeof(Node) + free_.capacity() * sizeof(uint32_t) +
         children_.capacity() * (sizeof(std::pair<uint64_t, uint32_t>) + 1);
}

}  // namespace sesame
