#include "agent/grants/backends/ufw_backend.h"

#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

constexpr char kRuleCommentPrefix[] = "sesame door=";

}  // namespace

UfwRules::UfwRules(ProcessRunner& runner, std::string ufw) : runner_(runner), ufw_(std::move(ufw)) {}

std::string UfwRules::Comment(const std::string& door) {
  std::string out = absl::StrCat(kRuleCommentPrefix, door);
  for (char& ch : out) {
    if (ch == '\'' || ch == '"' || ch == '\\' || !absl::ascii_isprint(static_cast<unsigned char>(ch))) ch = '_';
  }
  return out;
}

UfwRules::RuleKey UfwRules::KeyOf(const IpAddress& address, const Knock& port) {
  return RuleKey{address.ToString(), std::to_string(port.port), ProtocolName(port.protocol)};
}

std::vector<std::string> UfwRules::AllowArgv(const std::string& door, const IpAddress& address,
                                             const Knock& port) const {
  return {ufw_,   "allow", "from",  address.ToString(),          "to",      "any", "port",
          std::to_string(port.port), "proto", ProtocolName(port.protocol), "comment", Comment(door)};
}

std::vector<std::string> UfwRules::DeleteArgv(const IpAddress& address, const Knock& port) const {
  return {ufw_, "--force", "delete", "allow",           "from",  address.ToString(), "to", "any",
          "port", std::to_string(port.port), "proto", ProtocolName(port.protocol)};
}

absl::Status UfwRules::Run(const std::vector<std::string>& argv, std::string* output) {
  ASSIGN_OR_RETURN(const ProcessResult result, runner_.RunAndWait(argv));
  if (output != nullptr) *output = result.output;
  if (result.exit_code == 0 && !result.timed_out) return absl::OkStatus();
  std::string text = result.output;
  absl::StripAsciiWhitespace(&text);
  const std::string how = result.timed_out        ? "timed out"
                          : result.signal != 0    ? absl::StrCat("was killed by signal ", result.signal)
                                                  : absl::StrCat("exited with ", result.exit_code);
  return absl::UnavailableError(absl::StrCat("`", absl::StrJoin(argv, " "), "` ", how, ": ", text));
}

absl::Status UfwRules::Prepare() {
  absl::MutexLock lock(&mu_);
  std::string status;
  RETURN_IF_ERROR(Run({ufw_, "status"}, &status));
  if (!absl::StrContains(status, "Status: active")) {
    LogWarning("ufw is not active: sesame's ufw rules take effect once it is enabled (ufw enable)");
  }
  // "ufw allow from 192.0.2.7 to any port 22 proto tcp comment 'sesame door=x'"
  std::string added;
  RETURN_IF_ERROR(Run({ufw_, "show", "added"}, &added));
  for (absl::string_view line : absl::StrSplit(added, '\n')) {
    if (!absl::StrContains(line, absl::StrCat(" comment '", kRuleCommentPrefix))) continue;
    const std::vector<std::string> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (w.size() < 11 || w[0] != "ufw" || w[1] != "allow" || w[2] != "from" || w[4] != "to" || w[5] != "any" ||
        w[6] != "port" || w[8] != "proto") {
      continue;
    }
    const std::optional<IpAddress> address = IpAddress::Parse(w[3]);
    if (!address.has_value()) continue;
    const RuleKey key{address->ToString(), w[7], w[9]};
    if (granted_.count(key) > 0) continue;
    LogInfo(absl::StrCat("ufw: removing a rule no grant holds: ", std::string(line.data(), line.size())));
    RETURN_IF_ERROR(Run({ufw_, "--force", "delete", "allow", "from", w[3], "to", "any", "port", w[7], "proto", w[9]}));
  }
  return absl::OkStatus();
}

absl::Status UfwRules::Add(const std::string& door, const IpAddress& address, const std::vector<Knock>& ports) {
  absl::MutexLock lock(&mu_);
  std::vector<Knock> created;  // rules this call brought into existence
  absl::Status status = absl::OkStatus();
  for (const Knock& port : ports) {
    std::set<std::string>& doors = granted_[KeyOf(address, port)];
    if (doors.empty()) {
      status = Run(AllowArgv(door, address, port));
      if (!status.ok()) {
        granted_.erase(KeyOf(address, port));
        break;
      }
      created.push_back(port);
    }
    doors.insert(door);
  }
  if (status.ok()) return status;
  // All or nothing: take back what this call added.
  for (const Knock& port : created) {
    granted_.erase(KeyOf(address, port));
    const absl::Status undone = Run(DeleteArgv(address, port));
    if (!undone.ok()) LogWarning(absl::StrCat("ufw: cannot undo a partial open: ", undone.message()));
  }
  return status;
}

absl::Status UfwRules::Remove(const std::string& door, const IpAddress& address, const std::vector<Knock>& ports) {
  absl::MutexLock lock(&mu_);
  absl::Status first_error = absl::OkStatus();
  for (const Knock& port : ports) {
    const auto it = granted_.find(KeyOf(address, port));
    if (it != granted_.end()) {
      it->second.erase(door);
      if (!it->second.empty()) continue;  // another door still grants it
    }
    // Unknown rules are deleted too: after a restart this process cannot
    // know, and ufw shrugs at deleting a rule that is not there.
    const absl::Status deleted = Run(DeleteArgv(address, port));
    if (deleted.ok()) {
      granted_.erase(KeyOf(address, port));
    } else {
      if (it != granted_.end()) it->second.insert(door);
      if (first_error.ok()) first_error = deleted;
    }
  }
  return first_error;
}

// ---------------------------------------------------------------------------

UfwBackend::UfwBackend(std::string door, std::vector<Knock> door_ports, std::shared_ptr<UfwRules> rules)
    : door_(std::move(door)), door_ports_(std::move(door_ports)), rules_(std::move(rules)) {}

const std::vector<Knock>& UfwBackend::PortsOf(const Grant& grant) const {
  return grant.ports.empty() ? door_ports_ : grant.ports;
}

absl::Status UfwBackend::Prepare() { return rules_->Prepare(); }

absl::Status UfwBackend::Open(const Grant& grant) { return rules_->Add(door_, grant.address, PortsOf(grant)); }

absl::Status UfwBackend::Close(const Grant& grant) { return rules_->Remove(door_, grant.address, PortsOf(grant)); }

}  // namespace sesame
