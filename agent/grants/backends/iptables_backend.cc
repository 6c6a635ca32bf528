#include "agent/grants/backends/iptables_backend.h"

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

constexpr char kCommentPrefix[] = "sesame door=";
constexpr size_t kMaxComment = 255;
// Bound on deleting duplicates of one rule.
constexpr int kMaxDeletes = 16;

std::string Trimmed(const std::string& output) {
  std::string out = output;
  absl::StripAsciiWhitespace(&out);
  if (out.empty()) out = "(no output)";
  return out;
}

absl::Status ToolError(const std::vector<std::string>& argv, const ProcessResult& result) {
  std::string how = result.timed_out             ? "timed out"
                    : result.signal != 0          ? absl::StrCat("was killed by signal ", result.signal)
                                                  : absl::StrCat("exited with ", result.exit_code);
  return absl::UnavailableError(
      absl::StrCat("`", absl::StrJoin(argv, " "), "` ", how, ": ", Trimmed(result.output)));
}

// "192.0.2.7/32" -> the canonical address; nullopt for a real prefix.
std::optional<std::string> HostAddress(const std::string& source) {
  const size_t slash = source.find('/');
  std::string address = source.substr(0, slash);
  if (slash != std::string::npos) {
    const std::string length = source.substr(slash + 1);
    if (length != "32" && length != "128") return std::nullopt;
  }
  const std::optional<IpAddress> parsed = IpAddress::Parse(address);
  if (!parsed.has_value()) return std::nullopt;
  return parsed->ToString();
}

}  // namespace

std::vector<std::string> SplitIptablesLine(std::string_view line) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted) {
      if (ch == '\\' && i + 1 < line.size()) {
        word.push_back(line[++i]);
      } else if (ch == '"') {
        quoted = false;
      } else {
        word.push_back(ch);
      }
    } else if (ch == '"') {
      quoted = true;
      in_word = true;
    } else if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      word.push_back(ch);
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

std::string IptablesChain::Comment(const std::string& door) {
  return absl::StrCat(kCommentPrefix, door).substr(0, kMaxComment);
}

std::vector<std::string> IptablesChain::RuleSpec(const std::string& door, const IpAddress& address,
                                                 const Knock& port) {
  return {"-s", address.ToString(), "-p", ProtocolName(port.protocol), "--dport", std::to_string(port.port),
          "-m", "comment", "--comment", Comment(door), "-j", "ACCEPT"};
}

IptablesChain::IptablesChain(std::string chain, ProcessRunner& runner, IptablesTools tools)
    : chain_(std::move(chain)), runner_(runner), tools_(std::move(tools)) {}

absl::StatusOr<ProcessResult> IptablesChain::Tool(IpAddress::Family family, std::vector<std::string> args) {
  std::vector<std::string> argv = {family == IpAddress::Family::kV4 ? tools_.iptables : tools_.ip6tables, "-w",
                                   "10"};
  argv.insert(argv.end(), std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
  ASSIGN_OR_RETURN(ProcessResult result, runner_.RunAndWait(argv));
  if (result.timed_out || result.signal != 0) return ToolError(argv, result);
  return result;
}

absl::StatusOr<bool> IptablesChain::Exists(IpAddress::Family family, const std::vector<std::string>& spec) {
  std::vector<std::string> args = {"-C", chain_};
  args.insert(args.end(), spec.begin(), spec.end());
  ASSIGN_OR_RETURN(const ProcessResult result, Tool(family, args));
  // 1: no such rule (or no such chain); 2 and up: bad arguments, no lock...
  if (result.exit_code == 0) return true;
  if (result.exit_code == 1) return false;
  args.insert(args.begin(), family == IpAddress::Family::kV4 ? tools_.iptables : tools_.ip6tables);
  return ToolError(args, result);
}

absl::Status IptablesChain::Append(IpAddress::Family family, const std::vector<std::string>& spec) {
  std::vector<std::string> args = {"-A", chain_};
  args.insert(args.end(), spec.begin(), spec.end());
  ASSIGN_OR_RETURN(const ProcessResult result, Tool(family, args));
  if (result.exit_code == 0) return absl::OkStatus();
  args.insert(args.begin(), family == IpAddress::Family::kV4 ? tools_.iptables : tools_.ip6tables);
  return ToolError(args, result);
}

absl::Status IptablesChain::Delete(IpAddress::Family family, const std::vector<std::string>& spec) {
  for (int i = 0; i < kMaxDeletes; ++i) {
    ASSIGN_OR_RETURN(const bool present, Exists(family, spec));
    if (!present) return absl::OkStatus();
    std::vector<std::string> args = {"-D", chain_};
    args.insert(args.end(), spec.begin(), spec.end());
    ASSIGN_OR_RETURN(const ProcessResult result, Tool(family, args));
    if (result.exit_code != 0) {
      args.insert(args.begin(), family == IpAddress::Family::kV4 ? tools_.iptables : tools_.ip6tables);
      return ToolError(args, result);
    }
  }
  return absl::InternalError(
      absl::StrCat("chain ", chain_, " still holds `", absl::StrJoin(spec, " "), "` after ", kMaxDeletes, " deletes"));
}

absl::Status IptablesChain::PrepareFamily(IpAddress::Family family) {
  const std::string& tool = family == IpAddress::Family::kV4 ? tools_.iptables : tools_.ip6tables;
  ASSIGN_OR_RETURN(ProcessResult listing, Tool(family, {"-S", chain_}));
  if (listing.exit_code != 0) {
    ASSIGN_OR_RETURN(const ProcessResult created, Tool(family, {"-N", chain_}));
    if (created.exit_code != 0) return ToolError({tool, "-w", "10", "-N", chain_}, created);
    listing.output.clear();
  }
  ASSIGN_OR_RETURN(const ProcessResult jump, Tool(family, {"-C", "INPUT", "-j", chain_}));
  if (jump.exit_code == 1) {
    ASSIGN_OR_RETURN(const ProcessResult inserted, Tool(family, {"-I", "INPUT", "1", "-j", chain_}));
    if (inserted.exit_code != 0) return ToolError({tool, "-w", "10", "-I", "INPUT", "1", "-j", chain_}, inserted);
  } else if (jump.exit_code != 0) {
    return ToolError({tool, "-w", "10", "-C", "INPUT", "-j", chain_}, jump);
  }

  // Sesame rules this process does not grant: left by an earlier run.
  for (absl::string_view line : absl::StrSplit(listing.output, '\n')) {
    std::vector<std::string> words = SplitIptablesLine(std::string_view(line.data(), line.size()));
    if (words.size() < 3 || words[0] != "-A" || words[1] != chain_) continue;
    std::string source, protocol, port, comment;
    for (size_t i = 2; i + 1 < words.size(); ++i) {
      if (words[i] == "-s") source = words[i + 1];
      if (words[i] == "-p") protocol = words[i + 1];
      if (words[i] == "--dport") port = words[i + 1];
      if (words[i] == "--comment") comment = words[i + 1];
    }
    if (!absl::StartsWith(comment, kCommentPrefix)) continue;
    const std::optional<std::string> address = HostAddress(source);
    if (address.has_value() && granted_.count(RuleKey{family, *address, protocol, port, comment}) > 0) continue;
    const std::vector<std::string> spec(words.begin() + 2, words.end());
    LogInfo(absl::StrCat(tool, " chain ", chain_, ": removing a rule no grant holds: ", absl::StrJoin(spec, " ")));
    RETURN_IF_ERROR(Delete(family, spec));
  }
  return absl::OkStatus();
}

absl::Status IptablesChain::Prepare() {
  absl::MutexLock lock(&mu_);
  const absl::Status v4 = PrepareFamily(IpAddress::Family::kV4);
  const absl::Status v6 = PrepareFamily(IpAddress::Family::kV6);
  if (!v4.ok()) return v4;
  return v6;
}

absl::Status IptablesChain::Add(const std::string& door, const IpAddress& address, const std::vector<Knock>& ports) {
  absl::MutexLock lock(&mu_);
  std::vector<std::vector<std::string>> added;
  std::vector<RuleKey> inserted;
  absl::Status status = absl::OkStatus();
  for (const Knock& port : ports) {
    const std::vector<std::string> spec = RuleSpec(door, address, port);
    absl::StatusOr<bool> present = Exists(address.family(), spec);
    if (!present.ok()) {
      status = present.status();
      break;
    }
    if (!*present) {
      status = Append(address.family(), spec);
      if (!status.ok()) break;
      added.push_back(spec);
    }
    RuleKey key{address.family(), address.ToString(), ProtocolName(port.protocol), std::to_string(port.port),
                Comment(door)};
    if (granted_.insert(key).second) inserted.push_back(std::move(key));
  }
  if (status.ok()) return status;
  // All or nothing: take back what this call added.
  for (const std::vector<std::string>& spec : added) {
    const absl::Status undone = Delete(address.family(), spec);
    if (!undone.ok()) LogWarning(absl::StrCat("iptables: cannot undo a partial open: ", undone.message()));
  }
  for (const RuleKey& key : inserted) granted_.erase(key);
  return status;
}

absl::Status IptablesChain::Remove(const std::string& door, const IpAddress& address,
                                   const std::vector<Knock>& ports) {
  absl::MutexLock lock(&mu_);
  absl::Status first_error = absl::OkStatus();
  for (const Knock& port : ports) {
    const absl::Status deleted = Delete(address.family(), RuleSpec(door, address, port));
    if (deleted.ok()) {
      granted_.erase(RuleKey{address.family(), address.ToString(), ProtocolName(port.protocol),
                             std::to_string(port.port), Comment(door)});
    } else if (first_error.ok()) {
      first_error = deleted;
    }
  }
  return first_error;
}

// ---------------------------------------------------------------------------

IptablesBackend::IptablesBackend(std::string door, std::vector<Knock> door_ports,
                                 std::shared_ptr<IptablesChain> chain)
    : door_(std::move(door)), door_ports_(std::move(door_ports)), chain_(std::move(chain)) {}

const std::vector<Knock>& IptablesBackend::PortsOf(const Grant& grant) const {
  return grant.ports.empty() ? door_ports_ : grant.ports;
}

absl::Status IptablesBackend::Prepare() { return chain_->Prepare(); }

absl::Status IptablesBackend::Open(const Grant& grant) { return chain_->Add(door_, grant.address, PortsOf(grant)); }

absl::Status IptablesBackend::Close(const Grant& grant) {
  return chain_->Remove(door_, grant.address, PortsOf(grant));
}

}  // namespace sesame
