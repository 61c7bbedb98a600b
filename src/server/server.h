// datasync-server: the agent API, the admin API and the dashboard over the state index.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "common/time_util.h"
#include "http/address_policy.h"

namespace ds {

struct ServerConfig {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 8080;                   // 0 = pick a free port
  std::string index_url = "sqlite:./var/state.db";
  // file:///ABS, a directory (made absolute), or azblob://ACCOUNT/CONTAINER[?endpoint=URL].
  std::string storage_url = "./var/share";
  // azblob: the account's Shared Key (base64). A secret: never logged, never told to agents,
  // never taken from the command line (--storage-key-file or DATASYNC_STORAGE_KEY).
  std::string storage_key;
  // Lifetime of the per-blob write SAS handed to agents (compare and .../grant); at least 1 s.
  std::chrono::seconds sas_ttl{900};
  std::string data_dir = "./var";
  std::string web_dir;                           // dashboard files; "" = no dashboard
  std::chrono::milliseconds heartbeat_interval{60'000};  // told to agents
  std::chrono::milliseconds max_long_poll{30'000};
  size_t max_body_bytes = 32 << 20;              // bytes
  // Bytes a request without credentials (no Authorization header, no session cookie) or to an
  // anonymous route (agent register, enrollment poll, sign-in) may carry; larger gets 413 before
  // its body is read. At most max_body_bytes.
  size_t anonymous_max_body_bytes = 64 << 10;
  // HTTPS (PEM files); both empty = plain HTTP, which datasync-server's main allows only with
  // --insecure-http (behind a TLS-terminating proxy). Reloaded by DataSyncServer::ReloadTls().
  std::string tls_cert_file;
  std::string tls_key_file;
  int worker_threads = 8;
  int io_threads = 2;
  std::chrono::milliseconds run_timeout{600'000};      // runner silent this long: its runs are abandoned
  std::chrono::milliseconds run_retention{180LL * 86'400'000};  // closed runs kept this long
  std::chrono::milliseconds janitor_interval{30'000};
  int64_t index_budget_bytes = 0;                // 0 = no budget
  std::chrono::milliseconds alert_interval{60'000};   // between alert evaluations
  // The storage scrub: every job is scrubbed once its last scrub (or, never scrubbed, its
  // creation) is this old; 0 = no scheduled scrubs (operators may still start them).
  std::chrono::milliseconds scrub_interval{24LL * 3'600'000};
  uint64_t scrub_rate = 2000;                    // objects listed per second at most; 0 = no cap
  double scrub_rehash = 0;                       // 0..1: share of objects re-hashed by default
  std::chrono::milliseconds log_retention{90LL * 86'400'000};  // agent log records kept this long
  bool metrics_require_auth = false;             // GET /metrics needs an admin token
  // Dashboard sessions: ended after this long without a request, and this long after sign-in.
  std::chrono::milliseconds session_idle{30 * 60'000};
  std::chrono::milliseconds session_max{12 * 3'600'000};
  // The session cookie's Secure attribute: "auto" (when the request came over HTTPS: this
  // server's own, or a trusted proxy says X-Forwarded-Proto: https), "always", "never"
  // (docs/operations.md).
  std::string cookie_secure = "auto";
  // Behind a reverse proxy: take the client address from X-Forwarded-For (its last entry) and the
  // scheme from X-Forwarded-Proto. Off: those headers are ignored (anyone could forge them).
  bool trust_proxy = false;
  // Anonymous registrations (POST /api/v1/agent/register) a source address may make a minute
  // (and at once); 0 = no limit.
  double register_rate = 10;
  // A runner still pending approval this long after it registered is removed by the janitor
  // (with its enrollment); 0 = never.
  std::chrono::milliseconds pending_ttl{7LL * 86'400'000};
  // Where webhooks may go (--allow-private-webhooks, --allow-loopback-webhooks): checked when a
  // channel is created or changed and for every address a delivery connects to
  // (docs/security.md, "Webhook targets"). Default: public addresses only.
  http::AddressPolicy webhook_targets;
  // After a key rotation, how long the retired key is still accepted (requests the agent had in
  // flight); a use after it means two parties held the key and quarantines the runner.
  std::chrono::milliseconds retired_key_grace{10'000};
  const Clock* clock = nullptr;                  // null = SystemClock()
};

class DataSyncServer {
 public:
  virtual ~DataSyncServer() = default;
  virtual uint16_t port() const = 0;
  // Path of the admin token file when this start created it, else "".
  virtual std::string created_token_file() const = 0;
  // Reads the TLS certificate and key again (SIGHUP): new connections use them, open ones keep
  // theirs; on error the old ones stay. FailedPrecondition when serving plain HTTP.
  [[nodiscard]] virtual absl::Status ReloadTls() = 0;
  virtual void Stop() = 0;
};

// Opens the index (running migrations) and storage, creates the first admin token when the index
// has none, and starts serving. FailedPrecondition when the index schema is newer than this binary.
[[nodiscard]] absl::StatusOr<std::unique_ptr<DataSyncServer>> StartDataSyncServer(
    const ServerConfig& config);

}  // namespace ds
