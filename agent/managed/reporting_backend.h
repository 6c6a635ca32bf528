// A firewall backend that tells someone what it did: it forwards every call
// to the door's real backend and reports each Open and Close with its
// result. The managed agent wraps every door's backend this way, so that
// grant outcomes (applied, failed, closed on expiry or revocation) reach the
// controller however the grant book came to make them.
#pragma once

#include <functional>
#include <string_view>

#include "absl/status/status.h"
#include "agent/grants/firewall.h"

namespace sesame {

class ReportingBackend final : public FirewallBackend {
 public:
  // opened: true for Open, false for Close. Runs on the caller's thread
  // (the grant worker's): it must only enqueue.
  using Report = std::function<void(bool opened, const Grant& grant, const absl::Status& status)>;

  // `inner` must outlive this object.
  ReportingBackend(FirewallBackend* inner, Report report) : inner_(inner), report_(std::move(report)) {}

  std::string_view name() const override { return inner_->name(); }
  absl::Status Prepare() override { return inner_->Prepare(); }
  absl::Status Open(const Grant& grant) override {
    absl::Status s = inner_->Open(grant);
    report_(true, grant, s);
    return s;
  }
  absl::Status Close(const Grant& grant) override {
    absl::Status s = inner_->Close(grant);
    report_(false, grant, s);
    return s;
  }
  bool reapply_after_restart() const override { return inner_->reapply_after_restart(); }

 private:
  FirewallBackend* inner_;
  Report report_;
};

}  // namespace sesame
