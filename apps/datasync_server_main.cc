// datasync-server: state index, agent API, admin API and dashboard.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>

#include "common/config.h"
#include "common/log.h"
#include "common/time_util.h"
#include "server/server.h"
#include "signals.h"

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

}  // namespace

int main(int argc, char** argv) {
  auto args = ds::ExpandConfigFile(argc, argv);
  if (!args.ok()) {
    std::cerr << "datasync-server: " << args.status().message() << "\n";
    return 2;
  }
  CLI::App app{"datasync-server: DataSync state index, agent API, admin API and dashboard"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  ds::ServerConfig cfg;
  std::string listen = "127.0.0.1:8080", config_file, log_level = "info", heartbeat = "60s";
  cfg.web_dir = DefaultWebDir();
  app.add_option("--config", config_file, "TOML file with any of these options");
  app.add_option("--listen", listen, "HOST:PORT to serve on (port 0 picks a free one)");
  app.add_option("--index", cfg.index_url, "state index URL (sqlite:PATH)");
  app.add_option("--storage", cfg.storage_url, "storage URL (file:///DIR)");
  app.add_option("--data", cfg.data_dir, "data directory (admin token, backups)");
  app.add_option("--web", cfg.web_dir, "dashboard directory");
  app.add_option("--heartbeat-interval", heartbeat, "heartbeat interval told to agents (default 60s)");
  app.add_option("--max-body", cfg.max_body_bytes, "largest request body in bytes");
  app.add_option("--workers", cfg.worker_threads, "request worker threads");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  std::vector<std::string> argv_strings = *args;
  std::vector<char*> av;
  for (auto& s : argv_strings) av.push_back(s.data());
  try {
    app.parse(static_cast<int>(av.size()), av.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  ds::InitLogging("datasync-server", log_level);
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "datasync-server: --listen must be HOST:PORT\n";
    return 2;
  }
  cfg.listen_host = listen.substr(0, colon);
  try {
    int port = std::stoi(listen.substr(colon + 1));
    if (port < 0 || port > 65535) throw std::out_of_range("port");
    cfg.listen_port = static_cast<uint16_t>(port);
  } catch (const std::exception&) {
    std::cerr << "datasync-server: bad port in --listen '" << listen << "'\n";
    return 2;
  }
  auto hb = ds::ParseDuration(heartbeat);
  if (!hb.ok()) {
    std::cerr << "datasync-server: --heartbeat-interval: " << hb.status().message() << "\n";
    return 2;
  }
  cfg.heartbeat_interval = *hb;
  if (cfg.index_url.rfind("sqlite:", 0) != 0 && cfg.index_url.find("://") == std::string::npos) {
    cfg.index_url = "sqlite:" + cfg.index_url;
  }

  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  ds::StartSignalThread([&] {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
    cv.notify_all();
  });

  auto server = ds::StartDataSyncServer(cfg);
  if (!server.ok()) {
    std::cerr << "datasync-server: " << server.status().message() << "\n";
    return 1;
  }
  if (!(*server)->created_token_file().empty()) {
    std::cout << "created the first admin API token in " << (*server)->created_token_file()
              << " (mode 0600); the CLI reads it with --token-file" << std::endl;
  }
  std::cout << "datasync-server listening on http://" << cfg.listen_host << ":" << (*server)->port() << std::endl;
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return stop; });
  }
  spdlog::info("shutting down");
  (*server)->Stop();
  return 0;
}
