#include "index/testing/postgres_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/mutex.h"
#include "index/testing/index_testing.h"

namespace ds {
namespace {

constexpr char kPgBinDir[] = "/usr/lib/postgresql/15/bin";
constexpr char kSuperuser[] = "test";
constexpr int kStartAttempts = 3;  // a "free" port may be taken before the server binds it

// Runs `args` (args[0] looked up in PATH) in `cwd` with stdin from /dev/null and stdout and
// stderr appended to `log_path`. Returns the exit code, or -1 if it could not run or was killed.
int RunCommand(const std::vector<std::string>& args, const std::string& cwd,
               const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  // The test's own working directory may not be readable by `postgres`.
  posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The per-process cluster. Never destroyed (the atexit handler may run after static
// destructors).
class Cluster {
 public:
  static Cluster& Get() {
    static Cluster* const cluster = new Cluster;
    return *cluster;
  }

  absl::StatusOr<TestPostgresDatabase> CreateDatabase() {
    MutexLock lock(&mu_);
    DS_RETURN_IF_ERROR(EnsureStartedLocked());
    const std::string name = absl::StrCat("t_", ++databases_);
    try {
      if (admin_ == nullptr)
        admin_ = std::make_unique<pqxx::connection>(ConninfoLocked("postgres"));
      pqxx::nontransaction tx(*admin_);
      // A default collation that is not byte order, as on many production servers.
      tx.exec(absl::StrCat("CREATE DATABASE ", name,
                           " TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
                           " LOCALE 'C.UTF-8'"));
    } catch (const std::exception& e) {
      admin_.reset();
      return absl::InternalError(absl::StrCat("creating test database ", name, ": ", e.what()));
    }
    TestPostgresDatabase db;
    db.name = name;
    db.url = absl::StrCat("postgresql://", kSuperuser, "@127.0.0.1:", port_, "/", name);
    db.socket_url = absl::StrCat("postgresql:///", name, "?host=", dir_.string(), "&port=", port_,
                                 "&user=", kSuperuser);
    return db;
  }

  // Runs `fn(tx)` on a new connection to `dbname`.
  template <typename Fn>
  absl::Status WithConnection(const std::string& dbname, Fn&& fn) {
    std::string conninfo;
    {
      MutexLock lock(&mu_);
      if (!started_)
        return absl::FailedPreconditionError("the test PostgreSQL cluster is not running");
      conninfo = ConninfoLocked(dbname);
    }
    try {
      pqxx::connection conn(conninfo);
      pqxx::nontransaction tx(conn);
      fn(tx);
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("on test database ", dbname, ": ", e.what()));
    }
  }

  // Stops the server and removes its directory. Idempotent.
  void Stop() {
    MutexLock lock(&mu_);
    admin_.reset();
    if (started_) {
      // Immediate: no shutdown checkpoint. The data is thrown away, and after a few hundred
      // CREATE DATABASEs a fast shutdown's checkpoint takes tens of seconds.
      const std::vector<std::string> stop =
          AsPostgres({absl::StrCat(kPgBinDir, "/pg_ctl"), "-D", (dir_ / "data").string(), "-m",
                      "immediate", "-w", "stop"});
      if (RunCommand(stop, dir_.string(), (dir_ / "commands.log").string()) != 0) {
        std::fprintf(stderr, "[postgres_fixture] pg_ctl stop failed:\n%s\n",
                     ReadFile(dir_ / "commands.log").c_str());
      }
      started_ = false;
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }

 private:
  Cluster() = default;

  std::string ConninfoLocked(const std::string& dbname) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::StrCat("host=", dir_.string(), " port=", port_, " user=", kSuperuser,
                        " dbname=", dbname);
  }

  // `args` run as the `postgres` user when we are root (initdb and postgres refuse root).
  std::vector<std::string> AsPostgres(std::vector<std::string> args) const {
    if (geteuid() != 0) return args;
    args.insert(args.begin(), {"runuser", "-u", "postgres", "--"});
    return args;
  }

  absl::Status EnsureStartedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (started_) return absl::OkStatus();
    if (!start_error_.ok()) return start_error_;  // fail fast, with the first reason
    start_error_ = StartLocked();
    return start_error_;
  }

  absl::Status StartLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string initdb = absl::StrCat(kPgBinDir, "/initdb");
    const std::string pg_ctl = absl::StrCat(kPgBinDir, "/pg_ctl");
    for (const std::string& binary : {initdb, pg_ctl}) {
      if (access(binary.c_str(), X_OK) != 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            binary, " is missing: the PostgreSQL index tests need the PostgreSQL 15 server ",
            "(Debian package `postgresql`; scripts/install-deps.sh installs it)"));
      }
    }
    // Under /tmp, mode 0755, owned by `postgres`: every parent is traversable by the server.
    std::string tmpl = "/tmp/ds-pg.XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::InternalError(absl::StrCat("mkdtemp /tmp/ds-pg.XXXXXX: errno ", errno));
    }
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
    if (geteuid() == 0) {
      const passwd* pw = getpwnam("postgres");
      if (pw == nullptr) {
        return absl::FailedPreconditionError(
            "running as root, but there is no `postgres` user to run the server as "
            "(install the Debian package `postgresql`)");
      }
      if (chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        return absl::InternalError(absl::StrCat("chown ", dir_.string(), ": errno ", errno));
      }
    }
    const std::string log = (dir_ / "commands.log").string();
    const std::string data = (dir_ / "data").string();
    if (RunCommand(AsPostgres({initdb, "-D", data, "-U", kSuperuser, "-A", "trust", "-E", "UTF8",
                               "--no-sync", "--no-instructions"}),
                   dir_.string(), log) != 0) {
      return absl::InternalError(absl::StrCat("initdb failed:\n", ReadFile(log)));
    }
    for (int attempt = 1; attempt <= kStartAttempts; ++attempt) {
      port_ = FreeLocalPort();
      const std::string options =
          absl::StrCat("-p ", port_, " -k ", dir_.string(),
                       " -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
                       " -c full_page_writes=off");
      const int rc =
          RunCommand(AsPostgres({pg_ctl, "-D", data, "-l", (dir_ / "server.log").string(), "-w",
                                 "-t", "30", "-o", options, "start"}),
                     dir_.string(), log);
      if (rc == 0) {
        started_ = true;
        break;
      }
      if (attempt == kStartAttempts) {
        return absl::InternalError(absl::StrCat("pg_ctl start failed:\n", ReadFile(log),
                                                "\nserver log:\n", ReadFile(dir_ / "server.log")));
      }
    }
    static const bool registered = [] {
      std::atexit([] { Cluster::Get().Stop(); });
      return true;
    }();
    (void)registered;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "[postgres_fixture] PostgreSQL started in %.2f s at %s, port %d\n",
                 seconds, dir_.c_str(), port_);
    return absl::OkStatus();
  }

  Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);
  std::filesystem::path dir_ ABSL_GUARDED_BY(mu_);  // empty when none
  int port_ ABSL_GUARDED_BY(mu_) = 0;
  int databases_ ABSL_GUARDED_BY(mu_) = 0;  // created so far; names are t_1, t_2, ...
  std::unique_ptr<pqxx::connection> admin_
      ABSL_GUARDED_BY(mu_);  // to database `postgres`, for CREATE DATABASE
};

// Stops the cluster once every test of the binary has run.
class PostgresClusterEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { Cluster::Get().Stop(); }
};

// gtest owns the environment. Listing tests (--gtest_list_tests) never starts the cluster.
[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresClusterEnvironment);

}  // namespace

absl::StatusOr<TestPostgresDatabase> CreateTestPostgresDatabase() {
  return Cluster::Get().CreateDatabase();
}

absl::Status ExecTestPostgresSql(const std::string& dbname, const std::string& sql) {
  return Cluster::Get().WithConnection(dbname, [&](pqxx::nontransaction& tx) { tx.exec(sql); });
}

absl::StatusOr<std::string> QueryTestPostgresValue(const std::string& dbname,
                                                   const std::string& sql) {
  std::string value;
  DS_RETURN_IF_ERROR(Cluster::Get().WithConnection(dbname, [&](pqxx::nontransaction& tx) {
    const pqxx::result r = tx.exec(sql);
    if (!r.empty() && !r[0][0].is_null()) value = r[0][0].c_str();
  }));
  return value;
}

}  // namespace ds
