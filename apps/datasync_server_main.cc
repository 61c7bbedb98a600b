// datasync-server: state index, agent API, admin API and dashboard.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <tuple>

#include "absl/strings/ascii.h"
#include "command_line.h"
#include "common/files.h"
#include "common/log.h"
#include "common/password.h"
#include "common/time_util.h"
#include "common/units.h"
#include "index/migrate_index.h"
#include "index/state_index.h"
#include "platform/file.h"
#include "platform/stop.h"
#include "platform/system.h"
#include "server/server.h"

namespace {

// The dashboard beside the binary: <repo>/web for a build tree, <prefix>/share/datasync/web installed.
std::string DefaultWebDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  for (auto candidate : {exe.parent_path() / "../../web", exe.parent_path() / "../share/datasync/web"}) {
    if (std::filesystem::exists(candidate / "index.html", ec)) return candidate.lexically_normal().string();
  }
  return "";
}

int Backup(const std::string& index_url, const std::string& to) {
  auto index = ds::OpenStateIndex(index_url);
  if (!index.ok()) {
    std::cerr << "datasync-server backup: " << index.status().message() << "\n";
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  absl::Status st = (*index)->BackupTo(to);
  if (!st.ok()) {
    std::cerr << "datasync-server backup: " << st.message() << "\n";
    return 1;
  }
  auto v = (*index)->SchemaVersion();
  std::error_code ec;
  auto size = std::filesystem::file_size(to, ec);
  std::cout << "backed up " << index_url << " (schema v" << (v.ok() ? *v : 0) << ") to " << to << ": "
            << size << " bytes in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms" << std::endl;
  return 0;
}

// Copies a backup into place as the SQLite index (atomically), after checking that it opens and
// that its schema is one this binary knows. The server applies any newer migrations at start.
int Restore(const std::string& index_url, const std::string& from, bool force) {
  auto fail = [](const std::string& m) {
    std::cerr << "datasync-server restore: " << m << "\n";
    return 1;
  };
  if (index_url.rfind("sqlite:", 0) != 0) return fail("restore handles SQLite indexes only (use pg_restore)");
  std::filesystem::path target = index_url.substr(7);
  auto backup = ds::OpenStateIndex("sqlite:" + from);
  if (!backup.ok()) return fail(std::string(backup.status().message()));
  auto v = (*backup)->SchemaVersion();
  if (!v.ok()) return fail(std::string("not a DataSync index backup: ") + std::string(v.status().message()));
  if (*v < 1 || *v > (*backup)->LatestKnownSchemaVersion()) {
    return fail("backup has schema v" + std::to_string(*v) + ", this server knows up to v" +
                std::to_string((*backup)->LatestKnownSchemaVersion()));
  }
  backup->reset();
  std::error_code ec;
  if (std::filesystem::exists(target)) {
    if (!force) return fail(target.string() + " exists; stop the server and pass --force to replace it");
    auto aside = target.string() + ".replaced-" + std::to_string(std::time(nullptr));
    std::filesystem::rename(target, aside, ec);
    if (ec) return fail("moving the old index aside: " + ec.message());
    for (const char* suffix : {"-wal", "-shm"}) std::filesystem::remove(target.string() + suffix, ec);
    std::cout << "previous index kept as " << aside << "\n";
  }
  std::filesystem::create_directories(target.parent_path().empty() ? "." : target.parent_path(), ec);
  auto tmp = target.string() + ".restoring";
  std::filesystem::copy_file(from, tmp, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return fail("copying: " + ec.message());
  std::filesystem::rename(tmp, target, ec);
  if (ec) return fail("renaming into place: " + ec.message());
  std::cout << "restored " << from << " (schema v" << *v << ") to " << target.string()
            << "; start datasync-server with --index sqlite:" << target.string() << std::endl;
  return 0;
}

// Copies a stopped server's SQLite index into an empty PostgreSQL database (see
// src/index/migrate_index.h and docs/scaling.md).
int MigrateIndexCommand(std::string from, const std::string& to, size_t batch_rows) {
  if (from.rfind("sqlite:", 0) != 0 && from.find("://") == std::string::npos) from = "sqlite:" + from;
  ds::MigrateIndexOptions options;
  options.batch_rows = batch_rows;
  std::string last_table;
  auto last_print = std::chrono::steady_clock::now();
  options.progress = [&](const std::string& table, int64_t copied, int64_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (table == last_table && copied < total && now - last_print < std::chrono::seconds(2)) return;
    last_table = table;
    last_print = now;
    std::cerr << "  " << table << ": " << copied << " / " << total << " rows\n";
  };
  std::cerr << "migrate-index: copying " << from << " into " << ds::RedactIndexUrl(to) << "\n";
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<ds::MigrateIndexReport> report = ds::MigrateIndex(from, to, options);
  if (!report.ok()) {
    std::cerr << "datasync-server migrate-index: " << report.status().message() << "\n";
    return 1;
  }
  int64_t rows = 0;
  for (const auto& [table, n] : report->tables) {
    std::cout << "  " << table << ": " << n << " rows (verified)\n";
    rows += n;
  }
  std::cout << "migrated " << rows << " rows in " << report->tables.size() << " tables (schema v"
            << report->schema_version << ") to " << ds::RedactIndexUrl(to) << " in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms; start the servers with --index " << ds::RedactIndexUrl(to) << std::endl;
  return 0;
}

// One line from stdin: with echo off and a prompt when stdin is a terminal, else read as is
// (`echo secret | datasync-server users add ann`). Trailing CR/LF removed.
std::optional<std::string> ReadPassword(const std::string& prompt) {
  const bool tty = ds::platform::IsTerminal(ds::platform::StdStream::kIn);
  if (tty) std::cerr << prompt << std::flush;
  std::string line;
  bool got = false;
  {
    ds::platform::HiddenInput hidden;
    got = static_cast<bool>(std::getline(std::cin, line));
  }
  if (tty) std::cerr << "\n";
  if (!got) return std::nullopt;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

// The new password: asked twice on a terminal, once from a pipe; checked against the policy.
absl::StatusOr<std::string> NewPassword() {
  auto first = ReadPassword("new password: ");
  if (!first) return absl::InvalidArgumentError("no password given on stdin");
  if (ds::platform::IsTerminal(ds::platform::StdStream::kIn)) {
    auto again = ReadPassword("again: ");
    if (!again || *again != *first) return absl::InvalidArgumentError("the passwords differ");
  }
  DS_RETURN_IF_ERROR(ds::CheckPasswordPolicy(*first));
  return *first;
}

// `datasync-server users add|list|passwd|rm`, straight on the index (the first admin account is
// made this way, before anyone can sign in).
int UsersCommand(const std::string& index_url, const std::string& action, const std::string& name,
                 const std::string& role) {
  auto fail = [](const std::string& m) {
    std::cerr << "datasync-server users: " << m << "\n";
    return 1;
  };
  auto index = ds::OpenStateIndex(index_url);
  if (!index.ok()) return fail(std::string(index.status().message()));
  if (absl::Status st = (*index)->Migrate(); !st.ok()) return fail(std::string(st.message()));
  const int64_t now = ds::SystemClock()->NowUnixMs();
  if (action == "list") {
    auto users = (*index)->ListUsers();
    if (!users.ok()) return fail(std::string(users.status().message()));
    for (const auto& u : *users) {
      std::cout << u.name << "\t" << u.role << "\tlast login "
                << (u.last_login_at_ms > 0 ? ds::FormatIsoUtc(u.last_login_at_ms) : std::string("never"))
                << "\n";
    }
    return 0;
  }
  if (name.empty()) return fail("a user name is required");
  if (action == "rm") {
    if (absl::Status st = (*index)->DeleteUser(name); !st.ok()) return fail(std::string(st.message()));
    std::cout << "deleted user " << name << " and its sessions\n";
    return 0;
  }
  if (action == "add" && role != "admin" && role != "viewer") return fail("--role must be admin or viewer");
  if (action == "add" && (*index)->GetUserByName(name).ok()) return fail("a user named '" + name + "' exists");
  auto password = NewPassword();
  if (!password.ok()) return fail(std::string(password.status().message()));
  auto hash = ds::HashPassword(*password);
  if (!hash.ok()) return fail(std::string(hash.status().message()));
  if (action == "add") {
    auto user = (*index)->CreateUser(name, role, *hash, now);
    if (!user.ok()) return fail(std::string(user.status().message()));
    std::cout << "created " << role << " user " << name << "\n";
  } else {
    if (absl::Status st = (*index)->SetUserPassword(name, *hash, now); !st.ok()) {
      return fail(std::string(st.message()));
    }
    std::cout << "changed the password of " << name << " (its sessions are signed out)\n";
  }
  return 0;
}

}  // namespace

// --listen HOST:PORT into cfg (port 0 picks a free one). False (message printed) when malformed.
bool ParseListen(const std::string& listen, ds::ServerConfig* cfg) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "datasync-server: --listen must be HOST:PORT\n";
    return false;
  }
  cfg->listen_host = listen.substr(0, colon);
  try {
    int port = std::stoi(listen.substr(colon + 1));
    if (port < 0 || port > 65535) throw std::out_of_range("port");
    cfg->listen_port = static_cast<uint16_t>(port);
  } catch (const std::exception&) {
    std::cerr << "datasync-server: bad port in --listen '" << listen << "'\n";
    return false;
  }
  return true;
}

// The storage account key: from a file or the environment, never from the command line (where
// every user of the machine could read it), and never echoed. False (message printed) when the
// file cannot be read.
bool LoadStorageKey(const std::string& storage_key_file, ds::ServerConfig* cfg) {
  if (!storage_key_file.empty()) {
    auto key = ds::ReadFileToString(storage_key_file, 64 << 10);
    if (!key.ok()) {
      std::cerr << "datasync-server: --storage-key-file: " << key.status().message() << "\n";
      return false;
    }
    auto st = ds::platform::Stat(storage_key_file, /*follow_links=*/true);
    if (st.ok() && (st->permissions & 077) != 0) {
      spdlog::warn("{} is readable by other users (mode {:o}); chmod 600 it", storage_key_file,
                   st->permissions & 0777);
    }
    cfg->storage_key = std::move(*key);
  } else if (const char* env = std::getenv("DATASYNC_STORAGE_KEY"); env != nullptr) {
    cfg->storage_key = env;
  }
  ::unsetenv("DATASYNC_STORAGE_KEY");  // not inherited by anything this process starts
  cfg->storage_key = std::string(absl::StripAsciiWhitespace(cfg->storage_key));
  return true;
}

// --tls-cert/--tls-key or --insecure-http into cfg. False (one line printed) when neither or a
// half of them is given: plain HTTP is only for a server behind a TLS-terminating proxy.
bool ParseTransport(const std::string& cert, const std::string& key, bool insecure_http,
                    ds::ServerConfig* cfg) {
  if (cert.empty() != key.empty()) {
    std::cerr << "datasync-server: --tls-cert and --tls-key go together\n";
    return false;
  }
  if (!cert.empty() && insecure_http) {
    std::cerr << "datasync-server: --insecure-http and --tls-cert exclude each other\n";
    return false;
  }
  if (cert.empty() && !insecure_http) {
    std::cerr << "datasync-server: no TLS certificate: pass --tls-cert FILE --tls-key FILE, or "
                 "--insecure-http to serve plain HTTP behind a TLS-terminating proxy\n";
    return false;
  }
  cfg->tls_cert_file = cert;
  cfg->tls_key_file = key;
  return true;
}

// A request body limit ("32MiB", "65536") within [1 KiB, `most`] into *out. False (message
// printed) otherwise: zero, negative or huge values used to mean "unlimited".
bool ParseBodyLimit(const std::string& text, const char* flag, int64_t most, size_t* out) {
  auto bytes = ds::ParseByteSize(text);
  if (!bytes.ok()) {
    std::cerr << "datasync-server: " << flag << ": " << bytes.status().message() << "\n";
    return false;
  }
  if (*bytes < 1024 || *bytes > most) {
    std::cerr << "datasync-server: " << flag << " '" << text << "' must be from 1KiB to " << most
              << " bytes\n";
    return false;
  }
  *out = static_cast<size_t>(*bytes);
  return true;
}

// Runs the server until SIGINT/SIGTERM; the process's exit status.
int Serve(const ds::ServerConfig& cfg) {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  ds::DataSyncServer* serving = nullptr;  // guarded by mu
  ds::platform::StopHandler::Install(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        stop = true;
        cv.notify_all();
      },
      [&] {  // SIGHUP: a renewed certificate, without dropping connections
        std::lock_guard<std::mutex> lock(mu);
        if (serving == nullptr || cfg.tls_cert_file.empty()) return;
        absl::Status st = serving->ReloadTls();
        if (st.ok()) {
          spdlog::info("SIGHUP: reloaded the TLS certificate {} for new connections", cfg.tls_cert_file);
        } else {
          spdlog::error("SIGHUP: TLS certificate not reloaded, the previous one stays in use: {}",
                        st.message());
        }
      });

  auto server = ds::StartDataSyncServer(cfg);
  if (!server.ok()) {
    std::cerr << "datasync-server: " << server.status().message() << "\n";
    return 1;
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    serving = server->get();
  }
  if (!(*server)->created_token_file().empty()) {
    std::cout << "created the first admin API token in " << (*server)->created_token_file()
              << " (mode 0600); the CLI reads it with --token-file" << std::endl;
  }
  std::cout << "datasync-server listening on " << (cfg.tls_cert_file.empty() ? "http" : "https")
            << "://" << cfg.listen_host << ":" << (*server)->port() << std::endl;
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return stop; });
    serving = nullptr;
  }
  spdlog::info("shutting down");
  (*server)->Stop();
  return 0;
}

int main(int argc, char** argv) {
  CLI::App app{"datasync-server: DataSync state index, agent API, admin API and dashboard"};
  ds::PreferLastValue(app);
  ds::ServerConfig cfg;
  std::string listen = "127.0.0.1:8080", config_file, log_level = "info", heartbeat = "60s";
  std::string run_timeout = "10m", run_retention = "180d", janitor_interval = "30s", budget = "0";
  std::string alert_interval = "60s", log_retention = "90d", scrub_interval = "24h";
  cfg.web_dir = DefaultWebDir();
  app.add_option("--config", config_file, "TOML file with any of these options");
  app.add_option("--listen", listen, "HOST:PORT to serve on (port 0 picks a free one)");
  app.add_option("--index", cfg.index_url, "state index URL: sqlite:PATH or postgresql://USER@HOST/DB");
  app.add_option("--storage", cfg.storage_url,
                 "storage URL: file:///DIR or azblob://ACCOUNT/CONTAINER[?endpoint=URL]");
  std::string storage_key_file, sas_ttl = "15m";
  app.add_option("--storage-key-file", storage_key_file,
                 "file holding the azblob account key (else env DATASYNC_STORAGE_KEY)");
  app.add_option("--sas-ttl", sas_ttl,
                 "lifetime of the per-blob write SAS given to agents (default 15m)");
  app.add_option("--data", cfg.data_dir, "data directory (admin token, backups)");
  app.add_option("--web", cfg.web_dir, "dashboard directory");
  app.add_option("--heartbeat-interval", heartbeat, "heartbeat interval told to agents (default 60s)");
  std::string max_body = "32MiB", max_anonymous_body = "64KiB";
  app.add_option("--max-body", max_body, "largest request body, e.g. 32MiB (1KiB..1GiB; default 32MiB)");
  app.add_option("--max-anonymous-body", max_anonymous_body,
                 "largest body of a request without credentials or to an anonymous route "
                 "(register, enrollment poll, sign-in); default 64KiB");
  std::string tls_cert, tls_key;
  bool insecure_http = false;
  app.add_option("--tls-cert", tls_cert, "PEM certificate chain to serve HTTPS with (reloaded on SIGHUP)");
  app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert (reloaded on SIGHUP)");
  app.add_flag("--insecure-http", insecure_http,
               "serve plain HTTP: only behind a reverse proxy that terminates TLS (with --trust-proxy)");
  app.add_option("--workers", cfg.worker_threads, "request worker threads");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_option("--run-timeout", run_timeout, "a runner silent this long has its runs abandoned (default 10m)");
  app.add_option("--run-retention", run_retention, "closed runs are pruned after this long (default 180d)");
  app.add_option("--janitor-interval", janitor_interval, "how often housekeeping runs (default 30s)");
  app.add_option("--index-budget", budget, "size budget of the state index, e.g. 10GiB (0 = none)");
  app.add_option("--alert-interval", alert_interval, "how often alert rules are evaluated (default 60s)");
  app.add_option("--log-retention", log_retention, "agent log records are pruned after this long (default 90d)");
  app.add_option("--scrub-interval", scrub_interval,
                 "scrub every job's storage this often (default 24h; 0 = only when asked)");
  app.add_option("--scrub-rate", cfg.scrub_rate,
                 "objects a scrub lists per second at most (default 2000; 0 = no cap)");
  app.add_option("--scrub-rehash", cfg.scrub_rehash,
                 "share of objects a scrub re-hashes, 0..1 (default 0)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--metrics-auth", cfg.metrics_require_auth, "GET /metrics needs an admin token");
  std::string session_idle = "30m", session_max = "12h";
  app.add_option("--session-idle", session_idle, "dashboard sessions end after this long idle (default 30m)");
  app.add_option("--session-max", session_max, "dashboard sessions end this long after sign-in (default 12h)");
  app.add_option("--cookie-secure", cfg.cookie_secure,
                 "Secure attribute of the session cookie: auto (over HTTPS, or a trusted proxy says https), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  app.add_flag("--trust-proxy", cfg.trust_proxy,
               "behind a reverse proxy: client address from X-Forwarded-For, scheme from X-Forwarded-Proto");
  app.add_flag("--allow-private-webhooks", cfg.webhook_targets.allow_private,
               "webhooks may target private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, "
               "fc00::/7): a chat server on the lab network");
  app.add_flag("--allow-loopback-webhooks", cfg.webhook_targets.allow_loopback,
               "webhooks may target loopback addresses (127/8, ::1): a relay on this host, tests");
  std::string pending_ttl = "7d";
  app.add_option("--register-rate", cfg.register_rate,
                 "agent registrations one source address may make a minute (default 10, 0 = no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--pending-ttl", pending_ttl,
                 "runners left pending approval this long are removed (default 7d, 0 = never)");
  std::string retired_key_grace = "10s";
  app.add_option(
      "--retired-key-grace", retired_key_grace,
      "after a key rotation the old key is accepted this long; later use quarantines the runner "
      "(default 10s)");

  // Maintenance subcommands, run against the index while the server may be serving.
  std::string backup_to, restore_from;
  bool force = false;
  app.fallthrough();  // `backup --index ...`: parent options are accepted after a subcommand
  auto* backup = app.add_subcommand("backup", "consistent online copy of the SQLite index");
  backup->add_option("--to", backup_to, "new file to write (refuses to overwrite)")->required();
  auto* restore = app.add_subcommand("restore", "put a backup in place as the index of a fresh data dir");
  restore->add_option("--from", restore_from, "backup file")->required();
  restore->add_flag("--force", force, "replace an existing index file (it is kept as .replaced-<time>)");
  std::string migrate_from, migrate_to;
  size_t migrate_batch = 5000;
  auto* migrate = app.add_subcommand(
      "migrate-index", "copy a stopped server's SQLite index into an empty PostgreSQL database");
  migrate->add_option("--from", migrate_from, "sqlite:PATH of the index to copy (stop its server first)")
      ->required();
  migrate->add_option("--to", migrate_to, "postgresql://USER@HOST:PORT/DB, empty")->required();
  migrate->add_option("--batch", migrate_batch, "rows per INSERT (default 5000)");
  std::string user_name, user_role = "viewer";
  auto* users = app.add_subcommand("users", "operator accounts of the dashboard (on the index directly)");
  users->require_subcommand(1);
  auto* users_add = users->add_subcommand("add", "create a user; the password is read from stdin (no echo)");
  users_add->add_option("name", user_name, "user name")->required();
  users_add->add_option("--role", user_role, "admin or viewer (default viewer)")
      ->check(CLI::IsMember({"admin", "viewer"}));
  auto* users_passwd = users->add_subcommand("passwd", "set a new password (ends the user's sessions)");
  users_passwd->add_option("name", user_name, "user name")->required();
  auto* users_rm = users->add_subcommand("rm", "delete a user and its sessions");
  users_rm->add_option("name", user_name, "user name")->required();
  auto* users_list = users->add_subcommand("list", "list users");
  if (auto done = ds::ParseCommandLine(app, argc, argv, "datasync-server")) return *done;
  ds::InitLogging("datasync-server", log_level);
  if (!ParseListen(listen, &cfg)) return 2;
  auto hb = ds::ParseDuration(heartbeat);
  if (!hb.ok()) {
    std::cerr << "datasync-server: --heartbeat-interval: " << hb.status().message() << "\n";
    return 2;
  }
  cfg.heartbeat_interval = *hb;
  for (auto [text, out, name] :
       {std::tuple{&run_timeout, &cfg.run_timeout, "--run-timeout"},
        std::tuple{&run_retention, &cfg.run_retention, "--run-retention"},
        std::tuple{&janitor_interval, &cfg.janitor_interval, "--janitor-interval"},
        std::tuple{&session_idle, &cfg.session_idle, "--session-idle"},
        std::tuple{&session_max, &cfg.session_max, "--session-max"},
        std::tuple{&pending_ttl, &cfg.pending_ttl, "--pending-ttl"},
        std::tuple{&retired_key_grace, &cfg.retired_key_grace, "--retired-key-grace"},
        std::tuple{&alert_interval, &cfg.alert_interval, "--alert-interval"},
        std::tuple{&scrub_interval, &cfg.scrub_interval, "--scrub-interval"},
        std::tuple{&log_retention, &cfg.log_retention, "--log-retention"}}) {
    auto d = ds::ParseDuration(*text);
    if (!d.ok()) {
      std::cerr << "datasync-server: " << name << ": " << d.status().message() << "\n";
      return 2;
    }
    *out = *d;
  }
  auto budget_bytes = ds::ParseByteSize(budget);
  if (!budget_bytes.ok()) {
    std::cerr << "datasync-server: --index-budget: " << budget_bytes.status().message() << "\n";
    return 2;
  }
  cfg.index_budget_bytes = *budget_bytes;
  if (cfg.index_url.rfind("sqlite:", 0) != 0 && cfg.index_url.find("://") == std::string::npos) {
    cfg.index_url = "sqlite:" + cfg.index_url;
  }

  if (backup->parsed()) return Backup(cfg.index_url, backup_to);
  if (restore->parsed()) return Restore(cfg.index_url, restore_from, force);
  if (migrate->parsed()) return MigrateIndexCommand(migrate_from, migrate_to, migrate_batch);
  if (users->parsed()) {
    const char* action = users_add->parsed() ? "add" : users_passwd->parsed() ? "passwd"
                         : users_rm->parsed() ? "rm" : "list";
    (void)users_list;
    return UsersCommand(cfg.index_url, action, user_name, user_role);
  }

  if (!ParseTransport(tls_cert, tls_key, insecure_http, &cfg)) return 2;
  if (!ParseBodyLimit(max_body, "--max-body", int64_t{1} << 30, &cfg.max_body_bytes)) return 2;
  if (!ParseBodyLimit(max_anonymous_body, "--max-anonymous-body", int64_t{1} << 30,
                      &cfg.anonymous_max_body_bytes)) {
    return 2;
  }
  cfg.anonymous_max_body_bytes = std::min(cfg.anonymous_max_body_bytes, cfg.max_body_bytes);
  if (!LoadStorageKey(storage_key_file, &cfg)) return 2;
  auto ttl = ds::ParseDuration(sas_ttl);
  if (!ttl.ok() || ttl->count() < 1000) {
    std::cerr << "datasync-server: --sas-ttl: "
              << (ttl.ok() ? std::string("must be at least 1s") : std::string(ttl.status().message()))
              << "\n";
    return 2;
  }
  cfg.sas_ttl = std::chrono::ceil<std::chrono::seconds>(*ttl);

  return Serve(cfg);
}
