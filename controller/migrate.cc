#include "controller/migrate.h"

#include <sys/stat.h>

#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_log.h"
#include "controller/audit/audit_verifier.h"
#include "controller/store/etcd/etcd_import.h"
#include "controller/store/etcd/etcd_store.h"
#include "controller/store/sqlite/sqlite_store.h"
#include "controller/store/store_image.h"

namespace sesame::controller {
namespace {

absl::StatusOr<std::unique_ptr<SqliteStore>> OpenSource(const std::string& path) {
  SqliteStoreOptions options;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return absl::NotFoundError(absl::StrCat("migrate: no such store: ", path));
  if (S_ISDIR(st.st_mode)) {
    options.state_dir = path;
  } else {
    const size_t slash = path.rfind('/');
    options.state_dir = slash == std::string::npos ? "." : path.substr(0, slash);
    options.file_name = path.substr(slash == std::string::npos ? 0 : slash + 1);
  }
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
  if (absl::IsFailedPrecondition(store.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("migrate: ", store.status().message(), " (stop the controller that uses it first)"));
  }
  return store;
}

// The chain is whole and every checkpoint's signature good; an unsigned
// tail (a controller that was killed) is allowed: the copy gets signed.
absl::Status VerifyChain(Store& store, const AuditPublicKey& key, const char* where) {
  AuditVerifyOptions options;
  options.unsigned_tail_allowance = absl::InfiniteDuration();
  options.now = absl::Now();
  ASSIGN_OR_RETURN(AuditVerification v, VerifyStoredAudit(store, key, options));
  if (!v.ok) return absl::DataLossError(absl::StrCat("migrate: the audit chain ", where, " does not verify: ", v.problem));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> Migrate(const std::string& from, const std::string& to, const ControllerConfig& config) {
  if (!absl::StartsWith(from, "sqlite:") || from.size() == 7) {
    return absl::InvalidArgumentError(absl::StrCat("migrate: --from \"", from, "\": expected sqlite:PATH"));
  }
  if (to != "etcd") return absl::InvalidArgumentError(absl::StrCat("migrate: --to \"", to, "\": expected etcd"));
  if (config.store != StoreKind::kEtcd) {
    return absl::InvalidArgumentError(
        absl::StrCat("migrate: ", config.path, " does not say Store = etcd: it names no etcd to migrate to"));
  }
  // The installation's own key, never a new one: the copy must verify
  // against the heads saved so far.
  ASSIGN_OR_RETURN(std::string pem, ReadFileToString(config.audit_key));
  ASSIGN_OR_RETURN(AuditSigningKey key, AuditSigningKey::FromPem(pem));
  const AuditPublicKey public_key = key.PublicKey();

  ASSIGN_OR_RETURN(std::unique_ptr<SqliteStore> source, OpenSource(from.substr(7)));
  RETURN_IF_ERROR(VerifyChain(*source, public_key, "in SQLite"));
  ASSIGN_OR_RETURN(StoreImage image, ReadStoreImage(*source));
  source.reset();

  EtcdStoreOptions options;
  options.client.endpoints = config.etcd.endpoints;
  options.client.tls = config.etcd.tls;
  options.prefix = config.etcd.prefix;
  options.controller = config.name;
  {
    ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> client, EtcdClient::Connect(options.client));
    RETURN_IF_ERROR(ImportStoreImage(*client, EtcdKeys(options.prefix), image));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<EtcdStore> target, EtcdStore::Open(options));
  AuditEntry moved;
  moved.time = absl::Now();
  moved.who = "controller";
  moved.what = "store.migrated";
  moved.where = absl::StrCat("controller:", config.name);
  moved.details = {{"from", from}, {"to", absl::StrCat("etcd ", config.etcd.prefix)}};
  AuditLog log(*target, std::move(key));
  ASSIGN_OR_RETURN(AuditRecord record, log.Append(std::move(moved)));
  ASSIGN_OR_RETURN(AuditCheckpoint checkpoint, log.Checkpoint());
  RETURN_IF_ERROR(VerifyChain(*target, public_key, "in etcd"));
  return absl::StrCat("migrated ", image.doors.size(), " doors, ", image.sequences.size(), " sequences, ",
                      image.agents.size(), " agents, ", image.grants.size(), " grants and ", image.audit.size(),
                      " audit records (revision ", image.revision, ") to etcd under ", config.etcd.prefix,
                      "; the chain verified before and after; checkpoint signed over ", checkpoint.record_count,
                      " records (the last: store.migrated, record ", record.index, ")");
}

}  // namespace sesame::controller
