// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status and absl::StatusOr.
// Debian's Abseil 20220623 ships neither, so they are defined once, here.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SESAME_CONCAT_INNER(a, b) a##b
#define SESAME_CONCAT(a, b) SESAME_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status sesame_status_ = (expr);        \
    if (!sesame_status_.ok()) return sesame_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  SESAME_ASSIGN_OR_RETURN_IMPL(SESAME_CONCAT(sesame_statusor_, __LINE__), lhs, expr)

#define SESAME_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()
