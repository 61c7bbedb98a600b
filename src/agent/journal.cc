#include "agent/journal.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <mutex>
#include <set>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/time_util.h"

namespace ds {
namespace {

constexpr char kSchema[] = R"sql(
-- Runs this agent started and has not finished reporting.
CREATE TABLE IF NOT EXISTS journal_runs (
  run_id       TEXT PRIMARY KEY,             -- correlation id
  job          TEXT NOT NULL,
  job_id       INTEGER NOT NULL,
  trigger      TEXT NOT NULL DEFAULT '',
  offline      INTEGER NOT NULL DEFAULT 0,   -- boolean: server never saw the run
  closed       INTEGER NOT NULL DEFAULT 0,   -- boolean: agent finished it
  interrupted  INTEGER NOT NULL DEFAULT 0,   -- boolean
  error        TEXT NOT NULL DEFAULT '',
  started_at   INTEGER NOT NULL              -- Unix ms
);
-- Every file result, journaled before it is reported.
CREATE TABLE IF NOT EXISTS journal_results (
  run_id        TEXT NOT NULL,
  path          TEXT NOT NULL,
  status        TEXT NOT NULL,               -- uploaded | failed | skipped | inflight
  key           TEXT NOT NULL DEFAULT '',    -- storage key (in flight)
  size          INTEGER NOT NULL DEFAULT 0,  -- bytes
  mtime_ns      INTEGER NOT NULL DEFAULT 0,  -- Unix ns
  sha256        TEXT NOT NULL DEFAULT '',
  error         TEXT NOT NULL DEFAULT '',
  kept_version  TEXT NOT NULL DEFAULT '',
  reported      INTEGER NOT NULL DEFAULT 0,  -- boolean
  PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
-- What the index holds per job, as far as this agent knows (offline planning).
CREATE TABLE IF NOT EXISTS indexed_files (
  job_id  INTEGER NOT NULL,
  path    TEXT NOT NULL,
  size    INTEGER NOT NULL,                  -- bytes
  sha256  TEXT NOT NULL,
  PRIMARY KEY (job_id, path)
) WITHOUT ROWID;
-- Blocks of an object-storage upload the service holds uncommitted (Put Block succeeded), so
-- that after a restart the agent, whose write-only SAS cannot list them, sends only the rest.
-- Forgotten when the file is committed; the service discards uncommitted blocks after 7 days.
CREATE TABLE IF NOT EXISTS staged_blocks (
  key          TEXT NOT NULL,                -- storage key of the blob
  sha256       TEXT NOT NULL,                -- of the whole file being uploaded
  block_id     TEXT NOT NULL,                -- base64, content-derived
  staged_at_ms INTEGER NOT NULL,             -- Unix ms
  PRIMARY KEY (key, sha256, block_id)
) WITHOUT ROWID;
-- The last job definitions from the server.
CREATE TABLE IF NOT EXISTS job_cache (
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  version      INTEGER NOT NULL,
  storage_url  TEXT NOT NULL,
  jobs         TEXT NOT NULL                 -- JSON array of job specs
);
)sql";

class SqliteJournal final : public Journal {
 public:
  explicit SqliteJournal(const std::string& path)
      : db_(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE) {
    db_.exec("PRAGMA journal_mode=WAL");
    db_.exec("PRAGMA synchronous=FULL");  // a journaled result survives power loss (see Relaxed)
    db_.exec("PRAGMA busy_timeout=5000");
    db_.exec(kSchema);
  }

  absl::Status BeginRun(const JournalRun& r) override {
    return Locked([&]() -> absl::Status {
      SQLite::Statement q(db_, R"sql(
        INSERT OR IGNORE INTO journal_runs (run_id, job, job_id, trigger, offline, started_at)
        VALUES (?, ?, ?, ?, ?, ?))sql");
      q.bind(1, r.run_id);
      q.bind(2, r.job);
      q.bind(3, r.job_id);
      q.bind(4, r.trigger);
      q.bind(5, r.offline ? 1 : 0);
      q.bind(6, r.started_at_ms);
      q.exec();
      return absl::OkStatus();
    });
  }

  absl::Status MarkOnline(const std::string& run_id) override {
    return Exec("UPDATE journal_runs SET offline = 0 WHERE run_id = ?", run_id);
  }

  absl::Status Record(const std::string& run_id,
                      const std::vector<protocol::FileResult>& results) override {
    return Locked([&]() -> absl::Status {
      SQLite::Transaction tx(db_);
      SQLite::Statement q(db_, R"sql(
        INSERT INTO journal_results (run_id, path, status, size, mtime_ns, sha256, error,
                                     kept_version, reported)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)
        ON CONFLICT (run_id, path) DO UPDATE SET status = excluded.status, key = '',
          size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
          error = excluded.error, kept_version = excluded.kept_version, reported = 0)sql");
      for (const auto& r : results) {
        q.reset();
        q.bind(1, run_id);
        q.bind(2, r.path);
        q.bind(3, r.status);
        q.bind(4, static_cast<int64_t>(r.size));
        q.bind(5, r.mtime_ns);
        q.bind(6, r.sha256);
        q.bind(7, r.error);
        q.bind(8, r.kept_version);
        q.exec();
      }
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status MarkInFlight(const std::string& run_id,
                            const std::vector<std::pair<std::string, std::string>>& files) override {
    if (files.empty()) return absl::OkStatus();
    return Locked([&]() -> absl::Status {
      Relaxed relaxed(db_);
      SQLite::Transaction tx(db_);
      SQLite::Statement q(db_, R"sql(
        INSERT INTO journal_results (run_id, path, status, key) VALUES (?, ?, 'inflight', ?)
        ON CONFLICT (run_id, path) DO UPDATE SET status = 'inflight', key = excluded.key)sql");
      for (const auto& [path, key] : files) {
        q.reset();
        q.bind(1, run_id);
        q.bind(2, path);
        q.bind(3, key);
        q.exec();
      }
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status MarkReported(const std::string& run_id, const std::vector<std::string>& paths) override {
    return Locked([&]() -> absl::Status {
      Relaxed relaxed(db_);
      SQLite::Transaction tx(db_);
      SQLite::Statement q(db_, "UPDATE journal_results SET reported = 1 WHERE run_id = ? AND path = ?");
      for (const auto& p : paths) {
        q.reset();
        q.bind(1, run_id);
        q.bind(2, p);
        q.exec();
      }
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status CloseRun(const std::string& run_id, bool interrupted, const std::string& error) override {
    return Locked([&]() -> absl::Status {
      SQLite::Statement q(
          db_, "UPDATE journal_runs SET closed = 1, interrupted = ?, error = ? WHERE run_id = ?");
      q.bind(1, interrupted ? 1 : 0);
      q.bind(2, error);
      q.bind(3, run_id);
      q.exec();
      return absl::OkStatus();
    });
  }

  absl::Status ForgetRun(const std::string& run_id) override {
    return Locked([&]() -> absl::Status {
      SQLite::Transaction tx(db_);
      for (const char* sql : {"DELETE FROM journal_results WHERE run_id = ?",
                              "DELETE FROM journal_runs WHERE run_id = ?"}) {
        SQLite::Statement q(db_, sql);
        q.bind(1, run_id);
        q.exec();
      }
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<JournalRun>> PendingRuns() override {
    return Locked([&]() -> absl::StatusOr<std::vector<JournalRun>> {
      SQLite::Statement q(db_, R"sql(
        SELECT run_id, job, job_id, trigger, offline, closed, interrupted, error, started_at
        FROM journal_runs ORDER BY started_at)sql");
      std::vector<JournalRun> out;
      while (q.executeStep()) {
        JournalRun r;
        r.run_id = q.getColumn(0).getString();
        r.job = q.getColumn(1).getString();
        r.job_id = q.getColumn(2).getInt64();
        r.trigger = q.getColumn(3).getString();
        r.offline = q.getColumn(4).getInt() != 0;
        r.closed = q.getColumn(5).getInt() != 0;
        r.interrupted = q.getColumn(6).getInt() != 0;
        r.error = q.getColumn(7).getString();
        r.started_at_ms = q.getColumn(8).getInt64();
        out.push_back(std::move(r));
      }
      return out;
    });
  }

  absl::StatusOr<std::vector<protocol::FileResult>> Unreported(const std::string& run_id) override {
    return Locked([&]() -> absl::StatusOr<std::vector<protocol::FileResult>> {
      SQLite::Statement q(db_, R"sql(
        SELECT path, status, size, mtime_ns, sha256, error, kept_version FROM journal_results
        WHERE run_id = ? AND reported = 0 AND status <> 'inflight' ORDER BY path)sql");
      q.bind(1, run_id);
      std::vector<protocol::FileResult> out;
      while (q.executeStep()) {
        protocol::FileResult r;
        r.path = q.getColumn(0).getString();
        r.status = q.getColumn(1).getString();
        r.size = static_cast<uint64_t>(q.getColumn(2).getInt64());
        r.mtime_ns = q.getColumn(3).getInt64();
        r.sha256 = q.getColumn(4).getString();
        r.error = q.getColumn(5).getString();
        r.kept_version = q.getColumn(6).getString();
        out.push_back(std::move(r));
      }
      return out;
    });
  }

  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> InFlight(const std::string& run_id) override {
    return Locked([&]() -> absl::StatusOr<std::vector<std::pair<std::string, std::string>>> {
      SQLite::Statement q(
          db_, "SELECT path, key FROM journal_results WHERE run_id = ? AND status = 'inflight'");
      q.bind(1, run_id);
      std::vector<std::pair<std::string, std::string>> out;
      while (q.executeStep()) out.emplace_back(q.getColumn(0).getString(), q.getColumn(1).getString());
      return out;
    });
  }

  absl::Status ForEachIndexed(
      int64_t job_id, const std::function<void(const std::string&, const IndexedContent&)>& fn) override {
    return Locked([&]() -> absl::Status {
      // The primary key (job_id, path) orders the rows: no sort, no copy.
      SQLite::Statement q(db_, "SELECT path, size, sha256 FROM indexed_files WHERE job_id = ? ORDER BY path");
      q.bind(1, job_id);
      IndexedContent c;
      while (q.executeStep()) {
        c.size = static_cast<uint64_t>(q.getColumn(1).getInt64());
        c.sha256 = q.getColumn(2).getString();
        fn(q.getColumn(0).getString(), c);
      }
      return absl::OkStatus();
    });
  }

  absl::Status RememberIndexed(int64_t job_id,
                               const std::vector<std::pair<std::string, IndexedContent>>& rows) override {
    if (rows.empty()) return absl::OkStatus();
    return Locked([&]() -> absl::Status {
      Relaxed relaxed(db_);
      SQLite::Transaction tx(db_);
      SQLite::Statement q(db_, R"sql(
        INSERT INTO indexed_files (job_id, path, size, sha256) VALUES (?, ?, ?, ?)
        ON CONFLICT (job_id, path) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256)sql");
      for (const auto& [path, c] : rows) {
        q.reset();
        q.bind(1, job_id);
        q.bind(2, path);
        q.bind(3, static_cast<int64_t>(c.size));
        q.bind(4, c.sha256);
        q.exec();
      }
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::set<std::string>> StagedBlocks(const std::string& key,
                                                     const std::string& sha256,
                                                     int64_t newer_than_ms) override {
    return Locked([&]() -> absl::StatusOr<std::set<std::string>> {
      SQLite::Statement q(db_, R"sql(
        SELECT block_id FROM staged_blocks WHERE key = ? AND sha256 = ? AND staged_at_ms > ?)sql");
      q.bind(1, key);
      q.bind(2, sha256);
      q.bind(3, newer_than_ms);
      std::set<std::string> out;
      while (q.executeStep()) out.insert(q.getColumn(0).getString());
      return out;
    });
  }

  absl::Status RememberStagedBlock(const std::string& key, const std::string& sha256,
                                   const std::string& block_id, int64_t now_ms) override {
    return Locked([&]() -> absl::Status {
      SQLite::Statement q(db_, R"sql(
        INSERT INTO staged_blocks (key, sha256, block_id, staged_at_ms) VALUES (?, ?, ?, ?)
        ON CONFLICT (key, sha256, block_id) DO UPDATE SET staged_at_ms = excluded.staged_at_ms)sql");
      q.bind(1, key);
      q.bind(2, sha256);
      q.bind(3, block_id);
      q.bind(4, now_ms);
      q.exec();
      return absl::OkStatus();
    });
  }

  absl::Status ForgetStagedBlocks(const std::string& key, int64_t older_than_ms) override {
    return Locked([&]() -> absl::Status {
      SQLite::Statement q(db_, "DELETE FROM staged_blocks WHERE key = ? OR staged_at_ms < ?");
      q.bind(1, key);
      q.bind(2, older_than_ms);
      q.exec();
      return absl::OkStatus();
    });
  }

  absl::Status SaveJobs(int64_t version, const std::string& storage_url,
                        const std::vector<protocol::JobSpec>& jobs) override {
    return Locked([&]() -> absl::Status {
      SQLite::Statement q(db_, R"sql(
        INSERT INTO job_cache (id, version, storage_url, jobs) VALUES (1, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET version = excluded.version,
          storage_url = excluded.storage_url, jobs = excluded.jobs)sql");
      q.bind(1, version);
      q.bind(2, storage_url);
      q.bind(3, nlohmann::json(jobs).dump());
      q.exec();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::pair<std::string, std::vector<protocol::JobSpec>>> LoadJobs(int64_t* version) override {
    return Locked([&]() -> absl::StatusOr<std::pair<std::string, std::vector<protocol::JobSpec>>> {
      SQLite::Statement q(db_, "SELECT version, storage_url, jobs FROM job_cache WHERE id = 1");
      if (!q.executeStep()) return absl::NotFoundError("no cached job definitions");
      *version = q.getColumn(0).getInt64();
      return std::make_pair(q.getColumn(1).getString(),
                            nlohmann::json::parse(q.getColumn(2).getString()).get<std::vector<protocol::JobSpec>>());
    });
  }

 private:
  // For one transaction whose loss in a power cut costs no result: commit without fsync of the
  // WAL (synchronous=NORMAL; WAL mode keeps it consistent). In-flight marks (only named temp
  // files need them, and the server removes stale ones), reported marks (a lost mark means the
  // result is reported again, which the server accepts) and indexed rows (the offline planning
  // cache; a lost row means a re-upload that storage recognises as identical). The next FULL
  // commit (Record: every result before it is reported) fsyncs the WAL and with it these
  // frames. Per 1,000 small files that saves ~10 fsyncs of agent.db, some of them on the
  // upload threads.
  class Relaxed {
   public:
    explicit Relaxed(SQLite::Database& db) : db_(db) { db_.exec("PRAGMA synchronous=NORMAL"); }
    ~Relaxed() {
      try {
        db_.exec("PRAGMA synchronous=FULL");
      } catch (const std::exception&) {
        // Leaves NORMAL only if the connection itself broke; every call then fails anyway.
      }
    }
    Relaxed(const Relaxed&) = delete;
    Relaxed& operator=(const Relaxed&) = delete;

   private:
    SQLite::Database& db_;
  };

  template <typename Fn>
  std::invoke_result_t<Fn> Locked(Fn&& fn) {
    std::lock_guard<std::mutex> lock(mu_);
    try {
      return fn();
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("agent journal: ", e.what()));
    }
  }
  absl::Status Exec(const char* sql, const std::string& arg) {
    return Locked([&]() -> absl::Status {
      SQLite::Statement q(db_, sql);
      q.bind(1, arg);
      q.exec();
      return absl::OkStatus();
    });
  }

  std::mutex mu_;
  SQLite::Database db_;  // Protected by mu_.
};

}  // namespace

absl::StatusOr<std::unique_ptr<Journal>> OpenJournal(const std::string& db_path) {
  try {
    return std::unique_ptr<Journal>(std::make_unique<SqliteJournal>(db_path));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot open agent journal ", db_path, ": ", e.what()));
  }
}

}  // namespace ds
