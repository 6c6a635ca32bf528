// The fleet's own addresses (own_addresses.h).
#include "controller/service/own_addresses.h"


#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/local_addresses.h"

namespace sesame::controller {
namespace {

// ::ffff:a.b.c.d is how a dual-stack socket shows an IPv4 peer.
IpAddress Unmapped(const IpAddress& a) {
  if (!a.is_v6()) return a;
  const uint8_t* b = a.bytes();
  for (int i = 0; i < 10; ++i) {
    if (b[i] != 0) return a;
  }
  if (b[10] != 0xff || b[11] != 0xff) return a;
  return IpAddress::V4(b + 12);
}

// "198.51.100.7", "2001:db8::1" or "[2001:db8::1]".
std::optional<IpAddress> Literal(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::optional<IpAddress> a = IpAddress::Parse(host);
  if (!a) return std::nullopt;
  return Unmapped(*a);
}

void AddUnique(std::vector<IpAddress>& to, const IpAddress& a, size_t limit) {
  if (to.size() < limit && std::find(to.begin(), to.end(), a) == to.end()) to.push_back(a);
}

}  // namespace

void OwnAddressBook::SetController(const std::vector<IpAddress>& addresses) {
  absl::MutexLock lock(&mu_);
  controller_.clear();
  for (const IpAddress& a : addresses) AddUnique(controller_, a, 4 * kMaxPerAgent);
  RebuildLocked();
}

void OwnAddressBook::AddAgent(const std::string& agent, const std::vector<IpAddress>& addresses) {
  absl::MutexLock lock(&mu_);
  std::vector<IpAddress>& known = agents_[agent];
  const size_t before = known.size();
  for (const IpAddress& a : addresses) AddUnique(known, a, kMaxPerAgent);
  if (known.size() != before) RebuildLocked();
}

std::shared_ptr<const std::vector<OwnAddress>> OwnAddressBook::Get() const {
  absl::MutexLock lock(&mu_);
  return all_;
}

void OwnAddressBook::RebuildLocked() {
  auto all = std::make_shared<std::vector<OwnAddress>>();
  for (const IpAddress& a : controller_) all->push_back(OwnAddress{a, "the controller"});
  for (const auto& [agent, addresses] : agents_) {
    for (const IpAddress& a : addresses) all->push_back(OwnAddress{a, absl::StrCat("agent ", agent)});
  }
  all_ = std::move(all);
}

std::optional<IpAddress> PeerAddress(std::string_view peer) {
  absl::string_view rest(peer.data(), peer.size());
  if (!absl::ConsumePrefix(&rest, "ipv4:") && !absl::ConsumePrefix(&rest, "ipv6:")) return std::nullopt;
  const std::string text = absl::StrReplaceAll(rest, {{"%5B", "["}, {"%5D", "]"}, {"%5b", "["}, {"%5d", "]"}});
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  return Literal(std::string_view(text).substr(0, colon));
}

std::vector<IpAddress> AddressLiterals(const std::vector<std::string>& hosts) {
  std::vector<IpAddress> out;
  for (const std::string& h : hosts) {
    if (std::optional<IpAddress> a = Literal(h)) out.push_back(*a);
  }
  return out;
}

std::vector<IpAddress> LocalAddresses(std::string_view listen) {
  std::vector<IpAddress> out = ListLocalAddresses().value_or(std::vector<IpAddress>{});
  const size_t colon = listen.rfind(':');
  if (colon != std::string_view::npos) {
    std::optional<IpAddress> a = Literal(listen.substr(0, colon));
    const bool wildcard = a && std::all_of(a->bytes(), a->bytes() + a->size(), [](uint8_t b) { return b == 0; });
    if (a && !wildcard) AddUnique(out, *a, SIZE_MAX);
  }
  return out;
}

}  // namespace sesame::controller
