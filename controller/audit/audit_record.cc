#include "controller/audit/audit_record.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace sesame::controller {
namespace {

constexpr std::string_view kRecordMagic = "sesame-audit-record-v1";
constexpr std::string_view kCheckpointMagic = "sesame-audit-checkpoint-v1";

void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void PutU64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void PutString(std::string& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::Time TruncateToMicros(absl::Time t) { return absl::FromUnixMicros(absl::ToUnixMicros(t)); }

std::string CanonicalRecordBytes(uint64_t index, const AuditEntry& e) {
  std::string out;
  out.reserve(kRecordMagic.size() + 32 + e.who.size() + e.what.size() + e.where.size() + e.origin.size() +
              e.details.size() * 24);
  out.append(kRecordMagic);
  PutU64(out, index);
  PutU64(out, static_cast<uint64_t>(absl::ToUnixMicros(e.time)));
  PutString(out, e.who);
  PutString(out, e.what);
  PutString(out, e.where);
  PutString(out, e.origin);
  PutU32(out, static_cast<uint32_t>(e.details.size()));
  // std::map orders std::string keys bytewise (char_traits<char>::compare is
  // memcmp-like, unsigned), which is the canonical order.
  for (const auto& [key, value] : e.details) {
    PutString(out, key);
    PutString(out, value);
  }
  return out;
}

ChainHash NextChainHash(const ChainHash& prev, uint64_t index, const AuditEntry& entry) {
  std::string input(reinterpret_cast<const char*>(prev.data()), prev.size());
  input += CanonicalRecordBytes(index, entry);
  ChainHash out;
  unsigned int size = 0;
  // SHA-256 through EVP cannot fail short of memory exhaustion; a chain with
  // a wrong hash in it would be worse than stopping.
  if (EVP_Digest(input.data(), input.size(), out.data(), &size, EVP_sha256(), nullptr) != 1 || size != out.size()) {
    std::abort();
  }
  return out;
}

AuditRecord SealRecord(const AuditHead& head, AuditEntry entry) {
  AuditRecord r;
  r.index = head.record_count;
  entry.time = TruncateToMicros(entry.time);
  r.prev_hash = head.hash;
  r.hash = NextChainHash(head.hash, r.index, entry);
  r.entry = std::move(entry);
  return r;
}

std::string CanonicalCheckpointBytes(uint64_t record_count, const ChainHash& chain_hash, absl::Time time) {
  std::string out;
  out.append(kCheckpointMagic);
  PutU64(out, record_count);
  out.append(reinterpret_cast<const char*>(chain_hash.data()), chain_hash.size());
  PutU64(out, static_cast<uint64_t>(absl::ToUnixMicros(time)));
  return out;
}

std::string EscapeField(std::string_view raw) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(raw.size());
  for (unsigned char c : raw) {
    if (c < 0x20 || c == 0x7f || c == '%' || c == '=' || c == ';') {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 0xf]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

absl::StatusOr<std::string> UnescapeField(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '%') {
      const bool complete = i + 2 < text.size();
      const int hi = complete ? HexValue(text[i + 1]) : -1;
      const int lo = complete ? HexValue(text[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(absl::StrCat("bad escape at offset ", i, ": expected %XX"));
      }
      out.push_back(static_cast<char>(hi << 4 | lo));
      i += 2;
    } else if (c < 0x20 || c == 0x7f || c == '=' || c == ';') {
      return absl::InvalidArgumentError(absl::StrCat("unescaped control or separator byte at offset ", i));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::string DetailsToText(const std::map<std::string, std::string>& details) {
  std::string out;
  for (const auto& [key, value] : details) {
    if (!out.empty()) out.push_back(';');
    out += EscapeField(key);
    out.push_back('=');
    out += EscapeField(value);
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> DetailsFromText(std::string_view text) {
  std::map<std::string, std::string> details;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(';', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view pair = text.substr(start, end - start);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("detail \"", std::string(pair), "\": expected key=value"));
    }
    absl::StatusOr<std::string> key = UnescapeField(pair.substr(0, eq));
    if (!key.ok()) return key.status();
    absl::StatusOr<std::string> value = UnescapeField(pair.substr(eq + 1));
    if (!value.ok()) return value.status();
    if (!details.emplace(std::move(*key), std::move(*value)).second) {
      return absl::InvalidArgumentError(absl::StrCat("detail key \"", std::string(pair.substr(0, eq)),
                                                     "\" appears twice"));
    }
    start = end + 1;
    if (end + 1 == text.size()) return absl::InvalidArgumentError("details end with ';': expected key=value");
  }
  return details;
}

std::string BytesToHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

absl::StatusOr<std::string> BytesFromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("hex text of odd length");
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = HexValue(hex[i]);
    const int lo = HexValue(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(absl::StrCat("not a hex digit at offset ", i));
    }
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

std::string HashToHex(const ChainHash& hash) {
  return BytesToHex(std::string_view(reinterpret_cast<const char*>(hash.data()), hash.size()));
}

absl::StatusOr<ChainHash> HashFromHex(std::string_view hex) {
  if (hex.size() != 64) return absl::InvalidArgumentError("expected a SHA-256 hash of 64 hex digits");
  absl::StatusOr<std::string> bytes = BytesFromHex(hex);
  if (!bytes.ok()) return bytes.status();
  ChainHash out;
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return out;
}

}  // namespace sesame::controller
