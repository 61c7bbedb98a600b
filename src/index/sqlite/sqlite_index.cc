// SQLite implementation of StateIndex: one connection, serialised by a mutex. Every exception from
// SQLiteCpp (and nlohmann/json) is converted to an absl::Status here and never leaves this file.
#include "index/sqlite/sqlite_index.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/time_util.h"
#include "index/migrations.h"

namespace ds {
namespace {

constexpr int kBusyTimeoutMs = 5000;
constexpr int kMaxRunsPerPage = 1000;
constexpr int kMaxFilesPerPage = 10'000;

bool IsOneOf(const std::string& value, std::initializer_list<const char*> allowed) {
  return std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return value == a; });
}

bool IsRunnerStatus(const std::string& s) {
  return IsOneOf(s, {"pending", "approved", "rejected", "revoked"});
}
bool IsFinalRunState(const std::string& s) {
  return IsOneOf(s, {"succeeded", "partial", "failed", "abandoned"});
}
bool IsFileResult(const std::string& s) { return IsOneOf(s, {"uploaded", "failed", "skipped"}); }

// `op` names the operation, for the message.
absl::Status FromSqliteException(const std::string& op, const SQLite::Exception& e) {
  const std::string message = absl::StrCat(op, ": ", e.what());
  const int extended = e.getExtendedErrorCode();
  switch (e.getErrorCode() & 0xff) {
    case SQLITE_CONSTRAINT:
      if (extended == SQLITE_CONSTRAINT_UNIQUE || extended == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return absl::AlreadyExistsError(message);
      }
      if (extended == SQLITE_CONSTRAINT_FOREIGNKEY) return absl::FailedPreconditionError(message);
      return absl::InvalidArgumentError(message);  // CHECK, NOT NULL: a value outside the domain
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
      return absl::UnavailableError(message);
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

std::string ToJsonArray(const std::vector<std::string>& values) {
  return nlohmann::json(values).dump();
}
// Throws nlohmann::json::exception on a malformed column (reported as Internal).
std::vector<std::string> FromJsonArray(const std::string& text) {
  return nlohmann::json::parse(text).get<std::vector<std::string>>();
}

// Columns: id, name, status, hostname, os, machine_id, agent_version, runtime_state, current_run,
// api_key_hash IS NOT NULL, jobs_version, created_at, approved_at, last_heartbeat_at,
// last_activity_at.
Runner RunnerFromRow(const SQLite::Statement& s) {
  Runner r;
  r.id = s.getColumn(0).getInt64();
  r.name = s.getColumn(1).getString();
  r.status = s.getColumn(2).getString();
  r.hostname = s.getColumn(3).getString();
  r.os = s.getColumn(4).getString();
  r.machine_id = s.getColumn(5).getString();
  r.agent_version = s.getColumn(6).getString();
  r.runtime_state = s.getColumn(7).getString();
  r.current_run = s.getColumn(8).getString();
  r.has_key = s.getColumn(9).getInt() != 0;
  r.jobs_version = s.getColumn(10).getInt64();
  r.created_at_ms = s.getColumn(11).getInt64();
  r.approved_at_ms = s.getColumn(12).getInt64();
  r.last_heartbeat_at_ms = s.getColumn(13).getInt64();
  r.last_activity_at_ms = s.getColumn(14).getInt64();
  return r;
}

// Columns: j.id, j.runner_id, r.name, j.name, j.source, j.dest_prefix, j.includes, j.excludes,
// j.interval_ms, j.settle_ms, j.enabled, j.created_at.
Job JobFromRow(const SQLite::Statement& s) {
  Job j;
  j.spec.id = s.getColumn(0).getInt64();
  j.runner_id = s.getColumn(1).getInt64();
  j.runner_name = s.getColumn(2).getString();
  j.spec.name = s.getColumn(3).getString();
  j.spec.source = s.getColumn(4).getString();
  j.spec.dest_prefix = s.getColumn(5).getString();
  j.spec.includes = FromJsonArray(s.getColumn(6).getString());
  j.spec.excludes = FromJsonArray(s.getColumn(7).getString());
  j.spec.interval_ms = s.getColumn(8).getInt64();
  j.spec.settle_ms = s.getColumn(9).getInt64();
  j.spec.enabled = s.getColumn(10).getInt() != 0;
  j.created_at_ms = s.getColumn(11).getInt64();
  return j;
}

// Columns: s.id, s.runner_id, r.name, s.job_id (NULL once the job is deleted), s.job_name,
// s.state, s.trigger, s.files_seen, s.files_planned, s.files_uploaded, s.files_failed,
// s.files_skipped, s.bytes_seen, s.bytes_uploaded, s.started_at, s.finished_at, s.error.
Run RunFromRow(const SQLite::Statement& s) {
  Run run;
  protocol::RunSummary& sum = run.summary;
  sum.run_id = s.getColumn(0).getString();
  run.runner_id = s.getColumn(1).getInt64();
  sum.runner = s.getColumn(2).getString();
  run.job_id = s.getColumn(3).isNull() ? 0 : s.getColumn(3).getInt64();
  sum.job = s.getColumn(4).getString();
  sum.state = s.getColumn(5).getString();
  sum.trigger = s.getColumn(6).getString();
  sum.files_seen = static_cast<uint64_t>(s.getColumn(7).getInt64());
  sum.files_planned = static_cast<uint64_t>(s.getColumn(8).getInt64());
  sum.files_uploaded = static_cast<uint64_t>(s.getColumn(9).getInt64());
  sum.files_failed = static_cast<uint64_t>(s.getColumn(10).getInt64());
  sum.files_skipped = static_cast<uint64_t>(s.getColumn(11).getInt64());
  sum.bytes_seen = static_cast<uint64_t>(s.getColumn(12).getInt64());
  sum.bytes_uploaded = static_cast<uint64_t>(s.getColumn(13).getInt64());
  sum.started_at_ms = s.getColumn(14).getInt64();
  sum.finished_at_ms = s.getColumn(15).getInt64();
  sum.error = s.getColumn(16).getString();
  return run;
}

// Columns: job_id, path, size, mtime_ns, sha256, synced_at, run_id.
SyncedFile SyncedFileFromRow(const SQLite::Statement& s) {
  SyncedFile f;
  f.job_id = s.getColumn(0).getInt64();
  f.path = s.getColumn(1).getString();
  f.size = static_cast<uint64_t>(s.getColumn(2).getInt64());
  f.mtime_ns = s.getColumn(3).getInt64();
  f.sha256 = s.getColumn(4).getString();
  f.synced_at_ms = s.getColumn(5).getInt64();
  f.run_id = s.getColumn(6).getString();
  return f;
}

// Columns: id, name, role, created_at, revoked_at.
AdminToken AdminTokenFromRow(const SQLite::Statement& s) {
  AdminToken t;
  t.id = s.getColumn(0).getInt64();
  t.name = s.getColumn(1).getString();
  t.role = s.getColumn(2).getString();
  t.created_at_ms = s.getColumn(3).getInt64();
  t.revoked_at_ms = s.getColumn(4).getInt64();
  return t;
}

// The run a batch of plan or results belongs to.
struct RunningRun {
  int64_t runner_id = 0;
  int64_t job_id = 0;  // 0 once the job is deleted
};

class SqliteIndex final : public StateIndex {
 public:
  explicit SqliteIndex(SQLite::Database db) : db_(std::move(db)) {}

  absl::Status Migrate() override;
  absl::StatusOr<int> SchemaVersion() override;
  int LatestKnownSchemaVersion() const override;
  absl::Status Ping() override;

  absl::StatusOr<Runner> RegisterRunner(const RegisterInfo& info, const std::string& enrollment_id,
                                        const std::string& secret_hash, int64_t now_ms) override;
  absl::StatusOr<Enrollment> GetEnrollment(const std::string& id) override;
  absl::Status DeliverKey(const std::string& enrollment_id, const std::string& key_hash) override;
  absl::StatusOr<std::vector<Runner>> ListRunners() override;
  absl::StatusOr<Runner> GetRunnerByName(const std::string& name) override;
  absl::StatusOr<Runner> GetRunnerById(int64_t id) override;
  absl::StatusOr<Runner> FindRunnerByKeyHash(const std::string& key_hash) override;
  absl::Status TransitionRunner(int64_t runner_id, const std::string& from, const std::string& to,
                                int64_t now_ms) override;
  absl::Status RecordHeartbeat(int64_t runner_id, const std::string& agent_version,
                               const std::string& runtime_state, const std::string& current_run,
                               int64_t now_ms) override;

  absl::StatusOr<Job> PutJob(int64_t runner_id, const protocol::JobSpec& spec, bool replace,
                             int64_t now_ms) override;
  absl::StatusOr<Job> GetJob(int64_t runner_id, const std::string& name) override;
  absl::StatusOr<Job> GetJobById(int64_t job_id) override;
  absl::StatusOr<std::vector<Job>> ListJobs(std::optional<int64_t> runner_id) override;
  absl::Status DeleteJob(int64_t job_id) override;

  absl::StatusOr<Run> BeginRun(const std::string& run_id, int64_t runner_id, int64_t job_id,
                               const std::string& trigger, int64_t now_ms) override;
  absl::StatusOr<std::vector<SyncedFile>> LookupSyncedFiles(
      int64_t job_id, const std::vector<std::string>& paths) override;
  absl::Status RecordPlanned(const std::string& run_id, const std::vector<RunFile>& planned,
                             int64_t total_files, int64_t total_bytes) override;
  absl::StatusOr<uint64_t> RecordResults(const std::string& run_id,
                                         const std::vector<protocol::FileResult>& results,
                                         int64_t now_ms) override;
  absl::StatusOr<Run> FinishRun(const std::string& run_id, const std::string& state,
                                const std::string& error, int64_t now_ms) override;
  absl::StatusOr<Run> GetRun(const std::string& run_id) override;
  absl::StatusOr<std::vector<Run>> ListRuns(const RunFilter& filter) override;
  absl::StatusOr<std::vector<RunFile>> ListRunFiles(const std::string& run_id,
                                                    const std::string& after_path,
                                                    int limit) override;

  absl::StatusOr<std::vector<SyncedFile>> ListSyncedFiles(int64_t job_id,
                                                          const std::string& after_path,
                                                          int limit) override;
  absl::StatusOr<int64_t> CountSyncedFiles(int64_t job_id) override;

  absl::StatusOr<protocol::Command> EnqueueCommand(int64_t runner_id, const std::string& type,
                                                   const std::string& job,
                                                   const std::string& run_id,
                                                   int64_t now_ms) override;
  absl::StatusOr<std::vector<protocol::Command>> TakeCommands(int64_t runner_id) override;

  absl::StatusOr<AdminToken> CreateAdminToken(const std::string& name, const std::string& role,
                                              const std::string& token_hash,
                                              int64_t now_ms) override;
  absl::StatusOr<AdminToken> FindAdminToken(const std::string& token_hash) override;
  absl::StatusOr<int64_t> CountAdminTokens() override;

 private:
  // Runs `fn` holding mu_ and turns any exception it throws into a status; an open
  // SQLite::Transaction inside `fn` has rolled back by then. `op` names the method in messages.
  template <typename Fn>
  std::invoke_result_t<Fn> Locked(const char* op, Fn&& fn) {
    std::lock_guard<std::mutex> lock(mu_);
    try {
      return fn();
    } catch (const SQLite::Exception& e) {
      return FromSqliteException(op, e);
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat(op, ": ", e.what()));
    }
  }

  // The helpers below REQUIRE mu_ held and may throw SQLite::Exception.
  int CurrentSchemaVersion();  // 0 when nothing was ever applied
  absl::StatusOr<Runner> LoadRunner(int64_t id);
  absl::StatusOr<Job> LoadJob(int64_t id);
  absl::StatusOr<Run> LoadRun(const std::string& id);
  // NotFound for an unknown run, FailedPrecondition unless it is `running`.
  absl::StatusOr<RunningRun> LoadRunningRun(const std::string& run_id);
  bool RunnerExists(int64_t id);
  bool JobExists(int64_t id);

  std::mutex mu_;
  // Protected by mu_.
  SQLite::Database db_;
};

// ---- helpers ------------------------------------------------------------------------------------

int SqliteIndex::CurrentSchemaVersion() {
  if (!db_.tableExists("schema_migrations")) return 0;
  SQLite::Statement q(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  q.executeStep();
  return q.getColumn(0).getInt();
}

absl::StatusOr<Runner> SqliteIndex::LoadRunner(int64_t id) {
  SQLite::Statement q(db_, R"sql(
    SELECT id, name, status, hostname, os, machine_id, agent_version, runtime_state, current_run,
           api_key_hash IS NOT NULL, jobs_version, created_at, approved_at, last_heartbeat_at,
           last_activity_at
    FROM runners WHERE id = ?)sql");
  q.bind(1, id);
  if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("runner ", id, " not found"));
  return RunnerFromRow(q);
}

absl::StatusOr<Job> SqliteIndex::LoadJob(int64_t id) {
  SQLite::Statement q(db_, R"sql(
    SELECT j.id, j.runner_id, r.name, j.name, j.source, j.dest_prefix, j.includes, j.excludes,
           j.interval_ms, j.settle_ms, j.enabled, j.created_at
    FROM jobs j JOIN runners r ON r.id = j.runner_id
    WHERE j.id = ?)sql");
  q.bind(1, id);
  if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  return JobFromRow(q);
}

absl::StatusOr<Run> SqliteIndex::LoadRun(const std::string& id) {
  SQLite::Statement q(db_, R"sql(
    SELECT s.id, s.runner_id, r.name, s.job_id, s.job_name, s.state, s."trigger", s.files_seen,
           s.files_planned, s.files_uploaded, s.files_failed, s.files_skipped, s.bytes_seen,
           s.bytes_uploaded, s.started_at, s.finished_at, s.error
    FROM sync_runs s JOIN runners r ON r.id = s.runner_id
    WHERE s.id = ?)sql");
  q.bind(1, id);
  if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("run ", id, " not found"));
  return RunFromRow(q);
}

absl::StatusOr<RunningRun> SqliteIndex::LoadRunningRun(const std::string& run_id) {
  SQLite::Statement q(db_, "SELECT state, runner_id, job_id FROM sync_runs WHERE id = ?");
  q.bind(1, run_id);
  if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("run ", run_id, " not found"));
  const std::string state = q.getColumn(0).getString();
  if (state != "running") {
    return absl::FailedPreconditionError(absl::StrCat("run ", run_id, " is ", state));
  }
  RunningRun run;
  run.runner_id = q.getColumn(1).getInt64();
  run.job_id = q.getColumn(2).isNull() ? 0 : q.getColumn(2).getInt64();
  return run;
}

bool SqliteIndex::RunnerExists(int64_t id) {
  SQLite::Statement q(db_, "SELECT 1 FROM runners WHERE id = ?");
  q.bind(1, id);
  return q.executeStep();
}

bool SqliteIndex::JobExists(int64_t id) {
  SQLite::Statement q(db_, "SELECT 1 FROM jobs WHERE id = ?");
  q.bind(1, id);
  return q.executeStep();
}

// ---- schema -------------------------------------------------------------------------------------

absl::Status SqliteIndex::Migrate() {
  return Locked("Migrate", [&]() -> absl::Status {
    db_.exec(R"sql(
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version     INTEGER PRIMARY KEY,  -- NNNN of the migration file
        name        TEXT NOT NULL,        -- migration file name
        applied_at  INTEGER NOT NULL      -- Unix ms
      ))sql");
    const int latest = LatestKnownSchemaVersion();
    // One migration per transaction; the version is re-read under the write lock so that two
    // servers starting together apply each migration once.
    for (;;) {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      const int current = CurrentSchemaVersion();
      if (current > latest) {
        return absl::FailedPreconditionError(absl::StrCat("index schema version ", current,
                                                          " is newer than this server knows (",
                                                          latest, "); upgrade datasync-server"));
      }
      if (current == latest) return absl::OkStatus();
      const auto next = std::find_if(kSqliteMigrations.begin(), kSqliteMigrations.end(),
                                     [&](const Migration& m) { return m.version == current + 1; });
      if (next == kSqliteMigrations.end()) {
        return absl::InternalError(absl::StrCat("SQLite migration ", current + 1, " is missing"));
      }
      db_.exec(std::string(next->sql));
      SQLite::Statement record(
          db_, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
      record.bind(1, next->version);
      record.bind(2, std::string(next->name));
      record.bind(3, SystemClock()->NowUnixMs());
      record.exec();
      tx.commit();
    }
  });
}

absl::StatusOr<int> SqliteIndex::SchemaVersion() {
  return Locked("SchemaVersion", [&]() -> absl::StatusOr<int> { return CurrentSchemaVersion(); });
}

int SqliteIndex::LatestKnownSchemaVersion() const {
  return kSqliteMigrations.empty() ? 0 : kSqliteMigrations.back().version;
}

absl::Status SqliteIndex::Ping() {
  return Locked("Ping", [&]() -> absl::Status {
    SQLite::Statement q(db_, "SELECT 1");
    q.executeStep();
    return absl::OkStatus();
  });
}

// ---- runners and enrollment ---------------------------------------------------------------------

absl::StatusOr<Runner> SqliteIndex::RegisterRunner(const RegisterInfo& info,
                                                   const std::string& enrollment_id,
                                                   const std::string& secret_hash, int64_t now_ms) {
  if (info.name.empty() || enrollment_id.empty() || secret_hash.empty()) {
    return absl::InvalidArgumentError(
        "RegisterRunner: name, enrollment id and secret hash are required");
  }
  return Locked("RegisterRunner", [&]() -> absl::StatusOr<Runner> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    int64_t runner_id = 0;
    {
      SQLite::Statement find(db_, "SELECT id, status FROM runners WHERE name = ?");
      find.bind(1, info.name);
      if (find.executeStep()) {
        const std::string status = find.getColumn(1).getString();
        if (status != "pending") {
          return absl::AlreadyExistsError(
              absl::StrCat("runner name \"", info.name, "\" belongs to a ", status, " runner"));
        }
        runner_id = find.getColumn(0).getInt64();
      }
    }
    if (runner_id != 0) {
      SQLite::Statement update(db_, R"sql(
        UPDATE runners SET hostname = ?, os = ?, machine_id = ?, agent_version = ?
        WHERE id = ?)sql");
      update.bind(1, info.hostname);
      update.bind(2, info.os);
      update.bind(3, info.machine_id);
      update.bind(4, info.agent_version);
      update.bind(5, runner_id);
      update.exec();
      SQLite::Statement supersede(db_, R"sql(
        UPDATE enrollments SET status = 'rejected'
        WHERE runner_id = ? AND status IN ('pending', 'approved'))sql");
      supersede.bind(1, runner_id);
      supersede.exec();
    } else {
      SQLite::Statement insert(db_, R"sql(
        INSERT INTO runners (name, status, hostname, os, machine_id, agent_version, created_at)
        VALUES (?, 'pending', ?, ?, ?, ?, ?))sql");
      insert.bind(1, info.name);
      insert.bind(2, info.hostname);
      insert.bind(3, info.os);
      insert.bind(4, info.machine_id);
      insert.bind(5, info.agent_version);
      insert.bind(6, now_ms);
      insert.exec();
      runner_id = db_.getLastInsertRowid();
    }
    SQLite::Statement enroll(db_, R"sql(
      INSERT INTO enrollments (id, runner_id, secret_hash, status, created_at)
      VALUES (?, ?, ?, 'pending', ?))sql");
    enroll.bind(1, enrollment_id);
    enroll.bind(2, runner_id);
    enroll.bind(3, secret_hash);
    enroll.bind(4, now_ms);
    enroll.exec();
    DS_ASSIGN_OR_RETURN(Runner runner, LoadRunner(runner_id));
    tx.commit();
    return runner;
  });
}

absl::StatusOr<Enrollment> SqliteIndex::GetEnrollment(const std::string& id) {
  return Locked("GetEnrollment", [&]() -> absl::StatusOr<Enrollment> {
    SQLite::Statement q(
        db_, "SELECT id, runner_id, secret_hash, status, created_at FROM enrollments WHERE id = ?");
    q.bind(1, id);
    if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("enrollment ", id, " not found"));
    Enrollment e;
    e.id = q.getColumn(0).getString();
    e.runner_id = q.getColumn(1).getInt64();
    e.secret_hash = q.getColumn(2).getString();
    e.status = q.getColumn(3).getString();
    e.created_at_ms = q.getColumn(4).getInt64();
    return e;
  });
}

absl::Status SqliteIndex::DeliverKey(const std::string& enrollment_id,
                                     const std::string& key_hash) {
  if (key_hash.empty()) return absl::InvalidArgumentError("DeliverKey: empty key hash");
  return Locked("DeliverKey", [&]() -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    int64_t runner_id = 0;
    {
      SQLite::Statement q(db_, R"sql(
        SELECT e.status, e.runner_id, r.status
        FROM enrollments e JOIN runners r ON r.id = e.runner_id
        WHERE e.id = ?)sql");
      q.bind(1, enrollment_id);
      if (!q.executeStep()) {
        return absl::NotFoundError(absl::StrCat("enrollment ", enrollment_id, " not found"));
      }
      const std::string enrollment_status = q.getColumn(0).getString();
      const std::string runner_status = q.getColumn(2).getString();
      if (enrollment_status != "approved") {
        return absl::FailedPreconditionError(
            absl::StrCat("enrollment ", enrollment_id, " is ", enrollment_status));
      }
      // Approved, then revoked before the agent polled: no key.
      if (runner_status != "approved") {
        return absl::FailedPreconditionError(
            absl::StrCat("runner of enrollment ", enrollment_id, " is ", runner_status));
      }
      runner_id = q.getColumn(1).getInt64();
    }
    SQLite::Statement set_key(db_, "UPDATE runners SET api_key_hash = ? WHERE id = ?");
    set_key.bind(1, key_hash);
    set_key.bind(2, runner_id);
    set_key.exec();
    SQLite::Statement deliver(db_, "UPDATE enrollments SET status = 'delivered' WHERE id = ?");
    deliver.bind(1, enrollment_id);
    deliver.exec();
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<Runner>> SqliteIndex::ListRunners() {
  return Locked("ListRunners", [&]() -> absl::StatusOr<std::vector<Runner>> {
    SQLite::Statement q(db_, R"sql(
      SELECT id, name, status, hostname, os, machine_id, agent_version, runtime_state, current_run,
             api_key_hash IS NOT NULL, jobs_version, created_at, approved_at, last_heartbeat_at,
             last_activity_at
      FROM runners ORDER BY name)sql");
    std::vector<Runner> runners;
    while (q.executeStep()) runners.push_back(RunnerFromRow(q));
    return runners;
  });
}

absl::StatusOr<Runner> SqliteIndex::GetRunnerByName(const std::string& name) {
  return Locked("GetRunnerByName", [&]() -> absl::StatusOr<Runner> {
    SQLite::Statement q(db_, "SELECT id FROM runners WHERE name = ?");
    q.bind(1, name);
    if (!q.executeStep()) {
      return absl::NotFoundError(absl::StrCat("runner \"", name, "\" not found"));
    }
    return LoadRunner(q.getColumn(0).getInt64());
  });
}

absl::StatusOr<Runner> SqliteIndex::GetRunnerById(int64_t id) {
  return Locked("GetRunnerById", [&]() -> absl::StatusOr<Runner> { return LoadRunner(id); });
}

absl::StatusOr<Runner> SqliteIndex::FindRunnerByKeyHash(const std::string& key_hash) {
  return Locked("FindRunnerByKeyHash", [&]() -> absl::StatusOr<Runner> {
    // Only an approved runner's key authenticates, whatever the status change left behind.
    SQLite::Statement q(db_,
                        "SELECT id FROM runners WHERE api_key_hash = ? AND status = 'approved'");
    q.bind(1, key_hash);
    if (!q.executeStep()) return absl::NotFoundError("no approved runner has this key");
    return LoadRunner(q.getColumn(0).getInt64());
  });
}

absl::Status SqliteIndex::TransitionRunner(int64_t runner_id, const std::string& from,
                                           const std::string& to, int64_t now_ms) {
  if (!IsRunnerStatus(to)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown runner status \"", to, "\""));
  }
  return Locked("TransitionRunner", [&]() -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement cas(db_, R"sql(
      UPDATE runners
      SET status = ?1,
          approved_at = CASE WHEN ?1 = 'approved' THEN ?2 ELSE approved_at END,
          api_key_hash = CASE WHEN ?1 = 'revoked' THEN NULL ELSE api_key_hash END
      WHERE id = ?3 AND status = ?4)sql");
    cas.bind(1, to);
    cas.bind(2, now_ms);
    cas.bind(3, runner_id);
    cas.bind(4, from);
    if (cas.exec() == 0) {
      SQLite::Statement q(db_, "SELECT status FROM runners WHERE id = ?");
      q.bind(1, runner_id);
      if (!q.executeStep()) {
        return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
      }
      return absl::FailedPreconditionError(
          absl::StrCat("runner ", runner_id, " is ", q.getColumn(0).getString(), ", not ", from));
    }
    if (to == "approved" || to == "rejected") {
      SQLite::Statement live(db_, R"sql(
        UPDATE enrollments SET status = ? WHERE runner_id = ? AND status = 'pending')sql");
      live.bind(1, to);
      live.bind(2, runner_id);
      live.exec();
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status SqliteIndex::RecordHeartbeat(int64_t runner_id, const std::string& agent_version,
                                          const std::string& runtime_state,
                                          const std::string& current_run, int64_t now_ms) {
  return Locked("RecordHeartbeat", [&]() -> absl::Status {
    SQLite::Transaction tx(db_);
    // An empty agent_version keeps the one reported at registration.
    SQLite::Statement update(db_, R"sql(
      UPDATE runners
      SET agent_version = CASE WHEN ?1 = '' THEN agent_version ELSE ?1 END,
          runtime_state = ?2, current_run = ?3, last_heartbeat_at = ?4
      WHERE id = ?5)sql");
    update.bind(1, agent_version);
    update.bind(2, runtime_state);
    update.bind(3, current_run);
    update.bind(4, now_ms);
    update.bind(5, runner_id);
    if (update.exec() == 0) {
      return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
    }
    tx.commit();
    return absl::OkStatus();
  });
}

// ---- jobs ---------------------------------------------------------------------------------------

absl::StatusOr<Job> SqliteIndex::PutJob(int64_t runner_id, const protocol::JobSpec& spec,
                                        bool replace, int64_t now_ms) {
  if (spec.name.empty()) return absl::InvalidArgumentError("PutJob: empty job name");
  return Locked("PutJob", [&]() -> absl::StatusOr<Job> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    if (!RunnerExists(runner_id)) {
      return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
    }
    int64_t job_id = 0;
    {
      SQLite::Statement find(db_, "SELECT id FROM jobs WHERE runner_id = ? AND name = ?");
      find.bind(1, runner_id);
      find.bind(2, spec.name);
      if (find.executeStep()) job_id = find.getColumn(0).getInt64();
    }
    if (job_id != 0 && !replace) {
      return absl::AlreadyExistsError(
          absl::StrCat("runner ", runner_id, " already has a job named \"", spec.name, "\""));
    }
    if (job_id != 0) {
      SQLite::Statement update(db_, R"sql(
        UPDATE jobs
        SET source = ?, dest_prefix = ?, includes = ?, excludes = ?, interval_ms = ?,
            settle_ms = ?, enabled = ?
        WHERE id = ?)sql");
      update.bind(1, spec.source);
      update.bind(2, spec.dest_prefix);
      update.bind(3, ToJsonArray(spec.includes));
      update.bind(4, ToJsonArray(spec.excludes));
      update.bind(5, spec.interval_ms);
      update.bind(6, spec.settle_ms);
      update.bind(7, spec.enabled ? 1 : 0);
      update.bind(8, job_id);
      update.exec();
    } else {
      SQLite::Statement insert(db_, R"sql(
        INSERT INTO jobs (runner_id, name, source, dest_prefix, includes, excludes, interval_ms,
                          settle_ms, enabled, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?))sql");
      insert.bind(1, runner_id);
      insert.bind(2, spec.name);
      insert.bind(3, spec.source);
      insert.bind(4, spec.dest_prefix);
      insert.bind(5, ToJsonArray(spec.includes));
      insert.bind(6, ToJsonArray(spec.excludes));
      insert.bind(7, spec.interval_ms);
      insert.bind(8, spec.settle_ms);
      insert.bind(9, spec.enabled ? 1 : 0);
      insert.bind(10, now_ms);
      insert.exec();
      job_id = db_.getLastInsertRowid();
    }
    SQLite::Statement bump(db_, "UPDATE runners SET jobs_version = jobs_version + 1 WHERE id = ?");
    bump.bind(1, runner_id);
    bump.exec();
    DS_ASSIGN_OR_RETURN(Job job, LoadJob(job_id));
    tx.commit();
    return job;
  });
}

absl::StatusOr<Job> SqliteIndex::GetJob(int64_t runner_id, const std::string& name) {
  return Locked("GetJob", [&]() -> absl::StatusOr<Job> {
    SQLite::Statement q(db_, "SELECT id FROM jobs WHERE runner_id = ? AND name = ?");
    q.bind(1, runner_id);
    q.bind(2, name);
    if (!q.executeStep()) {
      return absl::NotFoundError(
          absl::StrCat("runner ", runner_id, " has no job named \"", name, "\""));
    }
    return LoadJob(q.getColumn(0).getInt64());
  });
}

absl::StatusOr<Job> SqliteIndex::GetJobById(int64_t job_id) {
  return Locked("GetJobById", [&]() -> absl::StatusOr<Job> { return LoadJob(job_id); });
}

absl::StatusOr<std::vector<Job>> SqliteIndex::ListJobs(std::optional<int64_t> runner_id) {
  return Locked("ListJobs", [&]() -> absl::StatusOr<std::vector<Job>> {
    SQLite::Statement q(db_, R"sql(
      SELECT j.id, j.runner_id, r.name, j.name, j.source, j.dest_prefix, j.includes, j.excludes,
             j.interval_ms, j.settle_ms, j.enabled, j.created_at
      FROM jobs j JOIN runners r ON r.id = j.runner_id
      WHERE ?1 IS NULL OR j.runner_id = ?1
      ORDER BY r.name, j.name)sql");
    if (runner_id) q.bind(1, *runner_id);
    std::vector<Job> jobs;
    while (q.executeStep()) jobs.push_back(JobFromRow(q));
    return jobs;
  });
}

absl::Status SqliteIndex::DeleteJob(int64_t job_id) {
  return Locked("DeleteJob", [&]() -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    int64_t runner_id = 0;
    {
      SQLite::Statement find(db_, "SELECT runner_id FROM jobs WHERE id = ?");
      find.bind(1, job_id);
      if (!find.executeStep()) {
        return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
      }
      runner_id = find.getColumn(0).getInt64();
    }
    SQLite::Statement run_files(db_, R"sql(
      DELETE FROM run_files WHERE run_id IN (SELECT id FROM sync_runs WHERE job_id = ?))sql");
    run_files.bind(1, job_id);
    run_files.exec();
    SQLite::Statement synced(db_, "DELETE FROM synced_files WHERE job_id = ?");
    synced.bind(1, job_id);
    synced.exec();
    // sync_runs.job_id becomes NULL (ON DELETE SET NULL); the runs keep job_name.
    SQLite::Statement job(db_, "DELETE FROM jobs WHERE id = ?");
    job.bind(1, job_id);
    job.exec();
    SQLite::Statement bump(db_, "UPDATE runners SET jobs_version = jobs_version + 1 WHERE id = ?");
    bump.bind(1, runner_id);
    bump.exec();
    tx.commit();
    return absl::OkStatus();
  });
}

// ---- runs ---------------------------------------------------------------------------------------

absl::StatusOr<Run> SqliteIndex::BeginRun(const std::string& run_id, int64_t runner_id,
                                          int64_t job_id, const std::string& trigger,
                                          int64_t now_ms) {
  if (run_id.empty()) return absl::InvalidArgumentError("BeginRun: empty run id");
  return Locked("BeginRun", [&]() -> absl::StatusOr<Run> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    {
      SQLite::Statement existing(db_,
                                 "SELECT runner_id, job_id, state FROM sync_runs WHERE id = ?");
      existing.bind(1, run_id);
      if (existing.executeStep()) {
        const bool same = existing.getColumn(0).getInt64() == runner_id &&
                          !existing.getColumn(1).isNull() &&
                          existing.getColumn(1).getInt64() == job_id;
        const std::string state = existing.getColumn(2).getString();
        if (!same) {
          return absl::FailedPreconditionError(
              absl::StrCat("run ", run_id, " belongs to another runner or job"));
        }
        if (state != "running") {
          return absl::FailedPreconditionError(absl::StrCat("run ", run_id, " is ", state));
        }
        return LoadRun(run_id);
      }
    }
    std::string job_name;
    {
      SQLite::Statement job(db_, "SELECT runner_id, name FROM jobs WHERE id = ?");
      job.bind(1, job_id);
      if (!job.executeStep()) {
        return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
      }
      if (job.getColumn(0).getInt64() != runner_id) {
        return absl::InvalidArgumentError(
            absl::StrCat("job ", job_id, " does not belong to runner ", runner_id));
      }
      job_name = job.getColumn(1).getString();
    }
    SQLite::Statement insert(db_, R"sql(
      INSERT INTO sync_runs (id, runner_id, job_id, job_name, state, "trigger", started_at)
      VALUES (?, ?, ?, ?, 'running', ?, ?))sql");
    insert.bind(1, run_id);
    insert.bind(2, runner_id);
    insert.bind(3, job_id);
    insert.bind(4, job_name);
    insert.bind(5, trigger);
    insert.bind(6, now_ms);
    insert.exec();
    DS_ASSIGN_OR_RETURN(Run run, LoadRun(run_id));
    tx.commit();
    return run;
  });
}

absl::StatusOr<std::vector<SyncedFile>> SqliteIndex::LookupSyncedFiles(
    int64_t job_id, const std::vector<std::string>& paths) {
  return Locked("LookupSyncedFiles", [&]() -> absl::StatusOr<std::vector<SyncedFile>> {
    // One read transaction: a consistent snapshot and one lock acquisition for the whole batch.
    SQLite::Transaction tx(db_);
    SQLite::Statement q(db_, R"sql(
      SELECT job_id, path, size, mtime_ns, sha256, synced_at, run_id
      FROM synced_files WHERE job_id = ? AND path = ?)sql");
    std::vector<SyncedFile> found;
    for (const std::string& path : paths) {
      q.reset();
      q.bind(1, job_id);
      q.bind(2, path);
      if (q.executeStep()) found.push_back(SyncedFileFromRow(q));
    }
    q.reset();
    tx.commit();
    return found;
  });
}

absl::Status SqliteIndex::RecordPlanned(const std::string& run_id,
                                        const std::vector<RunFile>& planned, int64_t total_files,
                                        int64_t total_bytes) {
  for (const RunFile& f : planned) {
    if (f.path.empty() || f.planned_reason.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "RecordPlanned: path and planned_reason are required (path \"", f.path, "\")"));
    }
  }
  return Locked("RecordPlanned", [&]() -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    DS_RETURN_IF_ERROR(LoadRunningRun(run_id).status());
    SQLite::Statement upsert(db_, R"sql(
      INSERT INTO run_files (run_id, path, planned_reason, size, sha256) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (run_id, path) DO UPDATE
      SET planned_reason = excluded.planned_reason, size = excluded.size,
          sha256 = excluded.sha256)sql");
    for (const RunFile& f : planned) {
      upsert.reset();
      upsert.bind(1, run_id);
      upsert.bind(2, f.path);
      upsert.bind(3, f.planned_reason);
      upsert.bind(4, static_cast<int64_t>(f.size));
      upsert.bind(5, f.sha256);
      upsert.exec();
    }
    SQLite::Statement totals(db_, R"sql(
      UPDATE sync_runs
      SET files_planned = (SELECT COUNT(*) FROM run_files
                           WHERE run_id = ?1 AND planned_reason <> ''),
          files_seen = CASE WHEN ?2 >= 0 THEN ?2 ELSE files_seen END,
          bytes_seen = CASE WHEN ?3 >= 0 THEN ?3 ELSE bytes_seen END
      WHERE id = ?1)sql");
    totals.bind(1, run_id);
    totals.bind(2, total_files);
    totals.bind(3, total_bytes);
    totals.exec();
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<uint64_t> SqliteIndex::RecordResults(
    const std::string& run_id, const std::vector<protocol::FileResult>& results, int64_t now_ms) {
  for (const protocol::FileResult& r : results) {
    if (r.path.empty() || !IsFileResult(r.status)) {
      return absl::InvalidArgumentError(
          absl::StrCat("RecordResults: bad result \"", r.status, "\" for path \"", r.path, "\""));
    }
  }
  return Locked("RecordResults", [&]() -> absl::StatusOr<uint64_t> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    DS_ASSIGN_OR_RETURN(const RunningRun run, LoadRunningRun(run_id));
    SQLite::Statement previous(
        db_, "SELECT planned_reason, result, size FROM run_files WHERE run_id = ? AND path = ?");
    // run_files.size holds the planned size until the file is uploaded, then the uploaded size,
    // which is what bytes_uploaded must give back if the result later changes.
    SQLite::Statement update(db_, R"sql(
      UPDATE run_files
      SET result = ?1, error = ?2, kept_version = ?3,
          size = CASE WHEN ?1 = 'uploaded' THEN ?4 ELSE size END
      WHERE run_id = ?5 AND path = ?6)sql");
    SQLite::Statement insert_skipped(db_, R"sql(
      INSERT INTO run_files (run_id, path, size, result, error) VALUES (?, ?, ?, 'skipped', ?))sql");
    SQLite::Statement upsert_synced(db_, R"sql(
      INSERT INTO synced_files (job_id, path, size, mtime_ns, sha256, synced_at, run_id)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (job_id, path) DO UPDATE
      SET size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
          synced_at = excluded.synced_at, run_id = excluded.run_id)sql");

    int64_t d_uploaded = 0, d_failed = 0, d_skipped = 0, d_bytes = 0;
    uint64_t applied = 0;
    bool any_uploaded = false;
    for (const protocol::FileResult& r : results) {
      previous.reset();
      previous.bind(1, run_id);
      previous.bind(2, r.path);
      const bool has_row = previous.executeStep();
      const bool planned = has_row && !previous.getColumn(0).getString().empty();
      const std::string old_result = has_row ? previous.getColumn(1).getString() : "";
      const int64_t old_size = has_row ? previous.getColumn(2).getInt64() : 0;
      previous.reset();

      if (r.status != "skipped" && !planned) {
        return absl::InvalidArgumentError(absl::StrCat("run ", run_id, ": result \"", r.status,
                                                       "\" for unplanned path \"", r.path, "\""));
      }
      if (r.status == old_result) continue;
      if (r.status == "uploaded" && run.job_id == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("the job of run ", run_id, " has been deleted"));
      }

      if (old_result == "uploaded") {
        --d_uploaded;
        d_bytes -= old_size;
      } else if (old_result == "failed") {
        --d_failed;
      } else if (old_result == "skipped") {
        --d_skipped;
      }
      if (r.status == "uploaded") {
        ++d_uploaded;
        d_bytes += static_cast<int64_t>(r.size);
      } else if (r.status == "failed") {
        ++d_failed;
      } else {
        ++d_skipped;
      }

      if (has_row) {
        update.reset();
        update.bind(1, r.status);
        update.bind(2, r.error);
        update.bind(3, r.kept_version);
        update.bind(4, static_cast<int64_t>(r.size));
        update.bind(5, run_id);
        update.bind(6, r.path);
        update.exec();
      } else {
        insert_skipped.reset();
        insert_skipped.bind(1, run_id);
        insert_skipped.bind(2, r.path);
        insert_skipped.bind(3, static_cast<int64_t>(r.size));
        insert_skipped.bind(4, r.error);
        insert_skipped.exec();
      }
      if (r.status == "uploaded") {
        upsert_synced.reset();
        upsert_synced.bind(1, run.job_id);
        upsert_synced.bind(2, r.path);
        upsert_synced.bind(3, static_cast<int64_t>(r.size));
        upsert_synced.bind(4, r.mtime_ns);
        upsert_synced.bind(5, r.sha256);
        upsert_synced.bind(6, now_ms);
        upsert_synced.bind(7, run_id);
        upsert_synced.exec();
        any_uploaded = true;
      }
      ++applied;
    }

    if (applied > 0) {
      SQLite::Statement counters(db_, R"sql(
        UPDATE sync_runs
        SET files_uploaded = files_uploaded + ?, files_failed = files_failed + ?,
            files_skipped = files_skipped + ?, bytes_uploaded = bytes_uploaded + ?
        WHERE id = ?)sql");
      counters.bind(1, d_uploaded);
      counters.bind(2, d_failed);
      counters.bind(3, d_skipped);
      counters.bind(4, d_bytes);
      counters.bind(5, run_id);
      counters.exec();
    }
    if (any_uploaded) {
      SQLite::Statement activity(db_, R"sql(
        UPDATE runners SET last_activity_at = MAX(last_activity_at, ?) WHERE id = ?)sql");
      activity.bind(1, now_ms);
      activity.bind(2, run.runner_id);
      activity.exec();
    }
    tx.commit();
    return applied;
  });
}

absl::StatusOr<Run> SqliteIndex::FinishRun(const std::string& run_id, const std::string& state,
                                           const std::string& error, int64_t now_ms) {
  if (!IsFinalRunState(state)) {
    return absl::InvalidArgumentError(absl::StrCat("FinishRun: bad final state \"", state, "\""));
  }
  return Locked("FinishRun", [&]() -> absl::StatusOr<Run> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    std::string current;
    {
      SQLite::Statement q(db_, "SELECT state FROM sync_runs WHERE id = ?");
      q.bind(1, run_id);
      if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("run ", run_id, " not found"));
      current = q.getColumn(0).getString();
    }
    if (current == "running") {
      SQLite::Statement close(
          db_, "UPDATE sync_runs SET state = ?, error = ?, finished_at = ? WHERE id = ?");
      close.bind(1, state);
      close.bind(2, error);
      close.bind(3, now_ms);
      close.bind(4, run_id);
      close.exec();
    } else if (current != state) {
      return absl::FailedPreconditionError(
          absl::StrCat("run ", run_id, " is already ", current, ", cannot become ", state));
    }
    DS_ASSIGN_OR_RETURN(Run run, LoadRun(run_id));
    tx.commit();
    return run;
  });
}

absl::StatusOr<Run> SqliteIndex::GetRun(const std::string& run_id) {
  return Locked("GetRun", [&]() -> absl::StatusOr<Run> { return LoadRun(run_id); });
}

absl::StatusOr<std::vector<Run>> SqliteIndex::ListRuns(const RunFilter& filter) {
  if (filter.limit < 1) return absl::InvalidArgumentError("ListRuns: limit must be positive");
  return Locked("ListRuns", [&]() -> absl::StatusOr<std::vector<Run>> {
    // Only the filters given become conditions, so SQLite can use the (runner|job, started_at)
    // indexes.
    std::string sql = R"sql(
      SELECT s.id, s.runner_id, r.name, s.job_id, s.job_name, s.state, s."trigger", s.files_seen,
             s.files_planned, s.files_uploaded, s.files_failed, s.files_skipped, s.bytes_seen,
             s.bytes_uploaded, s.started_at, s.finished_at, s.error
      FROM sync_runs s JOIN runners r ON r.id = s.runner_id
      WHERE 1 = 1)sql";
    if (filter.runner_id) sql += " AND s.runner_id = :runner_id";
    if (filter.job_id) sql += " AND s.job_id = :job_id";
    if (filter.state) sql += " AND s.state = :state";
    sql += " ORDER BY s.started_at DESC, s.rowid DESC LIMIT :limit";
    SQLite::Statement q(db_, sql);
    if (filter.runner_id) q.bind(":runner_id", *filter.runner_id);
    if (filter.job_id) q.bind(":job_id", *filter.job_id);
    if (filter.state) q.bind(":state", *filter.state);
    q.bind(":limit", std::min(filter.limit, kMaxRunsPerPage));
    std::vector<Run> runs;
    while (q.executeStep()) runs.push_back(RunFromRow(q));
    return runs;
  });
}

absl::StatusOr<std::vector<RunFile>> SqliteIndex::ListRunFiles(const std::string& run_id,
                                                               const std::string& after_path,
                                                               int limit) {
  if (limit < 1) return absl::InvalidArgumentError("ListRunFiles: limit must be positive");
  return Locked("ListRunFiles", [&]() -> absl::StatusOr<std::vector<RunFile>> {
    SQLite::Transaction tx(db_);
    {
      SQLite::Statement run(db_, "SELECT 1 FROM sync_runs WHERE id = ?");
      run.bind(1, run_id);
      if (!run.executeStep()) {
        return absl::NotFoundError(absl::StrCat("run ", run_id, " not found"));
      }
    }
    SQLite::Statement q(db_, R"sql(
      SELECT path, planned_reason, size, sha256, result, error, kept_version
      FROM run_files WHERE run_id = ? AND path > ?
      ORDER BY path LIMIT ?)sql");
    q.bind(1, run_id);
    q.bind(2, after_path);
    q.bind(3, std::min(limit, kMaxFilesPerPage));
    std::vector<RunFile> files;
    while (q.executeStep()) {
      RunFile f;
      f.path = q.getColumn(0).getString();
      f.planned_reason = q.getColumn(1).getString();
      f.size = static_cast<uint64_t>(q.getColumn(2).getInt64());
      f.sha256 = q.getColumn(3).getString();
      f.result = q.getColumn(4).getString();
      f.error = q.getColumn(5).getString();
      f.kept_version = q.getColumn(6).getString();
      files.push_back(std::move(f));
    }
    q.reset();
    tx.commit();
    return files;
  });
}

// ---- synced files -------------------------------------------------------------------------------

absl::StatusOr<std::vector<SyncedFile>> SqliteIndex::ListSyncedFiles(int64_t job_id,
                                                                     const std::string& after_path,
                                                                     int limit) {
  if (limit < 1) return absl::InvalidArgumentError("ListSyncedFiles: limit must be positive");
  return Locked("ListSyncedFiles", [&]() -> absl::StatusOr<std::vector<SyncedFile>> {
    SQLite::Transaction tx(db_);
    if (!JobExists(job_id)) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    SQLite::Statement q(db_, R"sql(
      SELECT job_id, path, size, mtime_ns, sha256, synced_at, run_id
      FROM synced_files WHERE job_id = ? AND path > ?
      ORDER BY path LIMIT ?)sql");
    q.bind(1, job_id);
    q.bind(2, after_path);
    q.bind(3, std::min(limit, kMaxFilesPerPage));
    std::vector<SyncedFile> files;
    while (q.executeStep()) files.push_back(SyncedFileFromRow(q));
    q.reset();
    tx.commit();
    return files;
  });
}

absl::StatusOr<int64_t> SqliteIndex::CountSyncedFiles(int64_t job_id) {
  return Locked("CountSyncedFiles", [&]() -> absl::StatusOr<int64_t> {
    SQLite::Transaction tx(db_);
    if (!JobExists(job_id)) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    int64_t count = 0;
    {
      SQLite::Statement q(db_, "SELECT COUNT(*) FROM synced_files WHERE job_id = ?");
      q.bind(1, job_id);
      q.executeStep();
      count = q.getColumn(0).getInt64();
    }
    tx.commit();
    return count;
  });
}

// ---- commands -----------------------------------------------------------------------------------

absl::StatusOr<protocol::Command> SqliteIndex::EnqueueCommand(int64_t runner_id,
                                                              const std::string& type,
                                                              const std::string& job,
                                                              const std::string& run_id,
                                                              int64_t now_ms) {
  if (type.empty()) return absl::InvalidArgumentError("EnqueueCommand: empty command type");
  return Locked("EnqueueCommand", [&]() -> absl::StatusOr<protocol::Command> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    if (!RunnerExists(runner_id)) {
      return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
    }
    SQLite::Statement insert(db_, R"sql(
      INSERT INTO commands (runner_id, type, job_name, run_id, state, created_at)
      VALUES (?, ?, ?, ?, 'pending', ?))sql");
    insert.bind(1, runner_id);
    insert.bind(2, type);
    insert.bind(3, job);
    insert.bind(4, run_id);
    insert.bind(5, now_ms);
    insert.exec();
    protocol::Command command;
    command.id = db_.getLastInsertRowid();
    command.type = type;
    command.job = job;
    command.run_id = run_id;
    tx.commit();
    return command;
  });
}

absl::StatusOr<std::vector<protocol::Command>> SqliteIndex::TakeCommands(int64_t runner_id) {
  return Locked("TakeCommands", [&]() -> absl::StatusOr<std::vector<protocol::Command>> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    std::vector<protocol::Command> commands;
    {
      SQLite::Statement q(db_, R"sql(
        SELECT id, type, job_name, run_id FROM commands
        WHERE runner_id = ? AND state = 'pending' ORDER BY id)sql");
      q.bind(1, runner_id);
      while (q.executeStep()) {
        protocol::Command c;
        c.id = q.getColumn(0).getInt64();
        c.type = q.getColumn(1).getString();
        c.job = q.getColumn(2).getString();
        c.run_id = q.getColumn(3).getString();
        commands.push_back(std::move(c));
      }
    }
    if (!commands.empty()) {
      // The write lock is held since the SELECT, so this marks exactly the rows read.
      SQLite::Statement mark(db_, R"sql(
        UPDATE commands SET state = 'delivered' WHERE runner_id = ? AND state = 'pending')sql");
      mark.bind(1, runner_id);
      mark.exec();
    }
    tx.commit();
    return commands;
  });
}

// ---- admin tokens -------------------------------------------------------------------------------

absl::StatusOr<AdminToken> SqliteIndex::CreateAdminToken(const std::string& name,
                                                         const std::string& role,
                                                         const std::string& token_hash,
                                                         int64_t now_ms) {
  if (role != "admin" && role != "viewer") {
    return absl::InvalidArgumentError(absl::StrCat("unknown admin token role \"", role, "\""));
  }
  if (token_hash.empty()) return absl::InvalidArgumentError("CreateAdminToken: empty token hash");
  return Locked("CreateAdminToken", [&]() -> absl::StatusOr<AdminToken> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement insert(db_, R"sql(
      INSERT INTO admin_tokens (name, role, token_hash, created_at) VALUES (?, ?, ?, ?))sql");
    insert.bind(1, name);
    insert.bind(2, role);
    insert.bind(3, token_hash);
    insert.bind(4, now_ms);
    insert.exec();
    AdminToken token;
    token.id = db_.getLastInsertRowid();
    token.name = name;
    token.role = role;
    token.created_at_ms = now_ms;
    tx.commit();
    return token;
  });
}

absl::StatusOr<AdminToken> SqliteIndex::FindAdminToken(const std::string& token_hash) {
  return Locked("FindAdminToken", [&]() -> absl::StatusOr<AdminToken> {
    SQLite::Statement q(db_, R"sql(
      SELECT id, name, role, created_at, revoked_at FROM admin_tokens
      WHERE token_hash = ? AND revoked_at = 0)sql");
    q.bind(1, token_hash);
    if (!q.executeStep()) return absl::NotFoundError("no active admin token has this hash");
    return AdminTokenFromRow(q);
  });
}

absl::StatusOr<int64_t> SqliteIndex::CountAdminTokens() {
  return Locked("CountAdminTokens", [&]() -> absl::StatusOr<int64_t> {
    SQLite::Statement q(db_, "SELECT COUNT(*) FROM admin_tokens WHERE revoked_at = 0");
    q.executeStep();
    return q.getColumn(0).getInt64();
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<StateIndex>> OpenSqliteIndex(const std::string& path) {
  try {
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, kBusyTimeoutMs);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec("PRAGMA foreign_keys = ON");
    return std::make_unique<SqliteIndex>(std::move(db));
  } catch (const SQLite::Exception& e) {
    return FromSqliteException(absl::StrCat("opening SQLite index ", path), e);
  }
}

}  // namespace ds
