// The controller's Ed25519 audit key (OpenSSL EVP): it signs checkpoints of
// the audit chain, and anyone holding the public half can verify an export
// offline. Keys are PEM files: PKCS#8 for the private key (mode 0600),
// SubjectPublicKeyInfo for the public key.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace sesame::controller {

struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* key) const;
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;

class AuditPublicKey {
 public:
  static absl::StatusOr<AuditPublicKey> FromPem(std::string_view pem);
  static absl::StatusOr<AuditPublicKey> LoadFile(const std::string& path);

  std::string ToPem() const;
  // The key's id, as Certificate Transparency names a log: SHA-256 of the
  // DER SubjectPublicKeyInfo, 64 lower-case hex digits. Heads carry it so a
  // verifier can say which key signed what.
  std::string KeyId() const;
  // True when signature is a valid Ed25519 signature of message by this key.
  bool Verify(std::string_view message, std::string_view signature) const;

 private:
  friend class AuditSigningKey;
  explicit AuditPublicKey(EvpPkeyPtr key) : key_(std::move(key)) {}
  std::shared_ptr<EVP_PKEY> key_;
};

class AuditSigningKey {
 public:
  static AuditSigningKey Generate();
  static absl::StatusOr<AuditSigningKey> FromPem(std::string_view pem);
  // Loads the key at path, or creates one there (0600, written atomically)
  // when there is no file. A file that is not an Ed25519 key is an error,
  // never silently replaced.
  static absl::StatusOr<AuditSigningKey> LoadOrCreate(const std::string& path);

  std::string ToPem() const;  // the private key; keep it secret
  AuditPublicKey PublicKey() const;
  // 64 bytes.
  absl::StatusOr<std::string> Sign(std::string_view message) const;

 private:
  explicit AuditSigningKey(EvpPkeyPtr key) : key_(std::move(key)) {}
  std::shared_ptr<EVP_PKEY> key_;
};

}  // namespace sesame::controller
