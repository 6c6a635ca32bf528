#include "agent/grants/backends/nftables_backend.h"

#include <nftables/libnftables.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

constexpr char kChain[] = "input";
constexpr size_t kMaxSetBaseLength = 40;

uint32_t Fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 16777619u;
  }
  return h;
}

// A door name as it may appear inside nft's quoted comment.
std::string CommentText(const std::string& door) {
  std::string out = door;
  for (char& ch : out) {
    if (ch == '"' || ch == '\\' || !absl::ascii_isprint(static_cast<unsigned char>(ch))) ch = '_';
  }
  return out;
}

// nft's time syntax: "1d2h3m4s5ms". At least 1ms.
std::string NftDuration(absl::Duration d) {
  int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1)));
  ms = std::max<int64_t>(ms, 1);
  const int64_t days = ms / 86400000;
  ms %= 86400000;
  const int64_t hours = ms / 3600000;
  ms %= 3600000;
  const int64_t minutes = ms / 60000;
  ms %= 60000;
  const int64_t seconds = ms / 1000;
  ms %= 1000;
  std::string out;
  if (days > 0) absl::StrAppend(&out, days, "d");
  if (hours > 0) absl::StrAppend(&out, hours, "h");
  if (minutes > 0) absl::StrAppend(&out, minutes, "m");
  if (seconds > 0) absl::StrAppend(&out, seconds, "s");
  if (ms > 0) absl::StrAppend(&out, ms, "ms");
  return out;
}

// "tcp dport { 22, 2222 }" for each protocol the ports use.
std::vector<std::string> PortMatches(const std::vector<Knock>& ports) {
  std::vector<std::string> out;
  for (const Protocol protocol : {Protocol::kTcp, Protocol::kUdp}) {
    std::vector<uint16_t> numbers;
    for (const Knock& k : ports) {
      if (k.protocol == protocol) numbers.push_back(k.port);
    }
    if (numbers.empty()) continue;
    std::sort(numbers.begin(), numbers.end());
    numbers.erase(std::unique(numbers.begin(), numbers.end()), numbers.end());
    out.push_back(absl::StrCat(ProtocolName(protocol), " dport { ", absl::StrJoin(numbers, ", "), " }"));
  }
  return out;
}

std::string SetDefinition(IpAddress::Family family) {
  return absl::StrCat("{ type ", family == IpAddress::Family::kV4 ? "ipv4_addr" : "ipv6_addr",
                      "; flags timeout; }");
}

}  // namespace

std::string NftablesTable::SetName(const std::string& door, IpAddress::Family family) {
  std::string base;
  bool exact = !door.empty() && door.size() <= kMaxSetBaseLength && absl::ascii_isalpha(door[0]);
  for (char ch : door.substr(0, kMaxSetBaseLength)) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '_') {
      base.push_back(ch);
    } else {
      base.push_back('_');
      exact = false;
    }
  }
  if (base.empty() || !absl::ascii_isalpha(base[0])) base.insert(0, "d_");
  if (!exact) absl::StrAppend(&base, "_", absl::StrFormat("%08x", Fnv1a(door)));
  return absl::StrCat(base, family == IpAddress::Family::kV4 ? "_v4" : "_v6");
}

absl::StatusOr<std::shared_ptr<NftablesTable>> NftablesTable::Create(std::string table, const Clock& clock) {
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) return absl::InternalError("libnftables: cannot create a context");
  if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
    nft_ctx_free(ctx);
    return absl::InternalError("libnftables: cannot buffer output");
  }
  return std::shared_ptr<NftablesTable>(new NftablesTable(std::move(table), clock, ctx));
}

NftablesTable::NftablesTable(std::string table, const Clock& clock, nft_ctx* ctx)
    : table_(std::move(table)), clock_(clock), ctx_(ctx) {}

NftablesTable::~NftablesTable() { nft_ctx_free(ctx_); }

void NftablesTable::AddDoor(const std::string& door, std::vector<Knock> ports) {
  absl::MutexLock lock(&mu_);
  doors_[door] = std::move(ports);
}

std::string NftablesTable::PrepareCommands() const {
  absl::ReaderMutexLock lock(&mu_);
  return PrepareCommandsLocked();
}

std::string NftablesTable::PrepareCommandsLocked() const {
  const std::string where = absl::StrCat("inet ", table_);
  const std::string chain = absl::StrCat(where, " ", kChain);
  std::string out = absl::StrCat("add table ", where, "\n");
  for (const auto& [door, ports] : doors_) {
    for (const auto family : {IpAddress::Family::kV4, IpAddress::Family::kV6}) {
      absl::StrAppend(&out, "add set ", where, " ", SetName(door, family), " ", SetDefinition(family), "\n");
    }
  }
  absl::StrAppend(&out, "add chain ", chain, " { type filter hook input priority filter - 10; policy accept; }\n");
  absl::StrAppend(&out, "flush chain ", chain, "\n");
  absl::StrAppend(&out, "add rule ", chain, " ct state established,related accept\n");
  // Every accept before any drop: a port guarded by two doors is open to
  // the sources of either.
  for (const auto& [door, ports] : doors_) {
    for (const std::string& match : PortMatches(ports)) {
      absl::StrAppend(&out, "add rule ", chain, " ", match, " ip saddr @", SetName(door, IpAddress::Family::kV4),
                      " meta mark set meta mark | ", absl::StrFormat("0x%08x", kGrantMark), " accept comment \"",
                      CommentText(door), "\"\n");
      absl::StrAppend(&out, "add rule ", chain, " ", match, " ip6 saddr @", SetName(door, IpAddress::Family::kV6),
                      " meta mark set meta mark | ", absl::StrFormat("0x%08x", kGrantMark), " accept comment \"",
                      CommentText(door), "\"\n");
    }
  }
  for (const auto& [door, ports] : doors_) {
    for (const std::string& match : PortMatches(ports)) {
      absl::StrAppend(&out, "add rule ", chain, " ", match, " drop comment \"", CommentText(door), "\"\n");
    }
  }
  return out;
}

absl::Status NftablesTable::Prepare() {
  absl::MutexLock lock(&mu_);
  const absl::StatusOr<std::string> done = RunLocked(PrepareCommandsLocked(), false);
  if (!done.ok()) {
    return absl::Status(done.status().code(),
                        absl::StrCat("cannot set up nftables table inet ", table_, ": ", done.status().message()));
  }
  return absl::OkStatus();
}

absl::Status NftablesTable::Add(const std::string& door, const IpAddress& address, absl::Time expires) {
  std::string timeout;
  if (expires != absl::InfiniteFuture()) {
    const absl::Duration left = expires - clock_.Now();
    if (left <= absl::ZeroDuration()) return Remove(door, address);
    timeout = absl::StrCat(" timeout ", NftDuration(std::min(left, kMaxTimeout)));
  }
  const std::string set = absl::StrCat("inet ", table_, " ", SetName(door, address.family()));
  const std::string element = address.ToString();
  // add, delete, add: one transaction that replaces whatever was there,
  // timeout included, and never fails on an absent element.
  const std::string commands = absl::StrCat("add element ", set, " { ", element, " }\n",     //
                                            "delete element ", set, " { ", element, " }\n",  //
                                            "add element ", set, " { ", element, timeout, " }\n");
  absl::MutexLock lock(&mu_);
  const absl::StatusOr<std::string> done = RunLocked(commands, false);
  if (!done.ok()) {
    return absl::Status(done.status().code(), absl::StrCat("cannot add ", element, " to nftables set ", set, ": ",
                                                           done.status().message()));
  }
  return absl::OkStatus();
}

absl::Status NftablesTable::Remove(const std::string& door, const IpAddress& address) {
  const std::string set = absl::StrCat("inet ", table_, " ", SetName(door, address.family()));
  const std::string element = address.ToString();
  const std::string commands = absl::StrCat("add element ", set, " { ", element, " }\n",  //
                                            "delete element ", set, " { ", element, " }\n");
  absl::MutexLock lock(&mu_);
  const absl::StatusOr<std::string> done = RunLocked(commands, false);
  if (!done.ok()) {
    return absl::Status(done.status().code(), absl::StrCat("cannot delete ", element, " from nftables set ", set,
                                                           ": ", done.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NftablesTable::Run(const std::string& commands, bool json) {
  absl::MutexLock lock(&mu_);
  return RunLocked(commands, json);
}

absl::StatusOr<std::string> NftablesTable::RunLocked(const std::string& commands, bool json) {
  nft_ctx_output_set_flags(ctx_, json ? NFT_CTX_OUTPUT_JSON : 0);
  const int rc = nft_run_cmd_from_buffer(ctx_, commands.c_str());
  // Reading a buffer rewinds it for the next command.
  const char* output = nft_ctx_get_output_buffer(ctx_);
  const char* error = nft_ctx_get_error_buffer(ctx_);
  if (rc != 0) {
    std::string message(error != nullptr ? error : "");
    absl::StripTrailingAsciiWhitespace(&message);
    if (message.empty()) message = "libnftables failed without a message";
    return absl::UnavailableError(message);
  }
  return std::string(output != nullptr ? output : "");
}

// ---------------------------------------------------------------------------

NftablesBackend::NftablesBackend(const std::string& door, std::vector<Knock> ports,
                                 std::shared_ptr<NftablesTable> table)
    : door_(door), table_(std::move(table)) {
  table_->AddDoor(door_, std::move(ports));
}

absl::Status NftablesBackend::Prepare() { return table_->Prepare(); }

absl::Status NftablesBackend::Open(const Grant& grant) { return table_->Add(door_, grant.address, grant.expires); }

absl::Status NftablesBackend::Close(const Grant& grant) { return table_->Remove(door_, grant.address); }

}  // namespace sesame
