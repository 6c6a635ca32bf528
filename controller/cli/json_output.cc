// sesamectl's JSON: what scripts read, so it says things the way operators
// write them rather than the way protobuf's JSON mapping does. Every message
// of the admin API is printed through reflection with these rules:
//
// - field names as in the .proto (snake_case);
// - numbers as JSON numbers (protobuf prints 64-bit integers as strings),
//   doubles in the shortest text that reads back the same;
// - enums in lower case without their type's prefix: PROTOCOL_TCP is "tcp",
//   SEQUENCE_STATE_BURNT "burnt";
// - google.protobuf.Timestamp as RFC 3339 in UTC ("2026-12-03T23:08:40Z",
//   fractions of a second only when there are), Duration as seconds with a
//   unit ("30s", "1.5s");
// - bytes (hashes, signatures) as lower-case hex;
// - every scalar and every list is always there (0, false, "", []), an unset
//   message is null, and only the chosen member of a oneof appears: one
//   command's objects always have the same keys.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "controller/cli/output.h"

namespace sesame::controller::cli {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// "SequenceState" -> "SEQUENCE_STATE_".
std::string EnumPrefix(const std::string& type_name) {
  std::string prefix;
  for (size_t i = 0; i < type_name.size(); ++i) {
    const char c = type_name[i];
    if (i > 0 && std::isupper(static_cast<unsigned char>(c))) prefix.push_back('_');
    prefix.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return prefix + "_";
}

std::string EnumText(const google::protobuf::EnumValueDescriptor* value) {
  std::string name = value->name();
  const std::string prefix = EnumPrefix(value->type()->name());
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string SecondsText(int64_t seconds, int32_t nanos) {
  if (nanos == 0) return absl::StrCat(seconds);
  std::string fraction = absl::StrCat(std::abs(nanos) + 1000000000);  // "1500000000"
  fraction = fraction.substr(1);
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  return absl::StrCat(seconds < 0 || nanos < 0 ? "-" : "", std::llabs(seconds), ".", fraction);
}

class JsonWriter {
 public:
  explicit JsonWriter(bool one_line) : one_line_(one_line) {}

  std::string Write(const Message& m) {
    Object(m, 0);
    return std::move(out_);
  }

 private:
  void NewLine(int depth) {
    if (one_line_) return;
    out_.push_back('\n');
    out_.append(static_cast<size_t>(depth) * 2, ' ');
  }
  const char* KeySeparator() const { return one_line_ ? ":" : ": "; }

  void Object(const Message& m, int depth) {
    const Descriptor* d = m.GetDescriptor();
    if (d->full_name() == "google.protobuf.Timestamp") {
      const auto& t = static_cast<const google::protobuf::Timestamp&>(m);
      const absl::Time time = absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
      out_ += JsonQuote(absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", time, absl::UTCTimeZone()));
      return;
    }
    if (d->full_name() == "google.protobuf.Duration") {
      const auto& du = static_cast<const google::protobuf::Duration&>(m);
      out_ += JsonQuote(absl::StrCat(SecondsText(du.seconds(), du.nanos()), "s"));
      return;
    }
    const Reflection* r = m.GetReflection();
    out_.push_back('{');
    bool first = true;
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      if (f->real_containing_oneof() != nullptr && !r->HasField(m, f)) continue;
      out_ += first ? "" : ",";
      first = false;
      NewLine(depth + 1);
      out_ += JsonQuote(f->name());
      out_ += KeySeparator();
      if (f->is_map()) {
        Map(m, f, depth + 1);
      } else if (f->is_repeated()) {
        out_.push_back('[');
        const int n = r->FieldSize(m, f);
        for (int j = 0; j < n; ++j) {
          if (j > 0) out_ += ",";
          NewLine(depth + 2);
          Value(m, f, j, depth + 2);
        }
        if (n > 0) NewLine(depth + 1);
        out_.push_back(']');
      } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !r->HasField(m, f)) {
        out_ += "null";
      } else {
        Value(m, f, -1, depth + 1);
      }
    }
    if (!first) NewLine(depth);
    out_.push_back('}');
  }

  // map<string, string> and the like: an object keyed by the entries' keys.
  void Map(const Message& m, const FieldDescriptor* f, int depth) {
    const Reflection* r = m.GetReflection();
    const int n = r->FieldSize(m, f);
    out_.push_back('{');
    for (int j = 0; j < n; ++j) {
      const Message& entry = r->GetRepeatedMessage(m, f, j);
      const FieldDescriptor* key = entry.GetDescriptor()->map_key();
      const FieldDescriptor* value = entry.GetDescriptor()->map_value();
      if (j > 0) out_ += ",";
      NewLine(depth + 1);
      std::string key_text;
      Value(entry, key, -1, depth + 1, &key_text);
      out_ += key->cpp_type() == FieldDescriptor::CPPTYPE_STRING ? key_text : JsonQuote(key_text);
      out_ += KeySeparator();
      Value(entry, value, -1, depth + 1);
    }
    if (n > 0) NewLine(depth);
    out_.push_back('}');
  }

  // One value of field f (element `index` of a repeated field, -1 for a
  // singular one), appended to `into` (default: the output).
  void Value(const Message& m, const FieldDescriptor* f, int index, int depth, std::string* into = nullptr) {
    const Reflection* r = m.GetReflection();
    std::string& o = into != nullptr ? *into : out_;
    const bool rep = index >= 0;
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        o += absl::StrCat(rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        o += absl::StrCat(rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        o += absl::StrCat(rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        o += absl::StrCat(rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f));
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: {
        const double v = f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE
                             ? (rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f))
                             : (rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f));
        if (!std::isfinite(v)) {
          o += "null";
          break;
        }
        char text[32];  // the shortest text that reads back as v
        const std::to_chars_result end = std::to_chars(text, text + sizeof text, v);
        o.append(text, end.ptr);
        break;
      }
      case FieldDescriptor::CPPTYPE_BOOL:
        o += (rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f)) ? "true" : "false";
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        o += JsonQuote(EnumText(rep ? r->GetRepeatedEnum(m, f, index) : r->GetEnum(m, f)));
        break;
      case FieldDescriptor::CPPTYPE_STRING: {
        const std::string v = rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
        o += JsonQuote(f->type() == FieldDescriptor::TYPE_BYTES ? absl::BytesToHexString(v) : v);
        break;
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        Object(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f), depth);
        break;
    }
  }

  const bool one_line_;
  std::string out_;
};

}  // namespace

void PrintJson(std::ostream& out, const google::protobuf::Message& m, bool one_line) {
  out << JsonWriter(one_line).Write(m) << "\n";
}

}  // namespace sesame::controller::cli
