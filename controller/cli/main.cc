// sesamectl: see controller/cli/sesamectl.h for commands and exit codes.
#include <iostream>

#include "controller/cli/sesamectl.h"

int main(int argc, char** argv) { return sesame::controller::RunSesamectl(argc, argv, std::cout, std::cerr); }
