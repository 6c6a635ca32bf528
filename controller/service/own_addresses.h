// The fleet's own addresses, which no knocker can have (a knock report
// naming one is refused, knock_report_checks.h): the controller's, and each
// bastion's as far as the controller knows them.
//
// What "known" means, and its limits:
//   - the controller: the addresses of its network interfaces when it
//     starts (getifaddrs), and the Listen address if it names one; an
//     address it is reached at through NAT is not known;
//   - a bastion: every advertised host that is an IP literal
//     (AdvertiseHosts in its configuration; names are not resolved), from
//     the store at start and from each Hello, and the address each of its
//     sessions came from (the gRPC peer). A bastion behind NAT, or one
//     advertising names only, is known by the address the controller sees.
// Addresses are kept from the controller's start on (a bastion's old
// address stays its own until the next start), at most kMaxPerAgent per
// agent (the first ones). Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/ip_address.h"
#include "controller/store/store.h"

namespace sesame::controller {

class OwnAddressBook {
 public:
  static constexpr size_t kMaxPerAgent = 32;

  void SetController(const std::vector<IpAddress>& addresses);
  // Adds what is not known yet; the rest is ignored (bounded).
  void AddAgent(const std::string& agent, const std::vector<IpAddress>& addresses);
  // Everything known now, each with its owner ("the controller", "agent NAME").
  std::shared_ptr<const std::vector<OwnAddress>> Get() const;

 private:
  void RebuildLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<IpAddress> controller_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<IpAddress>> agents_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::vector<OwnAddress>> all_ ABSL_GUARDED_BY(mu_) =
      std::make_shared<const std::vector<OwnAddress>>();
};

// The address of a gRPC peer ("ipv4:198.51.100.7:5000", "ipv6:[2001:db8::1]:5000",
// also with the brackets percent-encoded); nullopt for other transports.
std::optional<IpAddress> PeerAddress(std::string_view peer);

// The IP literals among advertised hosts ("198.51.100.7", "2001:db8::1",
// "[2001:db8::1]"); names are skipped.
std::vector<IpAddress> AddressLiterals(const std::vector<std::string>& hosts);

// This host's interface addresses (common/local_addresses.h), and listen's host when it
// is an IP literal other than a wildcard. Empty when getifaddrs fails.
std::vector<IpAddress> LocalAddresses(std::string_view listen);

}  // namespace sesame::controller
