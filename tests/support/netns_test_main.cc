// main() for *_netns_test binaries: the process moves into fresh network and
// mount namespaces before any test (or any thread) starts.
#include <cstdio>
#include <cstring>

#include "gtest/gtest.h"
#include "tests/support/namespace_sandbox.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--gtest_list_tests", 18) == 0) listing = true;
  }
  if (!listing) {
    const absl::Status status = sesame::testing::EnterPrivateNamespaces();
    if (!status.ok()) {
      std::fprintf(stderr, "cannot isolate the test (needs root): %s\n", status.ToString().c_str());
      return 1;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
