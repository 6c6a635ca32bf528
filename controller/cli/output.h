// How sesamectl prints what it gets: tables with padded columns, messages as
// JSON, and the text of the wire values that several nouns show (times,
// knocks, metric series).
#pragma once

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/json_quote.h"
#include "google/protobuf/message.h"
#include "google/protobuf/repeated_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "sesame/v1/common.pb.h"

namespace sesame::controller::cli {

// Columns padded to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// A message as indented JSON, ending in a newline; with one_line, on one
// line (JSON Lines: one object a line for a stream). Numbers as numbers,
// enums as operators write them ("tcp"), times in RFC 3339: json_output.cc.
void PrintJson(std::ostream& out, const google::protobuf::Message& m, bool one_line = false);

// UTC, to the second; "-" for an unset timestamp.
std::string TimeText(const google::protobuf::Timestamp& t);
// "PORT:PROTOCOL ..." as a knock is typed.
std::string KnocksText(const google::protobuf::RepeatedPtrField<v1::Knock>& knocks);
// name{label="value",...}, labels sorted, as Prometheus shows a series.
std::string MetricName(const v1::Metric& m);

}  // namespace sesame::controller::cli
