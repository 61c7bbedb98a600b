// datasync-agent: runs on an instrument PC and syncs its job folders to storage.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <optional>
#include <string>

#include "agent/agent.h"
#include "command_line.h"
#include "common/log.h"
#include "common/time_util.h"
#include "common/units.h"
#include "http/http_client.h"
#include "platform/stop.h"
#include "platform/system.h"

namespace {

// The flags that are parsed into the config afterwards (sizes, durations), as typed.
struct AgentFlags {
  std::string config_file, log_level = "info";
  std::string heartbeat = "0", enroll_poll = "5s", long_poll = "30s", ship_interval = "2s";
  std::string bwlimit = "0", block_size = "8MiB";
};

void AddFlags(CLI::App* app, ds::AgentConfig* cfg, AgentFlags& f) {
  app->add_option("--config", f.config_file, "TOML file with any of these options");
  app->add_option("--server", cfg->server_url, "server URL, e.g. https://datasync.lab:8443");
  app->add_option("--state-dir", cfg->state_dir, "where the agent keeps its identity and caches");
  app->add_option("--name", cfg->name, "runner name (default: host name)");
  app->add_option("--heartbeat-interval", f.heartbeat, "override the server's heartbeat interval");
  app->add_option("--enroll-poll", f.enroll_poll,
                  "how often to ask whether enrollment was approved");
  app->add_option("--long-poll", f.long_poll, "commands long-poll duration");
  app->add_option("--upload-threads", cfg->upload_threads, "parallel uploads (default 2)");
  app->add_option("--bwlimit", f.bwlimit,
                  "upload bandwidth cap in bytes per second over all parallel uploads, e.g. 20MB "
                  "or 2MiB (0 = unlimited)");
  app->add_option("--block-parallelism", cfg->block_parallelism,
                  "blocks of one file uploaded at once to object storage (default 4; each holds "
                  "one block in memory)")
      ->check(CLI::Range(1, 64));
  app->add_option("--block-size", f.block_size,
                  "block size of uploads to object storage, e.g. 4MiB (default 8MiB); larger files "
                  "go in blocks");
  app->add_flag(
      "--verify-readback", cfg->verify_uploads,
      "after writing to a directory/share, drop the file from the page cache and re-read "
      "it against its SHA-256 (off by default: the hash is computed over the bytes written)");
  app->add_flag("!--no-verify", cfg->verify_uploads, "do not re-read uploaded files (the default)");
  app->add_flag("!--no-copy-while-scanning", cfg->copy_while_scanning,
                "hash every new or changed file first and copy it afterwards (by default a "
                "directory/share gets each such file copied while the scan hashes it: read once)");
  app->add_option(
         "--delta-copies-held", cfg->delta_copies_held,
         "files a delta run copies while scanning at most (their results wait for its last "
         "compare); for tests")
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}))
      ->group("");  // hidden
  app->add_option(
      "--ca-file", cfg->ca_file,
      "CA bundle (PEM) the server's certificate must chain to, instead of the system CAs");
  app->add_option(
      "--pinned-key", cfg->pinned_key,
      "the server's public-key pin: sha256//BASE64 of its SubjectPublicKeyInfo (or 64 hex digits)");
  app->add_flag("--allow-http", cfg->allow_http,
                "allow a plain http:// server URL (only on loopback or a trusted network)");
  app->add_option(
         "--allow-source", cfg->allowed_sources,
         "a folder this PC's jobs may read, it and below (repeat for more; the config file's "
         "allow_source = [...]); a job whose source lies elsewhere fails unread")
      ->take_all();
  app->add_flag("--re-enroll", cfg->re_enroll, "move the current identity aside and enroll again");
  app->add_flag("--once", cfg->once, "run every job once and exit");
  app->add_option("--log-level", f.log_level, "trace|debug|info|warn|error");
  app->add_option("--metrics-listen", cfg->metrics_listen,
                  "serve the agent's metrics, e.g. 127.0.0.1:9469");
  app->add_option("--log-buffer", cfg->log_buffer_records,
                  "log lines kept for shipping to the server at most (default 100000)");
  app->add_option("--log-ship-interval", f.ship_interval,
                  "how often logs are shipped (default 2s)");
}

// Checks the parsed flags and puts them into `cfg`; an exit code (2) after saying what is wrong.
std::optional<int> ApplyFlags(const AgentFlags& f, ds::AgentConfig* cfg) {
  if (!cfg->server_url.empty()) {
    if (absl::Status st =
            ds::http::CheckServerUrl(cfg->server_url, cfg->allow_http, "pass --allow-http");
        !st.ok()) {
      std::cerr << "datasync-agent: " << st.message() << "\n";
      return 2;
    }
  }
  if (!cfg->pinned_key.empty()) {
    auto pin = ds::http::NormalizePin(cfg->pinned_key);
    if (!pin.ok()) {
      std::cerr << "datasync-agent: --pinned-key: " << pin.status().message() << "\n";
      return 2;
    }
    cfg->pinned_key = *pin;
  }
  auto block_bytes = ds::ParseByteSize(f.block_size);
  if (!block_bytes.ok() || *block_bytes < 1 || *block_bytes > (int64_t{4000} << 20)) {
    std::cerr << "datasync-agent: --block-size: "
              << (block_bytes.ok() ? std::string("must be between 1 byte and 4000MiB")
                                   : std::string(block_bytes.status().message()))
              << "\n";
    return 2;
  }
  cfg->block_size = static_cast<size_t>(*block_bytes);
  auto bw = ds::ParseByteSize(f.bwlimit);
  if (!bw.ok()) {
    std::cerr << "datasync-agent: --bwlimit: " << bw.status().message() << "\n";
    return 2;
  }
  cfg->max_bytes_per_second = static_cast<uint64_t>(*bw);
  for (auto [text, out] :
       {std::pair{&f.heartbeat, &cfg->heartbeat_interval},
        std::pair{&f.enroll_poll, &cfg->enroll_poll}, std::pair{&f.long_poll, &cfg->long_poll},
        std::pair{&f.ship_interval, &cfg->log_ship_interval}}) {
    auto d = ds::ParseDuration(*text);
    if (!d.ok()) {
      std::cerr << "datasync-agent: " << d.status().message() << "\n";
      return 2;
    }
    *out = *d;
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"datasync-agent: sync this PC's measurement folders to DataSync storage"};
  ds::PreferLastValue(app);
  ds::AgentConfig cfg;
  AgentFlags flags;
  AddFlags(&app, &cfg, flags);
  if (auto done = ds::ParseCommandLine(app, argc, argv, "datasync-agent")) return *done;
  ds::InitLogging("datasync-agent", flags.log_level);
  if (auto failed = ApplyFlags(flags, &cfg)) return *failed;
  // Manifest chunks (~230 KB of records, ~180 KB of paths) are freed as a scan passes them and
  // made again by the next scan, often on another thread. With glibc's default, the mmap
  // threshold rises after the first such free and later chunks come from per-thread arenas,
  // which keep freed memory: a 1,000,000-file job's first no-op after its first sync peaked at
  // 204 MiB instead of ~126. A fixed threshold keeps large blocks in mmap, returned when freed.
  ds::platform::SetMallocMmapThreshold(128 * 1024);
  // Staged copies hold a descriptor each until their group commits: use the hard limit on open
  // files, not the (often 1024) soft one.
  ds::platform::RaiseOpenFileLimit(1 << 20);
  static std::atomic<bool> stop{false};
  ds::platform::StopHandler::Install([] {
    spdlog::info("stop requested; finishing the current file");
    stop = true;
  });
  absl::Status st = ds::RunAgent(cfg, stop);
  // The server no longer knows our key (revoked, replaced, or its index was lost and rebuilt):
  // enroll again under the same name and wait for an operator. The journal in the state dir is
  // kept, so results not yet in the index are replayed once the runner is approved again.
  while (absl::IsUnauthenticated(st) && !stop.load() && !cfg.once) {
    spdlog::error("{}", st.message());
    spdlog::warn("enrolling again as '{}'; an operator must approve (or replace) the runner",
                 cfg.name);
    cfg.re_enroll = true;
    st = ds::RunAgent(cfg, stop);
  }
  if (!st.ok() && !absl::IsCancelled(st)) {
    spdlog::error("{}", st.message());
    std::cerr << "datasync-agent: " << st.message() << "\n";
    return 1;
  }
  spdlog::info("stopped");
  return 0;
}
