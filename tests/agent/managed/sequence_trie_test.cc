// SequenceTrie: every way a child is kept (in its parent, in the edge map,
// in a root's direct table) answers Child and FirstChild as the sequences
// held say it should, through inserts and removals in any order and across
// the switch to a direct table.
#include "agent/managed/sequence_trie.h"

#include <map>
#include <random>
#include <vector>

#include "agent/match/internal/matcher_bits.h"
#include "gtest/gtest.h"

namespace sesame {
namespace {

uint32_t Tcp(uint16_t port) { return matcher_internal::KnockKey(Protocol::kTcp, port); }
uint32_t Udp(uint16_t port) { return matcher_internal::KnockKey(Protocol::kUdp, port); }

// Walks `knocks` from `root`: the node reached, or kNone.
uint32_t Walk(const SequenceTrie& trie, uint32_t root, const std::vector<uint32_t>& knocks) {
  uint32_t at = root;
  for (uint32_t k : knocks) {
    at = trie.Child(at, k);
    if (at == SequenceTrie::kNone) break;
  }
  return at;
}

TEST(SequenceTrieTest, SiblingsBesideTheInlineChildAreFoundAndSurviveItsRemoval) {
  SequenceTrie trie;
  const uint32_t root = trie.AddRoot(0);
  const uint32_t a = trie.Insert(root, {Tcp(7000), Tcp(8000)});
  const uint32_t b = trie.Insert(root, {Tcp(7000), Udp(8000)});  // same port, other protocol
  const uint32_t c = trie.Insert(root, {Tcp(7000), Tcp(9000)});
  const uint32_t first = trie.Child(root, Tcp(7000));
  EXPECT_EQ(trie.node(first).children, 3u);
  EXPECT_EQ(trie.Child(first, Tcp(8000)), a);
  EXPECT_EQ(trie.Child(first, Udp(8000)), b);
  EXPECT_EQ(trie.Child(first, Tcp(9000)), c);
  EXPECT_EQ(trie.Child(first, Tcp(9999)), SequenceTrie::kNone);

  trie.Remove(a);  // the child kept in the node itself
  EXPECT_EQ(trie.Child(first, Tcp(8000)), SequenceTrie::kNone);
  EXPECT_EQ(trie.Child(first, Udp(8000)), b);
  EXPECT_EQ(trie.Child(first, Tcp(9000)), c);
  const uint32_t d = trie.Insert(root, {Tcp(7000), Tcp(6000)});
  EXPECT_EQ(trie.Child(first, Tcp(6000)), d);
  EXPECT_EQ(trie.Child(first, Udp(8000)), b);
}

TEST(SequenceTrieTest, FirstChildSummarisesTheNodeAWayOrTheOther) {
  for (const uint32_t sequences : {uint32_t{3}, SequenceTrie::kDirectRootChildren + 10}) {
    SCOPED_TRACE(sequences);
    SequenceTrie trie;
    const uint32_t root = trie.AddRoot(0);
    for (uint32_t i = 0; i < sequences; ++i) trie.Insert(root, {Tcp(static_cast<uint16_t>(10000 + i)), Tcp(1)});
    const uint32_t whole = trie.Insert(root, {Udp(53)});        // a sequence of one knock
    const uint32_t both = trie.Insert(root, {Udp(53), Tcp(2)});  // ... and one that goes on
    SequenceTrie::First f = trie.FirstChild(root, Udp(53));
    EXPECT_EQ(f.node, whole);
    EXPECT_TRUE(f.ends);
    EXPECT_TRUE(f.continues);
    EXPECT_EQ(f.generation, trie.node(whole).generation);

    trie.Remove(both);
    f = trie.FirstChild(root, Udp(53));
    EXPECT_TRUE(f.ends);
    EXPECT_FALSE(f.continues);
    trie.Remove(whole);
    EXPECT_EQ(trie.FirstChild(root, Udp(53)).node, SequenceTrie::kNone);
    EXPECT_FALSE(trie.Current(whole, f.generation));  // progress that pointed there is stale

    f = trie.FirstChild(root, Tcp(10000));
    EXPECT_FALSE(f.ends);
    EXPECT_TRUE(f.continues);
    EXPECT_EQ(trie.FirstChild(root, Tcp(1)).node, SequenceTrie::kNone);
  }
}

// A model: the sequences held, each with the node Insert returned. Every
// prefix of a held sequence must be walkable to the same node from either
// side, and nothing else.
TEST(SequenceTrieTest, RandomInsertsAndRemovalsAgreeWithTheSequencesHeld) {
  std::mt19937 random(17);
  SequenceTrie trie;
  const uint32_t roots[2] = {trie.AddRoot(0), trie.AddRoot(1)};
  struct Held {
    int klass;
    std::vector<uint32_t> knocks;
    uint32_t end;
  };
  std::vector<Held> held;
  // Few ports, so that prefixes are shared; enough sequences that class 0's
  // root passes kDirectRootChildren on the way, then loses many of them.
  auto knock = [&] {
    const uint16_t port = static_cast<uint16_t>(random() % 3000);
    return random() % 4 == 0 ? Udp(port) : Tcp(port);
  };
  for (int step = 0; step < 20000; ++step) {
    const bool grow = step < 12000 ? random() % 4 != 0 : random() % 3 == 0;
    if (grow || held.empty()) {
      Held h;
      h.klass = random() % 5 == 0 ? 1 : 0;
      const int length = 1 + static_cast<int>(random() % 4);
      for (int k = 0; k < length; ++k) h.knocks.push_back(knock());
      h.end = trie.Insert(roots[h.klass], h.knocks);
      held.push_back(std::move(h));
    } else {
      const size_t i = random() % held.size();
      trie.Remove(held[i].end);
      held[i] = std::move(held.back());
      held.pop_back();
    }
    if (step % 1000 != 999) continue;
    std::map<std::pair<int, std::vector<uint32_t>>, uint32_t> prefixes;  // -> sequences ending there
    for (const Held& h : held) {
      ASSERT_EQ(Walk(trie, roots[h.klass], h.knocks), h.end) << "step " << step;
      for (size_t n = 1; n <= h.knocks.size(); ++n) {
        uint32_t& ends = prefixes[{h.klass, std::vector<uint32_t>(h.knocks.begin(), h.knocks.begin() + n)}];
        if (n == h.knocks.size()) ++ends;
      }
    }
    for (const auto& [prefix, ends] : prefixes) {
      const uint32_t node = Walk(trie, roots[prefix.first], prefix.second);
      ASSERT_NE(node, SequenceTrie::kNone);
      EXPECT_EQ(trie.node(node).ends, ends);
      if (prefix.second.size() == 1) {
        const SequenceTrie::First f = trie.FirstChild(roots[prefix.first], prefix.second[0]);
        EXPECT_EQ(f.node, node);
        EXPECT_EQ(f.generation, trie.node(node).generation);
        EXPECT_EQ(f.ends, ends > 0);
        EXPECT_EQ(f.continues, trie.node(node).children > 0);
      }
    }
    // A prefix no sequence has leads nowhere.
    for (int probe = 0; probe < 200; ++probe) {
      const int klass = probe % 2;
      std::vector<uint32_t> knocks = {knock(), knock()};
      const bool exists = prefixes.contains({klass, {knocks[0]}});
      EXPECT_EQ(trie.Child(roots[klass], knocks[0]) != SequenceTrie::kNone, exists);
      if (exists) {
        EXPECT_EQ(Walk(trie, roots[klass], knocks) != SequenceTrie::kNone, prefixes.contains({klass, knocks}));
      }
    }
  }
  // Class 0's root went over to its direct table on the way.
  EXPECT_GE(trie.MemoryBytes(), kKnockIndexes * sizeof(SequenceTrie::First));
}

}  // namespace
}  // namespace sesame
