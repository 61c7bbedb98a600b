#include "server/alerts.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/log.h"
#include "common/time_util.h"
#include "server/context.h"
#include "server/notify.h"

namespace ds {
namespace {

using nlohmann::json;

constexpr char kAlertsLease[] = "alerts";
constexpr int kLeaseIntervals = 3;
constexpr int kMaxDeliveryAttempts = 10;
constexpr int64_t kRetryBaseMs = 15'000;
constexpr int64_t kRetryMaxMs = 3'600'000;
constexpr int kRunsPerJob = 20;

json ParamsOf(const AlertRule& rule) {
  json p = ParseJsonOr(rule.params_json);
  return p.is_object() ? p : json::object();
}

// A duration threshold from params given in any of seconds / minutes / hours; `fallback_ms` when
// none is set. InvalidArgument for a non-number or negative value.
absl::StatusOr<int64_t> DurationMs(const json& p, int64_t fallback_ms) {
  const std::pair<const char*, double> units[] = {
      {"seconds", 1e3}, {"minutes", 6e4}, {"hours", 3.6e6}};
  for (const auto& [key, scale] : units) {
    if (!p.contains(key)) continue;
    if (!p[key].is_number() || p[key].get<double>() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("params.", key, " must be a non-negative number"));
    }
    return static_cast<int64_t>(std::llround(p[key].get<double>() * scale));
  }
  return fallback_ms;
}

absl::StatusOr<double> Number(const json& p, const char* key, double fallback) {
  if (!p.contains(key)) return fallback;
  if (!p[key].is_number() || p[key].get<double>() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("params.", key, " must be a non-negative number"));
  }
  return p[key].get<double>();
}

bool InScope(const AlertRule& rule, const AlertCondition& c) {
  if (rule.scope_kind.empty()) return true;
  if (rule.scope_kind == "runner") return c.runner == rule.scope;
  if (rule.scope_kind == "job") return !c.job.empty() && c.runner + "/" + c.job == rule.scope;
  if (rule.scope_kind == "group") return !c.group.empty() && c.group == rule.scope;
  return false;
}

std::string Ago(int64_t ms) {
  return FormatDuration(std::chrono::milliseconds(std::max<int64_t>(ms, 0)));
}

json HealthOf(const Runner& r) {
  json h = ParseJsonOr(r.health_json);
  return h.is_object() ? h : json::object();
}

// storage_drift: the newest finished scrub of a job found drift or left findings unhealed; it
// resolves once a later scrub is clean. (A failed scrub says nothing about drift: storage_failing
// and the scrub's error tell of it.)
void StorageDrift(const AlertInputs& in, std::vector<AlertCondition>* out) {
  for (const Scrub& s : in.last_scrubs) {
    if (s.state != "succeeded" || (!ScrubHasDrift(s) && s.unhealed == 0)) continue;
    out->push_back(
        {absl::StrCat(s.runner_name, "/", s.job_name), s.runner_name, s.job_name,
         absl::StrCat("job ", s.runner_name, "/", s.job_name, ": the scrub of ",
                      FormatIsoUtc(s.finished_at_ms), " found ", s.missing, " missing, ", s.extra,
                      " stray, ", s.size_mismatches + s.hash_mismatches, " corrupted object(s); ",
                      s.healed, " healed, ", s.unhealed, " could not be healed"),
         json{{"scrub_id", s.id}, {"missing", s.missing}, {"extra", s.extra},
              {"size_mismatches", s.size_mismatches}, {"hash_mismatches", s.hash_mismatches},
              {"healed", s.healed}, {"unhealed", s.unhealed}}
             .dump()});
  }
}

}  // namespace

bool IsAlertKind(const std::string& kind) {
  return std::any_of(std::begin(kAlertKinds), std::end(kAlertKinds),
                     [&](const char* k) { return kind == k; });
}
bool IsEventAlertKind(const std::string& kind) { return kind == "file_changed_after_sync"; }

bool RunnerOnline(const Runner& r, int64_t now_ms, int64_t heartbeat_interval_ms) {
  return r.status == "approved" && r.last_heartbeat_at_ms > 0 &&
         now_ms - r.last_heartbeat_at_ms <= 3 * heartbeat_interval_ms;
}

absl::Status ValidateAlertRule(const AlertRule& rule) {
  if (rule.name.empty() || rule.name.size() > 64 ||
      rule.name.find_first_not_of(
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
          std::string::npos) {
    return absl::InvalidArgumentError("rule name must be 1-64 characters of A-Z a-z 0-9 . _ -");
  }
  if (!IsAlertKind(rule.kind)) {
    std::string kinds;
    for (const char* k : kAlertKinds) absl::StrAppend(&kinds, kinds.empty() ? "" : ", ", k);
    return absl::InvalidArgumentError(
        absl::StrCat("unknown rule kind '", rule.kind, "' (one of ", kinds, ")"));
  }
  if (rule.severity != "info" && rule.severity != "warning" && rule.severity != "critical") {
    return absl::InvalidArgumentError("severity must be info, warning or critical");
  }
  if (!rule.scope_kind.empty() && rule.scope_kind != "runner" && rule.scope_kind != "group" &&
      rule.scope_kind != "job") {
    return absl::InvalidArgumentError("scope must be runner:NAME, group:NAME or job:RUNNER/JOB");
  }
  if (rule.scope_kind.empty() != rule.scope.empty() || rule.scope.size() > 130) {
    return absl::InvalidArgumentError("scope must be runner:NAME, group:NAME or job:RUNNER/JOB");
  }
  if (rule.params_json.size() > 4096) return absl::InvalidArgumentError("params too large");
  json p = ParseJsonOr(rule.params_json);
  if (!p.is_object()) return absl::InvalidArgumentError("params must be a JSON object");
  // The evaluation itself checks the values.
  AlertInputs empty;
  return EvaluateRule(rule, empty, 0).status();
}

absl::StatusOr<std::vector<AlertCondition>> EvaluateRule(const AlertRule& rule,
                                                         const AlertInputs& in, int64_t now_ms) {
  const json p = ParamsOf(rule);
  std::vector<AlertCondition> out;
  const std::string& kind = rule.kind;
  std::map<int64_t, const Runner*> runner_by_id;
  for (const auto& r : in.runners) runner_by_id[r.id] = &r;

  if (kind == "runner_offline") {
    DS_ASSIGN_OR_RETURN(int64_t limit, DurationMs(p, 15 * 60'000));
    for (const auto& r : in.runners) {
      if (r.status != "approved" || r.last_heartbeat_at_ms == 0) continue;
      int64_t silent = now_ms - r.last_heartbeat_at_ms;
      if (silent <= limit) continue;
      out.push_back(
          {r.name, r.name, "",
           absl::StrCat("runner ", r.name, " has not sent a heartbeat for ", Ago(silent)),
           json{{"last_heartbeat_at_ms", r.last_heartbeat_at_ms}, {"threshold_ms", limit}}.dump()});
    }
  } else if (kind == "job_no_sync") {
    DS_ASSIGN_OR_RETURN(int64_t limit, DurationMs(p, 24 * 3'600'000LL));
    for (const auto& j : in.jobs) {
      auto rit = runner_by_id.find(j.runner_id);
      if (!j.spec.enabled || rit == runner_by_id.end()) continue;
      const Runner& r = *rit->second;
      if (!RunnerOnline(r, now_ms, in.heartbeat_interval_ms)) continue;
      int64_t last = j.created_at_ms;
      auto runs = in.runs_by_job.find(j.spec.id);
      if (runs != in.runs_by_job.end()) {
        for (const auto& run : runs->second) {
          if (run.summary.files_uploaded > 0) {
            last = std::max(last, std::max(run.summary.finished_at_ms, run.summary.started_at_ms));
            break;
          }
        }
      }
      if (now_ms - last <= limit) continue;
      out.push_back({absl::StrCat(r.name, "/", j.spec.name), r.name, j.spec.name,
                     absl::StrCat("job ", r.name, "/", j.spec.name, " has synced nothing for ",
                                  Ago(now_ms - last), " while its runner is online"),
                     json{{"last_upload_at_ms", last}, {"threshold_ms", limit}}.dump()});
    }
  } else if (kind == "consecutive_failed_runs") {
    DS_ASSIGN_OR_RETURN(double count, Number(p, "count", 3));
    const uint64_t n = std::max<uint64_t>(1, static_cast<uint64_t>(count));
    for (const auto& j : in.jobs) {
      auto runs = in.runs_by_job.find(j.spec.id);
      auto rit = runner_by_id.find(j.runner_id);
      if (runs == in.runs_by_job.end() || rit == runner_by_id.end()) continue;
      uint64_t failed = 0;
      std::string last_error;
      for (const auto& run : runs->second) {
        if (run.summary.state == "running") continue;
        if (run.summary.state != "failed") break;
        if (failed == 0) last_error = run.summary.error;
        ++failed;
      }
      if (failed < n) continue;
      const std::string& rn = rit->second->name;
      out.push_back(
          {absl::StrCat(rn, "/", j.spec.name), rn, j.spec.name,
           absl::StrCat("job ", rn, "/", j.spec.name, ": the last ", failed, " runs failed",
                        last_error.empty() ? "" : absl::StrCat(" (", last_error, ")")),
           json{{"failed_runs", failed}, {"last_error", last_error}}.dump(
               -1, ' ', false, json::error_handler_t::replace)});
    }
  } else if (kind == "storage_failing") {
    if (!in.storage_error.empty()) {
      out.push_back(
          {"storage", "", "", absl::StrCat("storage is unreachable: ", in.storage_error),
           json{{"error", in.storage_error}}.dump(-1, ' ', false, json::error_handler_t::replace)});
    }
    for (const auto& j : in.jobs) {
      auto runs = in.runs_by_job.find(j.spec.id);
      auto rit = runner_by_id.find(j.runner_id);
      if (runs == in.runs_by_job.end() || rit == runner_by_id.end()) continue;
      for (const auto& run : runs->second) {
        if (run.summary.state == "running") continue;
        if (run.summary.files_failed > 0) {
          const std::string& rn = rit->second->name;
          out.push_back(
              {absl::StrCat(rn, "/", j.spec.name), rn, j.spec.name,
               absl::StrCat("job ", rn, "/", j.spec.name, ": ", run.summary.files_failed,
                            " upload(s) failed in its newest run"),
               json{{"run_id", run.summary.run_id}, {"files_failed", run.summary.files_failed}}
                   .dump()});
        }
        break;
      }
    }
  } else if (kind == "index_size") {
    DS_ASSIGN_OR_RETURN(double percent, Number(p, "percent", 80));
    if (in.index_budget_bytes > 0) {
      double used = 100.0 * static_cast<double>(in.index_size_bytes) /
                    static_cast<double>(in.index_budget_bytes);
      if (used > percent) {
        out.push_back(
            {"index", "", "",
             absl::StrCat("the state index uses ", static_cast<int>(used), "% of its budget (",
                          in.index_size_bytes, " of ", in.index_budget_bytes, " bytes)"),
             json{{"size_bytes", in.index_size_bytes}, {"budget_bytes", in.index_budget_bytes}}
                 .dump()});
      }
    }
  } else if (kind == "pending_registration") {
    DS_ASSIGN_OR_RETURN(int64_t limit, DurationMs(p, 60 * 60'000));
    for (const auto& r : in.runners) {
      if (r.status != "pending" || now_ms - r.created_at_ms <= limit) continue;
      out.push_back({r.name, r.name, "",
                     absl::StrCat("runner ", r.name, " has waited ", Ago(now_ms - r.created_at_ms),
                                  " for approval (datasync runners approve ", r.name, ")"),
                     json{{"registered_at_ms", r.created_at_ms}}.dump()});
    }
  } else if (kind == "clock_skew") {
    DS_ASSIGN_OR_RETURN(double seconds, Number(p, "seconds", 120));
    for (const auto& r : in.runners) {
      if (!RunnerOnline(r, now_ms, in.heartbeat_interval_ms)) continue;
      json h = HealthOf(r);
      if (!h.contains("clock_offset_ms") || !h["clock_offset_ms"].is_number_integer()) continue;
      int64_t offset = h["clock_offset_ms"].get<int64_t>();
      if (std::llabs(offset) <= static_cast<int64_t>(seconds * 1000)) continue;
      out.push_back({r.name, r.name, "",
                     absl::StrCat("runner ", r.name, "'s clock is off by ", offset / 1000, " s"),
                     json{{"clock_offset_ms", offset}}.dump()});
    }
  } else if (kind == "disk_free_low") {
    DS_ASSIGN_OR_RETURN(double percent, Number(p, "percent", 10));
    for (const auto& r : in.runners) {
      if (r.status != "approved") continue;
      json h = HealthOf(r);
      if (!h.contains("disk_free") || !h["disk_free"].is_array()) continue;
      for (const auto& d : h["disk_free"]) {
        if (!d.is_object()) continue;
        uint64_t total = d.value("total_bytes", uint64_t{0}),
                 free = d.value("free_bytes", uint64_t{0});
        if (total == 0) continue;
        double free_pct = 100.0 * static_cast<double>(free) / static_cast<double>(total);
        if (free_pct >= percent) continue;
        std::string job = d.value("job", "");
        out.push_back({absl::StrCat(r.name, "/", job), r.name, job,
                       absl::StrCat("runner ", r.name, ": only ", static_cast<int>(free_pct),
                                    "% free on the volume of job ", job, " (", free, " bytes)"),
                       d.dump(-1, ' ', false, json::error_handler_t::replace)});
      }
    }
  } else if (kind == "channel_failing") {
    for (const auto& c : in.channels) {
      if (!c.enabled || c.last_error_at_ms == 0 || c.last_error_at_ms <= c.last_success_at_ms)
        continue;
      out.push_back(
          {absl::StrCat("channel:", c.name), "", "",
           absl::StrCat("notification channel ", c.name, " fails: ", c.last_error),
           json{{"last_error", c.last_error}, {"last_error_at_ms", c.last_error_at_ms}}.dump(
               -1, ' ', false, json::error_handler_t::replace)});
    }
  } else if (kind == "storage_drift") {
    StorageDrift(in, &out);
  } else if (!IsEventAlertKind(kind)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown rule kind '", kind, "'"));
  }
  for (AlertCondition& c : out) {
    if (c.runner.empty()) continue;
    for (const Runner& r : in.runners) {
      if (r.name == c.runner) c.group = r.group;
    }
  }
  out.erase(std::remove_if(out.begin(), out.end(),
                           [&](const AlertCondition& c) { return !InScope(rule, c); }),
            out.end());
  return out;
}

std::string AlertJsonText(const Alert& a) {
  json details = ParseJsonOr(a.details_json);
  json j{{"id", a.id},
         {"rule_id", a.rule_id},
         {"rule_name", a.rule_name},
         {"kind", a.kind},
         {"severity", a.severity},
         {"subject", a.subject},
         {"message", a.message},
         {"details", details.is_object() ? details : json::object()},
         {"fired_at_ms", a.fired_at_ms},
         {"resolved_at_ms", a.resolved_at_ms ? json(a.resolved_at_ms) : json(nullptr)},
         {"acknowledged_by", a.acknowledged_by.empty() ? json(nullptr) : json(a.acknowledged_by)},
         {"acknowledged_at_ms", a.acknowledged_at_ms ? json(a.acknowledged_at_ms) : json(nullptr)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void ReportFilesChanged(ServerContext* ctx, const Runner& runner_row, const std::string& job,
                        const std::string& run_id, const std::vector<ChangedFile>& files) {
  if (files.empty()) return;
  const std::string& runner = runner_row.name;
  auto rules = ctx->index->ListAlertRules();
  if (!rules.ok()) {
    spdlog::warn(
        "run={} {} file(s) of {}/{} changed after sync, but the rules could not be read: {}",
        run_id, files.size(), runner, job, rules.status());
    return;
  }
  for (size_t i = 0; i < files.size() && i < kMaxChangedFileAlerts; ++i) {
    const ChangedFile& f = files[i];
    const std::string& path = f.synced.path;
    AlertCondition c{absl::StrCat(runner, "/", job, ":", path), runner, job, "", "{}"};
    c.group = runner_row.group;
    c.message = absl::StrCat("file ", path, " of ", runner, "/", job,
                             " changed after it was synced (sha256 ", f.synced.sha256, " -> ",
                             f.new_sha256, ")");
    c.details_json = json{
        {"runner", runner},
        {"job", job},
        {"path", path},
        {"run_id", run_id},
        {"synced_sha256", f.synced.sha256},
        {"synced_size", f.synced.size},
        {"synced_at_ms", f.synced.synced_at_ms},
        {"synced_run_id", f.synced.run_id},
        {"current_sha256", f.new_sha256},
        {"current_size",
         f.new_size}}.dump(-1, ' ', false, json::error_handler_t::replace);
    for (const auto& rule : *rules) {
      if (!rule.enabled || rule.kind != "file_changed_after_sync" || !InScope(rule, c)) continue;
      auto fired =
          ctx->index->FireAlert(rule.id, c.subject, c.message, c.details_json, ctx->NowMs());
      if (!fired.ok()) {
        spdlog::warn("run={} alert {}: {}", run_id, rule.name, fired.status());
      } else if (fired->fired) {
        spdlog::warn("run={} alert {} fired ({}): {}", run_id, fired->alert.id, rule.name,
                     c.message);
      }
    }
  }
  if (files.size() > kMaxChangedFileAlerts) {
    spdlog::warn(
        "run={} {} more file(s) of {}/{} changed after sync (no alert each; see the run's files)",
        run_id, files.size() - kMaxChangedFileAlerts, runner, job);
  }
  if (ctx->alerts) ctx->alerts->Wake();
}

// ---- the service -------------------------------------------------------------------------------

AlertService::AlertService(ServerContext* ctx, std::string holder)
    : ctx_(ctx),
      lease_(ctx->index.get(), kAlertsLease, std::move(holder), "evaluates the alert rules"),
      worker_({.name = "alerts", .interval = ctx->config.alert_interval}, [this] {
        if (std::string done = RunOnce(); !done.empty()) spdlog::info("alerts: {}", done);
      }) {}

bool AlertService::Claim() {
  return lease_.Claim(kLeaseIntervals * ctx_->config.alert_interval.count(), ctx_->NowMs());
}

std::string AlertService::RunOnce() {
  if (!Claim()) return "";
  std::string out = Evaluate();
  absl::StrAppend(&out, SendDue());
  return out;
}

std::string AlertService::Evaluate() {
  std::string out;
  const int64_t now = ctx_->NowMs();
  auto rules = ctx_->index->ListAlertRules();
  if (!rules.ok()) {
    spdlog::warn("alerts: reading rules: {}", rules.status());
    return out;
  }
  AlertInputs in;
  in.heartbeat_interval_ms = ctx_->config.heartbeat_interval.count();
  in.index_budget_bytes = ctx_->config.index_budget_bytes;
  auto runners = ctx_->index->ListRunners();
  auto jobs = ctx_->index->ListJobs(std::nullopt);
  auto channels = ctx_->index->ListNotificationChannels();
  if (!runners.ok() || !jobs.ok() || !channels.ok()) {
    spdlog::warn("alerts: reading the index failed; skipping this pass");
    return out;
  }
  in.runners = std::move(*runners);
  in.jobs = std::move(*jobs);
  in.channels = std::move(*channels);
  for (const auto& j : in.jobs) {
    RunFilter f;
    f.job_id = j.spec.id;
    f.limit = kRunsPerJob;
    if (auto runs = ctx_->index->ListRuns(f); runs.ok())
      in.runs_by_job[j.spec.id] = std::move(*runs);
  }
  if (auto size = ctx_->index->SizeBytes(); size.ok()) in.index_size_bytes = *size;
  bool want_storage = std::any_of(rules->begin(), rules->end(), [](const AlertRule& r) {
    return r.enabled && r.kind == "storage_failing";
  });
  bool want_scrubs = std::any_of(rules->begin(), rules->end(), [](const AlertRule& r) {
    return r.enabled && r.kind == "storage_drift";
  });
  if (want_scrubs) {
    auto scrubs = ctx_->index->LatestScrubs({"succeeded", "failed"});
    if (!scrubs.ok()) {
      spdlog::warn("alerts: reading scrubs failed; skipping this pass");
      return out;
    }
    in.last_scrubs = std::move(*scrubs);
  }
  if (want_storage) {
    // A key nobody writes: NotFound means storage answered.
    auto st = ctx_->storage->Stat(".datasync/alert-probe");
    if (!st.ok() && !absl::IsNotFound(st.status()))
      in.storage_error = std::string(st.status().message());
  }
  int fired = 0, resolved = 0;
  for (const auto& rule : *rules) {
    if (IsEventAlertKind(rule.kind)) continue;
    std::set<std::string> holding;
    if (rule.enabled) {
      auto conds = EvaluateRule(rule, in, now);
      if (!conds.ok()) {
        spdlog::warn("alerts: rule {}: {}", rule.name, conds.status());
        continue;
      }
      for (const auto& c : *conds) {
        holding.insert(c.subject);
        auto f = ctx_->index->FireAlert(rule.id, c.subject, c.message, c.details_json, now);
        if (!f.ok()) {
          spdlog::warn("alerts: firing {} for {}: {}", rule.name, c.subject, f.status());
        } else if (f->fired) {
          ++fired;
          spdlog::warn("alert {} fired ({}, {}): {}", f->alert.id, rule.name, rule.severity,
                       c.message);
        }
      }
    }
    AlertFilter active;
    active.active_only = true;
    active.rule_id = rule.id;
    active.limit = 1000;
    auto list = ctx_->index->ListAlerts(active);
    if (!list.ok()) continue;
    for (const auto& a : *list) {
      if (holding.count(a.subject)) continue;
      auto r = ctx_->index->ResolveAlert(a.id, now);
      if (r.ok() && *r) {
        ++resolved;
        spdlog::info("alert {} resolved ({} {})", a.id, rule.name, a.subject);
      }
    }
  }
  if (fired || resolved) absl::StrAppend(&out, fired, " fired, ", resolved, " resolved; ");
  return out;
}

std::string AlertService::SendDue() {
  std::string out;
  auto due = ctx_->index->DueDeliveries(ctx_->NowMs(), kMaxDeliveryAttempts, 100);
  if (!due.ok()) {
    spdlog::warn("alerts: reading the outbox: {}", due.status());
    return out;
  }
  int sent = 0, failed = 0;
  for (const auto& d : *due) {
    if (!Claim()) break;  // another instance took over: it sends the rest
    absl::Status st =
        SendNotification(d.channel, d.alert, d.transition, ctx_->config.webhook_targets);
    const int64_t now = ctx_->NowMs();
    int64_t backoff = std::min<int64_t>(kRetryMaxMs, kRetryBaseMs << std::min(d.attempts, 20));
    std::string error = st.ok() ? "" : std::string(st.message());
    if (!st.ok() && error.empty()) error = "failed";
    if (absl::Status rec = ctx_->index->RecordDeliveryAttempt(d.id, error, now + backoff, now);
        !rec.ok()) {
      spdlog::warn("alerts: recording delivery {}: {}", d.id, rec);
    }
    ctx_->metrics.Add("datasync_notifications_total",
                      {{"channel", d.channel.name}, {"result", st.ok() ? "sent" : "failed"}});
    if (st.ok()) {
      ++sent;
    } else {
      ++failed;
      spdlog::warn("alerts: channel {} ({}): alert {} {} not delivered (attempt {}): {}",
                   d.channel.name, d.channel.kind, d.alert.id, d.transition, d.attempts + 1, error);
    }
  }
  if (sent || failed) absl::StrAppend(&out, sent, " notification(s) sent, ", failed, " failed; ");
  return out;
}

}  // namespace ds
