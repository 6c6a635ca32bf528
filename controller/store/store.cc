#include "controller/store/store.h"

namespace sesame::controller {

const char* ConsumeOutcomeName(ConsumeOutcome outcome) {
  switch (outcome) {
    case ConsumeOutcome::kWon: return "won";
    case ConsumeOutcome::kReplay: return "replay";
    case ConsumeOutcome::kUnknown: return "unknown";
    case ConsumeOutcome::kRefused: return "refused";
  }
  return "?";
}

}  // namespace sesame::controller
