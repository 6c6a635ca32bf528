// Grants and the managed agent: the controller's opened and revoked through
// the grant worker, and what the backends did with any grant (the
// controller's, the offline reserve's, a standalone door's) reported back as
// GrantResult, RevokeApplied or an audit event.
#include "agent/managed/managed_agent.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/managed/proto_convert.h"
#include "agent/managed/reporting_backend.h"

namespace sesame {

BackendLookup ManagedAgent::Reporting(BackendLookup inner) {
  struct Wrappers {
    absl::Mutex mu;
    absl::flat_hash_map<FirewallBackend*, std::unique_ptr<ReportingBackend>> by_inner ABSL_GUARDED_BY(mu);
  };
  auto wrappers = std::make_shared<Wrappers>();
  return [this, inner = std::move(inner), wrappers](const std::string& door) -> FirewallBackend* {
    FirewallBackend* backend = inner(door);
    if (backend == nullptr) return nullptr;
    absl::MutexLock lock(&wrappers->mu);
    std::unique_ptr<ReportingBackend>& w = wrappers->by_inner[backend];
    if (w == nullptr) {
      w = std::make_unique<ReportingBackend>(backend, [this](bool opened, const Grant& g, const absl::Status& s) {
        Post(GrantOutcome{opened, g, s});
      });
    }
    return w.get();
  };
}

void ManagedAgent::OpenGrant(const v1::Grant& g) {
  const absl::Time now = options_.clock->Now();
  auto fail = [&](const std::string& error) {
    NoteError(absl::StrCat("grant ", g.id(), ": ", error));
    v1::AgentMessage m;
    v1::GrantResult* r = m.mutable_grant_result();
    r->set_grant_id(g.id());
    r->set_applied(false);
    r->set_error(error.substr(0, kMaxErrorLength));
    *r->mutable_at() = ToProtoTime(now);
    Report(std::move(m));
  };
  absl::StatusOr<Grant> grant = FromProtoGrant(g, GrantPortsOf(g.door()));
  if (!grant.ok()) return fail(std::string(grant.status().message()));
  if (!ServesDoor(grant->door)) return fail(absl::StrCat("no door \"", grant->door, "\" on this agent"));
  if (grant->expires <= now) return;  // nothing to open; the controller closes it on its side
  awaiting_open_[Key(grant->door, grant->address)].push_back(g.id());
  grants_->Open(*std::move(grant));
}

void ManagedAgent::CloseGrant(const v1::Grant& g) {
  const std::optional<IpAddress> address = IpAddress::Parse(g.address());
  if (!address.has_value()) {
    NoteError(absl::StrCat("revoke of grant ", g.id(), ": bad address \"", g.address(), "\""));
    return;
  }
  if (!ServesDoor(g.door())) {
    // Nothing can be open here for a door this agent does not serve.
    v1::AgentMessage m;
    v1::RevokeApplied* r = m.mutable_revoke_applied();
    r->set_grant_id(g.id());
    *r->mutable_at() = ToProtoTime(options_.clock->Now());
    Report(std::move(m));
    return;
  }
  revoking_[g.id()] = Key(g.door(), *address);
  SessionKill kill;
  if (g.kill_sessions()) {
    kill.ports = GrantPortsOf(g.door());
    kill.done = [this, door = g.door(), address = *address](const KilledSessions& killed) {
      Post(SessionsKilled{door, address, killed});
    };
  }
  grants_->Revoke(g.door(), *address, std::move(kill));
}

void ManagedAgent::ReportSessionsKilled(const SessionsKilled& k) {
  v1::AgentMessage m;
  v1::AuditEvent* a = m.mutable_audit();
  *a->mutable_time() = ToProtoTime(options_.clock->Now());
  a->set_what("grant.sessions_killed");
  auto& details = *a->mutable_details();
  details["door"] = k.door;
  details["address"] = k.address.ToString();
  details["sockets"] = absl::StrCat(k.killed.sockets);
  details["conntrack_entries"] = absl::StrCat(k.killed.conntrack_entries);
  if (!k.killed.status.ok()) {
    details["error"] = std::string(k.killed.status.message()).substr(0, kMaxErrorLength);
    NoteError(absl::StrCat(k.door, ": killing the sessions of ", k.address.ToString(), ": ",
                           k.killed.status.message()));
  }
  Report(std::move(m));
}

void ManagedAgent::HandleGrantOutcome(const GrantOutcome& o) {
  const std::string key = Key(o.grant.door, o.grant.address);
  const absl::Time now = options_.clock->Now();
  if (o.opened) {
    if (auto it = awaiting_open_.find(key); it != awaiting_open_.end()) {
      for (uint64_t id : it->second) {
        v1::AgentMessage m;
        v1::GrantResult* r = m.mutable_grant_result();
        r->set_grant_id(id);
        r->set_applied(o.status.ok());
        if (!o.status.ok()) r->set_error(o.status.ToString().substr(0, kMaxErrorLength));
        *r->mutable_at() = ToProtoTime(now);
        Report(std::move(m));
      }
      awaiting_open_.erase(it);
    }
    if (auto it = local_opens_.find(key); it != local_opens_.end()) {
      v1::AgentMessage m;
      v1::AuditEvent* a = m.mutable_audit();
      *a->mutable_time() = ToProtoTime(now);
      a->set_what(o.status.ok() ? "grant.applied" : "grant.failed");
      (*a->mutable_details())["door"] = o.grant.door;
      (*a->mutable_details())["address"] = o.grant.address.ToString();
      (*a->mutable_details())["origin"] = it->second;
      if (!o.status.ok()) (*a->mutable_details())["error"] = o.status.ToString().substr(0, kMaxErrorLength);
      local_opens_.erase(it);
      Report(std::move(m));
    }
    if (!o.status.ok()) NoteError(absl::StrCat(o.grant.door, ": cannot open for ", o.grant.address.ToString(), ": ",
                                               o.status.message()));
    return;
  }
  // Closed: a revocation we asked for, or an expiry the grant book ran.
  std::vector<std::pair<uint64_t, bool>> closed;  // (id, expired)
  for (const auto& [id, k] : revoking_) {
    if (k == key) closed.emplace_back(id, false);
  }
  for (const auto& [id, g] : state_.grants()) {
    if (g.door() == o.grant.door && g.address() == o.grant.address.ToString()) closed.emplace_back(id, true);
  }
  for (const auto& [id, expired] : closed) {
    v1::AgentMessage m;
    v1::RevokeApplied* r = m.mutable_revoke_applied();
    r->set_grant_id(id);
    r->set_expired(expired);
    if (!o.status.ok()) r->set_error(o.status.ToString().substr(0, kMaxErrorLength));
    *r->mutable_at() = ToProtoTime(now);
    Report(std::move(m));
    if (o.status.ok()) {
      revoking_.erase(id);
      if (state_.RemoveGrant(id)) dirty_ = true;
    }
  }
}

}  // namespace sesame
