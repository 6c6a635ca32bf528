#include "controller/audit/audit_head.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "controller/audit/audit_export.h"

namespace sesame::controller {
namespace {

// A value of a flat JSON object: its kind and its text (strings unescaped).
struct JsonValue {
  enum Kind { kString, kNumber, kLiteral } kind;
  std::string text;
};

// Reads one flat JSON object (string, whole-number and literal values; no
// nesting) from text at pos, which is at '{'. On success pos is just past
// the '}'; on error pos is where the problem is.
class FlatJsonObjectReader {
 public:
  FlatJsonObjectReader(std::string_view text, size_t pos) : text_(text), pos_(pos) {}

  absl::StatusOr<std::map<std::string, JsonValue>> Read() {
    std::map<std::string, JsonValue> out;
    ++pos_;  // '{'
    SkipSpace();
    if (Peek() == '}') {
      ++pos_;
      return out;
    }
    for (;;) {
      SkipSpace();
      if (Peek() != '"') return Error("expected a key in double quotes");
      absl::StatusOr<std::string> key = String();
      if (!key.ok()) return key.status();
      SkipSpace();
      if (Peek() != ':') return Error(absl::StrCat("expected ':' after \"", *key, "\""));
      ++pos_;
      SkipSpace();
      absl::StatusOr<JsonValue> value = Value();
      if (!value.ok()) return value.status();
      if (!out.emplace(*key, *std::move(value)).second) return Error(absl::StrCat("key \"", *key, "\" twice"));
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() == '}') {
        ++pos_;
        return out;
      }
      return Error("expected ',' or '}'");
    }
  }

  size_t pos() const { return pos_; }

 private:
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void SkipSpace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  absl::Status Error(std::string_view what) const {
    if (pos_ >= text_.size())
      return absl::InvalidArgumentError(absl::StrCat("the object ends early: ", std::string(what)));
    return absl::InvalidArgumentError(std::string(what));
  }

  absl::StatusOr<std::string> String() {
    ++pos_;  // '"'
    std::string out;
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) return Error("a control character inside a string");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) break;
      // JSON's one-letter escapes and what they stand for; then \uXXXX.
      static constexpr std::string_view kLetters = "\"\\/bfnrt";
      static constexpr std::string_view kMeanings = "\"\\/\b\f\n\r\t";
      const char e = text_[pos_++];
      if (const size_t at = kLetters.find(e); at != std::string_view::npos) {
        out.push_back(kMeanings[at]);
        continue;
      }
      if (e != 'u') return Error(absl::StrCat("unknown escape \\", std::string(1, e)));
      unsigned value = 0;
      for (int i = 0; i < 4; ++i) {
        const unsigned char h = pos_ < text_.size() ? static_cast<unsigned char>(text_[pos_++]) : 0;
        if (!absl::ascii_isxdigit(h)) return Error("expected \\uXXXX");
        value =
            value * 16 + static_cast<unsigned>(absl::ascii_isdigit(h) ? h - '0' : absl::ascii_tolower(h) - 'a' + 10);
      }
      if (value >= 0x80) return Error("a \\u escape beyond ASCII (heads are ASCII)");
      out.push_back(static_cast<char>(value));
    }
    return Error("a string without its closing '\"'");
  }

  absl::StatusOr<JsonValue> Value() {
    const char c = Peek();
    if (c == '"') {
      absl::StatusOr<std::string> s = String();
      if (!s.ok()) return s.status();
      return JsonValue{JsonValue::kString, *std::move(s)};
    }
    if (c == '{' || c == '[') return Error("a nested object or array (a head is flat)");
    const size_t start = pos_;
    while (pos_ < text_.size() && (absl::ascii_isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '-' ||
                                   text_[pos_] == '+' || text_[pos_] == '.')) {
      ++pos_;
    }
    const std::string word(text_.substr(start, pos_ - start));
    if (word == "true" || word == "false" || word == "null") return JsonValue{JsonValue::kLiteral, word};
    if (!word.empty() && word.find_first_not_of("0123456789") == std::string::npos) {
      return JsonValue{JsonValue::kNumber, word};
    }
    pos_ = start;
    return Error(word.empty()
                     ? "expected a value"
                     : absl::StrCat("\"", word, "\": expected a whole number, a ", "string, true, false or null"));
  }

  std::string_view text_;
  size_t pos_;
};

absl::StatusOr<std::string> StringField(const std::map<std::string, JsonValue>& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return absl::InvalidArgumentError(absl::StrCat("no \"", key, "\""));
  if (it->second.kind != JsonValue::kString) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\": expected a string"));
  }
  return it->second.text;
}

absl::StatusOr<AuditSignedHead> HeadFromObject(const std::map<std::string, JsonValue>& object) {
  AuditSignedHead head;
  AuditCheckpoint& c = head.checkpoint;
  auto count = object.find("record_count");
  if (count == object.end()) return absl::InvalidArgumentError("no \"record_count\"");
  if (count->second.kind != JsonValue::kNumber || count->second.text.size() > 19) {
    return absl::InvalidArgumentError("\"record_count\": expected a whole number");
  }
  c.record_count = std::stoull(count->second.text);

  absl::StatusOr<std::string> text = StringField(object, "chain_hash");
  if (!text.ok()) return text.status();
  absl::StatusOr<ChainHash> hash = HashFromHex(*text);
  if (!hash.ok()) return absl::InvalidArgumentError(absl::StrCat("\"chain_hash\": ", hash.status().message()));
  c.chain_hash = *hash;

  text = StringField(object, "time");
  if (!text.ok()) return text.status();
  absl::StatusOr<absl::Time> time = ParseAuditTime(*text);
  if (!time.ok()) return absl::InvalidArgumentError(absl::StrCat("\"time\": ", time.status().message()));
  c.time = *time;

  text = StringField(object, "signature");
  if (!text.ok()) return text.status();
  absl::StatusOr<std::string> signature = BytesFromHex(*text);
  if (!signature.ok() || signature->size() != 64) {
    return absl::InvalidArgumentError("\"signature\": expected 128 hex digits (Ed25519)");
  }
  c.signature = *std::move(signature);

  if (object.count("key_id") != 0) {
    text = StringField(object, "key_id");
    if (!text.ok()) return text.status();
    absl::StatusOr<std::string> key_id = BytesFromHex(*text);
    if (!key_id.ok() || key_id->size() != 32) {
      return absl::InvalidArgumentError("\"key_id\": expected 64 hex digits (SHA-256 of the public key)");
    }
    head.key_id = BytesToHex(*key_id);  // lower case, as KeyId() prints it
  }
  return head;
}

size_t CountLines(std::string_view text, size_t from, size_t to) {
  size_t n = 0;
  for (size_t i = from; i < to && i < text.size(); ++i) n += text[i] == '\n' ? 1 : 0;
  return n;
}

bool OnlySpace(std::string_view s) { return s.find_first_not_of(" \t\r") == std::string_view::npos; }

}  // namespace

std::string FormatAuditHeadJson(const AuditCheckpoint& c, std::string_view key_id) {
  std::string out =
      absl::StrCat("{\"record_count\": ", c.record_count, ", \"chain_hash\": \"", HashToHex(c.chain_hash),
                   "\", \"time\": \"", FormatAuditTime(c.time), "\", \"signature\": \"", BytesToHex(c.signature), "\"");
  if (!key_id.empty()) absl::StrAppend(&out, ", \"key_id\": \"", std::string(key_id), "\"");
  out += "}";
  return out;
}

std::string FormatAuditCheckpointLogLine(const AuditCheckpoint& c, std::string_view key_id) {
  return absl::StrCat(kAuditCheckpointLogEvent, " ", FormatAuditHeadJson(c, key_id));
}

absl::StatusOr<std::vector<AuditSignedHead>> ParseAuditHeads(std::string_view text, std::string_view file_view) {
  const std::string file_name(file_view);
  const std::string marker = absl::StrCat(kAuditCheckpointLogEvent, " ");
  std::vector<AuditSignedHead> heads;
  size_t pos = 0;
  size_t line_number = 1;
  while (pos < text.size()) {
    size_t line_end = text.find('\n', pos);
    if (line_end == std::string_view::npos) line_end = text.size();
    const std::string_view line = text.substr(pos, line_end - pos);
    const size_t first = line.find_first_not_of(" \t\r");
    size_t object_start = std::string_view::npos;
    std::string_view scope;  // where the object must lie: the rest of the file, or this line
    if (first != std::string_view::npos && line[first] == '{') {
      object_start = pos + first;
      scope = text;
    } else if (const size_t at = line.find(marker); at != std::string_view::npos) {
      const size_t brace = line.find_first_not_of(' ', at + marker.size());
      if (brace == std::string_view::npos || line[brace] != '{') {
        return absl::InvalidArgumentError(absl::StrCat(file_name, ":", line_number, ": expected a JSON object after \"",
                                                       kAuditCheckpointLogEvent, "\""));
      }
      object_start = pos + brace;
      scope = text.substr(0, line_end);
    }
    if (object_start == std::string_view::npos) {  // not a head: ignored
      pos = line_end + 1;
      ++line_number;
      continue;
    }
    FlatJsonObjectReader reader(scope, object_start);
    absl::StatusOr<std::map<std::string, JsonValue>> object = reader.Read();
    const size_t end = reader.pos();
    const size_t end_line = line_number + CountLines(text, pos, end);
    if (!object.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(file_name, ":", end_line, ": head: ", object.status().message()));
    }
    absl::StatusOr<AuditSignedHead> head = HeadFromObject(*object);
    if (!head.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(file_name, ":", line_number, ": head: ", head.status().message()));
    }
    head->source = absl::StrCat(file_name, ":", line_number);
    heads.push_back(*std::move(head));
    // Nothing else on the line where the object ends.
    size_t rest_end = text.find('\n', end);
    if (rest_end == std::string_view::npos) rest_end = text.size();
    if (!OnlySpace(text.substr(end, rest_end - end))) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_name, ":", end_line, ": head: text after the object's '}': expected one head a line"));
    }
    pos = rest_end + 1;
    line_number = end_line + 1;
  }
  if (heads.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": no head: expected a JSON object as `sesamectl audit ",
                                                   "head -o json` prints, or log lines \"", kAuditCheckpointLogEvent,
                                                   " {...}\""));
  }
  return heads;
}

absl::StatusOr<std::vector<AuditSignedHead>> LoadAuditHeads(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSmallRegularFile(path, kMaxAuditHeadFileBytes);
  if (absl::IsOutOfRange(text.status())) {
    return absl::InvalidArgumentError(
        absl::StrCat(text.status().message(), ": more than a head file may hold; keep the latest heads only"));
  }
  if (!text.ok()) return text.status();
  return ParseAuditHeads(*text, path);
}

}  // namespace sesame::controller
