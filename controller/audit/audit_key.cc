#include "controller/audit/audit_key.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "controller/audit/audit_record.h"

namespace sesame::controller {
namespace {

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

BioPtr ReadOnlyBio(std::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

bool IsEd25519(EVP_PKEY* key) { return EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519; }

}  // namespace

void EvpPkeyDeleter::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }

absl::StatusOr<AuditPublicKey> AuditPublicKey::FromPem(std::string_view pem) {
  BioPtr bio = ReadOnlyBio(pem);
  EvpPkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return absl::InvalidArgumentError(absl::StrCat("not a PEM public key: ", OpenSslError()));
  if (!IsEd25519(key.get())) return absl::InvalidArgumentError("the public key is not an Ed25519 key");
  return AuditPublicKey(std::move(key));
}

absl::StatusOr<AuditPublicKey> AuditPublicKey::LoadFile(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<AuditPublicKey> key = FromPem(*pem);
  if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", key.status().message()));
  return key;
}

std::string AuditPublicKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) std::abort();
  return BioContents(bio.get());
}

std::string AuditPublicKey::KeyId() const {
  unsigned char* der = nullptr;
  const int size = i2d_PUBKEY(key_.get(), &der);
  if (size <= 0) std::abort();  // an Ed25519 key in memory always encodes
  unsigned char digest[32];
  unsigned int digest_size = 0;
  const int ok = EVP_Digest(der, static_cast<size_t>(size), digest, &digest_size, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  if (ok != 1 || digest_size != sizeof digest) std::abort();
  return BytesToHex(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

bool AuditPublicKey::Verify(std::string_view message, std::string_view signature) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1) {
    ERR_clear_error();
    return false;
  }
  const int ok = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                                  signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                                  message.size());
  ERR_clear_error();
  return ok == 1;
}

AuditSigningKey AuditSigningKey::Generate() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  // Key generation fails only without entropy or memory; nothing sensible
  // can run after that.
  if (key == nullptr) std::abort();
  return AuditSigningKey(EvpPkeyPtr(key));
}

absl::StatusOr<AuditSigningKey> AuditSigningKey::FromPem(std::string_view pem) {
  BioPtr bio = ReadOnlyBio(pem);
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return absl::InvalidArgumentError(absl::StrCat("not a PEM private key: ", OpenSslError()));
  if (!IsEd25519(key.get())) return absl::InvalidArgumentError("the private key is not an Ed25519 key");
  return AuditSigningKey(std::move(key));
}

absl::StatusOr<AuditSigningKey> AuditSigningKey::LoadOrCreate(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (pem.ok()) {
    absl::StatusOr<AuditSigningKey> key = FromPem(*pem);
    if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", key.status().message()));
    return key;
  }
  if (!absl::IsNotFound(pem.status())) return pem.status();
  AuditSigningKey key = Generate();
  const absl::Status written = WriteFileAtomically(path, key.ToPem(), 0600);
  if (!written.ok()) return written;
  return key;
}

std::string AuditSigningKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) std::abort();
  return BioContents(bio.get());
}

AuditPublicKey AuditSigningKey::PublicKey() const {
  unsigned char raw[32];
  size_t size = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(key_.get(), raw, &size) != 1) std::abort();
  EVP_PKEY* pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw, size);
  if (pub == nullptr) std::abort();
  return AuditPublicKey(EvpPkeyPtr(pub));
}

absl::StatusOr<std::string> AuditSigningKey::Sign(std::string_view message) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1) {
    return absl::InternalError(absl::StrCat("cannot start an Ed25519 signature: ", OpenSslError()));
  }
  std::string signature(64, '\0');
  size_t size = signature.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return absl::InternalError(absl::StrCat("cannot sign: ", OpenSslError()));
  }
  signature.resize(size);
  return signature;
}

}  // namespace sesame::controller
