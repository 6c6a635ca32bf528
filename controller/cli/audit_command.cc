// sesamectl audit tail | export | verify | pubkey: the fleet's audit log.
// `audit verify --file` checks an export offline, without the controller.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_verifier.h"
#include "controller/cli/cli_context.h"
#include "controller/cli/sesamectl.h"

namespace sesame::controller::cli {
namespace {

// The four verbs' flags; only one verb runs.
struct AuditFlags {
  bool follow = false;
  int tail_n = 20;
  std::string out_file, file, pubkey;
};

int AuditTail(Context& ctx, bool follow, int n) {
  v1::TailAuditRequest request;
  request.set_from_end(true);
  request.set_from_index(static_cast<uint64_t>(std::max(0, n)));
  request.set_follow(follow);
  auto context = ctx.CallContext();
  if (follow) context->set_deadline(std::chrono::system_clock::time_point::max());
  auto reader = ctx.stub().TailAudit(context.get(), request);
  v1::AuditRecord r;
  while (reader->Read(&r)) {
    if (ctx.json()) {
      ctx.Json(r);
      continue;
    }
    std::vector<std::string> details;
    std::map<std::string, std::string> sorted(r.details().begin(), r.details().end());
    for (const auto& [k, v] : sorted) details.push_back(absl::StrCat(k, "=", v));
    ctx.out() << r.index() << "  " << TimeText(r.time()) << "  " << r.who() << "  " << r.what() << "  " << r.where()
              << (details.empty() ? "" : "  ") << absl::StrJoin(details, " ") << "\n";
    ctx.out().flush();
  }
  grpc::Status s = reader->Finish();
  return s.ok() ? kExitOk : ctx.Fail(s);
}

int AuditExport(Context& ctx, const std::string& path) {
  auto context = ctx.CallContext();
  auto reader = ctx.stub().ExportAudit(context.get(), v1::ExportAuditRequest());
  std::string text;
  v1::ExportAuditChunk chunk;
  while (reader->Read(&chunk)) text += chunk.data();
  grpc::Status s = reader->Finish();
  if (!s.ok()) return ctx.Fail(s);
  absl::Status written = WriteFileAtomically(path, text, 0644);
  if (!written.ok()) {
    ctx.err() << "sesamectl: " << written.message() << "\n";
    return kExitFailure;
  }
  ctx.out() << "exported " << text.size() << " bytes to " << path << "\n";
  return kExitOk;
}

// The same report whether the controller verified or this process did.
int PrintVerification(std::ostream& out, std::ostream& err, bool json, bool ok, uint64_t records,
                      uint64_t checkpoints, uint64_t signed_records, uint64_t first_bad, const std::string& problem) {
  if (json) {
    out << "{\"ok\": " << (ok ? "true" : "false") << ", \"records\": " << records << ", \"checkpoints\": "
        << checkpoints << ", \"signed_records\": " << signed_records;
    if (!ok) out << ", \"first_bad_index\": " << first_bad << ", \"problem\": \"" << problem << "\"";
    out << "}\n";
  } else if (ok) {
    out << "OK: " << records << " records, " << checkpoints << " good checkpoints, signed through record "
        << (signed_records == 0 ? std::string("-") : absl::StrCat(signed_records - 1)) << "\n";
  }
  if (!ok) err << "sesamectl: audit log does NOT verify: " << problem << "\n";
  return ok ? kExitOk : kExitFailure;
}

int AuditVerifyRemote(Context& ctx) {
  v1::VerifyAuditResponse r;
  grpc::Status s = ctx.stub().VerifyAudit(ctx.CallContext().get(), v1::VerifyAuditRequest(), &r);
  if (!s.ok()) return ctx.Fail(s);
  return PrintVerification(ctx.out(), ctx.err(), ctx.json(), r.ok(), r.records(), r.checkpoints(),
                           r.signed_records(), r.first_bad_index(), r.problem());
}

int AuditVerifyFile(std::ostream& out, std::ostream& err, bool json, const std::string& file,
                    const std::string& pubkey) {
  if (pubkey.empty()) {
    err << "sesamectl: audit verify --file needs --pubkey FILE (the controller's audit public key; "
           "`sesamectl audit pubkey` prints it)\n";
    return kExitUsage;
  }
  absl::StatusOr<AuditPublicKey> key = AuditPublicKey::LoadFile(pubkey);
  if (!key.ok()) {
    err << "sesamectl: " << key.status().message() << "\n";
    return absl::IsNotFound(key.status()) ? kExitNotFound : kExitUsage;
  }
  absl::StatusOr<AuditVerification> v = VerifyAuditExportFile(file, *key);
  if (!v.ok()) {
    err << "sesamectl: audit log does NOT verify: " << v.status().message() << "\n";
    return absl::IsNotFound(v.status()) ? kExitNotFound : kExitFailure;
  }
  return PrintVerification(out, err, json, v->ok, v->records, v->checkpoints, v->signed_records,
                           v->first_bad_index, v->problem);
}

int AuditPubkey(Context& ctx) {
  v1::GetAuditPublicKeyResponse r;
  grpc::Status s = ctx.stub().GetAuditPublicKey(ctx.CallContext().get(), v1::GetAuditPublicKeyRequest(), &r);
  if (!s.ok()) return ctx.Fail(s);
  if (ctx.json()) return ctx.Json(r), kExitOk;
  ctx.out() << r.public_key_pem();
  return kExitOk;
}

}  // namespace

void AddAuditCommands(CLI::App& app, Context& ctx) {
  CLI::App* audit = app.add_subcommand("audit", "the fleet's audit log")->require_subcommand(1);
  AuditFlags& f = ctx.NewFlags<AuditFlags>();
  CLI::App* tail = audit->add_subcommand("tail", "the last records");
  tail->add_flag("-f,--follow", f.follow, "keep printing new records");
  tail->add_option("-n", f.tail_n, "how many records back (default 20)");
  tail->callback([&ctx, &f] { ctx.action = [&f](Context& c) { return AuditTail(c, f.follow, f.tail_n); }; });
  CLI::App* exp = audit->add_subcommand("export", "the whole log, signed, to a file");
  exp->add_option("--out", f.out_file, "file to write")->required();
  exp->callback([&ctx, &f] { ctx.action = [&f](Context& c) { return AuditExport(c, f.out_file); }; });
  CLI::App* verify = audit->add_subcommand("verify", "check the hash chain and signatures");
  verify->add_option("--file", f.file, "an export to verify offline (no controller needed)");
  verify->add_option("--pubkey", f.pubkey, "the controller's audit public key (PEM)");
  verify->callback([&ctx, &f] {
    if (f.file.empty()) {
      ctx.action = AuditVerifyRemote;
    } else {
      ctx.offline_action = [&f](Context& c) {
        return AuditVerifyFile(c.out(), c.err(), c.json(), f.file, f.pubkey);
      };
    }
  });
  audit->add_subcommand("pubkey", "print the audit public key (PEM)")->callback([&ctx] {
    ctx.action = AuditPubkey;
  });
}

}  // namespace sesame::controller::cli
