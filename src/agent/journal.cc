#include "agent/journal.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <SQLiteCpp/VariadicBind.h>

#include <algorithm>
#include <string_view>
#include <set>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "agent/journal_codec.h"
#include "common/json.h"
#include "common/mutex.h"
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
-- File results and in-flight marks, one row per batch written (Record, MarkInFlight): a
-- journaled result costs one write instead of a row rewritten at each step. A file's state in a
-- run is its entry in the run's latest batch that names it.
CREATE TABLE IF NOT EXISTS journal_batches (
  run_id   TEXT NOT NULL,
  seq      INTEGER NOT NULL,                 -- order written within the run, from 1
  kind     INTEGER NOT NULL,                 -- 1: in flight (path, key); 2: results
  entries  BLOB NOT NULL,                    -- journal_codec
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
-- Result batches the server accepted (apart, so that marking one rewrites no entries).
CREATE TABLE IF NOT EXISTS journal_reported (
  run_id  TEXT NOT NULL,
  seq     INTEGER NOT NULL,
  PRIMARY KEY (run_id, seq)
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
-- In-flight marks of runs that left the journal while their uploads' temp files could not be
-- removed (storage unreachable when the run was replayed): removed, then forgotten, later.
CREATE TABLE IF NOT EXISTS kept_in_flight (
  run_id   TEXT NOT NULL,                    -- correlation id of the interrupted run
  key      TEXT NOT NULL,                    -- storage key of the upload
  path     TEXT NOT NULL,                    -- relative to the job's source folder
  kept_at  INTEGER NOT NULL,                 -- Unix ms
  PRIMARY KEY (run_id, key)
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
    MutexLock lock(&mu_);  // nothing else runs yet: for the analysis
    MigrateRowsPerFile();
  }

  absl::Status BeginRun(const JournalRun& r) override {
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
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

  absl::StatusOr<int64_t> Record(const std::string& run_id,
                                 const std::vector<protocol::FileResult>& results) override {
    if (results.empty()) return kNoBatch;  // nothing to make durable: no write, no fsync
    std::string entries;
    for (const auto& r : results) journal_codec::AppendResult(entries, r);
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      const int64_t seq = AddBatch(run_id, kResults, entries);
      tx.commit();
      return seq;
    });
  }

  absl::Status MarkInFlight(
      const std::string& run_id,
      const std::vector<std::pair<std::string, std::string>>& files) override {
    if (files.empty()) return absl::OkStatus();
    std::string entries;
    for (const auto& [path, key] : files) journal_codec::AppendInFlight(entries, path, key);
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      Relaxed relaxed(db_);
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      AddBatch(run_id, kInFlight, entries);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status MarkReported(const std::string& run_id, int64_t batch) override {
    if (batch == kNoBatch) return absl::OkStatus();
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      Relaxed relaxed(db_);
      SQLite::Statement q(db_,
                          "INSERT OR IGNORE INTO journal_reported (run_id, seq) VALUES (?, ?)");
      q.bind(1, run_id);
      q.bind(2, batch);
      q.exec();
      return absl::OkStatus();
    });
  }

  absl::Status CloseRun(const std::string& run_id, bool interrupted,
                        const std::string& error) override {
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
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
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      SQLite::Transaction tx(db_);
      for (const char* sql : {"DELETE FROM journal_batches WHERE run_id = ?",
                              "DELETE FROM journal_reported WHERE run_id = ?",
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
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<JournalRun>> {
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

  absl::Status ForEachUnreported(
      const std::string& run_id,
      const std::function<absl::Status(std::vector<protocol::FileResult>)>& fn) override {
    return Stream<protocol::FileResult>(
        fn, [&](int64_t* after, std::vector<protocol::FileResult>* batch)
                ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<bool> {
          SQLite::Statement q(db_, R"sql(
        SELECT b.seq, b.entries FROM journal_batches b
        WHERE b.run_id = ?1 AND b.kind = ?2 AND b.seq > ?3 AND NOT EXISTS (
          SELECT 1 FROM journal_reported r WHERE r.run_id = b.run_id AND r.seq = b.seq)
        ORDER BY b.seq LIMIT 1)sql");
          q.bind(1, run_id);
          q.bind(2, kResults);
          q.bind(3, *after);
          if (!q.executeStep()) return false;
          *after = q.getColumn(0).getInt64();
          DS_RETURN_IF_ERROR(DecodeResults(run_id, *after, q.getColumn(1), batch));
          // Reported batches normally precede every unreported one (results are reported in the
          // order they were journaled). Should a later one be reported, its files' entries here
          // are older than what the server has: left out.
          std::set<std::string> newer;
          // (CROSS JOIN: driven by the few rows of journal_reported, not by every later batch.)
          SQLite::Statement later(db_, R"sql(
        SELECT b.seq, b.entries FROM journal_reported r CROSS JOIN journal_batches b
          ON b.run_id = r.run_id AND b.seq = r.seq
        WHERE r.run_id = ? AND r.seq > ? AND b.kind = ?)sql");
          later.bind(1, run_id);
          later.bind(2, *after);
          later.bind(3, kResults);
          while (later.executeStep()) {
            std::vector<protocol::FileResult> reported;
            DS_RETURN_IF_ERROR(DecodeResults(run_id, later.getColumn(0).getInt64(),
                                             later.getColumn(1), &reported));
            for (auto& r : reported) newer.insert(std::move(r.path));
          }
          if (!newer.empty()) {
            std::erase_if(*batch,
                          [&](const protocol::FileResult& r) { return newer.count(r.path) > 0; });
          }
          return true;
        });
  }

  absl::Status ForEachInFlight(
      const std::string& run_id,
      const std::function<absl::Status(std::vector<std::pair<std::string, std::string>>)>& fn)
      override {
    using Mark = std::pair<std::string, std::string>;
    return Stream<Mark>(fn, [&](int64_t* after, std::vector<Mark>* batch)
                                ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<bool> {
      SQLite::Statement q(db_, R"sql(
        SELECT seq, entries FROM journal_batches WHERE run_id = ? AND kind = ? AND seq > ?
        ORDER BY seq LIMIT 1)sql");
      q.bind(1, run_id);
      q.bind(2, kInFlight);
      q.bind(3, *after);
      if (!q.executeStep()) return false;
      *after = q.getColumn(0).getInt64();
      if (!journal_codec::DecodeInFlight(BlobOf(q.getColumn(1)), batch)) {
        return Damaged(run_id, *after);
      }
      return true;
    });
  }

  absl::Status KeepInFlight(const std::string& run_id, const InFlightMarks& marks) override {
    if (marks.empty()) return absl::OkStatus();
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      SQLite::Statement q(db_, R"sql(
        INSERT OR IGNORE INTO kept_in_flight (run_id, key, path, kept_at) VALUES (?, ?, ?, ?))sql");
      const int64_t now_ms = SystemClock()->NowUnixMs();
      for (const auto& [path, key] : marks) {
        q.reset();
        SQLite::bind(q, run_id, key, path, now_ms);
        q.exec();
      }
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<std::pair<std::string, InFlightMarks>>> KeptInFlight() override {
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<std::pair<std::string, InFlightMarks>>> {
      SQLite::Statement q(db_, R"sql(
        SELECT run_id, path, key FROM kept_in_flight ORDER BY run_id, key)sql");
      std::vector<std::pair<std::string, InFlightMarks>> out;
      while (q.executeStep()) {
        std::string run_id = q.getColumn(0).getString();
        if (out.empty() || out.back().first != run_id) out.emplace_back(std::move(run_id), InFlightMarks{});
        out.back().second.emplace_back(q.getColumn(1).getString(), q.getColumn(2).getString());
      }
      return out;
    });
  }

  absl::Status ForgetKeptInFlight(const std::string& run_id) override {
    return Exec("DELETE FROM kept_in_flight WHERE run_id = ?", run_id);
  }

  absl::Status ForEachIndexed(
      int64_t job_id,
      const std::function<void(const std::string&, const IndexedContent&)>& fn) override {
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
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
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
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
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::set<std::string>> {
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
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
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
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      SQLite::Statement q(db_, "DELETE FROM staged_blocks WHERE key = ? OR staged_at_ms < ?");
      q.bind(1, key);
      q.bind(2, older_than_ms);
      q.exec();
      return absl::OkStatus();
    });
  }

  absl::Status SaveJobs(int64_t version, const std::string& storage_url,
                        const std::vector<protocol::JobSpec>& jobs) override {
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
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
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::pair<std::string, std::vector<protocol::JobSpec>>> {
      SQLite::Statement q(db_, "SELECT version, storage_url, jobs FROM job_cache WHERE id = 1");
      if (!q.executeStep()) return absl::NotFoundError("no cached job definitions");
      *version = q.getColumn(0).getInt64();
      return std::make_pair(q.getColumn(1).getString(),
                            ParseJsonOr(q.getColumn(2).getString()).get<std::vector<protocol::JobSpec>>());
    });
  }

 private:
  static constexpr int kInFlight = 1;  // journal_batches.kind
  static constexpr int kResults = 2;

  // REQUIRES: in an IMMEDIATE transaction (agent.db has other writers: a deferred one that reads
  // first cannot take the write lock once they have written, and fails at once instead of
  // waiting). Adds a batch after the run's others; returns its seq.
  int64_t AddBatch(const std::string& run_id, int kind, const std::string& entries)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SQLite::Statement last(db_,
                           "SELECT COALESCE(MAX(seq), 0) FROM journal_batches WHERE run_id = ?");
    last.bind(1, run_id);
    last.executeStep();
    const int64_t seq = last.getColumn(0).getInt64() + 1;
    SQLite::Statement q(
        db_, "INSERT INTO journal_batches (run_id, seq, kind, entries) VALUES (?, ?, ?, ?)");
    q.bind(1, run_id);
    q.bind(2, seq);
    q.bind(3, kind);
    q.bindNoCopy(4, entries.data(), static_cast<int>(entries.size()));
    q.exec();
    return seq;
  }

  // Calls fn with each batch `next` reads (under the lock; `after`: the last seq read, 0 at
  // first; false when there are no more), without holding the lock while fn runs.
  template <typename Entry, typename Next>
  absl::Status Stream(const std::function<absl::Status(std::vector<Entry>)>& fn, Next next) {
    int64_t after = 0;
    for (;;) {
      std::vector<Entry> batch;
      absl::StatusOr<bool> more =
          Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return next(&after, &batch); });
      if (!more.ok()) return more.status();
      if (!*more) return absl::OkStatus();
      DS_RETURN_IF_ERROR(fn(std::move(batch)));
    }
  }

  static std::string_view BlobOf(const SQLite::Column& blob) {
    return std::string_view(static_cast<const char*>(blob.getBlob()),
                            static_cast<size_t>(blob.getBytes()));
  }

  static absl::Status Damaged(const std::string& run_id, int64_t seq) {
    return absl::DataLossError(
        absl::StrCat("agent journal: batch ", seq, " of run ", run_id, " is damaged"));
  }

  // Decodes the entries of results batch `seq` (a column holding what AppendResult wrote).
  static absl::Status DecodeResults(const std::string& run_id, int64_t seq,
                                    const SQLite::Column& blob,
                                    std::vector<protocol::FileResult>* out) {
    if (!journal_codec::DecodeResults(BlobOf(blob), out)) return Damaged(run_id, seq);
    return absl::OkStatus();
  }

  // Journals written by agents before 2026-11-28 kept a row per file (journal_results): their
  // pending results become batches (reported ones are done with), once.
  void MigrateRowsPerFile() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!db_.tableExists("journal_results")) return;
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    {
      SQLite::Statement q(db_, R"sql(
        SELECT run_id, path, status, key, size, mtime_ns, sha256, error, kept_version
        FROM journal_results WHERE reported = 0 ORDER BY run_id, path)sql");
      std::string run;
      std::string in_flight, results;
      auto flush = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        if (!in_flight.empty()) AddBatch(run, kInFlight, in_flight);
        if (!results.empty()) AddBatch(run, kResults, results);
        in_flight.clear();
        results.clear();
      };
      while (q.executeStep()) {
        std::string run_id = q.getColumn(0).getString();
        if (run_id != run) {
          flush();
          run = std::move(run_id);
        }
        protocol::FileResult r;
        r.path = q.getColumn(1).getString();
        r.status = q.getColumn(2).getString();
        if (r.status == "inflight") {
          journal_codec::AppendInFlight(in_flight, r.path, q.getColumn(3).getString());
          continue;
        }
        r.size = static_cast<uint64_t>(q.getColumn(4).getInt64());
        r.mtime_ns = q.getColumn(5).getInt64();
        r.sha256 = q.getColumn(6).getString();
        r.error = q.getColumn(7).getString();
        r.kept_version = q.getColumn(8).getString();
        journal_codec::AppendResult(results, r);
      }
      flush();
    }  // the SELECT is done before its table is dropped
    db_.exec("DROP TABLE journal_results");
    tx.commit();
  }

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
    MutexLock lock(&mu_);
    try {
      return fn();
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("agent journal: ", e.what()));
    }
  }
  absl::Status Exec(const char* sql, const std::string& arg) ABSL_LOCKS_EXCLUDED(mu_) {
    return Locked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      SQLite::Statement q(db_, sql);
      q.bind(1, arg);
      q.exec();
      return absl::OkStatus();
    });
  }

  Mutex mu_;
  SQLite::Database db_ ABSL_GUARDED_BY(mu_);
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
