// Compiles the tests' precompiled header (tests/CMakeLists.txt: sesame_test_pch).
