#include "agent/managed/audit_spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace sesame {
namespace {

constexpr char kMagic[] = "SSPOOL1\n";
constexpr size_t kMagicSize = 8;
constexpr size_t kHeaderSize = 8;                 // length + CRC
constexpr uint32_t kMaxPayload = 4 * 1024 * 1024;  // far above any message
constexpr size_t kCompactAfter = 256;

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string Frame(char type, const std::string& data) {
  std::string payload;
  payload.reserve(data.size() + 1);
  payload.push_back(type);
  payload.append(data);
  std::string out;
  out.reserve(kHeaderSize + payload.size());
  PutU32(&out, static_cast<uint32_t>(payload.size()));
  PutU32(&out, Crc32(payload.data(), payload.size()));
  out.append(payload);
  return out;
}

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

uint32_t Crc32(const char* data, size_t size) {
  static const std::array<uint32_t, 256> kTable = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = kTable[(c ^ static_cast<unsigned char>(data[i])) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

AuditSpool::AuditSpool(std::string path, uint64_t max_bytes) : path_(std::move(path)), max_bytes_(max_bytes) {
  absl::BitGen random;
  run_ = absl::StrFormat("%016x", absl::Uniform<uint64_t>(random));
}

AuditSpool::~AuditSpool() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<std::unique_ptr<AuditSpool>> AuditSpool::Open(const std::string& path, uint64_t max_bytes) {
  if (max_bytes < 4096) return absl::InvalidArgumentError("spool: a size limit of at least 4096 bytes is needed");
  std::unique_ptr<AuditSpool> spool(new AuditSpool(path, max_bytes));
  RETURN_IF_ERROR(spool->Load());
  if (spool->file_bytes_ > max_bytes) {
    LogWarning(absl::StrCat("spool ", path, ": ", spool->file_bytes_, " bytes, above its limit of ", max_bytes,
                            "; kept whole, new scanner notices wait until it drains"));
  }
  return spool;
}

SpoolClass AuditSpool::ClassOf(const v1::AgentMessage& message) {
  if (message.has_scanner_seen()) return SpoolClass::kNotice;
  if (message.has_knock_matched()) return SpoolClass::kConsumption;
  return SpoolClass::kRecord;
}

void AuditSpool::AddPending(v1::AgentMessage message, uint64_t bytes, bool notice) {
  const uint64_t order = ++order_;
  index_[message.id()] = order;
  pending_bytes_ += bytes;
  if (notice) ++pending_notices_;
  pending_.emplace(order, Entry{std::move(message), bytes, notice});
}

void AuditSpool::ErasePending(std::map<uint64_t, Entry>::iterator it) {
  pending_bytes_ -= it->second.bytes;
  if (it->second.notice) --pending_notices_;
  index_.erase(it->second.message.id());
  pending_.erase(it);
}

absl::Status AuditSpool::Load() {
  absl::StatusOr<std::string> read = ReadFileToString(path_);
  std::string text;
  if (read.ok()) {
    text = *std::move(read);
  } else if (!absl::IsNotFound(read.status())) {
    return absl::Status(read.status().code(), absl::StrCat("spool ", path_, ": ", read.status().message()));
  }
  if (text.empty()) {
    RETURN_IF_ERROR(WriteFileAtomically(path_, std::string(kMagic, kMagicSize), 0600));
    file_bytes_ = kMagicSize;
    return OpenForAppend();
  }
  if (text.size() < kMagicSize || text.compare(0, kMagicSize, kMagic, kMagicSize) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("spool ", path_, ": not a sesame spool of version 1 (unexpected header); move it aside"));
  }

  size_t at = kMagicSize;
  bool confirmations = false;
  std::string bad;  // why the record at `at` is not good
  while (at < text.size()) {
    if (text.size() - at < kHeaderSize) {
      bad = "torn record header";
      break;
    }
    const uint32_t length = GetU32(text.data() + at);
    const uint32_t crc = GetU32(text.data() + at + 4);
    if (length == 0 || length > kMaxPayload) {
      bad = absl::StrCat("record length ", length);
      break;
    }
    if (text.size() - at - kHeaderSize < length) {
      bad = "torn record";
      break;
    }
    const char* payload = text.data() + at + kHeaderSize;
    if (Crc32(payload, length) != crc) {
      bad = "checksum mismatch";
      break;
    }
    const std::string data(payload + 1, length - 1);
    if (payload[0] == 'M') {
      v1::AgentMessage message;
      if (!message.ParseFromString(data) || message.id().empty()) {
        bad = "unreadable message";
        break;
      }
      if (!index_.contains(message.id())) {
        const bool notice = ClassOf(message) == SpoolClass::kNotice;
        AddPending(std::move(message), kHeaderSize + length, notice);
      }
    } else if (payload[0] == 'C') {
      confirmations = true;
      for (absl::string_view id : absl::StrSplit(data, '\n', absl::SkipEmpty())) {
        auto it = index_.find(id);
        if (it == index_.end()) continue;
        ErasePending(pending_.find(it->second));
      }
    } else {
      bad = absl::StrCat("unknown record type ", static_cast<int>(static_cast<unsigned char>(payload[0])));
      break;
    }
    at += kHeaderSize + length;
  }
  file_bytes_ = text.size();

  if (!bad.empty()) {
    // A torn tail is the normal trace of a crash during an append that was
    // never acknowledged. Anything else means the disk lied: keep a copy.
    const bool torn = bad == "torn record" || bad == "torn record header";
    if (torn) {
      LogWarning(absl::StrCat("spool ", path_, ": dropping a torn last record at byte ", at,
                              " (an append interrupted by a crash)"));
    } else {
      const std::string aside = absl::StrCat(path_, ".corrupt-", absl::ToUnixSeconds(absl::Now()));
      const absl::Status copied = WriteFileAtomically(aside, text, 0600);
      LogError(absl::StrCat("spool ", path_, ": ", bad, " at byte ", at, "; kept the ", pending_.size(),
                            " good record(s) before it, the whole file is in ",
                            copied.ok() ? aside : absl::StrCat("(copy failed: ", copied.message(), ")")));
    }
    return Compact();
  }
  if (confirmations) return Compact();  // start small
  return OpenForAppend();
}

absl::Status AuditSpool::OpenForAppend() {
  if (fd_ >= 0) close(fd_);
  fd_ = open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) return Errno(absl::StrCat("spool ", path_));
  return absl::OkStatus();
}

absl::Status AuditSpool::Compact() {
  std::string text(kMagic, kMagicSize);
  uint64_t bytes = 0;
  for (auto& [order, entry] : pending_) {
    const size_t before = text.size();
    text += Frame('M', entry.message.SerializeAsString());
    entry.bytes = text.size() - before;
    bytes += entry.bytes;
  }
  pending_bytes_ = bytes;
  RETURN_IF_ERROR(WriteFileAtomically(path_, text, 0600));
  file_bytes_ = text.size();
  confirmed_since_compaction_ = 0;
  unsynced_ = false;
  return OpenForAppend();
}

std::string AuditSpool::NewId() { return absl::StrCat(run_, "/", ++next_); }

absl::Status AuditSpool::WriteRecord(char type, const std::string& data, bool sync) {
  const std::string record = Frame(type, data);
  size_t done = 0;
  while (done < record.size()) {
    const ssize_t n = write(fd_, record.data() + done, record.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const absl::Status error = Errno(absl::StrCat("spool ", path_, ": write"));
      // Leave no partial record behind for the next append to follow.
      if (done > 0 && ftruncate(fd_, static_cast<off_t>(file_bytes_)) != 0) {
        LogError(absl::StrCat("spool ", path_, ": cannot cut off a partial record: ", std::strerror(errno)));
      }
      return error;
    }
    done += static_cast<size_t>(n);
  }
  file_bytes_ += record.size();
  if (!sync) {
    unsynced_ = true;
    return absl::OkStatus();
  }
  if (fdatasync(fd_) != 0) return Errno(absl::StrCat("spool ", path_, ": fdatasync"));
  unsynced_ = false;
  return absl::OkStatus();
}

absl::Status AuditSpool::Sync() {
  if (!unsynced_) return absl::OkStatus();
  if (fdatasync(fd_) != 0) return Errno(absl::StrCat("spool ", path_, ": fdatasync"));
  unsynced_ = false;
  return absl::OkStatus();
}

absl::Status AuditSpool::Append(const v1::AgentMessage& message, SpoolClass cls, bool sync) {
  if (message.id().empty() || message.id().size() > 64) {
    return absl::InvalidArgumentError("spool: a message needs an id of 1 to 64 bytes");
  }
  if (index_.contains(message.id())) return absl::OkStatus();
  const std::string data = message.SerializeAsString();
  const uint64_t bytes = kHeaderSize + 1 + data.size();
  RETURN_IF_ERROR(MakeRoom(cls, bytes));
  RETURN_IF_ERROR(WriteRecord('M', data, sync));
  AddPending(message, bytes, cls == SpoolClass::kNotice);
  return absl::OkStatus();
}

absl::Status AuditSpool::MakeRoom(SpoolClass cls, uint64_t bytes) {
  if (file_bytes_ + bytes <= max_bytes_) return absl::OkStatus();
  const uint64_t live = kMagicSize + pending_bytes_;
  if (live + bytes <= max_bytes_) return Compact();  // confirmed records made the difference
  auto full = [&](const char* what) {
    return absl::ResourceExhaustedError(absl::StrCat("spool ", path_, " at its limit (", file_bytes_, " of ",
                                                     max_bytes_, " bytes): ", what, " not written"));
  };
  if (cls == SpoolClass::kNotice) {
    ++counters_.notices_refused;
    return full("scanner notice");
  }
  if (pending_notices_ > 0) {
    const size_t shed = pending_notices_;
    for (auto it = pending_.begin(); it != pending_.end();) {
      auto next = std::next(it);
      if (it->second.notice) ErasePending(it);
      it = next;
    }
    counters_.notices_shed += shed;
    LogWarning(absl::StrCat("spool ", path_, " at its limit (", max_bytes_, " bytes): ", shed,
                            " scanner notice(s) dropped to keep room for knocks and grants"));
    RETURN_IF_ERROR(Compact());
  } else if (live < file_bytes_) {
    RETURN_IF_ERROR(Compact());
  }
  if (file_bytes_ + bytes <= max_bytes_) return absl::OkStatus();
  if (cls == SpoolClass::kConsumption) {
    ++counters_.over_limit;
    return absl::OkStatus();
  }
  ++counters_.records_refused;
  return full("record");
}

absl::Status AuditSpool::Confirm(const std::vector<std::string>& ids) {
  std::vector<std::string> dropped;
  for (const std::string& id : ids) {
    auto it = index_.find(id);
    if (it == index_.end()) continue;
    ErasePending(pending_.find(it->second));
    dropped.push_back(id);
  }
  if (dropped.empty()) return absl::OkStatus();
  confirmed_since_compaction_ += dropped.size();
  const std::string record = absl::StrJoin(dropped, "\n");
  if ((confirmed_since_compaction_ >= kCompactAfter && confirmed_since_compaction_ > pending_.size()) ||
      file_bytes_ + kHeaderSize + 1 + record.size() > max_bytes_) {
    return Compact();  // also what keeps confirmations within the limit
  }
  return WriteRecord('C', record, /*sync=*/false);
}

std::vector<const v1::AgentMessage*> AuditSpool::Pending() const {
  std::vector<const v1::AgentMessage*> out;
  out.reserve(pending_.size());
  for (const auto& [order, entry] : pending_) out.push_back(&entry.message);
  return out;
}

}  // namespace sesame
