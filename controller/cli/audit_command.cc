// sesamectl audit tail | export | verify | pubkey | head: the fleet's audit
// log. `audit verify --file` checks an export offline, without the
// controller; `--head FILE` (repeatable) also checks that the log contains
// heads saved earlier (`audit head -o json`, or the controller's log lines
// "audit.checkpoint {...}"; controller/audit/audit_head.h).
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
#include "controller/audit/audit_export.h"
#include "controller/audit/audit_head.h"
#include "controller/audit/audit_key.h"
#include "controller/audit/audit_verifier.h"
#include "controller/cli/cli_context.h"
#include "controller/cli/sesamectl.h"
#include "controller/service/wire_convert.h"

namespace sesame::controller::cli {
namespace {

// The verbs' flags; only one verb runs.
struct AuditFlags {
  bool follow = false;
  int tail_n = 20;
  std::string out_file, file, pubkey;
  std::vector<std::string> heads;
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
      // One object a line, out at once: for jq and for shipping to a SIEM.
      PrintJson(ctx.out(), r, /*one_line=*/true);
      ctx.out().flush();
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

// What a verification found, whether the controller verified or this
// process did.
struct VerifyReport {
  bool ok = false;
  uint64_t records = 0, checkpoints = 0, signed_records = 0, heads = 0, first_bad = 0;
  std::string problem;
};

int PrintVerification(std::ostream& out, std::ostream& err, bool json, const VerifyReport& v) {
  if (json) {
    out << "{\"ok\": " << (v.ok ? "true" : "false") << ", \"records\": " << v.records << ", \"checkpoints\": "
        << v.checkpoints << ", \"signed_records\": " << v.signed_records << ", \"heads\": " << v.heads;
    if (!v.ok) out << ", \"first_bad_index\": " << v.first_bad << ", \"problem\": " << JsonQuote(v.problem);
    out << "}\n";
  } else if (v.ok) {
    out << "OK: " << v.records << " records, " << v.checkpoints << " good checkpoints, signed through record "
        << (v.signed_records == 0 ? std::string("-") : absl::StrCat(v.signed_records - 1));
    if (v.heads > 0) out << ", contains " << v.heads << (v.heads == 1 ? " saved head" : " saved heads");
    out << "\n";
  }
  if (!v.ok) err << "sesamectl: audit log does NOT verify: " << v.problem << "\n";
  return v.ok ? kExitOk : kExitFailure;
}

// The heads of every --head file; an exit code on error.
int LoadHeads(std::ostream& err, const std::vector<std::string>& files, std::vector<AuditSignedHead>& heads) {
  for (const std::string& file : files) {
    absl::StatusOr<std::vector<AuditSignedHead>> loaded = LoadAuditHeads(file);
    if (!loaded.ok()) {
      err << "sesamectl: " << loaded.status().message() << "\n";
      return absl::IsNotFound(loaded.status()) ? kExitNotFound : kExitUsage;
    }
    heads.insert(heads.end(), loaded->begin(), loaded->end());
  }
  return kExitOk;
}

int AuditVerifyRemote(Context& ctx, const std::vector<std::string>& head_files) {
  std::vector<AuditSignedHead> heads;
  if (int code = LoadHeads(ctx.err(), head_files, heads); code != kExitOk) return code;
  v1::VerifyAuditRequest request;
  for (const AuditSignedHead& h : heads) {
    v1::SignedAuditHead* wire = request.add_heads();
    *wire->mutable_checkpoint() = ToWire(h.checkpoint);
    wire->set_key_id(h.key_id);
  }
  v1::VerifyAuditResponse r;
  grpc::Status s = ctx.stub().VerifyAudit(ctx.CallContext().get(), request, &r);
  if (!s.ok()) return ctx.Fail(s);
  return PrintVerification(ctx.out(), ctx.err(), ctx.json(),
                           {r.ok(), r.records(), r.checkpoints(), r.signed_records(), r.heads(), r.first_bad_index(),
                            r.problem()});
}

int AuditVerifyFile(std::ostream& out, std::ostream& err, bool json, const std::string& file,
                    const std::string& pubkey, const std::vector<std::string>& head_files) {
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
  std::vector<AuditSignedHead> heads;
  if (int code = LoadHeads(err, head_files, heads); code != kExitOk) return code;
  absl::StatusOr<AuditVerification> v = VerifyAuditExportFile(file, *key, std::move(heads));
  if (!v.ok()) {
    err << "sesamectl: audit log does NOT verify: " << v.status().message() << "\n";
    return absl::IsNotFound(v.status()) ? kExitNotFound : kExitFailure;
  }
  return PrintVerification(out, err, json,
                           {v->ok, v->records, v->checkpoints, v->signed_records, v->heads, v->first_bad_index,
                            v->problem});
}

// The latest signed checkpoint: -o json prints the head format
// (audit_head.h), one line, for an auditor to keep.
int AuditHead(Context& ctx) {
  v1::SignedAuditHead r;
  grpc::Status s = ctx.stub().GetAuditHead(ctx.CallContext().get(), v1::GetAuditHeadRequest(), &r);
  if (!s.ok()) return ctx.Fail(s);
  absl::StatusOr<AuditCheckpoint> head = FromWire(r.checkpoint(), "checkpoint");
  if (!head.ok()) {
    ctx.err() << "sesamectl: the controller sent a malformed head: " << head.status().message() << "\n";
    return kExitFailure;
  }
  if (ctx.json()) {
    ctx.out() << FormatAuditHeadJson(*head, r.key_id()) << "\n";
    return kExitOk;
  }
  Table t({"FIELD", "VALUE"});
  t.Add({"records", absl::StrCat(head->record_count)});
  t.Add({"chain hash", HashToHex(head->chain_hash)});
  t.Add({"time", FormatAuditTime(head->time)});
  t.Add({"signature", BytesToHex(head->signature)});
  t.Add({"key id", r.key_id().empty() ? std::string("-") : r.key_id()});
  t.Print(ctx.out());
  return kExitOk;
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
  verify->add_option("--head", f.heads,
                     "saved heads the log must contain (`audit head -o json`, or the controller's "
                     "audit.checkpoint log lines); repeatable");
  verify->callback([&ctx, &f] {
    if (f.file.empty()) {
      ctx.action = [&f](Context& c) { return AuditVerifyRemote(c, f.heads); };
    } else {
      ctx.offline_action = [&f](Context& c) {
        return AuditVerifyFile(c.out(), c.err(), c.json(), f.file, f.pubkey, f.heads);
      };
    }
  });
  audit->add_subcommand("pubkey", "print the audit public key (PEM)")->callback([&ctx] {
    ctx.action = AuditPubkey;
  });
  audit->add_subcommand("head", "print the latest signed checkpoint (-o json: the head file format)")
      ->callback([&ctx] { ctx.action = AuditHead; });
}

}  // namespace sesame::controller::cli
