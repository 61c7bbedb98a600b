// Operator accounts: admin authentication (API tokens and dashboard sessions), CSRF, the audit
// log, sign-in with lock-out, token management, users, and the dashboard's summary queries.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/password.h"
#include "server/context.h"
#include "server/redact.h"

namespace ds {
namespace {

using http::Request;
using http::Responder;
using nlohmann::json;

constexpr char kSessionCookie[] = "ds_session";
constexpr int64_t kTouchEveryMs = 60'000;  // last_seen_at is written at most this often
constexpr size_t kMaxCredentialBytes = 256;
constexpr size_t kMaxAuditBodyBytes = 4096;

bool IsReadOnly(const Request& req) { return req.method == "GET" || req.method == "HEAD"; }

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

// The value of cookie `name` in the Cookie header, or "".
std::string CookieValue(const Request& req, std::string_view name) {
  const std::string header = req.Header("cookie");
  std::string_view rest = header;
  while (!rest.empty()) {
    const size_t semi = rest.find(';');
    const std::string part = Trim(rest.substr(0, semi));
    rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
    const size_t eq = part.find('=');
    if (eq != std::string::npos && std::string_view(part).substr(0, eq) == name)
      return part.substr(eq + 1);
  }
  return "";
}

bool ServedOverHttps(const ServerContext& ctx, const Request& req) {
  return req.tls || (ctx.config.trust_proxy &&
                     absl::AsciiStrToLower(req.Header("x-forwarded-proto")) == "https");
}

bool SecureCookies(const ServerContext& ctx, const Request& req) {
  if (ctx.config.cookie_secure == "always") return true;
  if (ctx.config.cookie_secure == "never") return false;
  return ServedOverHttps(ctx, req);
}

std::string SessionCookie(const ServerContext& ctx, const Request& req, const std::string& value,
                          int64_t max_age_s) {
  return absl::StrCat(kSessionCookie, "=", value,
                      "; Path=/; HttpOnly; SameSite=Strict; Max-Age=", max_age_s,
                      SecureCookies(ctx, req) ? "; Secure" : "");
}

// Who sent the request; refusals here are 401 and not audited (there is no actor).
absl::StatusOr<Principal> Authenticate(ServerContext* ctx, const Request& req) {
  Principal who;
  if (std::string token = BearerToken(req); !token.empty()) {
    auto t = token.size() > kMaxCredentialBytes
                 ? absl::StatusOr<AdminToken>(absl::NotFoundError("too long"))
                 : ctx->index->FindAdminToken(Sha256Hex(token));
    if (absl::IsNotFound(t.status())) {
      RecordAuthFailure(ctx, req, "admin token", token);
      return absl::UnauthenticatedError("unknown or revoked admin token");
    }
    if (!t.ok()) return t.status();
    who.actor = absl::StrCat("token:", t->name);
    who.role = t->role;
    return who;
  }
  const std::string id = CookieValue(req, kSessionCookie);
  if (id.empty()) {
    return absl::UnauthenticatedError(
        "sign in (POST /api/v1/admin/session) or send an admin token (Authorization: Bearer ...)");
  }
  if (id.size() > kMaxCredentialBytes)
    return absl::UnauthenticatedError("session expired; sign in again");
  const std::string id_hash = Sha256Hex(id);
  auto s = ctx->index->FindSession(id_hash);
  if (absl::IsNotFound(s.status()))
    return absl::UnauthenticatedError("session expired; sign in again");
  if (!s.ok()) return s.status();
  const int64_t now = ctx->NowMs();
  if (now >= s->expires_at_ms || now - s->last_seen_at_ms > ctx->config.session_idle.count()) {
    (void)ctx->index->DeleteSession(id_hash);
    return absl::UnauthenticatedError("session expired; sign in again");
  }
  if (now - s->last_seen_at_ms >= kTouchEveryMs) (void)ctx->index->TouchSession(id_hash, now);
  who.actor = absl::StrCat("user:", s->user_name);
  who.role = s->role;
  who.user = s->user_name;
  who.via_session = true;
  who.session_id_hash = id_hash;
  who.csrf_token = s->csrf_token;
  who.session_expires_at_ms = s->expires_at_ms;
  return who;
}

// What an authenticated principal may do; refusals here are 403 and audited.
absl::Status Authorize(const Principal& who, const Request& req, bool any_role) {
  if (IsReadOnly(req)) return absl::OkStatus();
  if (who.via_session) {
    const std::string sent = req.Header("x-csrf-token");
    if (sent.empty() || !ConstantTimeEquals(sent, who.csrf_token)) {
      return absl::PermissionDeniedError("missing or wrong CSRF token (X-CSRF-Token)");
    }
  }
  if (!any_role && who.role != "admin") {
    return absl::PermissionDeniedError(
        absl::StrCat(who.actor, " has the viewer role and cannot change anything"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Int64Query(const Request& req, const std::string& name, int64_t fallback,
                                   int64_t min, int64_t max) {
  const std::string v = req.Query(name);
  if (v.empty()) return fallback;
  int64_t out = 0;
  if (v.size() > 18 || !absl::SimpleAtoi(v, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("query parameter '", name, "' must be a number"));
  }
  return std::clamp(out, min, max);
}

json TokenJson(const AdminToken& t) {
  return json{
      {"id", t.id},
      {"name", t.name},
      {"role", t.role},
      {"created_by", t.created_by},
      {"created_at", FormatIsoUtc(t.created_at_ms)},
      {"revoked_at", t.revoked_at_ms > 0 ? json(FormatIsoUtc(t.revoked_at_ms)) : json(nullptr)},
      {"active", t.revoked_at_ms == 0}};
}

json AuditJson(const AuditEntry& e) {
  // Entries written before redaction existed are redacted on the way out, too.
  json details = RedactSecrets(ParseJsonOr(e.details_json, json{{"raw", e.details_json}}));
  return json{{"id", e.id},         {"time_ms", e.at_ms}, {"time", FormatIsoUtc(e.at_ms)},
              {"actor", e.actor},   {"action", e.action}, {"target", e.target},
              {"result", e.result}, {"details", details}, {"source_ip", e.source_ip}};
}

http::Response TooManyAttempts(int64_t retry_after_ms) {
  const int64_t seconds = std::max<int64_t>(1, (retry_after_ms + 999) / 1000);
  http::Response r =
      http::ProblemResponse(429, "Too Many Requests",
                            absl::StrCat("too many failed sign-ins; try again in ", seconds, " s"));
  r.headers.emplace_back("Retry-After", std::to_string(seconds));
  return r;
}

// The host[:port] of an http(s) origin ("https://Host:8443" -> "host:8443"), or "" for anything
// else ("null", other schemes).
std::string OriginAuthority(const std::string& origin) {
  const std::string o = absl::AsciiStrToLower(origin);
  for (std::string_view scheme : {"https://", "http://"}) {
    if (o.rfind(scheme, 0) == 0) {
      std::string rest = o.substr(scheme.size());
      return rest.find('/') == std::string::npos ? rest : "";
    }
  }
  return "";
}

// Login CSRF: a sign-in form on another site could otherwise sign the browser into the
// attacker's account. The body must be declared JSON (no simple form or text/plain post), and an
// Origin, when the browser sends one, must be this server (Host; or X-Forwarded-Host from a
// trusted proxy). Non-browser clients send no Origin.
absl::Status CheckLoginRequestOrigin(const ServerContext& ctx, const Request& req) {
  std::string type = absl::AsciiStrToLower(req.Header("content-type"));
  type = Trim(std::string_view(type).substr(0, type.find(';')));
  if (type != "application/json") {
    return absl::PermissionDeniedError("sign-in needs Content-Type: application/json");
  }
  if (!req.headers.count("origin")) return absl::OkStatus();
  const std::string from = OriginAuthority(req.Header("origin"));
  std::string host = absl::AsciiStrToLower(req.Header("host"));
  std::string forwarded = absl::AsciiStrToLower(req.Header("x-forwarded-host"));
  forwarded = Trim(std::string_view(forwarded).substr(0, forwarded.find(',')));
  if (!from.empty() && (from == host || (ctx.config.trust_proxy && from == forwarded))) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError("sign-in from another origin is refused");
}

// POST /admin/session {name, password}: sign in.
http::Response Login(ServerContext* ctx, const Request& req) {
  if (absl::Status st = CheckLoginRequestOrigin(*ctx, req); !st.ok()) {
    return http::ProblemResponse(403, "Forbidden", std::string(st.message()));
  }
  if (auto refused = Throttle(ctx, ThrottlesOf(ctx).logins, req, "sign-in attempts")) {
    return *std::move(refused);
  }
  const std::string ip = ClientAddress(*ctx, req);
  std::string name, password;
  try {
    json body = ParseJsonOr(req.body);
    name = body.at("name").get<std::string>();
    password = body.at("password").get<std::string>();
  } catch (const json::exception&) {
    return http::ProblemResponse(400, "Bad Request",
                                 "body must be {\"name\": ..., \"password\": ...}");
  }
  if (name.empty() || name.size() > 64 || password.size() > 1024) {
    return http::ProblemResponse(401, "Unauthorized", "wrong user name or password");
  }
  const int64_t now = ctx->NowMs();
  // A user name is locked per address: failures from elsewhere never lock its owner out.
  const std::string user_subject = "user:" + name, ip_subject = "ip:" + ip;
  const std::string user_at_ip = absl::StrCat(user_subject, "@", ip);
  // Locked subjects are refused before the password is even checked.
  for (const std::string& subject : {user_at_ip, ip_subject}) {
    auto t = ctx->index->GetLoginThrottle(subject);
    if (!t.ok()) return http::ProblemResponse(t.status(), false);
    if (t->locked_until_ms > now) {
      Audit(ctx, "", "login", user_subject, 429, json{{"locked", subject}}, ip);
      return TooManyAttempts(t->locked_until_ms - now);
    }
  }
  auto user = ctx->index->GetUserByName(name);
  if (!user.ok() && !absl::IsNotFound(user.status()))
    return http::ProblemResponse(user.status(), false);
  bool good = false;
  if (user.ok()) {
    good = VerifyPassword(password, user->password_hash);
  } else {
    BurnPasswordVerification(password);
  }
  if (!good) {
    // A user name locks (from this address) after 5 failures in a row; an address (which may be a
    // shared proxy or NAT) after 20. Each further failure doubles the lock, up to 15 minutes.
    LockoutPolicy per_user, per_ip;
    per_ip.free_failures = 20;
    auto by_user = ctx->index->RecordLoginFailure(user_at_ip, now, per_user);
    auto by_ip = ctx->index->RecordLoginFailure(ip_subject, now, per_ip);
    if (!by_user.ok()) return http::ProblemResponse(by_user.status(), false);
    if (!by_ip.ok()) return http::ProblemResponse(by_ip.status(), false);
    Audit(ctx, "", "login", user_subject, 401,
          json{{"reason", "wrong user name or password"}, {"failures", by_user->failures}}, ip);
    spdlog::warn("admin: failed sign-in as '{}' from {} ({} in a row)", name, ip,
                 by_user->failures);
    return http::ProblemResponse(401, "Unauthorized", "wrong user name or password");
  }
  (void)ctx->index->ClearLoginFailures(user_at_ip);
  (void)ctx->index->ClearLoginFailures(ip_subject);
  const std::string id = Base64UrlEncode(RandomBytes(32));
  Session s;
  s.id_hash = Sha256Hex(id);
  s.user_id = user->id;
  s.csrf_token = Base64UrlEncode(RandomBytes(32));
  s.source_ip = ip;
  s.created_at_ms = s.last_seen_at_ms = now;
  s.expires_at_ms = now + ctx->config.session_max.count();
  if (absl::Status st = ctx->index->CreateSession(s); !st.ok())
    return http::ProblemResponse(st, false);
  Audit(ctx, "user:" + name, "login", user_subject, 200, json::object(), ip);
  spdlog::info("admin: '{}' signed in from {}", name, ip);
  http::Response r =
      http::JsonResponse(200, json{{"user", user->name},
                                   {"role", user->role},
                                   {"actor", "user:" + user->name},
                                   {"csrf_token", s.csrf_token},
                                   {"expires_at_ms", s.expires_at_ms},
                                   {"idle_timeout_ms", ctx->config.session_idle.count()}}
                                  .dump());
  r.headers.emplace_back("Set-Cookie",
                         SessionCookie(*ctx, req, id, ctx->config.session_max.count() / 1000));
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

absl::StatusOr<std::string> CreateToken(ServerContext* ctx, const Request& req,
                                        const Principal& who) {
  std::string name, role = "admin";
  try {
    json body = ParseJsonOr(req.body);
    name = body.at("name").get<std::string>();
    role = body.value("role", role);
  } catch (const json::exception&) {
    return absl::InvalidArgumentError(
        "body must be {\"name\": ..., \"role\": \"admin\"|\"viewer\"}");
  }
  if (!IsValidName(name))
    return absl::InvalidArgumentError("token name must be 1-64 characters of A-Z a-z 0-9 . _ -");
  if (role != "admin" && role != "viewer")
    return absl::InvalidArgumentError("role must be admin or viewer");
  const std::string token = absl::StrCat("dsa_", Base64UrlEncode(RandomBytes(32)));
  DS_ASSIGN_OR_RETURN(AdminToken t, ctx->index->CreateAdminToken(name, role, Sha256Hex(token),
                                                                 ctx->NowMs(), who.actor));
  spdlog::info("admin: {} created {} token '{}' (id {})", who.actor, role, name, t.id);
  json out = TokenJson(t);
  out["token"] = token;  // shown exactly once
  return out.dump();
}

absl::StatusOr<std::string> HourlyStatsJson(ServerContext* ctx, const Request& req) {
  constexpr int64_t kHour = 3'600'000;
  DS_ASSIGN_OR_RETURN(int64_t hours, Int64Query(req, "hours", 24, 1, 24 * 31));
  const int64_t now = ctx->NowMs();
  const int64_t first = (now / kHour - (hours - 1)) * kHour;
  DS_ASSIGN_OR_RETURN(auto stats, ctx->index->HourlyStats(first));
  json out = json::array();
  size_t i = 0;
  for (int64_t h = first; h <= now; h += kHour) {
    HourlyStat s;
    s.hour_start_ms = h;
    if (i < stats.size() && stats[i].hour_start_ms == h) s = stats[i++];
    out.push_back(json{{"hour_start_ms", s.hour_start_ms},
                       {"runs", s.runs},
                       {"files", s.files_uploaded},
                       {"bytes", s.bytes_uploaded},
                       {"failed", s.files_failed}});
  }
  return json{{"hours", out}}.dump();
}

}  // namespace

std::string ClientAddress(const ServerContext& ctx, const Request& req) {
  if (ctx.config.trust_proxy) {
    const std::string xff = req.Header("x-forwarded-for");
    if (!xff.empty()) {
      std::string last = Trim(std::string_view(xff).substr(xff.rfind(',') + 1));
      if (!last.empty() && last.size() <= 64) return last;
    }
  }
  return req.remote_addr;
}

absl::StatusOr<Principal> AuthorizeAdmin(ServerContext* ctx, const Request& req, bool any_role) {
  DS_ASSIGN_OR_RETURN(Principal who, Authenticate(ctx, req));
  DS_RETURN_IF_ERROR(Authorize(who, req, any_role));
  return who;
}

void Audit(ServerContext* ctx, const std::string& actor, const std::string& action,
           const std::string& target, int http_status, json details, const std::string& ip) {
  AuditEntry e;
  e.at_ms = ctx->NowMs();
  e.actor = actor;
  e.action = action;
  e.target = target;
  e.result = std::to_string(http_status);
  e.details_json =
      RedactSecrets(std::move(details)).dump(-1, ' ', false, json::error_handler_t::replace);
  e.source_ip = ip;
  if (auto st = ctx->index->AppendAudit(e); !st.ok()) {
    spdlog::error("audit log: cannot record {} {} by {}: {}", action, target, actor,
                  st.status().ToString());
  }
}

void AuditAdmin(ServerContext* ctx, const Request& req, const PathParams& params,
                const Principal& who, int http_status, const std::string& error) {
  json details = json::object();
  for (const auto& [k, v] : params) details[k] = v;
  for (const auto& [k, v] : who.audit_notes) details[k] = v;
  if (!error.empty()) details["error"] = error;
  if (!req.body.empty() && req.body.size() <= kMaxAuditBodyBytes) {
    if (json body = ParseJsonOr(req.body); !body.is_discarded()) {
      if (body.is_object()) {
        for (const char* secret : {"password", "token", "api_key", "secret"}) body.erase(secret);
      }
      details["body"] = std::move(body);
    }
  }
  if (!req.query.empty()) details["query"] = req.query;
  std::string action = req.path;
  if (constexpr std::string_view kBase = "/api/v1/admin"; action.rfind(kBase, 0) == 0)
    action.erase(0, kBase.size());
  Audit(ctx, who.actor, absl::StrCat(req.method, " ", action), req.path, http_status,
        std::move(details), ClientAddress(*ctx, req));
}

RouteHandler AdminHandler(ServerContext* ctx, AdminFn fn, int ok_status, bool any_role) {
  return [ctx, fn = std::move(fn), ok_status, any_role](const Request& req, const PathParams& p,
                                                        Responder respond) {
    if (!BearerToken(req).empty()) {
      if (auto refused = RefuseIfFailingAuth(ctx, req)) return respond(std::move(*refused));
    }
    absl::StatusOr<Principal> principal = absl::InternalError("not authenticated");
    try {
      principal = Authenticate(ctx, req);
    } catch (const std::exception& e) {
      principal = absl::InternalError(absl::StrCat("unexpected exception: ", e.what()));
    }
    if (!principal.ok()) return Reply(respond, principal.status(), ok_status);
    absl::StatusOr<std::string> result = Guarded([&]() -> absl::StatusOr<std::string> {
      DS_RETURN_IF_ERROR(Authorize(*principal, req, any_role));
      return fn(req, p, *principal);
    });
    if (!IsReadOnly(req)) {
      AuditAdmin(ctx, req, p, *principal,
                 result.ok() ? ok_status : http::HttpStatusFor(result.status()),
                 result.ok() ? std::string() : std::string(result.status().message()));
    }
    Reply(respond, result, ok_status);
  };
}

void AddAccountRoutes(ServerContext* ctx, Router* router) {
  (void)ThrottlesOf(ctx);  // made before serving
  BurnPasswordVerification("");  // builds its hash now, not during the first unknown-user sign-in
  const std::string base = "/api/v1/admin";
  router->Add("POST", base + "/session",
              [ctx](const Request& req, const PathParams&, Responder respond) {
                try {
                  respond(Login(ctx, req));
                } catch (const std::exception& e) {
                  respond(http::ProblemResponse(absl::InternalError(e.what()), false));
                }
              });
  // Who am I (and the CSRF token the dashboard sends back); works for tokens too.
  router->Add("GET", base + "/session",
              AdminHandler(ctx,
                           [ctx](const Request&, const PathParams&,
                                 const Principal& who) -> absl::StatusOr<std::string> {
                             json out{{"actor", who.actor},
                                      {"role", who.role},
                                      {"via", who.via_session ? "session" : "token"}};
                             if (who.via_session) {
                               out["user"] = who.user;
                               out["csrf_token"] = who.csrf_token;
                               out["expires_at_ms"] = who.session_expires_at_ms;
                               out["idle_timeout_ms"] = ctx->config.session_idle.count();
                             }
                             return out.dump();
                           }));
  // Sign out: any role, but a session needs its CSRF token like every change.
  router->Add("DELETE", base + "/session",
              [ctx](const Request& req, const PathParams& p, Responder respond) {
                auto who = Authenticate(ctx, req);
                if (!who.ok()) return Reply(respond, who.status());
                if (absl::Status st = Authorize(*who, req, /*any_role=*/true); !st.ok()) {
                  AuditAdmin(ctx, req, p, *who, http::HttpStatusFor(st), std::string(st.message()));
                  return Reply(respond, st);
                }
                if (who->via_session) (void)ctx->index->DeleteSession(who->session_id_hash);
                AuditAdmin(ctx, req, p, *who, 200, "");
                http::Response r = http::JsonResponse(200, R"({"signed_out":true})");
                r.headers.emplace_back("Set-Cookie", SessionCookie(*ctx, req, "", 0));
                respond(std::move(r));
              });

  router->Add("GET", base + "/tokens",
              AdminHandler(ctx,
                           [ctx](const Request&, const PathParams&,
                                 const Principal&) -> absl::StatusOr<std::string> {
                             DS_ASSIGN_OR_RETURN(auto tokens, ctx->index->ListAdminTokens());
                             json out = json::array();
                             for (const auto& t : tokens) out.push_back(TokenJson(t));
                             return json{{"items", out}}.dump();
                           }));
  router->Add("POST", base + "/tokens",
              AdminHandler(
                  ctx,
                  [ctx](const Request& req, const PathParams&, const Principal& who) {
                    return CreateToken(ctx, req, who);
                  },
                  201));
  router->Add(
      "DELETE", base + "/tokens/{id}",
      AdminHandler(ctx,
                   [ctx](const Request&, const PathParams& p,
                         const Principal& who) -> absl::StatusOr<std::string> {
                     int64_t id = 0;
                     if (!absl::SimpleAtoi(p.at("id"), &id))
                       return absl::NotFoundError(absl::StrCat("no admin token ", p.at("id")));
                     DS_ASSIGN_OR_RETURN(AdminToken t,
                                         ctx->index->RevokeAdminToken(id, ctx->NowMs()));
                     spdlog::info("admin: {} revoked token '{}' (id {})", who.actor, t.name, t.id);
                     return TokenJson(t).dump();
                   }));
  router->Add("GET", base + "/users",
              AdminHandler(ctx,
                           [ctx](const Request&, const PathParams&,
                                 const Principal& who) -> absl::StatusOr<std::string> {
                             if (who.role != "admin")
                               return absl::PermissionDeniedError("only admins list users");
                             DS_ASSIGN_OR_RETURN(auto users, ctx->index->ListUsers());
                             json out = json::array();
                             for (const auto& u : users) {
                               out.push_back(json{
                                   {"name", u.name},
                                   {"role", u.role},
                                   {"created_at", FormatIsoUtc(u.created_at_ms)},
                                   {"last_login_at", u.last_login_at_ms > 0
                                                         ? json(FormatIsoUtc(u.last_login_at_ms))
                                                         : json(nullptr)}});
                             }
                             return json{{"items", out}}.dump();
                           }));
  router->Add(
      "GET", base + "/audit",
      AdminHandler(
          ctx,
          [ctx](const Request& req, const PathParams&,
                const Principal&) -> absl::StatusOr<std::string> {
            AuditFilter f;
            DS_ASSIGN_OR_RETURN(f.before_id, Int64Query(req, "before_id", 0, 0, INT64_MAX / 2));
            DS_ASSIGN_OR_RETURN(int64_t limit, Int64Query(req, "limit", 50, 1, 1000));
            f.limit = static_cast<int>(limit);
            f.actor = req.Query("actor");
            f.action_contains = req.Query("q");
            if (f.actor.size() > 200 || f.action_contains.size() > 200) {
              return absl::InvalidArgumentError("filters are at most 200 bytes");
            }
            DS_ASSIGN_OR_RETURN(auto entries, ctx->index->ListAudit(f));
            json out = json::array();
            for (const auto& e : entries) out.push_back(AuditJson(e));
            json next = static_cast<int>(entries.size()) == f.limit ? json(entries.back().id)
                                                                    : json(nullptr);
            return json{{"items", out}, {"next_before_id", next}}.dump(
                -1, ' ', false, json::error_handler_t::replace);
          }));
  router->Add("GET", base + "/stats/hourly",
              AdminHandler(ctx, [ctx](const Request& req, const PathParams&, const Principal&) {
                return HourlyStatsJson(ctx, req);
              }));
}

}  // namespace ds
