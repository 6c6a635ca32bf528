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
  if (direct_.size() <= klass) direct_.resize(klass + 1);
  nodes_[root].refs = 1;  // held for good: a root is never Current-stale
  return root;
}

uint32_t SequenceTrie::Insert(uint32_t root, absl::Span<const uint32_t> knocks) {
  uint32_t at = root;
  for (uint32_t knock : knocks) {
    uint32_t next = Child(at, knock);
    if (next == kNone) {
      next = NewNode(at, knock, static_cast<uint8_t>(nodes_[at].depth + 1), nodes_[root].klass);
      Link(at, knock, next);
    }
    ++nodes_[next].refs;
    at = next;
  }
  ++nodes_[at].ends;
  SyncFirst(at);
  return at;
}

void SequenceTrie::Remove(uint32_t end) {
  --nodes_[end].ends;
  SyncFirst(end);
  for (uint32_t at = end; nodes_[at].parent != kNone;) {
    Node& n = nodes_[at];
    const uint32_t parent = n.parent;
    if (--n.refs == 0) {
      Unlink(parent, n.knock, at);
      ++n.generation;
      free_.push_back(at);
      ++freed_;
    }
    at = parent;
  }
}

uint32_t SequenceTrie::OtherChild(const Node& n, uint32_t node, uint32_t knock) const {
  if (n.depth == 0 && !direct_[n.klass].empty()) return direct_[n.klass][KnockIndex(knock)].node;
  auto it = children_.find(EdgeKey(node, knock));
  return it == children_.end() ? kNone : it->second;
}

void SequenceTrie::Link(uint32_t parent, uint32_t knock, uint32_t child) {
  Node& p = nodes_[parent];
  ++p.children;
  if (p.depth == 0 && !direct_[p.klass].empty()) {
    direct_[p.klass][KnockIndex(knock)] = Summary(child);
  } else if (p.depth > 0 && p.inline_child == kNone) {
    p.inline_child = child;
    p.inline_knock = knock;
  } else {
    children_.emplace(EdgeKey(parent, knock), child);
  }
  SyncFirst(parent);
  if (p.depth == 0 && p.children >= kDirectRootChildren && direct_[p.klass].empty()) MakeDirect(parent);
}

void SequenceTrie::Unlink(uint32_t parent, uint32_t knock, uint32_t child) {
  Node& p = nodes_[parent];
  --p.children;
  if (p.depth == 0 && !direct_[p.klass].empty()) {
    direct_[p.klass][KnockIndex(knock)] = First{};
  } else if (p.inline_child == child) {
    p.inline_child = kNone;  // the edge map's children stay there
  } else {
    children_.erase(EdgeKey(parent, knock));
  }
  SyncFirst(parent);
}

void SequenceTrie::MakeDirect(uint32_t root) {
  std::vector<First>& table = direct_[nodes_[root].klass];
  table.assign(kKnockIndexes, First{});
  // Once per root: the edge map holds every node's other children.
  for (auto it = children_.begin(); it != children_.end();) {
    if (static_cast<uint32_t>(it->first >> 32) == root) {
      table[KnockIndex(static_cast<uint32_t>(it->first))] = Summary(it->second);
      children_.erase(it++);
    } else {
      ++it;
    }
  }
}

size_t SequenceTrie::MemoryBytes() const {
  size_t bytes = nodes_.capacity() * sizeof(Node) + free_.capacity() * sizeof(uint32_t) +
                 children_.capacity() * (sizeof(std::pair<uint64_t, uint32_t>) + 1);
  for (const std::vector<First>& table : direct_) bytes += table.capacity() * sizeof(First);
  return bytes;
}

}  // namespace sesame
