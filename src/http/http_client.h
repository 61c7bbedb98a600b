// The one HTTP client wrapper (libcurl): agent → server, CLI → server, and later Azure Blob.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/rate_limiter.h"
#include "common/status.h"
#include "http/address_policy.h"

namespace ds::http {

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds timeout{120'000};  // whole request
  // Trust in the server (agent, CLI: docs/security.md "TLS and trust"). The certificate is always
  // verified (chain and host name): against the system CAs, or only against `ca_file` when set.
  std::string ca_file;                          // PEM CA bundle for a private PKI; "" = system CAs
  // Public-key pin(s), libcurl's CURLOPT_PINNEDPUBLICKEY: "sha256//BASE64[;sha256//BASE64...]" of
  // the server's SubjectPublicKeyInfo; the connection fails unless the key matches. "" = no pin.
  std::string pinned_public_key;
  // Refuse a base URL that is not https:// (FailedPrecondition, before connecting). Off for
  // clients of other services (Azure Blob emulators, webhooks) that may be plain HTTP.
  bool require_https = false;
  std::string user_agent = "datasync";
  const std::atomic<bool>* cancel = nullptr;    // when set, in-flight requests abort (Cancelled)
  // When set, asked before every request for a bearer credential (sent as "Authorization: Bearer
  // <value>" unless it is empty): a credential that can change while the client lives (the
  // agent's rotated API key). Must be thread-safe if shared between clients.
  std::function<std::string()> bearer;
  // When set (webhooks: a target someone else chose), every address the client connects to is
  // checked before connecting, and a refused one fails the request with PermissionDenied;
  // proxies from the environment are then not used (the proxy's address would be checked, not
  // the target's). Redirects are never followed, with or without a policy.
  std::optional<AddressPolicy> address_policy;
};

// One request for callers that need more than Do(): storage backends (Azure Blob) send large
// bodies without copying them, sign every header (so nothing may be added implicitly), pace and
// cancel single transfers and bound what they read back.
struct ClientRequest {
  std::string method = "GET";  // "HEAD" reads headers only
  std::string target;          // appended to the base URL, already percent-encoded
  std::vector<std::pair<std::string, std::string>> headers;  // sent as given, never logged
  // Request body, not owned: must stay valid until Send() returns. PUT and POST always carry a
  // Content-Length (0 without a body); no Content-Type is added (unlike Do()): set one in
  // `headers` when the body has one.
  const char* body = nullptr;
  size_t body_size = 0;                       // bytes
  std::chrono::milliseconds timeout{0};       // whole request; 0 = ClientOptions::timeout
  uint64_t max_send_bytes_per_second = 0;     // caps this upload (libcurl); 0 = unlimited
  // Caps the body's bytes together with every other transfer sharing the limiter (not owned).
  // With a limiter, `timeout` is not a bound on the whole request (waiting for the limiter is
  // not the peer's fault) but on a stall: the request fails when nothing moved for that long.
  RateLimiter* rate_limiter = nullptr;
  const std::atomic<bool>* cancel = nullptr;  // aborts the transfer (Cancelled) when set, in
                                              // addition to ClientOptions::cancel
  // A longer 2xx response body gives ResourceExhausted; when bounded, other (error) bodies are
  // truncated to their first 64 KiB instead.
  size_t max_response_bytes = SIZE_MAX;
};

struct ClientResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lowercased
};

// Not thread-safe: use one instance per thread. Reuses its connection between calls.
class Client {
 public:
  Client(std::string base_url, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Adds a header sent with every request (e.g. Authorization). Values are never logged.
  void SetDefaultHeader(const std::string& name, const std::string& value);

  // `target` is appended to the base URL ("/api/v1/..."). Unavailable on transport failure
  // (connection refused, DNS, TLS, timeout → DeadlineExceeded; PermissionDenied when
  // options.address_policy refused every address); any HTTP status is returned as a
  // response, not an error. `timeout` overrides options.timeout when > 0.
  [[nodiscard]] absl::StatusOr<ClientResponse> Do(
      const std::string& method, const std::string& target, const std::string& body = "",
      const std::vector<std::pair<std::string, std::string>>& headers = {},
      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  // Like Do(), for a fully specified request: transport failures are errors (Unavailable,
  // DeadlineExceeded, Cancelled, ResourceExhausted over max_response_bytes), any HTTP status is
  // a response.
  [[nodiscard]] absl::StatusOr<ClientResponse> Send(const ClientRequest& request);

  const std::string& base_url() const { return base_url_; }

 private:
  struct Impl;
  // The one libcurl call behind Do() and Send(). `default_json` adds
  // "Content-Type: application/json" to a non-empty body without one (Do()'s behaviour).
  absl::StatusOr<ClientResponse> Perform(const ClientRequest& request, bool default_json);

  std::string base_url_;
  ClientOptions options_;
  std::vector<std::pair<std::string, std::string>> default_headers_;
  std::unique_ptr<Impl> impl_;
};

// OK when `url` is https://, or http:// and `allow_http`; otherwise FailedPrecondition saying how
// to allow it (`allow_hint`, e.g. "pass --allow-http"). InvalidArgument for any other scheme.
[[nodiscard]] absl::Status CheckServerUrl(const std::string& url, bool allow_http,
                                          const std::string& allow_hint);

// A public-key pin as libcurl wants it: "sha256//BASE64" entries joined by ';'. Accepts that form
// or a bare SHA-256 of the SubjectPublicKeyInfo in hex (with or without ':' between bytes).
// InvalidArgument for anything else.
[[nodiscard]] absl::StatusOr<std::string> NormalizePin(const std::string& pin);

// OK for 2xx; otherwise the canonical status for the HTTP status and the problem+json `reason`
// (StatusForHttp), with its `detail` (or the raw body, truncated) as message.
absl::Status StatusFromResponse(const ClientResponse& response);

}  // namespace ds::http
