// Per source address limits on what a caller may do before (or instead of) authenticating:
// anonymous registration, enrollment polls, sign-ins, and wrong credentials. Internal to
// src/server. docs/security.md, "Hostile input: size, depth and rate".
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/keyed_limiter.h"
#include "http/http_types.h"
#include "server/server.h"

namespace ds {

struct ServerContext;

// The server's throttles, each keyed by ThrottleKey. Thread-safe.
struct Throttles {
  // REQUIRES: clock outlives the throttles.
  Throttles(const ServerConfig& config, const Clock* clock);

  KeyedLimiter registrations;     // POST /agent/register: config.register_rate a minute
  KeyedLimiter enrollment_polls;  // GET /agent/enrollment/{id}
  KeyedLimiter logins;            // POST /admin/session, every attempt (password hashing is dear)
  // Charged by wrong agent keys, admin tokens and enrollment secrets only; an address out of
  // tokens is refused before its credential is even looked at.
  KeyedLimiter auth_failures;
};

// The context's throttles, made on first use. REQUIRES: the first call comes before the server
// serves (the Add*Routes functions make it), as nothing guards the making.
Throttles& ThrottlesOf(ServerContext* ctx);

// What a request is throttled by: ClientAddress, with an IPv6 address cut to its /64 (one host
// usually holds a whole /64, and would otherwise have 2^64 buckets).
std::string ThrottleKey(const ServerContext& ctx, const http::Request& req);

// 429 problem+json with Retry-After (whole seconds, at least 1) saying what was refused.
http::Response TooManyRequests(int64_t retry_after_ms, std::string_view what);

// Takes a token of `limiter` for the request's address: nullopt when allowed, else the 429.
// `what` names the limited action in the answer and in the metric.
std::optional<http::Response> Throttle(ServerContext* ctx, KeyedLimiter& limiter,
                                       const http::Request& req, std::string_view what);

// The failed-authentication throttle, before the credential is looked at: the 429 when the
// request's address has run out of failures, else nullopt.
std::optional<http::Response> RefuseIfFailingAuth(ServerContext* ctx, const http::Request& req);

// What logs and the audit show of a credential (a key, token or secret): 8 hex digits of a
// domain-separated SHA-256 — never the credential nor the hash the index keeps.
std::string CredentialFingerprint(std::string_view credential);

// Records a wrong credential (`kind`: "agent key", "admin token", "enrollment secret") from the
// request's address: charges auth_failures and logs a warning with the address, the route and a
// short fingerprint of the credential (8 hex digits of a domain-separated SHA-256; never the
// credential nor the hash the index keeps).
void RecordAuthFailure(ServerContext* ctx, const http::Request& req, std::string_view kind,
                       std::string_view credential);

}  // namespace ds
