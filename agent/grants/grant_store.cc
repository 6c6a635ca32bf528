#include "agent/grants/grant_store.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

constexpr absl::string_view kMagic = "sesame-grants";
constexpr int kVersion = 1;
constexpr mode_t kFileMode = 0600;

// --- field codecs -----------------------------------------------------------

bool NeedsEscape(unsigned char c) { return c <= ' ' || c >= 0x7f || c == '%'; }

std::string EscapeDoor(const std::string& door) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : door) {
    if (NeedsEscape(c)) {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::optional<std::string> UnescapeDoor(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int hi = HexValue(text[i + 1]), lo = HexValue(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  if (out.empty()) return std::nullopt;
  return out;
}

absl::Time Normalize(absl::Time t) {
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast()) return t;
  return absl::FromUnixNanos(absl::ToUnixNanos(t));
}

std::string TimeText(absl::Time t) {
  if (t == absl::InfiniteFuture()) return "inf";
  if (t == absl::InfinitePast()) return "-inf";
  return absl::StrCat(absl::ToUnixNanos(t));
}

std::optional<absl::Time> ParseTimeField(absl::string_view field) {
  if (field == "inf") return absl::InfiniteFuture();
  if (field == "-inf") return absl::InfinitePast();
  absl::string_view digits = field;
  absl::ConsumePrefix(&digits, "-");
  if (digits.empty() || digits.find_first_not_of("0123456789") != absl::string_view::npos) return std::nullopt;
  int64_t ns;
  if (!absl::SimpleAtoi(field, &ns)) return std::nullopt;  // out of range
  return absl::FromUnixNanos(ns);
}

std::string PortsText(const std::vector<Knock>& ports) { return ports.empty() ? "-" : KnocksToString(ports); }

std::optional<std::vector<Knock>> ParsePorts(absl::string_view text) {
  std::vector<Knock> ports;
  if (text == "-") return ports;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(item, absl::MaxSplits(':', 1));
    uint32_t port;
    if (parts.first.empty() || parts.first.find_first_not_of("0123456789") != absl::string_view::npos ||
        !absl::SimpleAtoi(parts.first, &port) || port > 65535) {
      return std::nullopt;
    }
    Knock k;
    k.port = static_cast<uint16_t>(port);
    if (parts.second == "tcp") k.protocol = Protocol::kTcp;
    else if (parts.second == "udp") k.protocol = Protocol::kUdp;
    else return std::nullopt;
    ports.push_back(k);
  }
  return ports;
}

// Parses one grant line; the error says what was expected.
absl::StatusOr<Grant> ParseLine(absl::string_view line) {
  std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
  if (f.size() != 5) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected 5 space-separated fields (DOOR ADDRESS PORTS OPENED EXPIRES), found ", f.size()));
  }
  Grant g;
  std::optional<std::string> door = UnescapeDoor(f[0]);
  if (!door) return absl::InvalidArgumentError(absl::StrCat("expected a door name (%XX escapes), found '", f[0], "'"));
  g.door = *std::move(door);
  std::optional<IpAddress> address = IpAddress::Parse(std::string_view(f[1].data(), f[1].size()));
  if (!address) return absl::InvalidArgumentError(absl::StrCat("expected an IP address, found '", f[1], "'"));
  g.address = *address;
  std::optional<std::vector<Knock>> ports = ParsePorts(f[2]);
  if (!ports) {
    return absl::InvalidArgumentError(absl::StrCat("expected ports like 22:tcp,53:udp or -, found '", f[2], "'"));
  }
  g.ports = *std::move(ports);
  std::optional<absl::Time> opened = ParseTimeField(f[3]);
  if (!opened) {
    return absl::InvalidArgumentError(absl::StrCat("expected OPENED as unix nanoseconds, found '", f[3], "'"));
  }
  std::optional<absl::Time> expires = ParseTimeField(f[4]);
  if (!expires) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected EXPIRES as unix nanoseconds or inf, found '", f[4], "'"));
  }
  g.opened = *opened;
  g.expires = *expires;
  return g;
}

// One grant's line of the file, with its newline.
std::string GrantLine(const Grant& g) {
  return absl::StrCat(EscapeDoor(g.door), " ", g.address.ToString(), " ", PortsText(g.ports), " ",
                      TimeText(g.opened), " ", TimeText(g.expires), "\n");
}

std::string Header() { return absl::StrCat(kMagic, " ", kVersion, "\n"); }

}  // namespace

std::string SerializeGrants(const std::vector<Grant>& grants) {
  std::string out = Header();
  for (const Grant& g : grants) out += GrantLine(g);
  return out;
}

absl::StatusOr<ParsedGrants> ParseGrants(const std::string& text, const std::string& file_name) {
  ParsedGrants parsed;
  if (text.empty()) return parsed;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();  // the final newline
  std::map<std::pair<std::string, IpAddress>, int> seen;  // key -> line
  for (size_t i = 0; i < lines.size(); ++i) {
    const int line_no = static_cast<int>(i) + 1;
    const absl::string_view line = lines[i];
    auto error = [&](absl::string_view what) {
      parsed.errors.push_back(absl::StrCat(file_name, ":", line_no, ": ", what));
    };
    if (i == 0) {
      std::vector<absl::string_view> words = absl::StrSplit(line, ' ');
      int version;
      if (words.size() == 2 && words[0] == kMagic && absl::SimpleAtoi(words[1], &version)) {
        if (version != kVersion) {
          return absl::FailedPreconditionError(
              absl::StrCat(file_name, ":1: grant file version ", version, ", this sesame reads version ", kVersion,
                           " (written by a newer sesame?)"));
        }
        continue;
      }
      error(absl::StrCat("expected the header '", kMagic, " ", kVersion, "'"));
      // Not a header: perhaps the header line itself was lost; try it as a grant.
    }
    if (line.empty()) continue;
    absl::StatusOr<Grant> grant = ParseLine(line);
    if (!grant.ok()) {
      error(grant.status().message());
      continue;
    }
    auto [it, inserted] = seen.emplace(std::make_pair(grant->door, grant->address), line_no);
    if (!inserted) {
      error(absl::StrCat("a second grant for door ", grant->door, " and ", grant->address.ToString(),
                         " (the first, on line ", it->second, ", is kept)"));
      continue;
    }
    parsed.grants.push_back(*std::move(grant));
  }
  return parsed;
}

absl::StatusOr<std::unique_ptr<GrantStore>> GrantStore::Open(const std::string& path, OnCorrupt on_corrupt) {
  std::unique_ptr<GrantStore> store(new GrantStore(path));
  absl::StatusOr<std::string> text = ReadSmallRegularFile(path, kMaxFileBytes);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) return store;
    return text.status();
  }
  ASSIGN_OR_RETURN(ParsedGrants parsed, ParseGrants(*text, path));

  absl::MutexLock lock(&store->mu_);
  for (Grant& g : parsed.grants) store->SetLocked(std::move(g));
  if (parsed.errors.empty()) return store;

  if (on_corrupt == OnCorrupt::kRefuse) {
    std::string msg = parsed.errors.front();
    if (parsed.errors.size() > 1) absl::StrAppend(&msg, " (and ", parsed.errors.size() - 1, " more bad lines)");
    absl::StrAppend(&msg, "; refusing to start with a damaged grant file, since a forgotten grant would never be ",
                    "closed: fix or delete the line, or salvage the file (good lines kept, the file moved aside)");
    return absl::DataLossError(msg);
  }

  // Salvage: keep the damaged file for a human, loudly, then carry on with
  // what could be read.
  std::string aside = absl::StrCat(path, ".corrupt-", absl::ToUnixSeconds(absl::Now()));
  for (int n = 1; access(aside.c_str(), F_OK) == 0; ++n) {
    aside = absl::StrCat(path, ".corrupt-", absl::ToUnixSeconds(absl::Now()), "-", n);
  }
  if (rename(path.c_str(), aside.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot move damaged grant file ", path, " to ", aside, ": ",
                                               std::strerror(errno)));
  }
  for (const std::string& e : parsed.errors) LogError(absl::StrCat("grant store: ", e));
  LogError(absl::StrCat("grant store: ", path, " was damaged (", parsed.errors.size(), " bad line(s)); moved to ",
                        aside, "; continuing with the ", store->grants_.size(),
                        " grant(s) that could be read. Grants on the bad lines are NOT tracked: check the firewall "
                        "for addresses they opened."));
  RETURN_IF_ERROR(store->WriteLocked());
  return store;
}

void GrantStore::SetLocked(Grant grant) {
  grant.opened = Normalize(grant.opened);
  grant.expires = Normalize(grant.expires);
  Key key(grant.door, grant.address);
  auto it = grants_.find(key);
  if (it != grants_.end()) {
    expiry_[key.first].erase({it->second.grant.expires, key.second});
  } else {
    it = grants_.emplace(key, Record{}).first;
  }
  expiry_[key.first].emplace(grant.expires, key.second);
  it->second.line = GrantLine(grant);
  it->second.grant = std::move(grant);
}

void GrantStore::EraseLocked(const Key& key) {
  const auto it = grants_.find(key);
  if (it == grants_.end()) return;
  const auto door = expiry_.find(key.first);
  door->second.erase({it->second.grant.expires, key.second});
  if (door->second.empty()) expiry_.erase(door);
  grants_.erase(it);
}

absl::Status GrantStore::WriteLocked() {
  std::string text = Header();
  size_t bytes = text.size();
  for (const auto& [key, record] : grants_) bytes += record.line.size();
  text.reserve(bytes);
  for (const auto& [key, record] : grants_) text += record.line;
  RETURN_IF_ERROR(WriteFileAtomically(path_, text, kFileMode));
  ++writes_;
  dirty_ = false;
  return absl::OkStatus();
}

absl::Status GrantStore::Put(const Grant& grant) {
  if (grant.door.empty()) return absl::InvalidArgumentError("a grant needs a door name");
  Grant g = grant;
  g.opened = Normalize(g.opened);
  g.expires = Normalize(g.expires);
  absl::MutexLock lock(&mu_);
  const Key key(g.door, g.address);
  const auto it = grants_.find(key);
  std::optional<Grant> before;
  if (it != grants_.end()) before = it->second.grant;
  if (before == g && !dirty_) return absl::OkStatus();  // nothing changes
  SetLocked(std::move(g));
  const absl::Status written = WriteLocked();
  if (!written.ok()) {
    if (before.has_value()) {
      SetLocked(*std::move(before));
    } else {
      EraseLocked(key);
    }
  }
  return written;
}

absl::Status GrantStore::Remove(const std::string& door, const IpAddress& address) {
  absl::MutexLock lock(&mu_);
  const Key key(door, address);
  const auto it = grants_.find(key);
  if (it == grants_.end()) return dirty_ ? WriteLocked() : absl::OkStatus();
  Grant before = it->second.grant;
  EraseLocked(key);
  const absl::Status written = WriteLocked();
  if (!written.ok()) SetLocked(std::move(before));
  return written;
}

void GrantStore::Stage(const Grant& grant) {
  if (grant.door.empty()) return;
  absl::MutexLock lock(&mu_);
  const auto it = grants_.find(Key(grant.door, grant.address));
  if (it != grants_.end()) {
    Grant normalised = grant;
    normalised.opened = Normalize(normalised.opened);
    normalised.expires = Normalize(normalised.expires);
    if (it->second.grant == normalised) return;
  }
  SetLocked(grant);
  dirty_ = true;
}

void GrantStore::StageRemove(const std::string& door, const IpAddress& address) {
  absl::MutexLock lock(&mu_);
  const Key key(door, address);
  if (grants_.find(key) == grants_.end()) return;
  EraseLocked(key);
  dirty_ = true;
}

absl::Status GrantStore::Sync() {
  absl::MutexLock lock(&mu_);
  return dirty_ ? WriteLocked() : absl::OkStatus();
}

bool GrantStore::dirty() const {
  absl::MutexLock lock(&mu_);
  return dirty_;
}

std::optional<Grant> GrantStore::Find(const std::string& door, const IpAddress& address) const {
  absl::MutexLock lock(&mu_);
  auto it = grants_.find(Key(door, address));
  if (it == grants_.end()) return std::nullopt;
  return it->second.grant;
}

std::vector<Grant> GrantStore::All() const {
  absl::MutexLock lock(&mu_);
  std::vector<Grant> out;
  out.reserve(grants_.size());
  for (const auto& [key, record] : grants_) out.push_back(record.grant);
  return out;
}

std::vector<Grant> GrantStore::Due(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  std::vector<Grant> out;
  for (const auto& [door, by_expiry] : expiry_) {  // doors in order
    const size_t first = out.size();
    for (const auto& [expires, address] : by_expiry) {
      if (expires > now) break;
      out.push_back(grants_.at(Key(door, address)).grant);
    }
    std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
              [](const Grant& a, const Grant& b) { return a.address < b.address; });
  }
  return out;
}

absl::Time GrantStore::NextExpiry() const {
  absl::MutexLock lock(&mu_);
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [door, by_expiry] : expiry_) next = std::min(next, by_expiry.begin()->first);
  return next;
}

size_t GrantStore::size() const {
  absl::MutexLock lock(&mu_);
  return grants_.size();
}

std::map<std::string, size_t> GrantStore::SizeByDoor() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, size_t> out;
  for (const auto& [door, by_expiry] : expiry_) out.emplace(door, by_expiry.size());
  return out;
}

std::optional<Grant> GrantStore::FirstToExpire(const std::string& door) const {
  absl::MutexLock lock(&mu_);
  const auto it = expiry_.find(door);
  if (it == expiry_.end()) return std::nullopt;
  return grants_.at(Key(door, it->second.begin()->second)).grant;
}

uint64_t GrantStore::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

}  // namespace sesame
