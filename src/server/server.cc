#include "server/server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/paths.h"
#include "http/http_server.h"
#include "server/context.h"
#include "common/log.h"

namespace ds {

std::string BearerToken(const http::Request& request) {
  std::string h = request.Header("authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  if (h.size() <= kPrefix.size() || h.compare(0, kPrefix.size(), kPrefix) != 0) return "";
  return h.substr(kPrefix.size());
}

bool IsValidName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name.front() == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void Reply(const http::Responder& respond, const absl::StatusOr<std::string>& result, int ok_status) {
  if (!result.ok()) {
    if (http::HttpStatusFor(result.status()) >= 500) spdlog::error("request failed: {}", result.status().ToString());
    return respond(http::ProblemResponse(result.status(), /*expose_detail=*/false));
  }
  respond(http::JsonResponse(ok_status, *result));
}

absl::StatusOr<std::string> Guarded(const std::function<absl::StatusOr<std::string>()>& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("unexpected exception: ", e.what()));
  }
}

namespace {

// How often the command bus asks the index about commands queued, and long-polls started, on
// other instances: the delay of a "sync now" that crosses instances.
constexpr std::chrono::milliseconds kCrossInstancePollInterval{1000};

std::string ContentTypeFor(const std::string& path) {
  auto ext = std::filesystem::path(path).extension().string();
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".json") return "application/json";
  return "application/octet-stream";
}

// True when the Cookie header carries the dashboard's session cookie (ds_session), by name only.
bool HasSessionCookie(const http::RequestHead& head) {
  const std::string cookies = head.Header("cookie");
  std::string_view rest = cookies;
  while (!rest.empty()) {
    const size_t semi = rest.find(';');
    std::string_view part = rest.substr(0, semi);
    rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
    while (!part.empty() && (part.front() == ' ' || part.front() == '\t')) part.remove_prefix(1);
    if (part.rfind("ds_session=", 0) == 0) return true;
  }
  return false;
}

// The body limit of one request (ServerOptions::body_limit_for), bytes.
size_t BodyLimitFor(const http::RequestHead& head, size_t anonymous_limit, size_t limit) {
  // Routes anyone may call: what they accept is small whatever credentials come along.
  const bool anonymous_route =
      (head.method == "POST" && head.path == "/api/v1/agent/register") ||
      (head.method == "GET" && head.path.rfind("/api/v1/agent/enrollment/", 0) == 0) ||
      (head.method == "POST" && head.path == "/api/v1/admin/session");
  const bool has_credentials = !head.Header("authorization").empty() || HasSessionCookie(head);
  if (anonymous_route || !has_credentials) return std::min(anonymous_limit, limit);
  return limit;
}

class ServerImpl final : public DataSyncServer {
 public:
  explicit ServerImpl(std::unique_ptr<ServerContext> ctx) : ctx_(std::move(ctx)) {}
  ~ServerImpl() override { Stop(); }

  absl::Status Start() {
    AddAgentRoutes(ctx_.get(), &router_);
    AddAdminRoutes(ctx_.get(), &router_);
    AddAccountRoutes(ctx_.get(), &router_);
    router_.Add("GET", "/healthz", [](const http::Request&, const PathParams&, http::Responder respond) {
      respond(http::JsonResponse(200, R"({"status":"ok"})"));
    });
    router_.Add("GET", "/metrics", [this](const http::Request& req, const PathParams&, http::Responder respond) {
      if (ctx_->config.metrics_require_auth && !AuthorizeAdmin(ctx_.get(), req, /*any_role=*/true).ok()) {
        return respond(http::ProblemResponse(absl::UnauthenticatedError("GET /metrics needs an admin token")));
      }
      http::Response r;
      r.status = 200;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = MetricsText(ctx_.get());
      respond(std::move(r));
    });
    router_.Add("GET", "/readyz", [this](const http::Request&, const PathParams&, http::Responder respond) {
      absl::Status st = ctx_->index->Ping();
      if (!st.ok()) {
        return respond(http::ProblemResponse(absl::UnavailableError(absl::StrCat("state index: ", st.message()))));
      }
      respond(http::JsonResponse(200, R"({"status":"ready"})"));
    });
    http::ServerOptions opts;
    opts.host = ctx_->config.listen_host;
    opts.port = ctx_->config.listen_port;
    opts.max_body_bytes = ctx_->config.max_body_bytes;
    // Credentials are only checked by the handlers, after the body is read: whoever sends none
    // (or calls an anonymous route) may send only a small body.
    opts.body_limit_for =
        [limit = ctx_->config.max_body_bytes, anonymous = ctx_->config.anonymous_max_body_bytes](
            const http::RequestHead& head) { return BodyLimitFor(head, anonymous, limit); };
    opts.tls_cert_file = ctx_->config.tls_cert_file;
    opts.tls_key_file = ctx_->config.tls_key_file;
    opts.worker_threads = ctx_->config.worker_threads;
    opts.io_threads = ctx_->config.io_threads;
    // Heartbeats (a fleet's most frequent call, and what tells operators an agent is alive) get
    // their own workers: they never wait behind compares, completes or long-poll set-ups.
    opts.is_priority = [](const http::Request& req) {
      return req.method == "POST" && req.path == "/api/v1/agent/heartbeat";
    };
    opts.priority_threads = 4;
    DS_ASSIGN_OR_RETURN(http_, http::StartServer(opts, [this](http::Request req, http::Responder respond) {
                          Handle(std::move(req), std::move(respond));
                        }));
    return absl::OkStatus();
  }

  uint16_t port() const override { return http_ ? http_->port() : 0; }
  std::string created_token_file() const override { return created_token_file_; }
  absl::Status ReloadTls() override {
    if (!http_) return absl::FailedPreconditionError("not serving");
    return http_->ReloadTls();
  }
  void set_created_token_file(std::string f) { created_token_file_ = std::move(f); }

  void Stop() override {
    if (http_) http_->Stop();
    ctx_->bus.reset();  // answers any long-poll still waiting (their sessions are gone)
    ctx_->alerts.reset();
    ctx_->janitor.reset();
    ctx_->scrubs.reset();
    ctx_->reconciles.reset();
  }

 private:
  void Handle(http::Request req, http::Responder respond) {
    if (req.path.rfind("/api/", 0) == 0 || req.path == "/healthz" || req.path == "/readyz" ||
        req.path == "/metrics") {
      router_.Dispatch(req, respond);
      return;
    }
    ServeStatic(req, respond);
  }

  void ServeStatic(const http::Request& req, const http::Responder& respond) {
    if (req.method != "GET" && req.method != "HEAD") {
      return respond(http::ProblemResponse(405, "Method Not Allowed", "static files are read-only"));
    }
    if (ctx_->config.web_dir.empty()) {
      return respond(http::ProblemResponse(404, "Not Found", "no dashboard configured (--web)"));
    }
    std::string rel = req.path == "/" ? "index.html" : req.path.substr(1);
    if (!ValidateRelativePath(rel).ok()) return respond(http::ProblemResponse(404, "Not Found", "no such file"));
    auto body = ReadFileToString(std::filesystem::path(ctx_->config.web_dir) / rel, 8 << 20);
    if (!body.ok()) return respond(http::ProblemResponse(404, "Not Found", "no such file"));
    http::Response r;
    r.status = 200;
    r.content_type = ContentTypeFor(rel);
    r.body = std::move(*body);
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.headers.emplace_back("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'");
    respond(std::move(r));
  }

  std::unique_ptr<ServerContext> ctx_;
  Router router_;
  std::unique_ptr<http::Server> http_;
  std::string created_token_file_;
};

// Creates the first admin token when the index has none and writes it to <data>/admin.token.
absl::StatusOr<std::string> BootstrapAdminToken(ServerContext* ctx) {
  DS_ASSIGN_OR_RETURN(int64_t n, ctx->index->CountAdminTokens());
  if (n > 0) return std::string();
  std::string token = absl::StrCat("dsa_", Base64UrlEncode(RandomBytes(32)));
  std::filesystem::path file = std::filesystem::path(ctx->config.data_dir) / "admin.token";
  DS_RETURN_IF_ERROR(WriteFileAtomically(file, token + "\n", 0600));
  DS_RETURN_IF_ERROR(ctx->index->CreateAdminToken("initial-admin", "admin", Sha256Hex(token), ctx->NowMs()).status());
  return file.string();
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataSyncServer>> StartDataSyncServer(const ServerConfig& config) {
  auto ctx = std::make_unique<ServerContext>();
  ctx->config = config;
  ctx->clock = config.clock != nullptr ? config.clock : SystemClock();
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create data dir ", config.data_dir, ": ", ec.message()));
  ::chmod(config.data_dir.c_str(), 0700);

  DS_ASSIGN_OR_RETURN(ctx->index, OpenStateIndex(config.index_url));
  DS_RETURN_IF_ERROR(ctx->index->Migrate());
  DS_ASSIGN_OR_RETURN(int version, ctx->index->SchemaVersion());
  spdlog::info("state index {} at schema version {}", RedactIndexUrl(config.index_url), version);

  DS_ASSIGN_OR_RETURN(StorageUrl url, ParseStorageUrl(config.storage_url));
  if (config.sas_ttl.count() < 1) {
    return absl::InvalidArgumentError("the SAS lifetime must be at least 1s");
  }
  DS_ASSIGN_OR_RETURN(ctx->storage, OpenStorage(url, StorageCredentials{config.storage_key}));
  ctx->storage_url = url.text;
  // Whether the backend grants writes, asked without touching storage: an empty key is invalid
  // for every backend that implements GrantWrite, and the default answers Unimplemented first.
  ctx->storage_grants_writes =
      !absl::IsUnimplemented(ctx->storage->GrantWrite("", "", std::chrono::seconds(1)).status());
  spdlog::info("storage {}{}", ctx->storage->Describe(),
               ctx->storage_grants_writes
                   ? absl::StrCat("; agents upload with per-blob write SAS valid for ",
                                  FormatDuration(config.sas_ttl))
                   : std::string("; agents write to it directly"));
  if (!ctx->storage_grants_writes && !config.storage_key.empty()) {
    spdlog::warn("a storage key was given but {} does not use one; ignoring it", url.text);
  }
  // This instance among those sharing the index: names its reconcile and scrub claims, its leases
  // and its agents' long-polls.
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string instance_id = absl::StrCat(host, ":", ::getpid(), ":", HexEncode(RandomBytes(4)));
  spdlog::info("instance id {}", instance_id);
  StateIndex* index = ctx->index.get();
  ctx->bus = std::make_unique<CommandBus>(
      instance_id,
      [index](const std::vector<int64_t>& runner_ids) { return index->CheckWaitingRunners(runner_ids); },
      kCrossInstancePollInterval);

  DS_ASSIGN_OR_RETURN(std::string token_file, BootstrapAdminToken(ctx.get()));
  DeclareServerMetrics(&ctx->metrics);  // before any service counts
  ctx->reconciles = std::make_unique<ReconcileService>(ctx.get(), instance_id);
  if (!(config.scrub_rehash >= 0.0 && config.scrub_rehash <= 1.0)) {
    return absl::InvalidArgumentError("the scrub re-hash fraction must be from 0 to 1");
  }
  if (config.scrub_interval.count() < 0) {
    return absl::InvalidArgumentError("the scrub interval must not be negative");
  }
  ctx->scrubs = std::make_unique<ScrubService>(ctx.get(), instance_id);
  ctx->janitor = std::make_unique<Janitor>(ctx.get(), instance_id);
  if (config.alert_interval.count() < 100) {
    return absl::InvalidArgumentError("the alert interval must be at least 100ms");
  }
  ctx->alerts = std::make_unique<AlertService>(ctx.get(), instance_id);
  auto server = std::make_unique<ServerImpl>(std::move(ctx));
  server->set_created_token_file(token_file);
  DS_RETURN_IF_ERROR(server->Start());
  return std::unique_ptr<DataSyncServer>(std::move(server));
}

}  // namespace ds
