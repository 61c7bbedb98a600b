// The admin API used by the CLI and the dashboard: runners, jobs, sync now, runs, files, status.
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/paths.h"
#include "protocol/messages.h"
#include "server/context.h"
#include "server/releases.h"
#include "common/log.h"

namespace ds {
namespace {

using http::Request;
using http::Responder;
using nlohmann::json;

constexpr size_t kMaxGlobs = 64;
constexpr size_t kMaxGlobBytes = 256;

// The runner's last reported health (docs/api.md), or null before its first report.
json HealthJson(const Runner& r) {
  json h = ParseJsonOr(r.health_json);
  if (!h.is_object() || h.empty()) return nullptr;
  return h;
}

json RunnerJson(const Runner& r, int64_t now_ms, int64_t heartbeat_ms) {
  bool online = r.status == "approved" && r.last_heartbeat_at_ms > 0 &&
                now_ms - r.last_heartbeat_at_ms <= 3 * heartbeat_ms;
  return json{{"id", r.id},
              {"name", r.name},
              {"status", r.status},
              {"group", r.group},
              {"online", online},
              {"hostname", r.hostname},
              {"os", r.os},
              {"machine_id", r.machine_id},
              {"agent_version", r.agent_version},
              {"runtime_state", r.runtime_state},
              {"current_run", r.current_run},
              {"jobs_version", r.jobs_version},
              {"created_at", FormatIsoUtc(r.created_at_ms)},
              {"approved_at", FormatIsoUtc(r.approved_at_ms)},
              {"last_heartbeat_at", FormatIsoUtc(r.last_heartbeat_at_ms)},
              {"last_activity_at", FormatIsoUtc(r.last_activity_at_ms)},
              {"last_heartbeat_at_ms", r.last_heartbeat_at_ms},
              {"last_activity_at_ms", r.last_activity_at_ms},
              {"health", HealthJson(r)}};
}

json EnrollmentJson(const Enrollment& e) {
  return json{{"id", e.id},
              {"hostname", e.hostname},
              {"address", e.address},
              {"os", e.os},
              {"machine_id", e.machine_id},
              {"agent_version", e.agent_version},
              {"created_at", FormatIsoUtc(e.created_at_ms)},
              {"created_at_ms", e.created_at_ms}};
}

// RunnerJson plus the registrations waiting on the runner: its pending enrollments, oldest first
// (the pending runner's candidates, or replacement requests of an enrolled one).
absl::StatusOr<json> RunnerDetailJson(ServerContext* ctx, const Runner& r) {
  json out = RunnerJson(r, ctx->NowMs(), ctx->config.heartbeat_interval.count());
  json pending = json::array();
  if (r.pending_enrollment) {
    DS_ASSIGN_OR_RETURN(std::vector<Enrollment> list, ctx->index->ListPendingEnrollments(r.id));
    for (const auto& e : list) pending.push_back(EnrollmentJson(e));
  }
  out["pending_enrollments"] = std::move(pending);
  out["replacement_pending"] = r.status != "pending" && r.pending_enrollment;
  return out;
}

std::string DumpJson(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// The request body as a JSON object; an empty body is {}. InvalidArgument otherwise.
absl::StatusOr<json> OptionalObjectBody(const Request& req) {
  if (req.body.empty()) return json::object();
  json body = ParseJsonOr(req.body);
  if (!body.is_object()) return absl::InvalidArgumentError("body must be a JSON object");
  return body;
}

// body[key] as a string ("" when absent). InvalidArgument when it is not a string.
absl::StatusOr<std::string> StringMember(const json& body, const char* key) {
  if (!body.contains(key)) return std::string();
  if (!body[key].is_string())
    return absl::InvalidArgumentError(absl::StrCat("'", key, "' must be a string"));
  return body[key].get<std::string>();
}

// The pending enrollment of `runner` that `body` names ({"enrollment": "ID"}), or its only one
// when the body names none. NotFound for an id that is not one of them; FailedPrecondition (409)
// when there is none (`none` says what to do) or several and none named (the message lists them).
absl::StatusOr<Enrollment> ChooseEnrollment(ServerContext* ctx, const Runner& runner,
                                            const json& body, const std::string& none) {
  DS_ASSIGN_OR_RETURN(std::string id, StringMember(body, "enrollment"));
  DS_ASSIGN_OR_RETURN(std::vector<Enrollment> pending,
                      ctx->index->ListPendingEnrollments(runner.id));
  if (!id.empty()) {
    for (auto& e : pending) {
      if (e.id == id) return std::move(e);
    }
    return absl::NotFoundError(absl::StrCat("runner '", runner.name, "' has no pending enrollment ",
                                            IsValidUuid(id) ? id : "with that id"));
  }
  if (pending.empty()) return absl::FailedPreconditionError(none);
  if (pending.size() == 1) return std::move(pending.front());
  std::string choices;
  for (const auto& e : pending) {
    absl::StrAppend(&choices, choices.empty() ? "" : "; ", e.id, " (host '", e.hostname, "' from ",
                    e.address.empty() ? "?" : e.address, " at ", FormatIsoUtc(e.created_at_ms),
                    ")");
  }
  return absl::FailedPreconditionError(
      absl::StrCat("runner '", runner.name, "' has ", pending.size(),
                   " pending enrollments; choose one with {\"enrollment\": \"ID\"} (datasync "
                   "runners ... --enrollment ID): ",
                   choices));
}

json JobJson(const Job& j) {
  json out = j.spec;
  out["runner"] = j.runner_name;
  out["created_at"] = FormatIsoUtc(j.created_at_ms);
  return out;
}

json RunJson(const Run& r) {
  json out = r.summary;
  out["started_at"] = FormatIsoUtc(r.summary.started_at_ms);
  out["finished_at"] = FormatIsoUtc(r.summary.finished_at_ms);
  return out;
}

// Adds `last_run` (or null) and `health` to a job's JSON for the dashboard: disabled | never (no
// run yet) | running | failing (last run failed or partial) | late (no run started within two
// intervals) | healthy.
absl::Status AddLastRun(ServerContext* ctx, const Job& job, json* out) {
  RunFilter f;
  f.job_id = job.spec.id;
  f.runner_id = job.runner_id;
  f.limit = 1;
  DS_ASSIGN_OR_RETURN(auto runs, ctx->index->ListRuns(f));
  const int64_t now = ctx->NowMs();
  std::string health;
  if (runs.empty()) {
    (*out)["last_run"] = nullptr;
    health = job.spec.enabled ? (now - job.created_at_ms > 2 * job.spec.interval_ms ? "late" : "never") : "disabled";
  } else {
    const protocol::RunSummary& r = runs.front().summary;
    (*out)["last_run"] = json{{"run_id", r.run_id}, {"state", r.state}, {"started_at_ms", r.started_at_ms},
                              {"finished_at_ms", r.finished_at_ms}, {"files_uploaded", r.files_uploaded},
                              {"files_failed", r.files_failed}, {"bytes_uploaded", r.bytes_uploaded}};
    if (!job.spec.enabled) {
      health = "disabled";
    } else if (r.state == "running") {
      health = "running";
    } else if (r.state == "failed" || r.state == "partial") {
      health = "failing";
    } else if (now - r.started_at_ms > 2 * job.spec.interval_ms + job.spec.settle_ms) {
      health = "late";
    } else {
      health = "healthy";
    }
  }
  (*out)["health"] = health;
  return absl::OkStatus();
}

absl::StatusOr<Runner> RunnerByName(ServerContext* ctx, const std::string& name) {
  if (!IsValidName(name)) return absl::NotFoundError(absl::StrCat("no runner named '", name, "'"));
  auto r = ctx->index->GetRunnerByName(name);
  if (absl::IsNotFound(r.status())) return absl::NotFoundError(absl::StrCat("no runner named '", name, "'"));
  return r;
}

absl::StatusOr<Job> JobByName(ServerContext* ctx, const Runner& runner, const std::string& name) {
  if (!IsValidName(name)) return absl::NotFoundError(absl::StrCat("no job named '", name, "'"));
  auto j = ctx->index->GetJob(runner.id, name);
  if (absl::IsNotFound(j.status())) {
    return absl::NotFoundError(absl::StrCat("runner '", runner.name, "' has no job '", name, "'"));
  }
  return j;
}

absl::StatusOr<int> IntQuery(const Request& req, const std::string& name, int fallback, int max) {
  std::string v = req.Query(name);
  if (v.empty()) return fallback;
  if (v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("query parameter '", name, "' must be a number"));
  }
  return std::min(std::stoi(v), max);
}

// The first component of a dest prefix as a storage may take it: ASCII case folded (Samba shares,
// Windows and macOS volumes, Azure tools compare names so) and without the trailing dots and
// spaces that Windows and SMB drop from names. Reserved areas are matched on this.
std::string FoldedFirstComponent(const std::string& prefix) {
  std::string first = absl::AsciiStrToLower(prefix.substr(0, prefix.find('/')));
  while (!first.empty() && (first.back() == '.' || first.back() == ' ')) first.pop_back();
  return first;
}

// Validates a job definition from the wire and fills defaults.
absl::Status ValidateJobSpec(protocol::JobSpec& spec) {
  if (!IsValidName(spec.name)) {
    return absl::InvalidArgumentError("job name must be 1-64 characters of A-Z a-z 0-9 . _ -");
  }
  if (spec.source.empty() || spec.source.size() > kMaxPathBytes ||
      spec.source.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("source must be a non-empty folder path on the runner");
  }
  absl::Status st = ValidateRelativePath(spec.dest_prefix);
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("dest prefix: ", std::string(st.message())));
  }
  const std::string first = FoldedFirstComponent(spec.dest_prefix);
  if (first.rfind(std::string(kReservedArea), 0) == 0) {
    return absl::InvalidArgumentError("dest prefix must not be inside the reserved .datasync area");
  }
  if (first == kReleasesArea) {
    return absl::InvalidArgumentError(
        "dest prefix must not be inside releases/ (server-side files: agent releases)");
  }
  for (const auto* globs : {&spec.includes, &spec.excludes}) {
    if (globs->size() > kMaxGlobs) return absl::InvalidArgumentError("too many include/exclude globs");
    for (const auto& g : *globs) {
      if (g.empty() || g.size() > kMaxGlobBytes || g.find('\0') != std::string::npos) {
        return absl::InvalidArgumentError("include/exclude globs must be 1-256 bytes");
      }
    }
  }
  if (spec.interval_ms < 1000) return absl::InvalidArgumentError("interval must be at least 1s");
  if (spec.settle_ms < 0) return absl::InvalidArgumentError("settle must not be negative");
  return absl::OkStatus();
}

// Two jobs writing overlapping prefixes would corrupt each other's index on reconcile.
absl::Status CheckPrefixFree(ServerContext* ctx, const Job* existing, const protocol::JobSpec& spec) {
  DS_ASSIGN_OR_RETURN(auto jobs, ctx->index->ListJobs(std::nullopt));
  const std::string& p = spec.dest_prefix;
  for (const auto& j : jobs) {
    if (existing != nullptr && j.spec.id == existing->spec.id) continue;
    const std::string& q = j.spec.dest_prefix;
    bool overlap = p == q || (p.size() > q.size() && p.compare(0, q.size(), q) == 0 && p[q.size()] == '/') ||
                   (q.size() > p.size() && q.compare(0, p.size(), p) == 0 && q[p.size()] == '/');
    if (overlap) {
      return absl::AlreadyExistsError(absl::StrCat("dest prefix '", p, "' overlaps job '", j.runner_name, "/",
                                                   j.spec.name, "' (prefix '", q, "')"));
    }
  }
  return absl::OkStatus();
}

// The runner named in the path; with ?create_runner=1 (job import onto a fresh index) a missing
// runner is created as pending, so its agent's next registration takes it over on approval.
absl::StatusOr<Runner> RunnerForJob(ServerContext* ctx, const Request& req, const std::string& name) {
  auto runner = RunnerByName(ctx, name);
  if (!absl::IsNotFound(runner.status()) || req.Query("create_runner") != "1" || !IsValidName(name)) {
    return runner;
  }
  // No enrollment yet: the agent's own registration brings one, which the operator approves.
  DS_ASSIGN_OR_RETURN(Runner created, ctx->index->CreatePendingRunner(name, ctx->NowMs()));
  spdlog::info("admin: runner '{}' created as pending for a job import; approve it once its agent registers",
               name);
  return created;
}

absl::StatusOr<std::string> PutJob(ServerContext* ctx, const Request& req, const PathParams& p,
                                   bool replace) {
  DS_ASSIGN_OR_RETURN(Runner runner, RunnerForJob(ctx, req, p.at("runner")));
  protocol::JobSpec spec;
  try {
    DS_ASSIGN_OR_RETURN(json body, ParseJsonObject(req.body));
    if (!body.contains("name")) body["name"] = p.at("job");
    spec = body.get<protocol::JobSpec>();
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid job definition: ", e.what()));
  }
  if (spec.name != p.at("job")) return absl::InvalidArgumentError("job name in body differs from URL");
  DS_RETURN_IF_ERROR(ValidateJobSpec(spec));
  std::optional<Job> existing;
  if (auto j = ctx->index->GetJob(runner.id, spec.name); j.ok()) {
    existing = *j;
    if (!replace) {
      return absl::AlreadyExistsError(absl::StrCat("runner '", runner.name, "' already has a job '", spec.name, "'"));
    }
  }
  DS_RETURN_IF_ERROR(CheckPrefixFree(ctx, existing ? &*existing : nullptr, spec));
  DS_ASSIGN_OR_RETURN(Job job, ctx->index->PutJob(runner.id, spec, replace, ctx->NowMs()));
  spdlog::info("admin: job {}/{} {} (source '{}', dest '{}')", runner.name, spec.name,
               existing ? "replaced" : "created", spec.source, spec.dest_prefix);
  return JobJson(job).dump();
}

// approve | reject one pending enrollment of a pending runner (ChooseEnrollment picks it).
absl::StatusOr<std::string> Decide(ServerContext* ctx, const Request& req, const Principal& who,
                                   const std::string& name, bool approve) {
  const char* action = approve ? "approve" : "reject";
  DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, name));
  if (runner.status != "pending") {
    std::string hint;
    if (approve && runner.pending_enrollment) {
      hint = absl::StrCat("; a new machine asks to take it over: datasync runners replace ", name);
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot ", action, " runner '", name, "': it is ", runner.status, ", not pending", hint));
  }
  DS_ASSIGN_OR_RETURN(json body, OptionalObjectBody(req));
  DS_ASSIGN_OR_RETURN(
      Enrollment e,
      ChooseEnrollment(
          ctx, runner, body,
          absl::StrCat("runner '", name, "' has no pending enrollment: start its agent first")));
  who.audit_notes["enrollment"] = e.id;
  DS_RETURN_IF_ERROR(ctx->index->DecideEnrollment(runner.id, e.id, approve, ctx->NowMs()));
  spdlog::info("admin: runner '{}': enrollment {} (host '{}' from {}) {}", name, e.id, e.hostname,
               e.address, approve ? "approved" : "rejected");
  DS_ASSIGN_OR_RETURN(Runner updated, ctx->index->GetRunnerById(runner.id));
  DS_ASSIGN_OR_RETURN(json out, RunnerDetailJson(ctx, updated));
  out["enrollment"] = e.id;
  return DumpJson(out);
}

// An approved or quarantined runner: every key of it stops working.
absl::StatusOr<std::string> Revoke(ServerContext* ctx, const std::string& name) {
  DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, name));
  if (runner.status != "approved" && runner.status != "quarantined") {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot revoke runner '", name, "': it is ", runner.status, ", not approved"));
  }
  DS_RETURN_IF_ERROR(
      ctx->index->TransitionRunner(runner.id, runner.status, "revoked", ctx->NowMs()));
  spdlog::info("admin: runner '{}' {} -> revoked", name, runner.status);
  DS_ASSIGN_OR_RETURN(Runner updated, ctx->index->GetRunnerById(runner.id));
  return DumpJson(RunnerJson(updated, ctx->NowMs(), ctx->config.heartbeat_interval.count()));
}

// DELETE /runners/{runner}: a pending, rejected or revoked runner without jobs, with its
// enrollments (audited by id), so that its name is free again.
absl::StatusOr<std::string> DeleteRunner(ServerContext* ctx, const Principal& who,
                                         const std::string& name) {
  DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, name));
  DS_ASSIGN_OR_RETURN(std::vector<Enrollment> pending,
                      ctx->index->ListPendingEnrollments(runner.id));
  std::string ids;
  for (const auto& e : pending) absl::StrAppend(&ids, ids.empty() ? "" : ",", e.id);
  if (!ids.empty()) who.audit_notes["enrollment"] = ids;
  DS_RETURN_IF_ERROR(ctx->index->DeleteRunner(runner.id));
  spdlog::info("admin: runner '{}' ({}) deleted with its enrollments; the name is free", name,
               runner.status);
  return json{{"deleted", runner.name}, {"status", runner.status}}.dump();
}

bool BoolField(const std::string& body, const char* key) {
  if (body.empty()) return false;
  try {
    json j = ParseJsonOr(body);
    return j.is_object() && j.value(key, false);
  } catch (const json::exception&) {
    return false;
  }
}

absl::StatusOr<std::string> StartReconcile(ServerContext* ctx, const Request& req, const PathParams& p) {
  DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, p.at("runner")));
  DS_ASSIGN_OR_RETURN(Job job, JobByName(ctx, runner, p.at("job")));
  if (!req.body.empty()) DS_RETURN_IF_ERROR(ParseJson(req.body).status());
  bool verify = BoolField(req.body, "verify") || req.Query("verify") == "true";
  auto r = ctx->index->CreateReconcile(NewUuid(), job.spec.id, verify, ctx->NowMs());
  if (absl::IsAlreadyExists(r.status())) {
    return absl::AlreadyExistsError(absl::StrCat("a reconcile of ", runner.name, "/", job.spec.name,
                                                 " is already in progress (datasync reconcile status)"));
  }
  if (!r.ok()) return r.status();
  ctx->reconciles->Wake();
  spdlog::info("admin: reconcile {} of {}/{} queued{}", r->id, runner.name, job.spec.name, verify ? " (verify)" : "");
  return ReconcileJson(*r, ctx->NowMs());
}

// Queues `create(job_id)` for every job: {"queued": [to_json(...)...], "already_running":
// ["runner/job", ...]} (AlreadyExists: one is queued or running for that job).
template <typename Create, typename ToJson>
absl::StatusOr<json> QueueForEveryJob(ServerContext* ctx, Create create, ToJson to_json) {
  DS_ASSIGN_OR_RETURN(auto jobs, ctx->index->ListJobs(std::nullopt));
  json queued = json::array(), busy = json::array();
  for (const auto& j : jobs) {
    auto r = create(j.spec.id);
    if (absl::IsAlreadyExists(r.status())) {
      busy.push_back(j.runner_name + "/" + j.spec.name);
      continue;
    }
    if (!r.ok()) return r.status();
    queued.push_back(ParseJsonOr(to_json(*r, ctx->NowMs())));
  }
  return json{{"queued", queued}, {"already_running", busy}};
}

absl::StatusOr<std::string> ReconcileAll(ServerContext* ctx, const Request& req) {
  bool verify = BoolField(req.body, "verify");
  DS_ASSIGN_OR_RETURN(json out, QueueForEveryJob(ctx, [&](int64_t job_id) {
    return ctx->index->CreateReconcile(NewUuid(), job_id, verify, ctx->NowMs());
  }, ReconcileJson));
  ctx->reconciles->Wake();
  spdlog::info("admin: reconcile of all jobs: {} queued, {} already running", out["queued"].size(),
               out["already_running"].size());
  return out.dump();
}

absl::StatusOr<std::string> ListReconciles(ServerContext* ctx, const Request& req) {
  std::optional<int64_t> job_id;
  if (std::string r = req.Query("runner"); !r.empty()) {
    DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, r));
    if (std::string j = req.Query("job"); !j.empty()) {
      DS_ASSIGN_OR_RETURN(Job job, JobByName(ctx, runner, j));
      job_id = job.spec.id;
    }
  }
  DS_ASSIGN_OR_RETURN(int limit, IntQuery(req, "limit", 20, 1000));
  DS_ASSIGN_OR_RETURN(auto list, ctx->index->ListReconciles(job_id, req.Query("active") == "1", limit));
  json out = json::array();
  for (const auto& r : list) out.push_back(ParseJsonOr(ReconcileJson(r, ctx->NowMs())));
  return json{{"reconciles", out}}.dump();
}

// ---- scrub (docs/api.md) ---------------------------------------------------------------------

// The body's rehash_fraction (0..1), or the server's --scrub-rehash when absent. `want_all`: the
// body must also say {"all": true}.
absl::StatusOr<double> ScrubBody(ServerContext* ctx, const Request& req, bool want_all) {
  json body = req.body.empty() ? json::object() : ParseJsonOr(req.body);
  if (!body.is_object()) return absl::InvalidArgumentError("body must be a JSON object");
  if (want_all && body.value("all", json(false)) != json(true)) {
    return absl::InvalidArgumentError(R"(body must say {"all": true} to scrub every job)");
  }
  if (!body.contains("rehash_fraction")) return ctx->config.scrub_rehash;
  const json& f = body["rehash_fraction"];
  if (!f.is_number() || !(f.get<double>() >= 0.0 && f.get<double>() <= 1.0)) {
    return absl::InvalidArgumentError("rehash_fraction must be a number from 0 to 1");
  }
  return f.get<double>();
}

absl::StatusOr<std::string> StartScrub(ServerContext* ctx, const Request& req, const PathParams& p) {
  DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, p.at("runner")));
  DS_ASSIGN_OR_RETURN(Job job, JobByName(ctx, runner, p.at("job")));
  DS_ASSIGN_OR_RETURN(double fraction, ScrubBody(ctx, req, false));
  auto s = ctx->index->CreateScrub(NewUuid(), job.spec.id, "operator", fraction, ctx->NowMs());
  if (absl::IsAlreadyExists(s.status())) {
    return absl::AlreadyExistsError(absl::StrCat("a scrub of ", runner.name, "/", job.spec.name,
                                                 " is already queued or running (datasync scrub status)"));
  }
  if (!s.ok()) return s.status();
  ctx->scrubs->Wake();
  spdlog::info("admin: scrub {} of {}/{} queued (re-hashing {})", s->id, runner.name, job.spec.name, fraction);
  return ScrubJson(*s, ctx->NowMs());
}

absl::StatusOr<std::string> ScrubAll(ServerContext* ctx, const Request& req) {
  DS_ASSIGN_OR_RETURN(double fraction, ScrubBody(ctx, req, true));
  DS_ASSIGN_OR_RETURN(json out, QueueForEveryJob(ctx, [&](int64_t job_id) {
    return ctx->index->CreateScrub(NewUuid(), job_id, "operator", fraction, ctx->NowMs());
  }, ScrubJson));
  ctx->scrubs->Wake();
  spdlog::info("admin: scrub of all jobs: {} queued, {} already running", out["queued"].size(),
               out["already_running"].size());
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<std::string> ListScrubs(ServerContext* ctx, const Request& req) {
  ScrubFilter filter;
  if (std::string r = req.Query("runner"); !r.empty()) {
    DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, r));
    if (std::string j = req.Query("job"); !j.empty()) {
      DS_ASSIGN_OR_RETURN(Job job, JobByName(ctx, runner, j));
      filter.job_id = job.spec.id;
    }
  } else if (!req.Query("job").empty()) {
    return absl::InvalidArgumentError("job= needs runner=");
  }
  if (std::string st = req.Query("state"); !st.empty()) {
    if (st != "queued" && st != "running" && st != "succeeded" && st != "failed") {
      return absl::InvalidArgumentError("state must be queued, running, succeeded or failed");
    }
    filter.state = st;
  }
  DS_ASSIGN_OR_RETURN(filter.limit, IntQuery(req, "limit", 20, 1000));
  if (filter.limit < 1) return absl::InvalidArgumentError("limit must be from 1 to 1000");
  DS_ASSIGN_OR_RETURN(auto list, ctx->index->ListScrubs(filter));
  json out = json::array();
  for (const auto& s : list) out.push_back(ParseJsonOr(ScrubJson(s, ctx->NowMs())));
  return json{{"scrubs", out}}.dump();
}

absl::StatusOr<std::string> ScrubStatus(ServerContext* ctx) {
  DS_ASSIGN_OR_RETURN(auto jobs, ctx->index->ListJobs(std::nullopt));
  DS_ASSIGN_OR_RETURN(auto latest, ctx->index->LatestScrubs({}));
  DS_ASSIGN_OR_RETURN(auto finished, ctx->index->LatestScrubs({"succeeded", "failed"}));
  std::map<int64_t, const Scrub*> last, done;
  for (const Scrub& s : latest) last[s.job_id] = &s;
  for (const Scrub& s : finished) done[s.job_id] = &s;
  const int64_t now = ctx->NowMs();
  json out = json::array();
  for (const Job& j : jobs) {
    const Scrub* l = last.count(j.spec.id) ? last[j.spec.id] : nullptr;
    const Scrub* d = done.count(j.spec.id) ? done[j.spec.id] : nullptr;
    int64_t due = NextScrubDueMs(l, j.created_at_ms, ctx->config.scrub_interval.count());
    out.push_back({{"runner", j.runner_name},
                   {"job", j.spec.name},
                   {"last", l ? ParseJsonOr(ScrubJson(*l, now)) : json(nullptr)},
                   {"next_due_at", due > 0 ? FormatIsoUtc(due) : ""},
                   {"drift", d != nullptr && ScrubHasDrift(*d)},
                   {"unhealed", d != nullptr ? d->unhealed : 0}});
  }
  return json{{"jobs", out},
              {"interval_s", ctx->config.scrub_interval.count() / 1000},
              {"rate_objects_per_s", ctx->config.scrub_rate},
              {"rehash_fraction", ctx->config.scrub_rehash}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<std::string> ReplaceMachine(ServerContext* ctx, const Request& req,
                                           const Principal& who, const std::string& name) {
  DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, name));
  DS_ASSIGN_OR_RETURN(json body, OptionalObjectBody(req));
  DS_ASSIGN_OR_RETURN(std::string with, StringMember(body, "with"));
  if (with.empty()) with = name;
  if (!IsValidName(with)) return absl::InvalidArgumentError("'with' must be a runner name");
  const std::string none = absl::StrCat("no pending registration named '", with,
                                        "': start datasync-agent on the new PC first (with --name ",
                                        name, ", or with any name and pass --with THAT_NAME)");
  auto source = ctx->index->GetRunnerByName(with);
  if (absl::IsNotFound(source.status())) return absl::FailedPreconditionError(none);
  if (!source.ok()) return source.status();
  DS_ASSIGN_OR_RETURN(Enrollment enrollment, ChooseEnrollment(ctx, *source, body, none));
  who.audit_notes["enrollment"] = enrollment.id;
  DS_RETURN_IF_ERROR(ctx->index->ReplaceRunnerMachine(runner.id, enrollment.id, ctx->NowMs()));
  spdlog::info(
      "admin: runner '{}' replaced by the machine of registration '{}' (enrollment {}, host '{}' "
      "from {}); old key revoked",
      runner.name, with, enrollment.id, enrollment.hostname, enrollment.address);
  DS_ASSIGN_OR_RETURN(Runner updated, ctx->index->GetRunnerById(runner.id));
  DS_ASSIGN_OR_RETURN(json out, RunnerDetailJson(ctx, updated));
  out["enrollment"] = enrollment.id;
  return DumpJson(out);
}

absl::StatusOr<std::string> SyncNow(ServerContext* ctx, const PathParams& p) {
  DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, p.at("runner")));
  if (runner.status != "approved") {
    return absl::FailedPreconditionError(absl::StrCat("runner '", runner.name, "' is ", runner.status));
  }
  DS_ASSIGN_OR_RETURN(Job job, JobByName(ctx, runner, p.at("job")));
  std::string run_id = NewUuid();
  DS_ASSIGN_OR_RETURN(auto cmd, ctx->index->EnqueueCommand(runner.id, "sync", job.spec.name, run_id, ctx->NowMs()));
  ctx->bus->Notify(runner.id);
  spdlog::info("admin: sync now {}/{} queued as command {} run={}", runner.name, job.spec.name, cmd.id, run_id);
  return json{{"command_id", cmd.id}, {"run_id", run_id}, {"runner", runner.name}, {"job", job.spec.name}}.dump();
}

absl::StatusOr<std::string> ListRuns(ServerContext* ctx, const Request& req) {
  RunFilter f;
  DS_ASSIGN_OR_RETURN(f.limit, IntQuery(req, "limit", 50, 1000));
  std::optional<Runner> runner;
  if (std::string r = req.Query("runner"); !r.empty()) {
    DS_ASSIGN_OR_RETURN(runner, RunnerByName(ctx, r));
    f.runner_id = runner->id;
  }
  if (std::string j = req.Query("job"); !j.empty()) {
    if (!runner) return absl::InvalidArgumentError("job filter needs a runner filter");
    DS_ASSIGN_OR_RETURN(Job job, JobByName(ctx, *runner, j));
    f.job_id = job.spec.id;
  }
  if (std::string s = req.Query("state"); !s.empty()) f.state = s;
  DS_ASSIGN_OR_RETURN(f.offset, IntQuery(req, "offset", 0, 100'000));
  DS_ASSIGN_OR_RETURN(auto runs, ctx->index->ListRuns(f));
  json out = json::array();
  for (const auto& r : runs) out.push_back(RunJson(r));
  json body{{"runs", out}};
  if (!runs.empty() && static_cast<int>(runs.size()) == f.limit) body["next_offset"] = f.offset + f.limit;
  return body.dump();
}

absl::StatusOr<std::string> GetRun(ServerContext* ctx, const Request& req, const std::string& id) {
  if (!IsValidUuid(id)) return absl::NotFoundError(absl::StrCat("no run ", id));
  auto run = ctx->index->GetRun(id);
  if (absl::IsNotFound(run.status())) return absl::NotFoundError(absl::StrCat("no run ", id));
  if (!run.ok()) return run.status();
  return RunJson(*run).dump();
}

absl::StatusOr<std::string> RunFiles(ServerContext* ctx, const Request& req, const std::string& id) {
  DS_ASSIGN_OR_RETURN(int limit, IntQuery(req, "limit", 1000, 10000));
  DS_ASSIGN_OR_RETURN(auto files, ctx->index->ListRunFiles(id, req.Query("after"), limit));
  json out = json::array();
  for (const auto& f : files) {
    out.push_back(json{{"path", f.path}, {"planned_reason", f.planned_reason}, {"size", f.size},
                       {"sha256", f.sha256}, {"result", f.result}, {"error", f.error},
                       {"kept_version", f.kept_version}});
  }
  json body{{"files", out}};
  if (static_cast<int>(files.size()) == limit && !files.empty()) body["next_after"] = files.back().path;
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<std::string> ListFiles(ServerContext* ctx, const Request& req, const PathParams& p) {
  DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, p.at("runner")));
  DS_ASSIGN_OR_RETURN(Job job, JobByName(ctx, runner, p.at("job")));
  DS_ASSIGN_OR_RETURN(int limit, IntQuery(req, "limit", 1000, 10000));
  // ?q=TEXT: paths containing TEXT, or starting with it with &match=prefix (a key range).
  const std::string q = req.Query("q");
  if (q.size() > kMaxPathBytes) return absl::InvalidArgumentError("q is too long");
  if (q.find('\0') != std::string::npos) return absl::InvalidArgumentError("q must not contain NUL");
  try {
    (void)json(q).dump();  // throws on invalid UTF-8
  } catch (const json::exception&) {
    return absl::InvalidArgumentError("q must be UTF-8");
  }
  std::vector<SyncedFile> files;
  if (q.empty()) {
    DS_ASSIGN_OR_RETURN(files, ctx->index->ListSyncedFiles(job.spec.id, req.Query("after"), limit));
  } else {
    DS_ASSIGN_OR_RETURN(files, ctx->index->SearchSyncedFiles(job.spec.id, q, req.Query("match") == "prefix",
                                                             req.Query("after"), limit));
  }
  DS_ASSIGN_OR_RETURN(int64_t total, ctx->index->CountSyncedFiles(job.spec.id));
  json out = json::array();
  for (const auto& f : files) {
    out.push_back(json{{"path", f.path}, {"key", JoinKey(job.spec.dest_prefix, f.path)}, {"size", f.size},
                       {"mtime_ns", f.mtime_ns}, {"sha256", f.sha256},
                       {"synced_at", FormatIsoUtc(f.synced_at_ms)}, {"run_id", f.run_id}});
  }
  json body{{"files", out}, {"total", total}};
  if (static_cast<int>(files.size()) == limit && !files.empty()) body["next_after"] = files.back().path;
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<std::string> Status(ServerContext* ctx) {
  DS_ASSIGN_OR_RETURN(auto runners, ctx->index->ListRunners());
  DS_ASSIGN_OR_RETURN(auto jobs, ctx->index->ListJobs(std::nullopt));
  DS_ASSIGN_OR_RETURN(int schema, ctx->index->SchemaVersion());
  DS_ASSIGN_OR_RETURN(int64_t size, ctx->index->SizeBytes());
  DS_ASSIGN_OR_RETURN(auto active, ctx->index->ListReconciles(std::nullopt, true, 1000));
  AlertFilter unresolved;
  unresolved.active_only = true;
  unresolved.limit = 1000;
  DS_ASSIGN_OR_RETURN(auto alerts, ctx->index->ListAlerts(unresolved));
  DS_ASSIGN_OR_RETURN(auto channels, ctx->index->ListNotificationChannels());
  json failing_channels = json::array();
  for (const auto& c : channels) {
    if (c.enabled && c.last_error_at_ms > c.last_success_at_ms) failing_channels.push_back(c.name);
  }
  json counts = json::object();
  int64_t now = ctx->NowMs();
  int online = 0;
  for (const auto& r : runners) {
    counts[r.status] = counts.value(r.status, 0) + 1;
    if (RunnerJson(r, now, ctx->config.heartbeat_interval.count())["online"].get<bool>()) ++online;
  }
  return json{{"version", DATASYNC_VERSION},
              {"schema_version", schema},
              {"index", RedactIndexUrl(ctx->config.index_url)},
              {"storage", ctx->storage_url},
              {"runners", counts},
              {"runners_online", online},
              {"jobs", jobs.size()},
              {"agents_long_polling", ctx->bus->WaiterCount()},
              {"index_size_bytes", size},
              {"index_budget_bytes", ctx->config.index_budget_bytes},
              {"index_budget_used_percent",
               ctx->config.index_budget_bytes > 0 ? 100.0 * size / ctx->config.index_budget_bytes : 0.0},
              {"run_retention_days", ctx->config.run_retention.count() / 86'400'000},
              {"reconciles_active", active.size()},
              {"alerts_active", alerts.size()},
              {"channels_failing", failing_channels}}
      .dump();
}

// The scrub's routes (docs/api.md, "Storage scrub").
void AddScrubRoutes(ServerContext* ctx, Router* router, const AdminRouteWrapper& admin) {
  const std::string base = "/api/v1/admin";
  router->Add("POST", base + "/runners/{runner}/jobs/{job}/scrub",
              admin([ctx](const Request& req, const PathParams& p) { return StartScrub(ctx, req, p); }, 202));
  router->Add("POST", base + "/scrub", admin([ctx](const Request& req, const PathParams&) { return ScrubAll(ctx, req); }, 202));
  router->Add("GET", base + "/scrubs", admin([ctx](const Request& req, const PathParams&) { return ListScrubs(ctx, req); }, 200));
  // Before /scrubs/{id}: the first route that matches answers.
  router->Add("GET", base + "/scrubs/status",
              admin([ctx](const Request&, const PathParams&) { return ScrubStatus(ctx); }, 200));
  router->Add("GET", base + "/scrubs/{id}", admin([ctx](const Request&, const PathParams& p) -> absl::StatusOr<std::string> {
                auto s = ctx->index->GetScrub(p.at("id"));
                if (absl::IsNotFound(s.status())) return absl::NotFoundError(absl::StrCat("no scrub ", p.at("id")));
                if (!s.ok()) return s.status();
                return ScrubJson(*s, ctx->NowMs());
              }, 200));
}

// Approve, reject, replace and delete: the routes that act on enrollments, audited with the
// enrollment's id (docs/api.md, "Enrollment").
void AddEnrollmentRoutes(ServerContext* ctx, Router* router) {
  const std::string base = "/api/v1/admin/runners/{runner}";
  for (bool approve : {true, false}) {
    router->Add("POST", base + (approve ? "/approve" : "/reject"),
                AdminHandler(ctx, [ctx, approve](const Request& req, const PathParams& p,
                                                 const Principal& who) {
                  return Decide(ctx, req, who, p.at("runner"), approve);
                }));
  }
  router->Add(
      "POST", base + "/replace",
      AdminHandler(ctx, [ctx](const Request& req, const PathParams& p, const Principal& who) {
        return ReplaceMachine(ctx, req, who, p.at("runner"));
      }));
  router->Add("DELETE", base,
              AdminHandler(ctx, [ctx](const Request&, const PathParams& p, const Principal& who) {
                return DeleteRunner(ctx, who, p.at("runner"));
              }));
}

}  // namespace

void AddAdminRoutes(ServerContext* ctx, Router* router) {
  // Every admin route goes through AdminHandler (accounts_api.cc): token or session cookie,
  // CSRF for sessions, viewers read-only, and an audit line for every state-changing request.
  // `fn` runs only for an allowed operator.
  auto admin = [ctx](auto fn, int ok_status = 200) {
    return AdminHandler(
        ctx, [fn](const Request& req, const PathParams& p, const Principal&) { return fn(req, p); },
        ok_status);
  };
  const std::string base = "/api/v1/admin";
  router->Add("GET", base + "/status", admin([ctx](const Request&, const PathParams&) { return Status(ctx); }));
  router->Add("GET", base + "/releases",
              admin([ctx](const Request& req, const PathParams&) { return ListReleases(ctx, req); }));
  router->Add("PUT", base + "/releases/{version}/{file}",
              admin([ctx](const Request& req, const PathParams& p) {
                return PutRelease(ctx, req, p.at("version"), p.at("file"));
              }));
  router->Add("GET", base + "/runners", admin([ctx](const Request&, const PathParams&) -> absl::StatusOr<std::string> {
                DS_ASSIGN_OR_RETURN(auto runners, ctx->index->ListRunners());
                json out = json::array();
                for (const auto& r : runners) {
                  DS_ASSIGN_OR_RETURN(json j, RunnerDetailJson(ctx, r));
                  out.push_back(std::move(j));
                }
                return DumpJson(json{{"runners", out}});
              }));
  router->Add("GET", base + "/runners/{runner}", admin([ctx](const Request&, const PathParams& p) -> absl::StatusOr<std::string> {
                DS_ASSIGN_OR_RETURN(Runner r, RunnerByName(ctx, p.at("runner")));
                DS_ASSIGN_OR_RETURN(json out, RunnerDetailJson(ctx, r));
                return DumpJson(out);
              }));
  // {"group": "lab2"} puts the runner in that group (created on first use), {"group": ""} in none.
  router->Add("PUT", base + "/runners/{runner}/group",
              admin([ctx](const Request& req, const PathParams& p) -> absl::StatusOr<std::string> {
                DS_ASSIGN_OR_RETURN(Runner r, RunnerByName(ctx, p.at("runner")));
                json body = ParseJsonOr(req.body);
                if (!body.is_object() || !body.contains("group") || !body["group"].is_string()) {
                  return absl::InvalidArgumentError(R"(body must be {"group": "NAME"} ("" for none))");
                }
                const std::string group = body["group"].get<std::string>();
                if (!group.empty() && !IsValidName(group)) {
                  return absl::InvalidArgumentError(
                      "group name must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with '.')");
                }
                DS_RETURN_IF_ERROR(ctx->index->SetRunnerGroup(r.id, group, ctx->NowMs()));
                DS_ASSIGN_OR_RETURN(r, ctx->index->GetRunnerById(r.id));
                return RunnerJson(r, ctx->NowMs(), ctx->config.heartbeat_interval.count()).dump();
              }));
  AddEnrollmentRoutes(ctx, router);
  router->Add("POST", base + "/runners/{runner}/rotate-key",
              admin([ctx](const Request&, const PathParams& p) -> absl::StatusOr<std::string> {
                DS_ASSIGN_OR_RETURN(Runner r, RunnerByName(ctx, p.at("runner")));
                absl::Status st = ctx->index->RequestKeyRotation(r.id, ctx->NowMs());
                if (absl::IsFailedPrecondition(st)) {
                  return absl::FailedPreconditionError(
                      absl::StrCat("runner '", r.name, "' is ", r.status, "; only an approved runner with a key can rotate it"));
                }
                DS_RETURN_IF_ERROR(st);
                spdlog::info("admin: key rotation of runner '{}' requested; its next heartbeat gets a new key", r.name);
                json out = RunnerJson(r, ctx->NowMs(), ctx->config.heartbeat_interval.count());
                out["rotation_requested"] = true;
                return out.dump();
              }, 202));
  router->Add("POST", base + "/reconcile", admin([ctx](const Request& req, const PathParams&) { return ReconcileAll(ctx, req); }, 202));
  router->Add("GET", base + "/reconciles", admin([ctx](const Request& req, const PathParams&) { return ListReconciles(ctx, req); }));
  router->Add("GET", base + "/reconciles/{id}", admin([ctx](const Request&, const PathParams& p) -> absl::StatusOr<std::string> {
                auto r = ctx->index->GetReconcile(p.at("id"));
                if (absl::IsNotFound(r.status())) return absl::NotFoundError(absl::StrCat("no reconcile ", p.at("id")));
                if (!r.ok()) return r.status();
                return ReconcileJson(*r, ctx->NowMs());
              }));
  router->Add(
      "POST", base + "/runners/{runner}/revoke",
      admin([ctx](const Request&, const PathParams& p) { return Revoke(ctx, p.at("runner")); }));
  router->Add("GET", base + "/jobs", admin([ctx](const Request& req, const PathParams&) -> absl::StatusOr<std::string> {
                std::optional<int64_t> runner_id;
                if (std::string r = req.Query("runner"); !r.empty()) {
                  DS_ASSIGN_OR_RETURN(Runner runner, RunnerByName(ctx, r));
                  runner_id = runner.id;
                }
                DS_ASSIGN_OR_RETURN(auto jobs, ctx->index->ListJobs(runner_id));
                const bool with_last_run = req.Query("with_last_run") == "1";
                json out = json::array();
                for (const auto& j : jobs) {
                  json item = JobJson(j);
                  if (with_last_run) {
                    DS_RETURN_IF_ERROR(AddLastRun(ctx, j, &item));
                  }
                  out.push_back(std::move(item));
                }
                return json{{"jobs", out}}.dump();
              }));
  const std::string job = base + "/runners/{runner}/jobs/{job}";
  router->Add("GET", job, admin([ctx](const Request&, const PathParams& p) -> absl::StatusOr<std::string> {
                DS_ASSIGN_OR_RETURN(Runner r, RunnerByName(ctx, p.at("runner")));
                DS_ASSIGN_OR_RETURN(Job j, JobByName(ctx, r, p.at("job")));
                return JobJson(j).dump();
              }));
  router->Add("POST", job, admin([ctx](const Request& req, const PathParams& p) { return PutJob(ctx, req, p, false); }, 201));
  router->Add("PUT", job, admin([ctx](const Request& req, const PathParams& p) { return PutJob(ctx, req, p, true); }));
  router->Add("DELETE", job, admin([ctx](const Request&, const PathParams& p) -> absl::StatusOr<std::string> {
                DS_ASSIGN_OR_RETURN(Runner r, RunnerByName(ctx, p.at("runner")));
                DS_ASSIGN_OR_RETURN(Job j, JobByName(ctx, r, p.at("job")));
                DS_RETURN_IF_ERROR(ctx->index->DeleteJob(j.spec.id));
                spdlog::info("admin: job {}/{} deleted (stored files are kept)", r.name, j.spec.name);
                return json{{"deleted", j.spec.name}}.dump();
              }));
  router->Add("POST", job + "/sync", admin([ctx](const Request&, const PathParams& p) { return SyncNow(ctx, p); }, 202));
  router->Add("POST", job + "/reconcile",
              admin([ctx](const Request& req, const PathParams& p) { return StartReconcile(ctx, req, p); }, 202));
  router->Add("GET", job + "/files", admin([ctx](const Request& req, const PathParams& p) { return ListFiles(ctx, req, p); }));
  router->Add("GET", base + "/runs", admin([ctx](const Request& req, const PathParams&) { return ListRuns(ctx, req); }));
  router->Add("GET", base + "/runs/{run}", admin([ctx](const Request& req, const PathParams& p) { return GetRun(ctx, req, p.at("run")); }));
  router->Add("GET", base + "/runs/{run}/files",
              admin([ctx](const Request& req, const PathParams& p) { return RunFiles(ctx, req, p.at("run")); }));
  AddObservabilityAdminRoutes(ctx, router, [&admin](AdminHandlerFn fn, int ok_status) { return admin(fn, ok_status); });
  AddScrubRoutes(ctx, router, [&admin](AdminHandlerFn fn, int ok_status) { return admin(fn, ok_status); });
}

}  // namespace ds
