// The agent API: enrollment, heartbeat, commands (long-poll), jobs, compare, complete, grant.
#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/parallel.h"
#include "common/paths.h"
#include "http/http_types.h"
#include "protocol/messages.h"
#include "server/context.h"
#include "server/releases.h"
#include "sync/planner.h"

namespace ds {
namespace {

using http::Request;
using http::Responder;
using nlohmann::json;

// A quarantined runner's refusal: what happened and what the operator does (docs/operations.md).
absl::Status QuarantinedError(const Runner& runner) {
  return absl::UnauthenticatedError(
      absl::StrCat("runner '", runner.name,
                   "' is quarantined: its previous API key was used after a key rotation, so two "
                   "parties held it; an operator must act (re-enroll the PC with datasync-agent "
                   "--re-enroll, then "
                   "datasync runners replace ",
                   runner.name, ", or revoke it)"));
}

// A request made with a key a rotation retired. Within the grace (requests the agent had in
// flight) it authenticates as before; later, two parties held the key: the runner is quarantined,
// audited and logged with the key's fingerprint (as wrong keys are), and neither key works.
absl::StatusOr<Runner> RetiredKeyUsed(ServerContext* ctx, const Request& req,
                                      const std::string& key, const std::string& key_hash) {
  const int64_t now = ctx->NowMs();
  DS_ASSIGN_OR_RETURN(
      StateIndex::RetiredKeyUse use,
      ctx->index->UseRetiredKey(key_hash, now - ctx->config.retired_key_grace.count(), now));
  if (use.quarantined_now) {
    const std::string fingerprint = CredentialFingerprint(key);
    const std::string from = ClientAddress(*ctx, req);
    spdlog::warn(
        "runner '{}' quarantined: its retired API key (fingerprint {}) was used from {} on {} "
        "after a rotation; two parties held the key",
        use.runner.name, fingerprint, from, req.path.substr(0, 200));
    Audit(ctx, "server", "quarantine runner", "/api/v1/admin/runners/" + use.runner.name, 401,
          json{{"runner", use.runner.name},
               {"fingerprint", fingerprint},
               {"route", req.path.substr(0, 200)},
               {"reason", "retired API key used after rotation"}},
          from);
  }
  return use.runner;
}

// The approved runner owning the request's API key. Unauthenticated for a missing, unknown or
// revoked key (revocation clears the key hash, so both read the same), and for every key of a
// quarantined runner.
absl::StatusOr<Runner> AuthenticateAgent(ServerContext* ctx, const Request& req) {
  std::string key = BearerToken(req);
  if (key.empty()) return absl::UnauthenticatedError("missing API key (Authorization: Bearer ...)");
  if (key.size() > 256) {
    RecordAuthFailure(ctx, req, "agent key", key);
    return absl::UnauthenticatedError("unknown or revoked API key");
  }
  const std::string key_hash = Sha256Hex(key);
  auto runner = ctx->index->FindRunnerByKeyHash(key_hash);
  if (absl::IsNotFound(runner.status())) {
    // The first use of a key handed out by a rotation makes it the runner's key.
    runner = ctx->index->PromoteNextKey(key_hash, ctx->NowMs());
    if (runner.ok()) spdlog::info("runner '{}' now uses its rotated API key; the old key is retired", runner->name);
  }
  if (absl::IsNotFound(runner.status())) runner = RetiredKeyUsed(ctx, req, key, key_hash);
  if (absl::IsNotFound(runner.status())) {
    RecordAuthFailure(ctx, req, "agent key", key);
    return absl::UnauthenticatedError("unknown or revoked API key");
  }
  if (!runner.ok()) return runner.status();
  if (runner->status == "quarantined") return QuarantinedError(*runner);
  if (runner->status != "approved") {
    return absl::UnauthenticatedError(absl::StrCat("runner '", runner->name, "' is ", runner->status));
  }
  return runner;
}

// The run `run_id` if it belongs to `runner`; NotFound otherwise (another runner's run id reveals
// nothing).
absl::StatusOr<Run> RunOfRunner(ServerContext* ctx, const Runner& runner, const std::string& run_id) {
  if (!IsValidUuid(run_id)) return absl::NotFoundError("no such run");
  auto run = ctx->index->GetRun(run_id);
  if (absl::IsNotFound(run.status()) || (run.ok() && run->runner_id != runner.id)) {
    return absl::NotFoundError(absl::StrCat("no run ", run_id, " for runner '", runner.name, "'"));
  }
  return run;
}

std::string CorrelationTag(const Request& req) {
  std::string id = req.Header("x-correlation-id");
  if (id.empty() || id.size() > 64) return "";
  return absl::StrCat(" run=", id);
}

absl::StatusOr<std::vector<protocol::JobSpec>> JobSpecsOf(ServerContext* ctx, int64_t runner_id) {
  DS_ASSIGN_OR_RETURN(std::vector<Job> jobs, ctx->index->ListJobs(runner_id));
  std::vector<protocol::JobSpec> specs;
  specs.reserve(jobs.size());
  for (auto& j : jobs) specs.push_back(std::move(j.spec));
  return specs;
}

absl::StatusOr<std::string> Register(ServerContext* ctx, const Request& req) {
  DS_ASSIGN_OR_RETURN(auto body, protocol::Decode<protocol::RegisterRequest>(req.body));
  if (!IsValidName(body.name)) {
    return absl::InvalidArgumentError(
        "runner name must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with '.'");
  }
  for (const std::string* f : {&body.hostname, &body.os, &body.agent_version, &body.machine_id}) {
    if (f->size() > 256) return absl::InvalidArgumentError("registration field longer than 256 bytes");
  }
  std::string enrollment_id = NewUuid();
  std::string secret = absl::StrCat("dse_", Base64UrlEncode(RandomBytes(32)));
  RegisterInfo info{body.name,       body.hostname,      body.os,
                    body.machine_id, body.agent_version, ClientAddress(*ctx, req)};
  auto runner = ctx->index->RegisterRunner(info, enrollment_id, Sha256Hex(secret), ctx->NowMs());
  if (absl::IsAlreadyExists(runner.status())) {
    return absl::AlreadyExistsError(absl::StrCat(
        "the runner name '", body.name,
        "' belongs to a rejected runner; choose another --name, or have an operator delete it "
        "(datasync runners delete NAME)"));
  }
  if (!runner.ok()) return runner.status();
  spdlog::info(
      "registration: runner '{}' (id {}) pending approval, host '{}' from {}, enrollment {}",
      runner->name, runner->id, body.hostname, info.address, enrollment_id);
  return protocol::Encode(protocol::RegisterResponse{enrollment_id, secret, "pending"});
}

absl::StatusOr<std::string> PollEnrollment(ServerContext* ctx, const Request& req,
                                           const std::string& id) {
  if (!IsValidUuid(id)) return absl::NotFoundError("no such enrollment");
  auto enrollment = ctx->index->GetEnrollment(id);
  if (absl::IsNotFound(enrollment.status())) return absl::NotFoundError("no such enrollment");
  if (!enrollment.ok()) return enrollment.status();
  std::string secret = BearerToken(req);
  if (secret.empty() || !ConstantTimeEquals(Sha256Hex(secret), enrollment->secret_hash)) {
    return absl::UnauthenticatedError("wrong or missing enrollment secret");
  }
  DS_ASSIGN_OR_RETURN(Runner runner, ctx->index->GetRunnerById(enrollment->runner_id));
  protocol::EnrollmentStatus out;
  out.status = enrollment->status;
  if (enrollment->status == "approved") {
    // Issue the key now so the server never holds it in the clear: exactly once, by CAS.
    std::string key = absl::StrCat("dsk_", Base64UrlEncode(RandomBytes(32)));
    absl::Status st = ctx->index->DeliverKey(id, Sha256Hex(key));
    if (absl::IsFailedPrecondition(st)) {
      out.status = "delivered";
    } else if (!st.ok()) {
      return st;
    } else {
      out.api_key = key;
      out.runner_id = runner.id;
      out.runner_name = runner.name;
      spdlog::info("enrollment {}: API key issued to runner '{}'", id, runner.name);
    }
  }
  if (out.status == "delivered") {
    return absl::PermissionDeniedError(
        "the API key for this enrollment was already delivered; re-enroll to get a new one");
  }
  if (out.status == "rejected") {
    return absl::PermissionDeniedError(absl::StrCat("enrollment of runner '", runner.name,
                                                    "' was rejected by an operator"));
  }
  return protocol::Encode(out);
}

// The health a heartbeat carries as the JSON object the index keeps ("" from an agent that sends
// none).
std::string HealthJsonOf(ServerContext* ctx, const protocol::HeartbeatRequest& hb) {
  if (hb.agent_time_ms == 0 && hb.disk_free.empty() && hb.backlog_files < 0 && !hb.progress) {
    return "";
  }
  constexpr size_t kMaxVolumes = 256;
  json h = json::object();
  json disks = json::array();
  for (size_t i = 0; i < hb.disk_free.size() && i < kMaxVolumes; ++i) {
    const auto& d = hb.disk_free[i];
    disks.push_back({{"job", d.job.substr(0, 64)}, {"path", d.path.substr(0, 1024)},
                     {"free_bytes", d.free_bytes}, {"total_bytes", d.total_bytes}});
  }
  h["disk_free"] = disks;
  h["backlog_files"] = std::max<int64_t>(hb.backlog_files, 0);
  h["backlog_bytes"] = std::max<int64_t>(hb.backlog_bytes, 0);
  if (hb.progress) {
    json p = *hb.progress;
    p["run_id"] = hb.progress->run_id.substr(0, 64);
    p["job"] = hb.progress->job.substr(0, 64);
    h["current_run"] = p;
  } else {
    h["current_run"] = nullptr;
  }
  // Server minus agent clock; the request's transit time is within the error.
  const int64_t now = ctx->NowMs();
  h["clock_offset_ms"] = hb.agent_time_ms != 0 ? json(now - hb.agent_time_ms) : json(nullptr);
  h["at_ms"] = now;
  return h.dump(-1, ' ', false, json::error_handler_t::replace);
}

// POST /agent/logs: a batch of the agent's log records, idempotent by (runner, seq).
absl::StatusOr<std::string> Logs(ServerContext* ctx, const Request& req) {
  DS_ASSIGN_OR_RETURN(Runner runner, AuthenticateAgent(ctx, req));
  DS_ASSIGN_OR_RETURN(auto batch, protocol::Decode<protocol::LogBatch>(req.body));
  if (batch.records.size() > protocol::kMaxLogBatch) {
    return absl::ResourceExhaustedError(absl::StrCat("log batch of ", batch.records.size(), " records exceeds ",
                                                     protocol::kMaxLogBatch));
  }
  std::vector<AgentLogRecord> records;
  records.reserve(batch.records.size());
  for (size_t i = 0; i < batch.records.size(); ++i) {
    auto& in = batch.records[i];
    if (in.level != "debug" && in.level != "info" && in.level != "warn" && in.level != "error") {
      return absl::InvalidArgumentError(absl::StrCat("records[", i, "]: level must be debug, info, warn or error"));
    }
    if (in.seq <= 0) return absl::InvalidArgumentError(absl::StrCat("records[", i, "]: seq must be positive"));
    AgentLogRecord r;
    r.seq = in.seq;
    r.time_ms = in.time_ms;
    r.level = in.level;
    r.message = std::move(in.message);
    if (r.message.size() > protocol::kMaxLogMessageBytes) {
      // Cut at a character boundary.
      size_t cut = protocol::kMaxLogMessageBytes;
      while (cut > 0 && (static_cast<unsigned char>(r.message[cut]) & 0xC0) == 0x80) --cut;
      r.message.resize(cut);
    }
    r.message.erase(std::remove(r.message.begin(), r.message.end(), '\0'), r.message.end());
    r.correlation_id = in.correlation_id.size() <= 64 ? in.correlation_id : "";
    r.correlation_id.erase(std::remove(r.correlation_id.begin(), r.correlation_id.end(), '\0'),
                           r.correlation_id.end());
    r.fields_json = in.fields_json.size() <= 4096 ? in.fields_json : "{}";
    if (r.fields_json.find("\\u0000") != std::string::npos) r.fields_json = "{}";
    records.push_back(std::move(r));
  }
  DS_ASSIGN_OR_RETURN(int64_t n, ctx->index->AppendAgentLogs(runner.id, records, ctx->NowMs()));
  ctx->metrics.Add("datasync_agent_log_records_total", {}, static_cast<double>(n));
  return protocol::Encode(protocol::LogBatchResponse{static_cast<uint64_t>(n)});
}

absl::StatusOr<std::string> Heartbeat(ServerContext* ctx, const Request& req) {
  DS_ASSIGN_OR_RETURN(Runner runner, AuthenticateAgent(ctx, req));
  DS_ASSIGN_OR_RETURN(auto hb, protocol::Decode<protocol::HeartbeatRequest>(req.body));
  if (hb.agent_version.size() > 64 || hb.state.size() > 64 || hb.current_run.size() > 64) {
    return absl::InvalidArgumentError("heartbeat field too long");
  }
  // One index call: the heartbeat itself; orphaned runs — anything of this runner still
  // `running` that the agent no longer reports as its current run (it crashed or restarted
  // between compare and complete), past a grace period that covers a heartbeat racing a run's
  // start; and the runner's pending commands.
  const int64_t now = ctx->NowMs();
  const int64_t grace = 2 * ctx->config.heartbeat_interval.count() + 10'000;
  StateIndex::HeartbeatRecord record;
  record.runner_id = runner.id;
  record.agent_version = hb.agent_version;
  record.runtime_state = hb.state;
  record.current_run = hb.current_run;
  record.health_json = HealthJsonOf(ctx, hb);
  record.orphans_started_before_ms = now - grace;
  record.orphan_reason = "the agent is no longer running it (agent restarted?)";
  DS_ASSIGN_OR_RETURN(StateIndex::HeartbeatOutcome outcome, ctx->index->Heartbeat(record, now));
  for (const auto& id : outcome.abandoned_runs) {
    spdlog::warn("run={} runner={} abandoned: orphaned", id, runner.name);
  }
  protocol::HeartbeatResponse out;
  out.interval_ms = ctx->config.heartbeat_interval.count();
  out.jobs_version = runner.jobs_version;
  out.storage_url = ctx->storage_url;
  if (hb.jobs_version != runner.jobs_version) {
    DS_ASSIGN_OR_RETURN(out.jobs, JobSpecsOf(ctx, runner.id));
  }
  out.commands = std::move(outcome.commands);
  // A pending key rotation: a fresh key, whose hash waits beside the current one until first used.
  // (The runner row says whether one is pending: no key minted, no write, on ordinary heartbeats.)
  if (runner.key_rotation_pending) {
    std::string next_key = absl::StrCat("dsk_", Base64UrlEncode(RandomBytes(32)));
    DS_ASSIGN_OR_RETURN(bool offered, ctx->index->OfferNextKey(runner.id, Sha256Hex(next_key)));
    if (offered) {
      out.new_api_key = std::move(next_key);
      spdlog::info("runner '{}': new API key handed out (rotation)", runner.name);
    }
  }
  return protocol::Encode(out);
}

void Commands(ServerContext* ctx, const Request& req, const Responder& respond) {
  auto runner = AuthenticateAgent(ctx, req);
  if (!runner.ok()) return respond(http::ProblemResponse(runner.status()));
  int64_t wait_ms = 0;
  std::string wait = req.Query("wait", "0");
  auto d = ParseDuration(wait);
  if (!d.ok()) return respond(http::ProblemResponse(d.status()));
  wait_ms = std::min<int64_t>(d->count(), ctx->config.max_long_poll.count());
  int64_t runner_id = runner->id;
  StateIndex* index = ctx->index.get();
  uint64_t seq = ctx->bus->Sequence(runner_id);
  auto cmds = index->TakeCommands(runner_id);
  if (!cmds.ok()) return respond(http::ProblemResponse(cmds.status()));
  if (!cmds->empty() || wait_ms <= 0) {
    return respond(http::JsonResponse(200, protocol::Encode(protocol::CommandsResponse{*cmds})));
  }
  // Recorded as the runner's newest long-poll, so that an older one parked on another instance
  // (the agent gave up on that connection) is superseded instead of taking the next command.
  // Without the record this wait still works, only without cross-instance superseding.
  std::string poll_id = ctx->bus->NewPollId();
  if (absl::Status st = index->RecordLongPoll(runner_id, poll_id, ctx->NowMs()); !st.ok()) {
    spdlog::warn("runner={} long-poll not recorded: {}", runner->name, st);
    poll_id.clear();
  }
  auto answer = [index, runner_id, respond, poll_id, gone = req.client_gone](CommandBus::Wake why) {
    const auto empty = [&] {
      respond(http::JsonResponse(200, protocol::Encode(protocol::CommandsResponse{})));
    };
    if (why == CommandBus::Wake::kSuperseded) return empty();
    // An agent that died (killed, crashed, restarted) while this poll waited: the commands stay
    // queued for its next poll instead of being taken into a closed connection.
    if (gone && gone()) return empty();
    if (!poll_id.empty()) {
      // A newer long-poll of this runner may have started on another instance since the bus
      // last looked: then this connection is stale and must not take the commands.
      auto newest = index->CheckWaitingRunners({runner_id});
      if (newest.ok() && newest->size() == 1) {
        const StateIndex::WaitingRunner& w = newest->front();
        if (!w.newest_poll_id.empty() && w.newest_poll_id != poll_id) return empty();
        // Most long-polls end at their deadline with nothing queued: no TakeCommands write.
        if (!w.pending_commands) return empty();
      }
    }
    auto taken = index->TakeCommands(runner_id);
    if (!taken.ok()) return respond(http::ProblemResponse(taken.status()));
    respond(http::JsonResponse(200, protocol::Encode(protocol::CommandsResponse{*taken})));
  };
  ctx->bus->Wait(runner_id, seq, std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms),
                 answer, poll_id);
}

absl::StatusOr<std::string> Jobs(ServerContext* ctx, const Request& req) {
  DS_ASSIGN_OR_RETURN(Runner runner, AuthenticateAgent(ctx, req));
  DS_ASSIGN_OR_RETURN(auto specs, JobSpecsOf(ctx, runner.id));
  return json{{"jobs_version", runner.jobs_version}, {"storage_url", ctx->storage_url},
              {"jobs", specs}}
      .dump();
}

// ---- object storage: write grants and landed-content checks ------------------------------------

// Storage round trips of one request that run side by side (on the shared pool, ParallelFor).
constexpr size_t kStorageThreadsPerRequest = 16;

// Asks storage for a write grant for every planned upload of a compare batch (`planned[i]`
// belongs to `upload[i]`) and puts it into the instruction. A key whose object already has the
// planned content gets no URL but `already_present`: the agent uploads nothing and reports the
// file uploaded, which `complete` checks like any upload. Any storage error fails the batch.
absl::Status GrantUploads(ServerContext* ctx, const std::string& run_id,
                          const std::vector<RunFile>& planned,
                          std::vector<protocol::UploadInstruction>* upload) {
  std::vector<absl::StatusOr<WriteGrant>> grants(upload->size(),
                                                 absl::InternalError("not granted"));
  ParallelFor(upload->size(), kStorageThreadsPerRequest, [&](size_t i) {
    grants[i] = ctx->storage->GrantWrite((*upload)[i].key, planned[i].sha256, ctx->config.sas_ttl);
  });
  size_t present = 0, kept = 0;
  for (size_t i = 0; i < upload->size(); ++i) {
    auto& u = (*upload)[i];
    if (!grants[i].ok()) {
      const absl::Status& st = grants[i].status();
      return absl::Status(st.code(), absl::StrCat("preparing the upload of ", u.key, ": ",
                                                  std::string(st.message())));
    }
    WriteGrant& g = *grants[i];
    u.kept_version = std::move(g.kept_version);
    if (!u.kept_version.empty()) {
      ++kept;
      spdlog::info("run={} {} is replaced: its previous version is kept at {}", run_id, u.key,
                   u.kept_version);
    }
    if (g.already_present) {
      u.already_present = true;
      ++present;
      continue;
    }
    u.url = std::move(g.url);  // a secret: never logged
    u.expires_at_ms = g.expires_unix_ms;
  }
  spdlog::info(
      "run={} write grants for {} file(s) ({} already stored, {} previous version(s) kept)", run_id,
      upload->size() - present, present, kept);
  return absl::OkStatus();
}

// `complete` on storage the agent writes with a grant: the agent cannot read back what landed,
// so the server does. An `uploaded` result stands only if the object under its key has the
// reported size and SHA-256 (from metadata, or hashed when the object has none); otherwise it
// becomes `failed`. Storage errors fail the whole batch (the agent reports it again later).
absl::Status CheckLandedContent(ServerContext* ctx, const Run& run, const std::string& run_id,
                                std::vector<protocol::FileResult>* results) {
  std::vector<size_t> uploaded;
  for (size_t i = 0; i < results->size(); ++i) {
    if ((*results)[i].status == "uploaded") uploaded.push_back(i);
  }
  if (uploaded.empty()) return absl::OkStatus();
  auto job = ctx->index->GetJobById(run.job_id);
  if (absl::IsNotFound(job.status())) return absl::OkStatus();  // RecordResults refuses them
  if (!job.ok()) return job.status();
  std::vector<absl::Status> checks(uploaded.size());
  ParallelFor(uploaded.size(), kStorageThreadsPerRequest, [&](size_t n) {
    protocol::FileResult& r = (*results)[uploaded[n]];
    const std::string key = JoinKey(job->spec.dest_prefix, r.path);
    auto info = ctx->storage->Stat(key);
    std::string problem;
    if (absl::IsNotFound(info.status())) {
      problem = "nothing is stored under the key";
    } else if (!info.ok()) {
      checks[n] = info.status();
      return;
    } else {
      std::string sha = info->sha256;
      uint64_t size = info->size;
      if (sha.empty()) {  // written by another tool: hash what is there
        auto digest = ctx->storage->HashObject(key);
        if (!digest.ok()) {
          checks[n] = digest.status();
          return;
        }
        sha = digest->sha256;
        size = digest->size;
      }
      if (size != r.size || sha != r.sha256) {
        problem = absl::StrCat("storage holds ", size, " bytes with SHA-256 ", sha,
                               ", the agent reported ", r.size, " bytes with SHA-256 ", r.sha256);
      }
    }
    if (problem.empty()) return;
    spdlog::warn("run={} {}: landed content does not match: {}", run_id, key, problem);
    r.status = "failed";
    r.error = absl::StrCat("landed content does not match: ", problem);
  });
  for (const absl::Status& st : checks) {
    if (!st.ok()) {
      return absl::Status(st.code(),
                          absl::StrCat("checking what landed: ", std::string(st.message())));
    }
  }
  return absl::OkStatus();
}

// POST /agent/runs/{run}/grant {path}: a fresh write credential for one file of a running run of
// the calling runner, planned by compare. Nothing else can be granted: the key and the content
// hash come from the run's plan, never from the request.
absl::StatusOr<std::string> Grant(ServerContext* ctx, const Request& req,
                                  const std::string& run_id) {
  DS_ASSIGN_OR_RETURN(Runner runner, AuthenticateAgent(ctx, req));
  DS_ASSIGN_OR_RETURN(Run run, RunOfRunner(ctx, runner, run_id));
  DS_ASSIGN_OR_RETURN(auto body, protocol::Decode<protocol::GrantRequest>(req.body));
  if (absl::Status st = ValidateRelativePath(body.path); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid path: ", std::string(st.message())));
  }
  if (!ctx->storage_grants_writes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "storage ", ctx->storage_url, " hands out no write grants: agents write to it directly"));
  }
  if (run.summary.state != "running") {
    return absl::FailedPreconditionError(
        absl::StrCat("run ", run_id, " is ", run.summary.state, ": it takes no more uploads"));
  }
  auto planned = ctx->index->GetRunFile(run_id, body.path);
  if (absl::IsNotFound(planned.status()) || (planned.ok() && planned->planned_reason.empty())) {
    return absl::NotFoundError(absl::StrCat("\"", body.path, "\" is not planned in run ", run_id));
  }
  if (!planned.ok()) return planned.status();
  auto job = ctx->index->GetJobById(run.job_id);
  if (absl::IsNotFound(job.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("the job of run ", run_id, " has been deleted"));
  }
  if (!job.ok()) return job.status();
  const std::string key = JoinKey(job->spec.dest_prefix, body.path);
  DS_ASSIGN_OR_RETURN(WriteGrant g,
                      ctx->storage->GrantWrite(key, planned->sha256, ctx->config.sas_ttl));
  spdlog::info("run={} runner={} write grant renewed for {}", run_id, runner.name, key);
  return protocol::Encode(
      protocol::GrantResponse{std::move(g.url), g.expires_unix_ms, std::move(g.kept_version)});
}

absl::StatusOr<std::string> CompareUntimed(ServerContext* ctx, const Request& req,
                                           const std::string& job_name);

bool IsLowerHexSha256(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

absl::StatusOr<std::string> Compare(ServerContext* ctx, const Request& req,
                                    const std::string& job_name) {
  auto started = std::chrono::steady_clock::now();
  auto out = CompareUntimed(ctx, req, job_name);
  if (out.ok()) {
    ctx->metrics.Observe("datasync_compare_duration_seconds",
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  return out;
}

absl::StatusOr<std::string> CompareUntimed(ServerContext* ctx, const Request& req,
                                           const std::string& job_name) {
  DS_ASSIGN_OR_RETURN(Runner runner, AuthenticateAgent(ctx, req));
  if (!IsValidName(job_name)) return absl::NotFoundError("no such job");
  auto job = ctx->index->GetJob(runner.id, job_name);
  if (absl::IsNotFound(job.status())) {
    return absl::NotFoundError(absl::StrCat("runner '", runner.name, "' has no job '", job_name, "'"));
  }
  if (!job.ok()) return job.status();
  DS_ASSIGN_OR_RETURN(auto cmp, protocol::Decode<protocol::CompareRequest>(req.body));
  if (!IsValidUuid(cmp.run_id)) return absl::InvalidArgumentError("run_id must be a lowercase UUID");
  if (cmp.files.size() > protocol::kMaxManifestBatch) {
    return absl::ResourceExhaustedError(absl::StrCat("manifest batch of ", cmp.files.size(),
                                                     " entries exceeds ",
                                                     protocol::kMaxManifestBatch));
  }
  if (cmp.trigger.size() > 32) return absl::InvalidArgumentError("trigger too long");
  std::set<std::string_view> seen;
  std::vector<std::string> paths;
  paths.reserve(cmp.files.size());
  for (size_t i = 0; i < cmp.files.size(); ++i) {
    const auto& e = cmp.files[i];
    absl::Status st = ValidateManifestEntry(e);
    if (!st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("files[", i, "]: ", std::string(st.message())));
    }
    if (!seen.insert(e.path).second) {
      return absl::InvalidArgumentError(absl::StrCat("files[", i, "]: duplicate path"));
    }
    paths.push_back(e.path);
  }
  if (!cmp.manifest_digest.empty() && !IsLowerHexSha256(cmp.manifest_digest)) {
    return absl::InvalidArgumentError("manifest_digest must be 64 lowercase hex digits");
  }
  if (!cmp.base_digest.empty() && !IsLowerHexSha256(cmp.base_digest)) {
    return absl::InvalidArgumentError("base_digest must be 64 lowercase hex digits");
  }
  // A delta batch (base_digest without manifest_digest) stands only while the job's digest is
  // still the base's: the entries it leaves out are then exactly what the index holds. Else
  // "base moved" (409, reason base_moved): the agent sends the whole manifest instead.
  const bool delta_batch = !cmp.base_digest.empty() && cmp.manifest_digest.empty();
  if (delta_batch) {
    DS_ASSIGN_OR_RETURN(std::string known, ctx->index->GetJobManifestDigest(job->spec.id));
    if (known != cmp.base_digest) {
      return http::BaseMovedError(
          "the job's index changed since the base manifest: compare the whole manifest");
    }
  }
  DS_ASSIGN_OR_RETURN(Run run, ctx->index->BeginRun(cmp.run_id, runner.id, job->spec.id,
                                                    cmp.trigger, ctx->NowMs()));
  bool base_match = false;
  if (!cmp.manifest_digest.empty()) {
    // The no-op cycle: the run carries the digest (it becomes the job's if the run succeeds);
    // a digest-only request matching the job's answers "nothing to do" and closes the plan.
    // Matching the base instead: the agent may send only what changed since it.
    DS_RETURN_IF_ERROR(ctx->index->SetRunManifestDigest(cmp.run_id, cmp.manifest_digest));
    DS_ASSIGN_OR_RETURN(std::string known, ctx->index->GetJobManifestDigest(job->spec.id));
    base_match = cmp.files.empty() && !cmp.base_digest.empty() && known == cmp.base_digest;
    if (cmp.files.empty() && known == cmp.manifest_digest) {
      DS_RETURN_IF_ERROR(ctx->index->RecordPlanned(cmp.run_id, {}, static_cast<int64_t>(cmp.total_files),
                                                   static_cast<int64_t>(cmp.total_bytes)));
      spdlog::info("compare runner={} job={} run={}: manifest unchanged ({} files), nothing to upload",
                   runner.name, job_name, cmp.run_id, cmp.total_files);
      protocol::CompareResponse out;
      out.run_id = cmp.run_id;
      out.storage_url = ctx->storage_url;
      out.manifest_match = true;
      return protocol::Encode(out);
    }
  }
  DS_ASSIGN_OR_RETURN(auto rows, ctx->index->LookupSyncedFiles(job->spec.id, paths));
  std::unordered_map<std::string_view, IndexedFile> indexed;
  std::unordered_map<std::string_view, const SyncedFile*> synced;
  indexed.reserve(rows.size());
  for (const auto& r : rows) {
    indexed.emplace(r.path, IndexedFile{r.size, r.sha256});
    synced.emplace(r.path, &r);
  }

  protocol::CompareResponse out;
  out.run_id = cmp.run_id;
  out.storage_url = ctx->storage_url;
  out.base_match = base_match;
  if (cmp.files.empty() && cmp.manifest_digest.empty() && cmp.base_digest.empty() && !cmp.last) {
    // The opening request of an agent without a previous manifest: say whether the index holds
    // anything of this job (one row at most is read).
    DS_ASSIGN_OR_RETURN(auto any, ctx->index->ListSyncedFiles(job->spec.id, "", 1));
    out.index_empty = any.empty();
  }
  std::vector<RunFile> planned;
  std::vector<ChangedFile> changed;
  for (const auto& e : cmp.files) {
    auto it = indexed.find(e.path);
    auto reason = PlanReason(e, it == indexed.end() ? nullptr : &it->second);
    if (!reason) continue;
    std::string key = JoinKey(job->spec.dest_prefix, e.path);
    if (auto was = synced.find(e.path); was != synced.end() && was->second->sha256 != e.sha256) {
      // Measurement files should never change once synced: the operator must hear of it.
      changed.push_back(ChangedFile{*was->second, e.size, e.sha256});
    }
    out.upload.push_back(protocol::UploadInstruction{e.path, key, *reason});
    RunFile rf;
    rf.path = e.path;
    rf.planned_reason = *reason;
    rf.size = e.size;
    rf.sha256 = e.sha256;
    planned.push_back(std::move(rf));
  }
  if (ctx->storage_grants_writes && !out.upload.empty()) {
    DS_RETURN_IF_ERROR(GrantUploads(ctx, cmp.run_id, planned, &out.upload));
  }
  DS_RETURN_IF_ERROR(ctx->index->RecordPlanned(
      cmp.run_id, planned, cmp.last ? static_cast<int64_t>(cmp.total_files) : -1,
      cmp.last ? static_cast<int64_t>(cmp.total_bytes) : -1));
  ReportFilesChanged(ctx, runner, job_name, cmp.run_id, changed);
  spdlog::info("compare runner={} job={} run={}: {} {}entries, {} to upload{}{}", runner.name,
               job_name, cmp.run_id, cmp.files.size(), delta_batch ? "changed " : "",
               out.upload.size(), cmp.last ? " (last batch)" : "",
               base_match ? " (base manifest matches: a delta follows)" : "");
  (void)run;
  return protocol::Encode(out);
}

std::string FinalState(const Run& run, bool interrupted, const std::string& error) {
  const auto& s = run.summary;
  if (interrupted) return "abandoned";
  // A planned file the agent skipped (a name the destination cannot hold, a file gone since the
  // scan) is resolved: it is reported, not pending.
  uint64_t resolved = s.files_uploaded + s.files_failed + s.files_skipped;
  uint64_t unresolved = s.files_planned - std::min(s.files_planned, resolved);
  if (!error.empty() && s.files_uploaded == 0) return "failed";
  if (s.files_failed > 0 || unresolved > 0 || !error.empty()) {
    return s.files_uploaded == 0 && s.files_planned > 0 ? "failed" : "partial";
  }
  if (s.files_skipped > 0) return "partial";
  return "succeeded";
}

// Files a scrub found lost or corrupted (scrub_lost) are healed once a run uploads them again.
void ClearHealedFiles(ServerContext* ctx, const Run& run,
                      const std::vector<protocol::FileResult>& results) {
  std::vector<std::string> uploaded;
  for (const auto& r : results) {
    if (r.status == "uploaded") uploaded.push_back(r.path);
  }
  if (uploaded.empty() || run.job_id == 0) return;
  auto n = ctx->index->ClearScrubLost(run.job_id, uploaded);
  if (!n.ok()) {
    spdlog::warn("run={} clearing healed files: {}", run.summary.run_id, n.status());
  } else if (*n > 0) {
    spdlog::info("run={} {} file(s) a scrub found lost or corrupted are stored again (healed)",
                 run.summary.run_id, *n);
  }
}

absl::StatusOr<std::string> Complete(ServerContext* ctx, const Request& req,
                                     const std::string& run_id) {
  DS_ASSIGN_OR_RETURN(Runner runner, AuthenticateAgent(ctx, req));
  DS_ASSIGN_OR_RETURN(Run run, RunOfRunner(ctx, runner, run_id));
  DS_ASSIGN_OR_RETURN(auto cmp, protocol::Decode<protocol::CompleteRequest>(req.body));
  if (cmp.results.size() > protocol::kMaxManifestBatch) {
    return absl::ResourceExhaustedError("too many results in one batch");
  }
  if (cmp.error.size() > 4096) cmp.error.resize(4096);
  for (size_t i = 0; i < cmp.results.size(); ++i) {
    auto& r = cmp.results[i];
    absl::Status st = ValidateIndexPath(r.path);
    if (!st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("results[", i, "]: invalid path: ", std::string(st.message())));
    }
    if (r.status != "uploaded" && r.status != "failed" && r.status != "skipped") {
      return absl::InvalidArgumentError(absl::StrCat("results[", i, "]: status must be uploaded, failed or skipped"));
    }
    if (r.status == "uploaded" &&
        (r.sha256.size() != 64 || r.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)) {
      return absl::InvalidArgumentError(absl::StrCat("results[", i, "]: uploaded needs a sha256"));
    }
    if (r.error.size() > 2048) r.error.resize(2048);
    if (!r.kept_version.empty() && !ValidateRelativePath(r.kept_version).ok()) {
      return absl::InvalidArgumentError(absl::StrCat("results[", i, "]: invalid kept_version"));
    }
  }
  if (ctx->storage_grants_writes)
    DS_RETURN_IF_ERROR(CheckLandedContent(ctx, run, run_id, &cmp.results));
  uint64_t accepted = 0;
  if (!cmp.results.empty()) {
    auto n = ctx->index->RecordResults(run_id, cmp.results, ctx->NowMs());
    if (!n.ok()) {
      if (absl::IsFailedPrecondition(n.status()) && run.summary.state != "running" &&
          cmp.final) {
        // A retried final batch after the run closed: answer with the recorded state.
        return protocol::Encode(protocol::CompleteResponse{0, run.summary.state});
      }
      return n.status();
    }
    accepted = *n;
    ClearHealedFiles(ctx, run, cmp.results);
  }
  std::string state = run.summary.state;
  if (cmp.final) {
    DS_ASSIGN_OR_RETURN(Run current, ctx->index->GetRun(run_id));
    if (current.summary.state == "running") {
      state = FinalState(current, cmp.interrupted, cmp.error);
      DS_ASSIGN_OR_RETURN(Run done, ctx->index->FinishRun(run_id, state, cmp.error, ctx->NowMs()));
      const auto& s = done.summary;
      // Counted when the run closes, so a retried batch is never counted twice.
      ctx->metrics.Add("datasync_runs_total", {{"result", state}});
      ctx->metrics.Add("datasync_files_synced_total", {}, static_cast<double>(s.files_uploaded));
      ctx->metrics.Add("datasync_bytes_synced_total", {}, static_cast<double>(s.bytes_uploaded));
      spdlog::info("run={} runner={} job={} finished {}: {} seen, {} uploaded ({} bytes), {} failed, {} skipped",
                   run_id, runner.name, s.job, state, s.files_seen, s.files_uploaded, s.bytes_uploaded,
                   s.files_failed, s.files_skipped);
    } else {
      state = current.summary.state;
    }
  }
  return protocol::Encode(protocol::CompleteResponse{accepted, state});
}

}  // namespace

void AddAgentRoutes(ServerContext* ctx, Router* router) {
  Throttles* throttles = &ThrottlesOf(ctx);
  // Every route but register authenticates; an address sending wrong keys is refused first.
  auto sync = [ctx](auto fn) {
    return [ctx, fn](const Request& req, const PathParams& p, Responder respond) {
      if (auto refused = RefuseIfFailingAuth(ctx, req)) return respond(std::move(*refused));
      Reply(respond, Guarded([&] { return fn(req, p); }));
    };
  };
  router->Add("POST", "/api/v1/agent/register", [ctx, throttles](const Request& req, const PathParams&, Responder respond) {
    if (auto refused = Throttle(ctx, throttles->registrations, req, "registrations")) return respond(std::move(*refused));
    Reply(respond, Guarded([&] { return Register(ctx, req); }), 202);
  });
  router->Add("GET", "/api/v1/agent/enrollment/{id}", [ctx, throttles](const Request& req, const PathParams& p, Responder respond) {
    if (auto refused = Throttle(ctx, throttles->enrollment_polls, req, "enrollment polls")) return respond(std::move(*refused));
    if (auto refused = RefuseIfFailingAuth(ctx, req)) return respond(std::move(*refused));
    auto out = Guarded([&] { return PollEnrollment(ctx, req, p.at("id")); });
    if (absl::IsUnauthenticated(out.status())) RecordAuthFailure(ctx, req, "enrollment secret", BearerToken(req));
    Reply(respond, out);
  });
  router->Add("POST", "/api/v1/agent/heartbeat",
              sync([ctx](const Request& req, const PathParams&) { return Heartbeat(ctx, req); }));
  router->Add("GET", "/api/v1/agent/commands", [ctx](const Request& req, const PathParams&, Responder respond) {
    if (auto refused = RefuseIfFailingAuth(ctx, req)) return respond(std::move(*refused));
    Commands(ctx, req, respond);
  });
  router->Add("GET", "/api/v1/agent/jobs",
              sync([ctx](const Request& req, const PathParams&) { return Jobs(ctx, req); }));
  router->Add("POST", "/api/v1/agent/jobs/{job}/compare", sync([ctx](const Request& req, const PathParams& p) {
                return Compare(ctx, req, p.at("job"));
              }));
  router->Add("POST", "/api/v1/agent/runs/{run}/complete", sync([ctx](const Request& req, const PathParams& p) {
                return Complete(ctx, req, p.at("run"));
              }));
  router->Add("POST", "/api/v1/agent/runs/{run}/grant",
              sync([ctx](const Request& req, const PathParams& p) {
                return Grant(ctx, req, p.at("run"));
              }));
  router->Add("POST", "/api/v1/agent/logs",
              sync([ctx](const Request& req, const PathParams&) { return Logs(ctx, req); }));
  router->Add("GET", "/api/v1/agent/releases/{version}/{file}",
              [ctx](const Request& req, const PathParams& p, Responder respond) {
                if (auto refused = RefuseIfFailingAuth(ctx, req)) return respond(std::move(*refused));
                absl::StatusOr<Runner> runner = AuthenticateAgent(ctx, req);
                if (!runner.ok()) return respond(http::ProblemResponse(runner.status()));
                respond(ServeRelease(ctx, p.at("version"), p.at("file")));
              });
  (void)CorrelationTag;
}

}  // namespace ds
