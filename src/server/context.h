// What every API handler of the server shares. Internal to src/server.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/metrics.h"
#include "common/time_util.h"
#include "http/http_server.h"
#include "index/state_index.h"
#include "server/alerts.h"
#include "server/background.h"
#include "server/command_bus.h"
#include "server/router.h"
#include "server/scrub.h"
#include "server/server.h"
#include "server/throttles.h"
#include "storage/storage.h"

namespace ds {

// Constant after start-up; the pointees are thread-safe.
struct ServerContext {
  ServerConfig config;
  const Clock* clock = nullptr;
  std::unique_ptr<StateIndex> index;
  std::unique_ptr<Storage> storage;
  std::string storage_url;  // as told to agents (never holds a secret)
  // The storage hands out per-object write grants (Storage::GrantWrite; object storage): agents
  // upload with them, and `complete` checks every uploaded result against what storage holds.
  bool storage_grants_writes = false;
  std::unique_ptr<CommandBus> bus;
  std::unique_ptr<ReconcileService> reconciles;  // started after the index and storage
  std::unique_ptr<ScrubService> scrubs;          // started after the index and storage
  std::unique_ptr<Janitor> janitor;
  std::unique_ptr<AlertService> alerts;          // started after the index and storage
  MetricsRegistry metrics;                       // this instance's counters (GET /metrics)
  std::unique_ptr<Throttles> throttles;          // per-address limits; see ThrottlesOf
  int64_t NowMs() const { return clock->NowUnixMs(); }
};

// An admin route body: answers JSON or an error. The wrapper (admin_api.cc) authenticates first.
using AdminHandlerFn =
    std::function<absl::StatusOr<std::string>(const http::Request&, const PathParams&)>;
using AdminRouteWrapper = std::function<RouteHandler(AdminHandlerFn, int ok_status)>;

void AddAgentRoutes(ServerContext* ctx, Router* router);
void AddAdminRoutes(ServerContext* ctx, Router* router);
// Logs, alerts, alert rules, notification channels (observability_api.cc).
void AddObservabilityAdminRoutes(ServerContext* ctx, Router* router, const AdminRouteWrapper& admin);
// GET /metrics body (Prometheus text format).
std::string MetricsText(ServerContext* ctx);
void DeclareServerMetrics(MetricsRegistry* metrics);

// Shared helpers for handlers.
// The bearer token of the request, or "" when absent.
std::string BearerToken(const http::Request& request);
// [A-Za-z0-9._-]{1,64}, not starting with '.'
bool IsValidName(const std::string& name);
// Answers `result` as 200 JSON, or its error as problem+json.
void Reply(const http::Responder& respond, const absl::StatusOr<std::string>& result,
           int ok_status = 200);
// Runs `fn` converting any escaped exception to a 500 problem (adapter edge).
absl::StatusOr<std::string> Guarded(const std::function<absl::StatusOr<std::string>()>& fn);

// ---- admin authentication (accounts_api.cc): the one place every admin route passes ----------
// Who is behind an admin request: a dashboard session (cookie) or an API token (Bearer).
struct Principal {
  std::string actor;           // "user:NAME" or "token:NAME"
  std::string role;            // admin | viewer
  std::string user;            // NAME for a session, "" for a token
  bool via_session = false;
  std::string session_id_hash; // SHA-256 hex of the cookie's session id
  std::string csrf_token;      // the session's, to hand back on GET /admin/session
  int64_t session_expires_at_ms = 0;
  // What the handler adds to the request's audit line (e.g. the enrollment an approval chose);
  // written by the one handler serving the request, read by AuditAdmin after it.
  mutable std::map<std::string, std::string> audit_notes;
};
// The request's client address: remote_addr, or the last X-Forwarded-For entry when
// config.trust_proxy.
std::string ClientAddress(const ServerContext& ctx, const http::Request& req);
// Authenticates (Bearer token, else session cookie: 401 without either or when expired) and
// authorises: a state-changing request (not GET/HEAD) over a session needs X-CSRF-Token equal to
// the session's (403), and the admin role unless `any_role` (403 for viewers).
[[nodiscard]] absl::StatusOr<Principal> AuthorizeAdmin(ServerContext* ctx, const http::Request& req,
                                                       bool any_role = false);
// Writes one audit line (details redacted); failures to write are logged, never answered.
void Audit(ServerContext* ctx, const std::string& actor, const std::string& action,
           const std::string& target, int http_status, nlohmann::json details,
           const std::string& ip);
// Writes the audit line of an admin request (actor, method + path, path parameters, HTTP status,
// error). Failures to write are logged, never answered.
void AuditAdmin(ServerContext* ctx, const http::Request& req, const PathParams& params,
                const Principal& who, int http_status, const std::string& error);
using AdminFn = std::function<absl::StatusOr<std::string>(const http::Request&, const PathParams&,
                                                          const Principal&)>;
// The route handler of an admin route: AuthorizeAdmin, then `fn`, then (for every request that
// is not GET/HEAD, allowed or refused after authentication) AuditAdmin.
RouteHandler AdminHandler(ServerContext* ctx, AdminFn fn, int ok_status = 200, bool any_role = false);
void AddAccountRoutes(ServerContext* ctx, Router* router);

}  // namespace ds
