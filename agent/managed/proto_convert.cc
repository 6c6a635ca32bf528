#include "agent/managed/proto_convert.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace sesame {

google::protobuf::Timestamp ToProtoTime(absl::Time t) {
  google::protobuf::Timestamp out;
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast()) return out;
  const timespec ts = absl::ToTimespec(t);
  out.set_seconds(ts.tv_sec);
  out.set_nanos(static_cast<int32_t>(ts.tv_nsec));
  return out;
}

absl::Time FromProtoTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

google::protobuf::Duration ToProtoDuration(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out.set_seconds(ns / 1000000000);
  out.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return out;
}

absl::Duration FromProtoDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

v1::Knock ToProtoKnock(const Knock& knock) {
  v1::Knock out;
  out.set_port(knock.port);
  out.set_protocol(knock.protocol == Protocol::kTcp ? v1::PROTOCOL_TCP : v1::PROTOCOL_UDP);
  return out;
}

absl::StatusOr<Knock> FromProtoKnock(const v1::Knock& knock) {
  if (knock.port() < 1 || knock.port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port ", knock.port(), " is out of range (1-65535)"));
  }
  Knock out;
  out.port = static_cast<uint16_t>(knock.port());
  switch (knock.protocol()) {
    case v1::PROTOCOL_TCP:
      out.protocol = Protocol::kTcp;
      return out;
    case v1::PROTOCOL_UDP:
      out.protocol = Protocol::kUdp;
      return out;
    default:
      return absl::InvalidArgumentError(absl::StrCat("port ", knock.port(), " has no protocol (tcp or udp)"));
  }
}

absl::StatusOr<std::vector<Knock>> FromProtoKnocks(const google::protobuf::RepeatedPtrField<v1::Knock>& knocks,
                                                   size_t max_length) {
  if (max_length > 0 && (knocks.empty() || static_cast<size_t>(knocks.size()) > max_length)) {
    return absl::InvalidArgumentError(
        absl::StrCat(knocks.size(), " knocks; expected 1 to ", max_length));
  }
  std::vector<Knock> out;
  out.reserve(knocks.size());
  for (const v1::Knock& k : knocks) {
    ASSIGN_OR_RETURN(Knock knock, FromProtoKnock(k));
    out.push_back(knock);
  }
  return out;
}

void AppendProtoKnocks(const std::vector<Knock>& knocks, google::protobuf::RepeatedPtrField<v1::Knock>* out) {
  for (const Knock& k : knocks) *out->Add() = ToProtoKnock(k);
}

bool IsValidDoorName(const std::string& name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char ch) {
           return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-';
         });
}

absl::StatusOr<Grant> FromProtoGrant(const v1::Grant& grant, const std::vector<Knock>& default_ports) {
  if (!IsValidDoorName(grant.door())) {
    return absl::InvalidArgumentError(absl::StrCat("grant ", grant.id(), ": invalid door name \"", grant.door(), "\""));
  }
  const std::optional<IpAddress> address = IpAddress::Parse(grant.address());
  if (!address.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("grant ", grant.id(), ": \"", grant.address(), "\" is not an IPv4 or IPv6 address"));
  }
  Grant out;
  out.door = grant.door();
  out.address = *address;
  if (grant.ports().empty()) {
    out.ports = default_ports;
  } else {
    absl::StatusOr<std::vector<Knock>> ports = FromProtoKnocks(grant.ports(), 0);
    if (!ports.ok()) return absl::InvalidArgumentError(absl::StrCat("grant ", grant.id(), ": ", ports.status().message()));
    out.ports = *std::move(ports);
  }
  out.opened = grant.has_opened_at() ? FromProtoTime(grant.opened_at()) : absl::Now();
  // A grant always closes: one without an expiry would stay open forever.
  if (!grant.has_expires_at()) {
    return absl::InvalidArgumentError(absl::StrCat("grant ", grant.id(), " has no expiry"));
  }
  out.expires = FromProtoTime(grant.expires_at());
  return out;
}

}  // namespace sesame
