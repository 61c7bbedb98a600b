// Smoke test of the Windows toolchain: every third-party library the agent uses, once, run under
// Wine by scripts/windows/smoke.sh. Prints "SMOKE OK" last when every test passed.
#include <SQLiteCpp/SQLiteCpp.h>
#include <SQLiteCpp/VariadicBind.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <toml++/toml.h>
#include <windows.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/spdlog.h"

namespace {

namespace fs = std::filesystem;

// UTF-8 bytes of a path (C++20's u8string() is a std::u8string; the narrow string() would use
// the ANSI code page under MinGW).
std::string Utf8(const fs::path& path) {
  const std::u8string s = path.u8string();
  return std::string(s.begin(), s.end());
}

// A fresh folder under the Windows temp folder, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            fs::u8path(absl::StrCat("datasync-smoke-", absl::ToUnixNanos(absl::Now())));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

absl::StatusOr<int> ParsePositive(int value) {
  if (value <= 0) return absl::InvalidArgumentError(absl::StrCat("not positive: ", value));
  return value;
}

TEST(Abseil, StatusOrAndStrCat) {
  absl::StatusOr<int> ok = ParsePositive(7);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 7);
  absl::StatusOr<int> bad = ParsePositive(-1);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "not positive: -1");
  EXPECT_EQ(absl::StrFormat("%05d|%s", 42, "x"), "00042|x");
}

TEST(Sqlite, WalInsertReadBack) {
  TempDir dir;
  const std::string db_path = Utf8(dir.path() / "state.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(
      sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr),
      SQLITE_OK);
  EXPECT_EQ(sqlite3_threadsafe(), 1);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_exec(db,
                         "PRAGMA synchronous=FULL;"
                         "CREATE TABLE f (path TEXT PRIMARY KEY, size INTEGER);"
                         "INSERT INTO f VALUES ('a/b.txt', 123);",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT size FROM f WHERE path = 'a/b.txt'", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(stmt, 0), 123);
  sqlite3_finalize(stmt);
  EXPECT_TRUE(fs::exists(dir.path() / "state.db-wal"));
  sqlite3_close(db);
}

TEST(SQLiteCpp, BindAndQuery) {
  TempDir dir;
  SQLite::Database db(Utf8(dir.path() / "cpp.db"), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  db.exec("CREATE TABLE t (k TEXT, v INTEGER)");
  SQLite::Statement insert(db, "INSERT INTO t VALUES (?, ?)");
  SQLite::bind(insert, "key", 99);
  EXPECT_EQ(insert.exec(), 1);
  SQLite::Statement query(db, "SELECT v FROM t WHERE k = 'key'");
  ASSERT_TRUE(query.executeStep());
  EXPECT_EQ(query.getColumn(0).getInt(), 99);
}

TEST(Curl, SchannelBuild) {
  ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
  const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
  ASSERT_NE(info->ssl_version, nullptr);
  EXPECT_NE(std::string(info->ssl_version).find("Schannel"), std::string::npos)
      << info->ssl_version;
  EXPECT_TRUE(info->features & CURL_VERSION_SSL);
  bool https = false;
  for (const char* const* p = info->protocols; *p != nullptr; ++p)
    https |= std::string(*p) == "https";
  EXPECT_TRUE(https);
  CURL* easy = curl_easy_init();
  ASSERT_NE(easy, nullptr);
  EXPECT_EQ(curl_easy_setopt(easy, CURLOPT_URL, "https://localhost:1/"), CURLE_OK);
  curl_easy_cleanup(easy);
  std::printf("curl %s, %s\n", info->version, info->ssl_version);
  curl_global_cleanup();
}

TEST(Threads, StdAndAbslMutex) {
  std::mutex std_mu;
  absl::Mutex absl_mu;
  int std_count = 0;
  int absl_count = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        {
          std::lock_guard<std::mutex> lock(std_mu);
          ++std_count;
        }
        {
          absl::MutexLock lock(&absl_mu);
          ++absl_count;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(std_count, 4000);
  EXPECT_EQ(absl_count, 4000);
}

// smoke.sh sets Wine to report Windows 10 (the agent's minimum); GetVersionEx() would answer 6.2
// to an .exe without a manifest, RtlGetVersion() does not.
TEST(Windows, ReportsWindows10) {
  using RtlGetVersionFn = LONG(WINAPI*)(OSVERSIONINFOW*);
  auto rtl_get_version = reinterpret_cast<RtlGetVersionFn>(
      reinterpret_cast<void*>(GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "RtlGetVersion")));
  ASSERT_NE(rtl_get_version, nullptr);
  OSVERSIONINFOW info = {};
  info.dwOSVersionInfoSize = sizeof(info);
  ASSERT_EQ(rtl_get_version(&info), 0);
  EXPECT_EQ(info.dwMajorVersion, 10u);
  std::printf("Windows %lu.%lu.%lu\n", info.dwMajorVersion, info.dwMinorVersion,
              info.dwBuildNumber);
}

TEST(HeaderOnly, JsonTomlCli) {
  nlohmann::json j = nlohmann::json::parse(R"({"files": 3, "name": "agent"})");
  EXPECT_EQ(j.at("files").get<int>(), 3);
  EXPECT_EQ(j.dump(), R"({"files":3,"name":"agent"})");
  toml::table config = toml::parse("[server]\nurl = \"https://localhost:8443\"\n");
  EXPECT_EQ(config["server"]["url"].value_or(std::string()), "https://localhost:8443");
  CLI::App app("smoke");
  int jobs = 0;
  app.add_option("--jobs", jobs);
  const char* argv[] = {"smoke", "--jobs", "5"};
  app.parse(3, argv);
  EXPECT_EQ(jobs, 5);
}

TEST(Spdlog, HeaderOnlyFileSink) {
  TempDir dir;
  const fs::path log_path = dir.path() / "agent.log";
  {
    auto logger = spdlog::basic_logger_mt("smoke", Utf8(log_path));
    logger->info("synced {} files in {:.1f} s", 3, 1.5);
    logger->flush();
    spdlog::drop("smoke");
  }
  std::ifstream in(log_path);
  std::stringstream content;
  content << in.rdbuf();
  EXPECT_NE(content.str().find("synced 3 files in 1.5 s"), std::string::npos) << content.str();
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  if (result == 0) std::printf("SMOKE OK\n");
  return result;
}
