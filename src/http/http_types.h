// HTTP request/response values shared by the server and the client, and the one mapping between
// canonical status codes and HTTP statuses (problem+json, RFC 9457).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ds::http {

struct Request {
  std::string method;                          // "GET", "POST", ...
  std::string path;                            // decoded path, no query
  std::map<std::string, std::string> query;    // decoded
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  std::string remote_addr;
  bool tls = false;  // true when it came over this server's own HTTPS (not a proxy's)
  // True once the client has closed its connection (or it broke) while the request waits for
  // its answer, e.g. a long-poll whose agent died. Set by the server; null in hand-made requests.
  std::function<bool()> client_gone;

  // Header value or "" (name must be lowercase).
  std::string Header(const std::string& name) const;
  std::string Query(const std::string& name, const std::string& fallback = "") const;
};

// A request as known once its header is read, before its body: what a server chooses the body
// limit by (ServerOptions::body_limit_for).
struct RequestHead {
  std::string method;
  std::string path;                            // decoded path, no query; raw if it does not decode
  std::map<std::string, std::string> headers;  // names lowercased

  // Header value or "" (name must be lowercase).
  std::string Header(const std::string& name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Machine-readable reasons: what a status means beyond its code, kept across HTTP as the
// problem+json member "reason" (ProblemResponse writes it, StatusFromResponse restores it), so
// a client reacts to the reason, never to a bare HTTP status.
//
// "base_moved": a delta compare was refused because the job's index moved on from the base
// manifest it was made against; the agent compares the whole manifest instead (Aborted: retry
// at a higher level). Sent as a 409.
inline constexpr std::string_view kReasonBaseMoved = "base_moved";

// `status` carrying `reason` (an absl payload; OK stays OK without one). A reason is
// lowercase letters, digits and '_'.
[[nodiscard]] absl::Status WithReason(absl::Status status, std::string_view reason);
// The reason `status` carries, or "" when none.
[[nodiscard]] std::string ReasonOf(const absl::Status& status);

// Aborted with reason kReasonBaseMoved and `message`.
[[nodiscard]] absl::Status BaseMovedError(std::string_view message);
// True for BaseMovedError, also once it crossed HTTP (StatusFromResponse); false for any other
// status, a plain 409 (FailedPrecondition) and AlreadyExists included.
[[nodiscard]] bool IsBaseMoved(const absl::Status& status);

// Canonical code → HTTP status (InvalidArgument 400, Unauthenticated 401, PermissionDenied 403,
// NotFound 404, AlreadyExists/FailedPrecondition/Aborted 409, ResourceExhausted 413,
// Unavailable 503, DeadlineExceeded 504, Unimplemented 501, otherwise 500).
int HttpStatusFor(const absl::Status& status);
// HTTP status → canonical code, with `detail` as message.
absl::Status StatusForHttp(int http_status, const std::string& detail);
// The same for a response whose problem+json carried `reason` (may be ""): the status the server
// raised when the reason names one (a 409 "base_moved" is BaseMovedError), else StatusForHttp's
// code; either way carrying the reason (ReasonOf).
absl::Status StatusForHttp(int http_status, const std::string& detail, std::string_view reason);

// A problem+json response for a non-OK status, with the status's reason (ReasonOf) as member
// "reason" when it has one. 5xx responses hide internal details unless `expose_detail`; 503
// carries Retry-After.
Response ProblemResponse(const absl::Status& status, bool expose_detail = true);
Response ProblemResponse(int http_status, const std::string& title, const std::string& detail);
Response JsonResponse(int http_status, std::string body);

// Percent-decoding (returns InvalidArgument on bad escapes or decoded NUL) and encoding of one
// path segment or query value.
[[nodiscard]] absl::StatusOr<std::string> PercentDecode(const std::string& in, bool plus_is_space);
std::string PercentEncode(const std::string& in);

// The largest request header a server reads (request line and fields): a longer one is refused
// before any of it is parsed further.
inline constexpr size_t kMaxRequestHeaderBytes = 16 * 1024;

// A request target (origin form) decoded: the path, and the query's keys and values ('+' is a
// space there; a key given twice keeps its last value; empty parts are skipped).
struct RequestTarget {
  std::string path;
  std::map<std::string, std::string> query;
};
// InvalidArgument ("malformed path" / "malformed query string") when an escape is bad or
// decodes to NUL.
[[nodiscard]] absl::StatusOr<RequestTarget> ParseRequestTarget(std::string_view target);

}  // namespace ds::http
