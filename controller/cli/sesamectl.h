// sesamectl: the operator's CLI against sesame-controller's AdminService.
//
//   sesamectl [GLOBAL] NOUN VERB [ARGS]
//
// Global options (each also from the environment):
//   --controller HOST:PORT   SESAME_CONTROLLER   (default localhost:7443)
//   --ca-cert FILE           SESAME_CA_CERT
//   --cert FILE              SESAME_CERT         (an operator certificate)
//   --key FILE               SESAME_KEY
//   --timeout DURATION       SESAME_TIMEOUT      (default 10s; every RPC has it)
//   -o, --output table|json
//
// Commands:
//   health
//   agents list | agents show NAME
//   doors list
//   sequences issue --door D --count N [--for NAME] [--reserve AGENT]
//   sequences list [--door D] [--state issued|live|burnt] [--reserve AGENT] [--limit N]
//   grants list [--all] [--ip ADDR]
//   grants open (--agent A | --fleet) --ip ADDR --door D [--ttl DURATION]
//   grants revoke (ID | --ip ADDR)
//   audit tail [-f] [-n N]
//   audit export --out FILE
//   audit verify [--file FILE --pubkey FILE]   (with --file: offline, no controller)
//   audit pubkey
//   stats
//
// Data goes to stdout, errors to stderr. Exit codes (kExit*): 0 success,
// 1 failure (including an audit log that does not verify), 2 usage or
// invalid argument, 3 controller unreachable or too slow, 4 refused
// (certificate unknown, revoked or without the admin role), 5 not found.
#pragma once

#include <ostream>

namespace sesame::controller {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;
inline constexpr int kExitRefused = 4;
inline constexpr int kExitNotFound = 5;

int RunSesamectl(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace sesame::controller
