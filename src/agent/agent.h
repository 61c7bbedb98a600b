// datasync-agent: enrolls, heartbeats, long-polls for commands, and runs its jobs: scan →
// compare → upload straight to storage → complete, under one correlation id per run.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace ds {

struct AgentConfig {
  std::string server_url;                         // http(s)://host:port
  std::string state_dir = "./var/agent";
  std::string name;                               // runner name; default: host name
  std::chrono::milliseconds heartbeat_interval{0};  // 0 = as the server says
  std::chrono::milliseconds enroll_poll{5'000};   // how often a pending agent asks
  std::chrono::milliseconds long_poll{30'000};    // commands long-poll
  int upload_threads = 2;
  uint64_t max_bytes_per_second = 0;              // all uploads together; 0 = unlimited
  int block_parallelism = 4;                      // blocks of one file in flight (object storage)
  size_t block_size = 8 << 20;                    // bytes per staged block (object storage)
  bool verify_uploads = false;                    // re-read what landed (--verify-readback)
  // Trust in the server: its certificate must chain to `ca_file` (PEM) when set, else to the
  // system CAs; `pinned_key` ("sha256//BASE64") also pins its public key. http:// URLs are
  // refused unless allow_http (docs/security.md "TLS and trust").
  std::string ca_file;
  std::string pinned_key;
  bool allow_http = false;
  // The folders this PC lets its jobs read (--allow-source, repeatable): a job whose source is
  // not one of them or below one fails its runs, whatever the server says. None: no job runs.
  std::vector<std::string> allowed_sources;
  bool re_enroll = false;                         // move the state aside and enroll afresh
  bool once = false;                              // run every job once, then exit
  // Observability:
  int64_t log_buffer_records = 100'000;           // log lines kept for shipping at most
  std::chrono::milliseconds log_ship_interval{2'000};  // between shipping batches
  bool log_files = true;                          // rotating files under <state-dir>/logs
  std::string metrics_listen;                     // "127.0.0.1:PORT" serves GET /metrics; "" = off
  // Directory/share: copy files while scanning (--no-copy-while-scanning); a delta run copies at
  // most delta_copies_held files so (hidden flag --delta-copies-held, for tests).
  bool copy_while_scanning = true;
  size_t delta_copies_held = 20'000;
};

// Runs until `stop` becomes true (SIGTERM/SIGINT), then finishes or abandons the current file,
// closes the run and returns. Errors: the agent cannot continue (state unreadable, enrollment
// rejected, runner revoked) — the message says what to do.
[[nodiscard]] absl::Status RunAgent(const AgentConfig& config, const std::atomic<bool>& stop);

}  // namespace ds
