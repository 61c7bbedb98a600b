// Admin API of issue 8: agent logs, alerts (+ack), alert rules and notification channels, and the
// Prometheus text for GET /metrics. Routes are registered through the admin(...) wrapper of
// admin_api.cc, so they get its authentication (viewers read only) and whatever it adds.
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/log.h"
#include "common/metrics.h"
#include "server/alerts.h"
#include "server/context.h"
#include "server/notify.h"

namespace ds {
namespace {

using http::Request;
using nlohmann::json;

constexpr const char* kLevels[] = {"debug", "info", "warn", "error"};

absl::StatusOr<int64_t> Int64Query(const Request& req, const std::string& name, int64_t fallback) {
  std::string v = req.Query(name);
  if (v.empty()) return fallback;
  if (v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("query parameter '", name, "' must be a non-negative integer"));
  }
  return std::stoll(v);
}

absl::StatusOr<int64_t> IdParam(const PathParams& p, const char* what) {
  const std::string& v = p.at("id");
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
    return absl::NotFoundError(absl::StrCat("no ", what, " ", v));
  }
  return std::stoll(v);
}

json LogJson(const AgentLogRecord& r) {
  json fields = ParseJsonOr(r.fields_json);
  return json{{"id", r.id},
              {"runner", r.runner_name},
              {"seq", r.seq},
              {"time_ms", r.time_ms},
              {"level", r.level},
              {"message", r.message},
              {"correlation_id", r.correlation_id},
              {"fields", fields.is_object() ? fields : json::object()}};
}

absl::StatusOr<std::string> ListLogs(ServerContext* ctx, const Request& req) {
  AgentLogFilter f;
  if (std::string name = req.Query("runner"); !name.empty()) {
    auto r = IsValidName(name) ? ctx->index->GetRunnerByName(name) : absl::NotFoundError("");
    if (!r.ok()) return absl::NotFoundError(absl::StrCat("no runner named '", name, "'"));
    f.runner_id = r->id;
  }
  if (std::string level = req.Query("level"); !level.empty()) {
    bool found = false;
    for (const char* l : kLevels) {
      if (level == l) found = true;
      if (found) f.levels.push_back(l);
    }
    if (!found) return absl::InvalidArgumentError("level must be debug, info, warn or error");
  }
  f.grep = req.Query("grep");
  if (f.grep.size() > 256) return absl::InvalidArgumentError("grep text longer than 256 bytes");
  DS_ASSIGN_OR_RETURN(f.since_ms, Int64Query(req, "since", 0));
  DS_ASSIGN_OR_RETURN(f.until_ms, Int64Query(req, "until", 0));
  DS_ASSIGN_OR_RETURN(f.before_id, Int64Query(req, "before_id", 0));
  DS_ASSIGN_OR_RETURN(f.after_id, Int64Query(req, "after_id", 0));
  DS_ASSIGN_OR_RETURN(int64_t limit, Int64Query(req, "limit", 100));
  f.limit = static_cast<int>(std::clamp<int64_t>(limit, 1, 1000));
  DS_ASSIGN_OR_RETURN(auto records, ctx->index->ListAgentLogs(f));
  json items = json::array();
  for (const auto& r : records) items.push_back(LogJson(r));
  json next = nullptr;
  if (f.after_id == 0 && static_cast<int>(records.size()) == f.limit) next = records.back().id;
  return json{{"items", items}, {"next_before_id", next}}.dump(-1, ' ', false,
                                                               json::error_handler_t::replace);
}

absl::StatusOr<std::string> ListAlerts(ServerContext* ctx, const Request& req) {
  AlertFilter f;
  f.active_only = req.Query("active") == "1" || req.Query("active") == "true";
  DS_ASSIGN_OR_RETURN(f.before_id, Int64Query(req, "before_id", 0));
  DS_ASSIGN_OR_RETURN(int64_t limit, Int64Query(req, "limit", 100));
  f.limit = static_cast<int>(std::clamp<int64_t>(limit, 1, 1000));
  DS_ASSIGN_OR_RETURN(auto alerts, ctx->index->ListAlerts(f));
  json items = json::array();
  for (const auto& a : alerts) items.push_back(ParseJsonOr(AlertJsonText(a)));
  json next = nullptr;
  if (static_cast<int>(alerts.size()) == f.limit) next = alerts.back().id;
  return json{{"items", items}, {"next_before_id", next}}.dump(-1, ' ', false,
                                                               json::error_handler_t::replace);
}

absl::StatusOr<std::string> Ack(ServerContext* ctx, const PathParams& p, const Principal& who) {
  DS_ASSIGN_OR_RETURN(int64_t id, IdParam(p, "alert"));
  const std::string& by = who.actor;
  auto a = ctx->index->AckAlert(id, by, ctx->NowMs());
  if (absl::IsNotFound(a.status())) return absl::NotFoundError(absl::StrCat("no alert ", id));
  if (!a.ok()) return a.status();
  // An event (a file changed) has no condition to clear: acknowledging it closes it.
  if (IsEventAlertKind(a->kind) && a->resolved_at_ms == 0) {
    DS_RETURN_IF_ERROR(ctx->index->ResolveAlert(id, ctx->NowMs()).status());
    DS_ASSIGN_OR_RETURN(*a, ctx->index->GetAlert(id));
    if (ctx->alerts) ctx->alerts->Wake();
  }
  spdlog::info("admin: alert {} acknowledged by {}", id, by);
  return AlertJsonText(*a);
}

json RuleJson(const AlertRule& r) {
  json params = ParseJsonOr(r.params_json);
  return json{{"id", r.id},
              {"name", r.name},
              {"kind", r.kind},
              {"severity", r.severity},
              {"scope", r.scope_kind.empty() ? json(nullptr) : json(r.scope_kind + ":" + r.scope)},
              {"params", params.is_object() ? params : json::object()},
              {"enabled", r.enabled},
              {"created_at_ms", r.created_at_ms},
              {"updated_at_ms", r.updated_at_ms}};
}

absl::StatusOr<AlertRule> FindRule(ServerContext* ctx, const std::string& key) {
  DS_ASSIGN_OR_RETURN(auto rules, ctx->index->ListAlertRules());
  for (auto& r : rules) {
    if (r.name == key || std::to_string(r.id) == key) return r;
  }
  return absl::NotFoundError(absl::StrCat("no alert rule '", key, "'"));
}

// Applies the fields present in `body` to `rule`.
absl::Status ApplyRuleBody(const std::string& body, AlertRule* rule) {
  DS_ASSIGN_OR_RETURN(json j, ParseJson(body));
  if (!j.is_object()) return absl::InvalidArgumentError("body must be a JSON object");
  try {
    if (j.contains("name")) rule->name = j["name"].get<std::string>();
    if (j.contains("kind")) rule->kind = j["kind"].get<std::string>();
    if (j.contains("severity")) rule->severity = j["severity"].get<std::string>();
    if (j.contains("enabled")) rule->enabled = j["enabled"].get<bool>();
    if (j.contains("params")) {
      if (!j["params"].is_object())
        return absl::InvalidArgumentError("params must be a JSON object");
      rule->params_json = j["params"].dump();
    }
    if (j.contains("scope")) {
      if (j["scope"].is_null() || j["scope"].get<std::string>().empty()) {
        rule->scope_kind.clear();
        rule->scope.clear();
      } else {
        std::string s = j["scope"].get<std::string>();
        size_t colon = s.find(':');
        if (colon == std::string::npos)
          return absl::InvalidArgumentError(
              "scope must be runner:NAME, group:NAME or job:RUNNER/JOB");
        rule->scope_kind = s.substr(0, colon);
        rule->scope = s.substr(colon + 1);
      }
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid rule: ", e.what()));
  }
  return ValidateAlertRule(*rule);
}

absl::StatusOr<std::string> PutRule(ServerContext* ctx, const Request& req, const PathParams* p) {
  AlertRule rule;
  if (p != nullptr) {
    DS_ASSIGN_OR_RETURN(rule, FindRule(ctx, p->at("rule")));
  } else {
    rule.severity = "warning";
  }
  DS_RETURN_IF_ERROR(ApplyRuleBody(req.body, &rule));
  auto stored = ctx->index->PutAlertRule(rule, ctx->NowMs());
  if (absl::IsAlreadyExists(stored.status())) {
    return absl::AlreadyExistsError(absl::StrCat("an alert rule named '", rule.name, "' exists"));
  }
  if (!stored.ok()) return stored.status();
  spdlog::info("admin: alert rule {} {} ({}, {}, enabled={})", stored->name,
               p ? "updated" : "created", stored->kind, stored->severity, stored->enabled);
  if (ctx->alerts) ctx->alerts->Wake();
  return RuleJson(*stored).dump();
}

json ChannelJson(const NotificationChannel& c) {
  json cfg = ParseJsonOr(RedactedChannelConfig(c));
  return json{
      {"id", c.id},
      {"name", c.name},
      {"kind", c.kind},
      {"config", cfg},
      {"min_severity", c.min_severity},
      {"enabled", c.enabled},
      {"created_at_ms", c.created_at_ms},
      {"last_success_at_ms", c.last_success_at_ms ? json(c.last_success_at_ms) : json(nullptr)},
      {"last_error", c.last_error.empty() ? json(nullptr) : json(c.last_error)},
      {"last_error_at_ms", c.last_error_at_ms ? json(c.last_error_at_ms) : json(nullptr)},
      {"failing", c.last_error_at_ms > c.last_success_at_ms}};
}

absl::StatusOr<NotificationChannel> FindChannel(ServerContext* ctx, const std::string& key) {
  DS_ASSIGN_OR_RETURN(auto channels, ctx->index->ListNotificationChannels());
  for (auto& c : channels) {
    if (c.name == key || std::to_string(c.id) == key) return c;
  }
  return absl::NotFoundError(absl::StrCat("no notification channel '", key, "'"));
}

absl::StatusOr<std::string> PutChannel(ServerContext* ctx, const Request& req,
                                       const PathParams* p) {
  NotificationChannel c;
  if (p != nullptr) {
    DS_ASSIGN_OR_RETURN(c, FindChannel(ctx, p->at("channel")));
  }
  DS_ASSIGN_OR_RETURN(json j, ParseJson(req.body));
  if (!j.is_object()) return absl::InvalidArgumentError("body must be a JSON object");
  try {
    if (j.contains("name")) c.name = j["name"].get<std::string>();
    if (j.contains("kind")) c.kind = j["kind"].get<std::string>();
    if (j.contains("min_severity")) c.min_severity = j["min_severity"].get<std::string>();
    if (j.contains("enabled")) c.enabled = j["enabled"].get<bool>();
    if (j.contains("config")) {
      if (!j["config"].is_object())
        return absl::InvalidArgumentError("config must be a JSON object");
      c.config_json = j["config"].dump();
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid channel: ", e.what()));
  }
  if (!IsValidName(c.name))
    return absl::InvalidArgumentError("channel name must be 1-64 characters of A-Z a-z 0-9 . _ -");
  DS_RETURN_IF_ERROR(ValidateChannel(c, ctx->config.webhook_targets));
  auto stored = ctx->index->PutNotificationChannel(c, ctx->NowMs());
  if (absl::IsAlreadyExists(stored.status())) {
    return absl::AlreadyExistsError(absl::StrCat("a channel named '", c.name, "' exists"));
  }
  if (!stored.ok()) return stored.status();
  spdlog::info("admin: notification channel {} ({}) {}", stored->name, stored->kind,
               p ? "updated" : "created");
  return ChannelJson(*stored).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

// Gauges from the last finished scrub of every job (the index's, so every instance says the same).
void AppendScrubMetrics(ServerContext* ctx, std::vector<MetricFamily>* families) {
  auto finished = ctx->index->LatestScrubs({"succeeded", "failed"});
  if (!finished.ok()) return;
  MetricFamily drift{"datasync_scrub_drift_objects",
                     "Findings of the last finished scrub of each job, by kind.", "gauge", {}};
  MetricFamily unhealed{"datasync_scrub_unhealed_objects",
                        "Findings the last finished scrub of each job could not heal.", "gauge", {}};
  MetricFamily success{"datasync_scrub_last_success_timestamp_seconds",
                       "When the last succeeded scrub of each job finished (Unix seconds).", "gauge", {}};
  for (const Scrub& s : *finished) {
    const MetricLabels job{{"runner", s.runner_name}, {"job", s.job_name}};
    for (auto [kind, n] : {std::pair{"missing", s.missing}, std::pair{"extra", s.extra},
                           std::pair{"size", s.size_mismatches}, std::pair{"hash", s.hash_mismatches}}) {
      MetricLabels labels = job;
      labels.emplace_back("kind", kind);
      drift.samples.push_back({"", labels, static_cast<double>(n)});
    }
    unhealed.samples.push_back({"", job, static_cast<double>(s.unhealed)});
  }
  if (auto done = ctx->index->LatestScrubs({"succeeded"}); done.ok()) {
    for (const Scrub& s : *done) {
      success.samples.push_back({"", {{"runner", s.runner_name}, {"job", s.job_name}},
                                 static_cast<double>(s.finished_at_ms) / 1000.0});
    }
  }
  families->push_back(std::move(drift));
  families->push_back(std::move(unhealed));
  families->push_back(std::move(success));
}

std::string MetricsText(ServerContext* ctx) {
  std::vector<MetricFamily> families;
  const int64_t now = ctx->NowMs();
  if (auto runners = ctx->index->ListRunners(); runners.ok()) {
    std::map<std::string, double> by;
    for (const char* s : {"pending", "approved", "rejected", "revoked", "online"}) by[s] = 0;
    for (const auto& r : *runners) {
      by[r.status] += 1;
      if (RunnerOnline(r, now, ctx->config.heartbeat_interval.count())) by["online"] += 1;
    }
    MetricFamily f{
        "datasync_runners", "Runners by state (online = approved and heartbeating).", "gauge", {}};
    for (const auto& [state, n] : by) f.samples.push_back({"", {{"state", state}}, n});
    families.push_back(std::move(f));
  }
  if (auto size = ctx->index->SizeBytes(); size.ok()) {
    families.push_back({"datasync_index_size_bytes",
                        "Bytes the state index occupies.",
                        "gauge",
                        {{"", {}, static_cast<double>(*size)}}});
  }
  families.push_back({"datasync_index_budget_bytes",
                      "The index size budget (0 = none).",
                      "gauge",
                      {{"", {}, static_cast<double>(ctx->config.index_budget_bytes)}}});
  AlertFilter active;
  active.active_only = true;
  active.limit = 1000;
  if (auto alerts = ctx->index->ListAlerts(active); alerts.ok()) {
    std::map<std::pair<std::string, std::string>, double> by;
    for (const char* sev : {"info", "warning", "critical"}) {
      by[{sev, "active"}] = 0;
      by[{sev, "acknowledged"}] = 0;
    }
    for (const auto& a : *alerts)
      by[{a.severity, a.acknowledged_at_ms ? "acknowledged" : "active"}] += 1;
    MetricFamily f{"datasync_alerts", "Unresolved alerts by severity and state.", "gauge", {}};
    for (const auto& [k, n] : by)
      f.samples.push_back({"", {{"severity", k.first}, {"state", k.second}}, n});
    families.push_back(std::move(f));
  }
  AppendScrubMetrics(ctx, &families);
  for (auto& f : ctx->metrics.Families()) families.push_back(std::move(f));
  return RenderMetrics(families);
}

void DeclareServerMetrics(MetricsRegistry* m) {
  m->DeclareCounter("datasync_runs_total", "Runs closed by this server instance, by result.");
  m->DeclareCounter("datasync_files_synced_total",
                    "Files uploaded in runs closed by this instance.");
  m->DeclareCounter("datasync_bytes_synced_total",
                    "Bytes uploaded in runs closed by this instance.");
  m->DeclareCounter("datasync_agent_log_records_total",
                    "Agent log records stored by this instance.");
  m->DeclareCounter("datasync_notifications_total",
                    "Notification attempts, by channel and result.");
  m->DeclareCounter("datasync_scrubs_total", "Scrubs finished by this server instance, by result.");
  m->DeclareCounter("datasync_scrub_objects_listed_total",
                    "Objects listed by the scrubs of this instance.");
  m->DeclareHistogram("datasync_compare_duration_seconds", "Time to answer one compare batch.",
                      {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
}

void AddObservabilityAdminRoutes(ServerContext* ctx, Router* router,
                                 const AdminRouteWrapper& admin) {
  const std::string base = "/api/v1/admin";
  router->Add(
      "GET", base + "/logs",
      admin([ctx](const Request& req, const PathParams&) { return ListLogs(ctx, req); }, 200));
  router->Add(
      "GET", base + "/alerts",
      admin([ctx](const Request& req, const PathParams&) { return ListAlerts(ctx, req); }, 200));
  router->Add("GET", base + "/alerts/{id}",
              admin(
                  [ctx](const Request&, const PathParams& p) -> absl::StatusOr<std::string> {
                    DS_ASSIGN_OR_RETURN(int64_t id, IdParam(p, "alert"));
                    auto a = ctx->index->GetAlert(id);
                    if (absl::IsNotFound(a.status()))
                      return absl::NotFoundError(absl::StrCat("no alert ", id));
                    if (!a.ok()) return a.status();
                    return AlertJsonText(*a);
                  },
                  200));
  // Records who acknowledged: the principal the admin handler authorized (token or session).
  router->Add("POST", base + "/alerts/{id}/ack",
              AdminHandler(ctx, [ctx](const Request&, const PathParams& p, const Principal& who) {
                return Ack(ctx, p, who);
              }));
  router->Add("GET", base + "/alert-rules",
              admin(
                  [ctx](const Request&, const PathParams&) -> absl::StatusOr<std::string> {
                    DS_ASSIGN_OR_RETURN(auto rules, ctx->index->ListAlertRules());
                    json items = json::array();
                    for (const auto& r : rules) items.push_back(RuleJson(r));
                    return json{{"items", items}}.dump();
                  },
                  200));
  router->Add(
      "POST", base + "/alert-rules",
      admin([ctx](const Request& req, const PathParams&) { return PutRule(ctx, req, nullptr); },
            201));
  router->Add(
      "PATCH", base + "/alert-rules/{rule}",
      admin([ctx](const Request& req, const PathParams& p) { return PutRule(ctx, req, &p); }, 200));
  router->Add("DELETE", base + "/alert-rules/{rule}",
              admin(
                  [ctx](const Request&, const PathParams& p) -> absl::StatusOr<std::string> {
                    DS_ASSIGN_OR_RETURN(AlertRule r, FindRule(ctx, p.at("rule")));
                    DS_RETURN_IF_ERROR(ctx->index->DeleteAlertRule(r.id));
                    spdlog::info("admin: alert rule {} deleted", r.name);
                    return json{{"deleted", r.name}}.dump();
                  },
                  200));
  router->Add(
      "GET", base + "/notification-channels",
      admin(
          [ctx](const Request&, const PathParams&) -> absl::StatusOr<std::string> {
            DS_ASSIGN_OR_RETURN(auto channels, ctx->index->ListNotificationChannels());
            json items = json::array();
            for (const auto& c : channels) items.push_back(ChannelJson(c));
            return json{{"items", items}}.dump(-1, ' ', false, json::error_handler_t::replace);
          },
          200));
  router->Add(
      "POST", base + "/notification-channels",
      admin([ctx](const Request& req, const PathParams&) { return PutChannel(ctx, req, nullptr); },
            201));
  router->Add(
      "PATCH", base + "/notification-channels/{channel}",
      admin([ctx](const Request& req, const PathParams& p) { return PutChannel(ctx, req, &p); },
            200));
  router->Add("DELETE", base + "/notification-channels/{channel}",
              admin(
                  [ctx](const Request&, const PathParams& p) -> absl::StatusOr<std::string> {
                    DS_ASSIGN_OR_RETURN(NotificationChannel c, FindChannel(ctx, p.at("channel")));
                    DS_RETURN_IF_ERROR(ctx->index->DeleteNotificationChannel(c.id));
                    spdlog::info("admin: notification channel {} deleted", c.name);
                    return json{{"deleted", c.name}}.dump();
                  },
                  200));
  router->Add("POST", base + "/notification-channels/{channel}/test",
              admin(
                  [ctx](const Request&, const PathParams& p) -> absl::StatusOr<std::string> {
                    DS_ASSIGN_OR_RETURN(NotificationChannel c, FindChannel(ctx, p.at("channel")));
                    Alert sample;
                    sample.rule_name = "test";
                    sample.kind = "test";
                    sample.severity = "info";
                    sample.subject = "datasync";
                    sample.message = "test notification from datasync-server";
                    sample.fired_at_ms = ctx->NowMs();
                    absl::Status st =
                        SendNotification(c, sample, "fired", ctx->config.webhook_targets);
                    return json{
                        {"channel", c.name}, {"ok", st.ok()}, {"error", std::string(st.message())}}
                        .dump();
                  },
                  200));
}

}  // namespace ds
