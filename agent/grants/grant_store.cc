#include "agent/grants/grant_store.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

std::string PortsText(const std::vector<Knock>& ports) {
  if (ports.empty()) return "-";
  return absl::StrJoin(ports, ",", [](std::string* out, const Knock& k) { out->append(KnockToString(k)); });
}

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

}  // namespace

std::string SerializeGrants(const std::vector<Grant>& grants) {
  std::string out = absl::StrCat(kMagic, " ", kVersion, "\n");
  for (const Grant& g : grants) {
    absl::StrAppend(&out, EscapeDoor(g.door), " ", g.address.ToString(), " ", PortsText(g.ports), " ",
                    TimeText(g.opened), " ", TimeText(g.expires), "\n");
  }
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
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) return store;
    return text.status();
  }
  ASSIGN_OR_RETURN(ParsedGrants parsed, ParseGrants(*text, path));

  absl::MutexLock lock(&store->mu_);
  for (Grant& g : parsed.grants) {
    Key key(g.door, g.address);
    store->grants_.emplace(std::move(key), std::move(g));
  }
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
  RETURN_IF_ERROR(store->Commit(store->grants_));
  return store;
}

absl::Status GrantStore::Commit(std::map<Key, Grant> next) {
  std::vector<Grant> sorted;
  sorted.reserve(next.size());
  for (const auto& [key, grant] : next) sorted.push_back(grant);
  RETURN_IF_ERROR(WriteFileAtomically(path_, SerializeGrants(sorted), kFileMode));
  grants_ = std::move(next);
  return absl::OkStatus();
}

absl::Status GrantStore::Put(const Grant& grant) {
  if (grant.door.empty()) return absl::InvalidArgumentError("a grant needs a door name");
  Grant g = grant;
  g.opened = Normalize(g.opened);
  g.expires = Normalize(g.expires);
  absl::MutexLock lock(&mu_);
  Key key(g.door, g.address);
  auto it = grants_.find(key);
  if (it != grants_.end() && it->second == g) return absl::OkStatus();  // nothing changes
  std::map<Key, Grant> next = grants_;
  next.insert_or_assign(std::move(key), std::move(g));
  return Commit(std::move(next));
}

absl::Status GrantStore::Remove(const std::string& door, const IpAddress& address) {
  absl::MutexLock lock(&mu_);
  if (grants_.find(Key(door, address)) == grants_.end()) return absl::OkStatus();
  std::map<Key, Grant> next = grants_;
  next.erase(Key(door, address));
  return Commit(std::move(next));
}

std::optional<Grant> GrantStore::Find(const std::string& door, const IpAddress& address) const {
  absl::MutexLock lock(&mu_);
  auto it = grants_.find(Key(door, address));
  if (it == grants_.end()) return std::nullopt;
  return it->second;
}

std::vector<Grant> GrantStore::All() const {
  absl::MutexLock lock(&mu_);
  std::vector<Grant> out;
  out.reserve(grants_.size());
  for (const auto& [key, grant] : grants_) out.push_back(grant);
  return out;
}

std::vector<Grant> GrantStore::Due(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  std::vector<Grant> out;
  for (const auto& [key, grant] : grants_) {
    if (grant.expires <= now) out.push_back(grant);
  }
  return out;
}

size_t GrantStore::size() const {
  absl::MutexLock lock(&mu_);
  return grants_.size();
}

}  // namespace sesame
