// A throwaway PKI for TLS tests, made with the openssl command line: a CA
// and leaf certificates named as sesame-pki names them (a SPIFFE URI SAN
// spiffe://sesame/ROLE/NAME). Keys are P-256, certificates last two days.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace sesame::testing {

// One leaf certificate, written to DIR/NAME.crt and DIR/NAME.key.
struct TestLeaf {
  TestLeaf(std::string name, std::string role, std::vector<std::string> dns = {}, std::vector<std::string> ip = {})
      : name(std::move(name)), role(std::move(role)), dns(std::move(dns)), ip(std::move(ip)) {}

  std::string name;
  // "controller", "admin" or "agent": the SANs get URI:spiffe://sesame/ROLE/NAME.
  // Empty: a certificate without a SPIFFE identity. A controller is for
  // serverAuth, every other role (and none) for clientAuth.
  std::string role;
  std::vector<std::string> dns, ip;  // further SANs, e.g. {"localhost"}, {"127.0.0.1"}
  // The subject is /O=sesame[/OU=OU]/CN=CN. Empty CN means NAME; empty OU
  // means ROLE (none when ROLE is empty too). Only the SAN grants an identity.
  std::string cn, ou;
  std::string ca = "ca";             // the CA in DIR that signs it: DIR/CA.{crt,key}
  // extendedKeyUsage; empty: serverAuth for a controller, clientAuth else
  // (an etcd member, server and peer client at once: "serverAuth,clientAuth").
  std::string eku;
};

// A self-signed CA in DIR/NAME.crt and DIR/NAME.key.
absl::Status MakeTestCa(const std::string& dir, const std::string& name = "ca");

// An empty CRL of DIR/CA.{crt,key}, current for two days, written to OUT.
absl::Status MakeTestCrl(const std::string& dir, const std::string& ca, const std::string& out);

// Issues one leaf signed by DIR/LEAF.ca (which must exist).
absl::Status IssueTestLeaf(const std::string& dir, const TestLeaf& leaf);

// DIR/ca.{crt,key} and every leaf in order. The first failure is returned
// with the openssl command that failed.
absl::Status MakeTestPki(const std::string& dir, const std::vector<TestLeaf>& leaves);

}  // namespace sesame::testing
