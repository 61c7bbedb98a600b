#include "server/throttles.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/log.h"
#include "server/context.h"

namespace ds {
namespace {

constexpr char kThrottledMetric[] = "datasync_requests_throttled_total";
constexpr char kAuthFailureMetric[] = "datasync_auth_failures_total";

KeyedLimiter::Policy PerMinute(double per_minute, double burst) {
  KeyedLimiter::Policy p;
  p.per_minute = per_minute;
  p.burst = burst;
  return p;
}

// Fixed limits (docs/api.md, "Limits"): far above what agents, the CLI and the dashboard send,
// far below what would cost the server anything.
constexpr double kEnrollmentPollsPerMinute = 300;  // 25 pending agents behind one address
constexpr double kEnrollmentPollBurst = 100;
constexpr double kLoginsPerMinute = 20;            // each costs an Argon2 hash
constexpr double kLoginBurst = 20;
constexpr double kAuthFailuresPerMinute = 30;
constexpr double kAuthFailureBurst = 30;

}  // namespace

Throttles::Throttles(const ServerConfig& config, const Clock* clock)
    : registrations(PerMinute(config.register_rate, std::max(1.0, config.register_rate)), clock),
      enrollment_polls(PerMinute(kEnrollmentPollsPerMinute, kEnrollmentPollBurst), clock),
      logins(PerMinute(kLoginsPerMinute, kLoginBurst), clock),
      auth_failures(PerMinute(kAuthFailuresPerMinute, kAuthFailureBurst), clock) {}

Throttles& ThrottlesOf(ServerContext* ctx) {
  if (ctx->throttles == nullptr) {
    ctx->throttles = std::make_unique<Throttles>(ctx->config, ctx->clock);
    ctx->metrics.DeclareCounter(kThrottledMetric,
                                "Requests refused with 429 by a per-address throttle, by action.");
    ctx->metrics.DeclareCounter(kAuthFailureMetric,
                                "Requests with a wrong agent key, admin token or enrollment "
                                "secret, by kind.");
  }
  return *ctx->throttles;
}

std::string ThrottleKey(const ServerContext& ctx, const http::Request& req) {
  std::string addr = ClientAddress(ctx, req);
  unsigned char v6[16];
  if (addr.find(':') == std::string::npos || inet_pton(AF_INET6, addr.c_str(), v6) != 1) {
    return addr;
  }
  static constexpr unsigned char kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(v6, kV4Mapped, sizeof kV4Mapped) == 0) return addr;  // one IPv4 host
  std::memset(v6 + 8, 0, 8);
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, v6, text, sizeof text) == nullptr) return addr;
  return absl::StrCat(text, "/64");
}

http::Response TooManyRequests(int64_t retry_after_ms, std::string_view what) {
  const int64_t seconds = std::max<int64_t>(1, (retry_after_ms + 999) / 1000);
  http::Response r = http::ProblemResponse(
      429, "Too Many Requests",
      absl::StrCat("too many ", std::string(what), " from this address; try again in ", seconds, " s"));
  r.headers.emplace_back("Retry-After", std::to_string(seconds));
  return r;
}

std::optional<http::Response> Throttle(ServerContext* ctx, KeyedLimiter& limiter,
                                       const http::Request& req, std::string_view what) {
  KeyedLimiter::Decision d = limiter.Acquire(ThrottleKey(*ctx, req));
  if (d.allowed) return std::nullopt;
  ctx->metrics.Add(kThrottledMetric, {{"what", std::string(what)}});
  return TooManyRequests(d.retry_after_ms, what);
}

std::optional<http::Response> RefuseIfFailingAuth(ServerContext* ctx, const http::Request& req) {
  KeyedLimiter::Decision d = ThrottlesOf(ctx).auth_failures.Check(ThrottleKey(*ctx, req));
  if (d.allowed) return std::nullopt;
  ctx->metrics.Add(kThrottledMetric, {{"what", "failed authentications"}});
  return TooManyRequests(d.retry_after_ms, "failed authentications");
}

std::string CredentialFingerprint(std::string_view credential) {
  return Sha256Hex(absl::StrCat("datasync log fingerprint\n", std::string(credential))).substr(0, 8);
}

void RecordAuthFailure(ServerContext* ctx, const http::Request& req, std::string_view kind,
                       std::string_view credential) {
  KeyedLimiter& limiter = ThrottlesOf(ctx).auth_failures;
  const std::string key = ThrottleKey(*ctx, req);
  (void)limiter.Acquire(key);
  const bool exhausted = !limiter.Check(key).allowed;
  ctx->metrics.Add(kAuthFailureMetric, {{"kind", std::string(kind)}});
  const std::string fingerprint = CredentialFingerprint(credential);
  // The logger escapes control characters in the address and path (MakeLogger, common/log.cc).
  spdlog::warn("auth: wrong {} from {} on {} {} (fingerprint {}){}", kind, ClientAddress(*ctx, req),
               req.method, req.path.substr(0, 200), fingerprint,
               exhausted ? "; further attempts from this address are refused for a while (429)" : "");
}

}  // namespace ds
