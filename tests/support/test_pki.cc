#include "tests/support/test_pki.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace sesame::testing {
namespace {

// Runs a shell command quietly.
absl::Status Run(const std::string& command) {
  const int rc = std::system(absl::StrCat(command, " >/dev/null 2>&1").c_str());
  if (rc != 0) return absl::InternalError(absl::StrCat("failed (", rc, "): ", command));
  return absl::OkStatus();
}

// The openssl extension file of a leaf.
std::string Extensions(const TestLeaf& leaf) {
  std::vector<std::string> sans;
  for (const std::string& d : leaf.dns) sans.push_back("DNS:" + d);
  for (const std::string& a : leaf.ip) sans.push_back("IP:" + a);
  if (!leaf.role.empty()) sans.push_back(absl::StrCat("URI:spiffe://sesame/", leaf.role, "/", leaf.name));
  const std::string eku = !leaf.eku.empty() ? leaf.eku : leaf.role == "controller" ? "serverAuth" : "clientAuth";
  std::string ext = absl::StrCat("basicConstraints=CA:FALSE\nextendedKeyUsage=", eku, "\n");
  if (!sans.empty()) absl::StrAppend(&ext, "subjectAltName=", absl::StrJoin(sans, ","), "\n");
  return ext;
}

}  // namespace

absl::Status MakeTestCa(const std::string& dir, const std::string& name) {
  return Run(absl::StrCat("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2",
                          " -subj '/O=sesame/CN=", name, "'",
                          " -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'",
                          " -keyout ", dir, "/", name, ".key -out ", dir, "/", name, ".crt"));
}

absl::Status IssueTestLeaf(const std::string& dir, const TestLeaf& leaf) {
  const std::string base = absl::StrCat(dir, "/", leaf.name);
  const std::string ca = absl::StrCat(dir, "/", leaf.ca);
  RETURN_IF_ERROR(WriteFileAtomically(base + ".ext", Extensions(leaf), 0600));
  const std::string& ou = leaf.ou.empty() ? leaf.role : leaf.ou;
  const std::string subject =
      absl::StrCat("/O=sesame", ou.empty() ? "" : "/OU=", ou, "/CN=", leaf.cn.empty() ? leaf.name : leaf.cn);
  RETURN_IF_ERROR(Run(absl::StrCat("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '",
                                   subject, "' -keyout ", base, ".key -out ", base, ".csr")));
  return Run(absl::StrCat("openssl x509 -req -days 2 -in ", base, ".csr -CA ", ca, ".crt -CAkey ", ca,
                          ".key -CAcreateserial -extfile ", base, ".ext -out ", base, ".crt"));
}

absl::Status MakeTestCrl(const std::string& dir, const std::string& ca, const std::string& out) {
  const std::string base = absl::StrCat(dir, "/", ca);
  RETURN_IF_ERROR(WriteFileAtomically(base + ".index", "", 0600));
  RETURN_IF_ERROR(WriteFileAtomically(base + ".crlnumber", "01\n", 0600));
  RETURN_IF_ERROR(WriteFileAtomically(
      base + ".cnf",
      absl::StrCat("[ca]\ndefault_ca = test\n[test]\ndatabase = ", base, ".index\ncrlnumber = ", base,
                   ".crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n"),
      0600));
  return Run(absl::StrCat("openssl ca -config ", base, ".cnf -gencrl -keyfile ", base, ".key -cert ", base,
                          ".crt -out ", out));
}

absl::Status MakeTestPki(const std::string& dir, const std::vector<TestLeaf>& leaves) {
  RETURN_IF_ERROR(MakeTestCa(dir, "ca"));
  for (const TestLeaf& leaf : leaves) RETURN_IF_ERROR(IssueTestLeaf(dir, leaf));
  return absl::OkStatus();
}

}  // namespace sesame::testing
