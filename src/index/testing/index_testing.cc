#include "index/testing/index_testing.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

namespace ds {

std::filesystem::path MakeTestTempDir(const std::string& stem) {
  std::string tmpl = (std::filesystem::path(testing::TempDir()) / (stem + ".XXXXXX")).string();
  if (mkdtemp(tmpl.data()) == nullptr) return {};
  return tmpl;
}

int FreeLocalPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

const std::vector<std::string>& ExpectedIndexTables() {
  static const std::vector<std::string>* const tables = new std::vector<std::string>{
      "admin_tokens",          "agent_logs",    "alert_rules",   "alerts",
      "audit_log",             "commands",      "enrollments",   "job_manifests",
      "jobs",                  "leases",        "login_failures", "long_polls",
      "notification_channels", "notification_deliveries",        "reconciles",
      "run_files",             "runner_groups", "runners",       "scrub_lost",
      "scrubs",                "sessions",      "sync_runs",     "synced_files",
      "users"};
  return *tables;
}

}  // namespace ds
