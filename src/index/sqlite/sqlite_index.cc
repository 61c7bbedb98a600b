// SQLite implementation of StateIndex: one connection, serialised by a mutex. Every exception from
// SQLiteCpp (and nlohmann/json) is converted to an absl::Status here and never leaves this file.
#include "index/sqlite/sqlite_index.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <SQLiteCpp/VariadicBind.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mutex.h"
#include "common/periodic_worker.h"
#include "common/time_util.h"
#include "index/migrations.h"
#include "platform/error.h"
#include "platform/file.h"

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
  return ParseJsonOr(text).get<std::vector<std::string>>();
}

// The one column list for Runner rows (RunnerFromRow reads it in this order): every column of
// runners, whether a key is set, and whether a registration is waiting on the runner (pending,
// or a replacement request on an enrolled one).
constexpr char kRunnerColumns[] = R"sql(
  id, name, CASE WHEN status = 'approved' AND quarantined_at > 0 THEN 'quarantined' ELSE status END,
  hostname, os, machine_id, agent_version, runtime_state, current_run,
  api_key_hash IS NOT NULL, jobs_version, created_at, approved_at, last_heartbeat_at,
  last_activity_at,
  EXISTS (SELECT 1 FROM enrollments e WHERE e.runner_id = runners.id AND e.status = 'pending'),
  health, COALESCE((SELECT g.name FROM runner_groups g WHERE g.id = runners.group_id), ''),
  rotate_requested_at > 0)sql";

// "SELECT <runner columns> FROM runners <tail>".
std::string RunnerQuery(const char* tail) {
  return std::string("SELECT ") + kRunnerColumns + " FROM runners " + tail;
}

// Columns: kRunnerColumns.
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
  r.pending_enrollment = s.getColumn(15).getInt() != 0;
  r.health_json = s.getColumn(16).getString();
  r.group = s.getColumn(17).getString();
  r.key_rotation_pending = s.getColumn(18).getInt() != 0;
  return r;
}

// The one column list for Enrollment rows (EnrollmentFromRow reads it in this order).
constexpr char kEnrollmentColumns[] = R"sql(
  id, runner_id, secret_hash, status, created_at, hostname, os, machine_id, agent_version,
  address)sql";

// Columns: kEnrollmentColumns.
Enrollment EnrollmentFromRow(const SQLite::Statement& s) {
  Enrollment e;
  e.id = s.getColumn(0).getString();
  e.runner_id = s.getColumn(1).getInt64();
  e.secret_hash = s.getColumn(2).getString();
  e.status = s.getColumn(3).getString();
  e.created_at_ms = s.getColumn(4).getInt64();
  e.hostname = s.getColumn(5).getString();
  e.os = s.getColumn(6).getString();
  e.machine_id = s.getColumn(7).getString();
  e.agent_version = s.getColumn(8).getString();
  e.address = s.getColumn(9).getString();
  return e;
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

// Columns: path, planned_reason, size, sha256, result, error, kept_version.
RunFile RunFileFromRow(const SQLite::Statement& s) {
  RunFile f;
  f.path = s.getColumn(0).getString();
  f.planned_reason = s.getColumn(1).getString();
  f.size = static_cast<uint64_t>(s.getColumn(2).getInt64());
  f.sha256 = s.getColumn(3).getString();
  f.result = s.getColumn(4).getString();
  f.error = s.getColumn(5).getString();
  f.kept_version = s.getColumn(6).getString();
  return f;
}

// Columns: id, name, role, created_at, revoked_at, created_by.
AdminToken AdminTokenFromRow(const SQLite::Statement& s) {
  AdminToken t;
  t.id = s.getColumn(0).getInt64();
  t.name = s.getColumn(1).getString();
  t.role = s.getColumn(2).getString();
  t.created_at_ms = s.getColumn(3).getInt64();
  t.revoked_at_ms = s.getColumn(4).getInt64();
  t.created_by = s.getColumn(5).getString();
  return t;
}

// Columns: id, name, role, password_hash, created_at, updated_at, last_login_at.
User UserFromRow(const SQLite::Statement& s) {
  User u;
  u.id = s.getColumn(0).getInt64();
  u.name = s.getColumn(1).getString();
  u.role = s.getColumn(2).getString();
  u.password_hash = s.getColumn(3).getString();
  u.created_at_ms = s.getColumn(4).getInt64();
  u.updated_at_ms = s.getColumn(5).getInt64();
  u.last_login_at_ms = s.getColumn(6).getInt64();
  return u;
}

// Columns: id, at, actor, action, target, result, details, source_ip.
AuditEntry AuditFromRow(const SQLite::Statement& s) {
  AuditEntry e;
  e.id = s.getColumn(0).getInt64();
  e.at_ms = s.getColumn(1).getInt64();
  e.actor = s.getColumn(2).getString();
  e.action = s.getColumn(3).getString();
  e.target = s.getColumn(4).getString();
  e.result = s.getColumn(5).getString();
  e.details_json = s.getColumn(6).getString();
  e.source_ip = s.getColumn(7).getString();
  return e;
}

// The index holds key, token and password hashes, the audit and every file's name: only the
// server's account may read it, whatever the umask and wherever it lives. Creates `path` 0600 if
// it is missing and takes group and other bits off it and its -wal and -shm (which SQLite then
// creates with the database file's mode). In-memory and URI databases are left alone.
absl::Status KeepIndexFilesPrivate(const std::string& path) {
  if (path.empty() || path == ":memory:" || path.rfind("file:", 0) == 0) return absl::OkStatus();
  const absl::StatusOr<platform::File> created = platform::File::Open(
      path, {.access = platform::Access::kReadWrite,
             .disposition = platform::Disposition::kOpenOrCreate,
             .permissions = 0600});
  if (!created.ok()) {  // as SQLite's own "cannot open" would be
    return absl::UnavailableError(
        absl::StrCat("opening SQLite index ", path, ": ", created.status().message()));
  }
  for (const std::string& file : {path, path + "-wal", path + "-shm"}) {
    struct stat st {};
    if (::lstat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0) continue;
    if (::chmod(file.c_str(), st.st_mode & 0700) != 0) {
      return platform::ErrnoToStatus(errno,
                                     absl::StrCat("making ", file, " readable by its owner only"));
    }
    spdlog::warn("{} was readable by others (mode {:o}); it is now {:o}", file, st.st_mode & 0777,
                 st.st_mode & 0700);
  }
  return absl::OkStatus();
}

// The run a batch of plan or results belongs to.
struct RunningRun {
  int64_t runner_id = 0;
  int64_t job_id = 0;  // 0 once the job is deleted
};

// Moves WAL frames into the database file from its own connection, once a second, so that the
// fsyncs of a checkpoint never run inside a request's commit (SQLite's automatic checkpoint runs
// in whichever commit crosses the threshold, holding the connection every request shares: with
// a large fleet that was a stall of up to a second every few seconds). PASSIVE: it never waits
// for, nor blocks, readers and writers; a TRUNCATE checkpoint runs at shutdown.
class Checkpointer {
 public:
  explicit Checkpointer(const std::string& path)
      : db_(path, SQLite::OPEN_READWRITE, kBusyTimeoutMs),
        worker_({.name = "sqlite-ckpt", .interval = std::chrono::seconds(1)}, [this] { Passive(); }) {}
  ~Checkpointer() {
    worker_.Stop();
    try {
      db_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch (const SQLite::Exception& e) {
      spdlog::warn("SQLite index: final checkpoint: {}", e.what());
    }
  }

 private:
  void Passive() {
    try {
      db_.exec("PRAGMA wal_checkpoint(PASSIVE)");
    } catch (const SQLite::Exception& e) {
      spdlog::warn("SQLite index: checkpoint: {}", e.what());
    }
  }

  SQLite::Database db_;    // used by worker_ only (and the destructor after it stopped)
  PeriodicWorker worker_;  // last: stops before db_ closes
};

// Forgets the job's manifest digest (its synced files change). REQUIRES: inside a transaction.
void ForgetJobManifest(SQLite::Database& db, int64_t job_id) {
  SQLite::Statement q(db, "DELETE FROM job_manifests WHERE job_id = ?");
  q.bind(1, job_id);
  q.exec();
}

class SqliteIndex final : public StateIndex {
 public:
  explicit SqliteIndex(SQLite::Database db, std::unique_ptr<Checkpointer> checkpointer = nullptr)
      : db_(std::move(db)), checkpointer_(std::move(checkpointer)) {}

  absl::Status Migrate() override;
  absl::StatusOr<int> SchemaVersion() override;
  int LatestKnownSchemaVersion() const override;
  absl::Status Ping() override;

  absl::StatusOr<Runner> RegisterRunner(const RegisterInfo& info, const std::string& enrollment_id,
                                        const std::string& secret_hash, int64_t now_ms) override;
  absl::StatusOr<Enrollment> GetEnrollment(const std::string& id) override;
  absl::StatusOr<Runner> CreatePendingRunner(const std::string& name, int64_t now_ms) override;
  absl::StatusOr<std::vector<Enrollment>> ListPendingEnrollments(int64_t runner_id) override;
  absl::Status DecideEnrollment(int64_t runner_id, const std::string& enrollment_id, bool approve,
                                int64_t now_ms) override;
  absl::Status DeleteRunner(int64_t runner_id) override;
  absl::Status DeliverKey(const std::string& enrollment_id, const std::string& key_hash) override;
  absl::StatusOr<std::vector<Runner>> ListRunners() override;
  absl::StatusOr<Runner> GetRunnerByName(const std::string& name) override;
  absl::StatusOr<Runner> GetRunnerById(int64_t id) override;
  absl::StatusOr<Runner> FindRunnerByKeyHash(const std::string& key_hash) override;
  absl::Status SetRunnerGroup(int64_t runner_id, const std::string& group,
                              int64_t now_ms) override;
  absl::Status TransitionRunner(int64_t runner_id, const std::string& from, const std::string& to,
                                int64_t now_ms) override;
  absl::Status RecordHeartbeat(int64_t runner_id, const std::string& agent_version,
                               const std::string& runtime_state, const std::string& current_run,
                               const std::string& health_json, int64_t now_ms) override;

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
  absl::Status SetRunManifestDigest(const std::string& run_id, const std::string& digest) override;
  absl::StatusOr<std::string> GetJobManifestDigest(int64_t job_id) override;
  absl::StatusOr<std::vector<Run>> ListRuns(const RunFilter& filter) override;
  absl::StatusOr<std::vector<RunFile>> ListRunFiles(const std::string& run_id,
                                                    const std::string& after_path,
                                                    int limit) override;
  absl::StatusOr<RunFile> GetRunFile(const std::string& run_id, const std::string& path) override;

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
                                              const std::string& token_hash, int64_t now_ms,
                                              const std::string& created_by) override;
  absl::StatusOr<AdminToken> FindAdminToken(const std::string& token_hash) override;
  absl::StatusOr<int64_t> CountAdminTokens() override;
  absl::StatusOr<std::vector<AdminToken>> ListAdminTokens() override;
  absl::StatusOr<AdminToken> RevokeAdminToken(int64_t id, int64_t now_ms) override;

  absl::StatusOr<User> CreateUser(const std::string& name, const std::string& role,
                                  const std::string& password_hash, int64_t now_ms) override;
  absl::StatusOr<User> GetUserByName(const std::string& name) override;
  absl::StatusOr<std::vector<User>> ListUsers() override;
  absl::Status SetUserPassword(const std::string& name, const std::string& password_hash,
                               int64_t now_ms) override;
  absl::Status DeleteUser(const std::string& name) override;
  absl::Status CreateSession(const Session& s) override;
  absl::StatusOr<Session> FindSession(const std::string& id_hash) override;
  absl::Status TouchSession(const std::string& id_hash, int64_t now_ms) override;
  absl::Status DeleteSession(const std::string& id_hash) override;
  absl::StatusOr<int64_t> PruneSessions(int64_t now_ms, int64_t idle_before_ms) override;
  absl::StatusOr<int64_t> PruneStalePending(int64_t registered_before_ms) override;
  absl::StatusOr<LoginThrottle> GetLoginThrottle(const std::string& subject) override;
  absl::StatusOr<LoginThrottle> RecordLoginFailure(const std::string& subject, int64_t now_ms,
                                                   const LockoutPolicy& policy) override;
  absl::Status ClearLoginFailures(const std::string& subject) override;
  absl::StatusOr<int64_t> AppendAudit(const AuditEntry& e) override;
  absl::StatusOr<std::vector<AuditEntry>> ListAudit(const AuditFilter& filter) override;
  absl::StatusOr<std::vector<HourlyStat>> HourlyStats(int64_t since_ms) override;
  absl::StatusOr<std::vector<SyncedFile>> SearchSyncedFiles(int64_t job_id, const std::string& text,
                                                            bool prefix,
                                                            const std::string& after_path,
                                                            int limit) override;
  absl::Status RequestKeyRotation(int64_t runner_id, int64_t now_ms) override;
  absl::StatusOr<bool> OfferNextKey(int64_t runner_id, const std::string& next_hash) override;
  absl::StatusOr<Runner> PromoteNextKey(const std::string& key_hash, int64_t now_ms) override;
  absl::StatusOr<RetiredKeyUse> UseRetiredKey(const std::string& key_hash,
                                              int64_t retired_before_ms, int64_t now_ms) override;

  absl::StatusOr<Reconcile> CreateReconcile(const std::string& id, int64_t job_id, bool verify,
                                            int64_t now_ms) override;
  absl::StatusOr<Reconcile> ClaimReconcile(const std::string& worker, int64_t now_ms,
                                           int64_t stale_before_ms) override;
  absl::Status UpdateReconcile(const Reconcile& r, int64_t now_ms) override;
  absl::StatusOr<Reconcile> GetReconcile(const std::string& id) override;
  absl::StatusOr<std::vector<Reconcile>> ListReconciles(std::optional<int64_t> job_id,
                                                        bool active_only, int limit) override;
  absl::Status ApplySyncedFiles(int64_t job_id, const std::vector<SyncedFile>& upserts,
                                const std::vector<std::string>& deletes) override;
  absl::StatusOr<Scrub> CreateScrub(const std::string& id, int64_t job_id,
                                    const std::string& trigger, double rehash_fraction,
                                    int64_t now_ms) override;
  absl::StatusOr<Scrub> ClaimScrub(const std::string& worker, int64_t now_ms,
                                   int64_t stale_before_ms) override;
  absl::Status UpdateScrub(const Scrub& s, int64_t now_ms) override;
  absl::StatusOr<Scrub> GetScrub(const std::string& id) override;
  absl::StatusOr<std::vector<Scrub>> ListScrubs(const ScrubFilter& filter) override;
  absl::StatusOr<std::vector<Scrub>> LatestScrubs(const std::vector<std::string>& states) override;
  absl::Status RecordScrubLost(const std::vector<ScrubLost>& lost) override;
  absl::StatusOr<std::vector<ScrubLost>> ListScrubLost(int64_t job_id) override;
  absl::StatusOr<int64_t> ClearScrubLost(int64_t job_id,
                                         const std::vector<std::string>& paths) override;
  absl::StatusOr<std::vector<std::string>> AbandonStaleRuns(std::optional<int64_t> runner_id,
                                                            const std::string& keep_run_id,
                                                            int64_t started_before_ms,
                                                            const std::string& reason,
                                                            int64_t now_ms) override;
  absl::Status ReplaceRunnerMachine(int64_t runner_id, const std::string& enrollment_id,
                                    int64_t now_ms) override;
  absl::StatusOr<Enrollment> PendingEnrollmentByName(const std::string& name) override;
  absl::StatusOr<int64_t> PruneHistory(int64_t finished_before_ms) override;
  absl::StatusOr<int64_t> SizeBytes() override;
  absl::Status BackupTo(const std::string& path) override;

  absl::StatusOr<bool> TryAcquireLease(const std::string& name, const std::string& holder,
                                       int64_t ttl_ms, int64_t now_ms) override;
  absl::Status ReleaseLease(const std::string& name, const std::string& holder) override;
  absl::Status RecordLongPoll(int64_t runner_id, const std::string& poll_id,
                              int64_t now_ms) override;
  absl::StatusOr<std::vector<WaitingRunner>> CheckWaitingRunners(
      const std::vector<int64_t>& runner_ids) override;

  absl::StatusOr<int64_t> AppendAgentLogs(int64_t runner_id,
                                          const std::vector<AgentLogRecord>& records,
                                          int64_t now_ms) override;
  absl::StatusOr<std::vector<AgentLogRecord>> ListAgentLogs(const AgentLogFilter& filter) override;
  absl::StatusOr<int64_t> PruneAgentLogs(int64_t before_ms) override;
  absl::StatusOr<AlertRule> PutAlertRule(const AlertRule& rule, int64_t now_ms) override;
  absl::StatusOr<std::vector<AlertRule>> ListAlertRules() override;
  absl::Status DeleteAlertRule(int64_t rule_id) override;
  absl::StatusOr<FireResult> FireAlert(int64_t rule_id, const std::string& subject,
                                       const std::string& message, const std::string& details_json,
                                       int64_t now_ms) override;
  absl::StatusOr<bool> ResolveAlert(int64_t alert_id, int64_t now_ms) override;
  absl::StatusOr<Alert> GetAlert(int64_t alert_id) override;
  absl::StatusOr<std::vector<Alert>> ListAlerts(const AlertFilter& filter) override;
  absl::StatusOr<Alert> AckAlert(int64_t alert_id, const std::string& by, int64_t now_ms) override;
  absl::StatusOr<NotificationChannel> PutNotificationChannel(const NotificationChannel& channel,
                                                             int64_t now_ms) override;
  absl::StatusOr<std::vector<NotificationChannel>> ListNotificationChannels() override;
  absl::Status DeleteNotificationChannel(int64_t channel_id) override;
  absl::StatusOr<std::vector<PendingDelivery>> DueDeliveries(int64_t now_ms, int max_attempts,
                                                             int limit) override;
  absl::Status RecordDeliveryAttempt(int64_t delivery_id, const std::string& error,
                                     int64_t next_attempt_ms, int64_t now_ms) override;

 private:
  // Runs `fn` holding mu_ and turns any exception it throws into a status; an open
  // SQLite::Transaction inside `fn` has rolled back by then. `op` names the method in messages.
  template <typename Fn>
  std::invoke_result_t<Fn> Locked(const char* op, Fn&& fn) {
    MutexLock lock(&mu_);
    try {
      return fn();
    } catch (const SQLite::Exception& e) {
      return FromSqliteException(op, e);
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat(op, ": ", e.what()));
    }
  }

  // The helpers below may throw SQLite::Exception.
  // 0 when nothing was ever applied.
  int CurrentSchemaVersion() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Runner> LoadRunner(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Job> LoadJob(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Run> LoadRun(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Reconcile> LoadReconcile(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Scrub> LoadScrub(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NotFound for an unknown run, FailedPrecondition unless it is `running`.
  // With allow_abandoned, an `abandoned` run also qualifies (late results of a recovered agent).
  absl::StatusOr<RunningRun> LoadRunningRun(const std::string& run_id, bool allow_abandoned = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool RunnerExists(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool JobExists(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Alert> LoadAlert(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `transition` deliveries of alert `alert_id` to every enabled channel its severity reaches.
  void QueueDeliveries(int64_t alert_id, const std::string& transition, int64_t now_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Mutex mu_;
  SQLite::Database db_ ABSL_GUARDED_BY(mu_);
  // Declared after db_: stops (final checkpoint) before the main connection closes.
  std::unique_ptr<Checkpointer> checkpointer_;
};

// ---- helpers ------------------------------------------------------------------------------------

int SqliteIndex::CurrentSchemaVersion() {
  if (!db_.tableExists("schema_migrations")) return 0;
  SQLite::Statement q(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  q.executeStep();
  return q.getColumn(0).getInt();
}

absl::StatusOr<Runner> SqliteIndex::LoadRunner(int64_t id) {
  SQLite::Statement q(db_, RunnerQuery(R"sql(WHERE id = ?)sql"));
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

absl::StatusOr<RunningRun> SqliteIndex::LoadRunningRun(const std::string& run_id,
                                                        bool allow_abandoned) {
  SQLite::Statement q(db_, "SELECT state, runner_id, job_id FROM sync_runs WHERE id = ?");
  q.bind(1, run_id);
  if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("run ", run_id, " not found"));
  const std::string state = q.getColumn(0).getString();
  if (state != "running" && !(allow_abandoned && state == "abandoned")) {
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
  return Locked("Migrate", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
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
      // The next migration is the lowest version above the current one: numbers are reserved
      // per feature branch, so a branch may lack the numbers of another until they merge.
      const auto next = std::find_if(kSqliteMigrations.begin(), kSqliteMigrations.end(),
                                     [&](const Migration& m) { return m.version > current; });
      if (next == kSqliteMigrations.end()) {
        return absl::InternalError(absl::StrCat("SQLite migration after ", current, " is missing"));
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
  return Locked("SchemaVersion", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int> { return CurrentSchemaVersion(); });
}

int SqliteIndex::LatestKnownSchemaVersion() const {
  return kSqliteMigrations.empty() ? 0 : kSqliteMigrations.back().version;
}

absl::Status SqliteIndex::Ping() {
  return Locked("Ping", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
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
  return Locked("RegisterRunner", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Runner> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    int64_t runner_id = 0;
    {
      SQLite::Statement find(db_, "SELECT id, status FROM runners WHERE name = ?");
      find.bind(1, info.name);
      if (find.executeStep()) {
        const std::string status = find.getColumn(1).getString();
        if (status == "rejected") {
          return absl::AlreadyExistsError(
              absl::StrCat("runner name \"", info.name, "\" belongs to a rejected runner"));
        }
        runner_id = find.getColumn(0).getInt64();
      }
    }
    // An existing runner keeps its row and key: the new enrollment waits beside any others. (A
    // pending runner nobody registered yet, a job import's, shows its first registration's host.)
    if (runner_id != 0) {
      SQLite::Statement first(db_, R"sql(
        UPDATE runners SET hostname = ?, os = ?, machine_id = ?, agent_version = ?
        WHERE id = ? AND status = 'pending' AND hostname = '' AND machine_id = ''
          AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.runner_id = runners.id))sql");
      SQLite::bind(first, info.hostname, info.os, info.machine_id, info.agent_version, runner_id);
      first.exec();
    } else {
      SQLite::Statement insert(db_, R"sql(
        INSERT INTO runners (name, status, hostname, os, machine_id, agent_version, created_at)
        VALUES (?, 'pending', ?, ?, ?, ?, ?))sql");
      SQLite::bind(insert, info.name, info.hostname, info.os, info.machine_id, info.agent_version,
                   now_ms);
      insert.exec();
      runner_id = db_.getLastInsertRowid();
    }
    SQLite::Statement enroll(db_, R"sql(
      INSERT INTO enrollments (id, runner_id, secret_hash, status, created_at, hostname, os,
                               machine_id, agent_version, address)
      VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?))sql");
    SQLite::bind(enroll, enrollment_id, runner_id, secret_hash, now_ms, info.hostname, info.os,
                 info.machine_id, info.agent_version, info.address);
    enroll.exec();
    DS_ASSIGN_OR_RETURN(Runner runner, LoadRunner(runner_id));
    tx.commit();
    return runner;
  });
}

absl::StatusOr<Enrollment> SqliteIndex::GetEnrollment(const std::string& id) {
  return Locked("GetEnrollment", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Enrollment> {
    SQLite::Statement q(
        db_, absl::StrCat("SELECT ", kEnrollmentColumns, " FROM enrollments WHERE id = ?"));
    q.bind(1, id);
    if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("enrollment ", id, " not found"));
    return EnrollmentFromRow(q);
  });
}

absl::StatusOr<Runner> SqliteIndex::CreatePendingRunner(const std::string& name, int64_t now_ms) {
  return Locked("CreatePendingRunner", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Runner> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement insert(
        db_, "INSERT INTO runners (name, status, created_at) VALUES (?, 'pending', ?)");
    SQLite::bind(insert, name, now_ms);
    insert.exec();
    DS_ASSIGN_OR_RETURN(Runner runner, LoadRunner(db_.getLastInsertRowid()));
    tx.commit();
    return runner;
  });
}

absl::StatusOr<std::vector<Enrollment>> SqliteIndex::ListPendingEnrollments(int64_t runner_id) {
  return Locked("ListPendingEnrollments", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<Enrollment>> {
    SQLite::Statement q(db_, absl::StrCat("SELECT ", kEnrollmentColumns, R"sql(
      FROM enrollments WHERE runner_id = ? AND status = 'pending' ORDER BY created_at, id)sql"));
    q.bind(1, runner_id);
    std::vector<Enrollment> out;
    while (q.executeStep()) out.push_back(EnrollmentFromRow(q));
    return out;
  });
}

absl::Status SqliteIndex::DecideEnrollment(int64_t runner_id, const std::string& enrollment_id,
                                           bool approve, int64_t now_ms) {
  return Locked("DecideEnrollment", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    DS_ASSIGN_OR_RETURN(Runner runner, LoadRunner(runner_id));
    SQLite::Statement q(db_, absl::StrCat("SELECT ", kEnrollmentColumns,
                                          " FROM enrollments WHERE id = ? AND runner_id = ?"));
    SQLite::bind(q, enrollment_id, runner_id);
    if (!q.executeStep()) {
      return absl::NotFoundError(
          absl::StrCat("runner '", runner.name, "' has no enrollment ", enrollment_id));
    }
    const Enrollment e = EnrollmentFromRow(q);
    DS_RETURN_IF_ERROR(CheckDecidable(runner, e));
    SQLite::Statement decide(db_, "UPDATE enrollments SET status = ? WHERE id = ?");
    SQLite::bind(decide, approve ? "approved" : "rejected", enrollment_id);
    decide.exec();
    if (approve) {
      SQLite::Statement others(db_, R"sql(
        UPDATE enrollments SET status = 'rejected' WHERE runner_id = ? AND status = 'pending')sql");
      SQLite::bind(others, runner_id);
      others.exec();
      SQLite::Statement upd(db_, R"sql(
        UPDATE runners SET status = 'approved', approved_at = ?, hostname = ?, os = ?,
          machine_id = ?, agent_version = ?
        WHERE id = ?)sql");
      SQLite::bind(upd, now_ms, e.hostname, e.os, e.machine_id, e.agent_version, runner_id);
      upd.exec();
    } else {
      SQLite::Statement last(db_, R"sql(
        UPDATE runners SET status = 'rejected'
        WHERE id = ? AND NOT EXISTS (SELECT 1 FROM enrollments e
                                      WHERE e.runner_id = runners.id AND e.status = 'pending'))sql");
      SQLite::bind(last, runner_id);
      last.exec();
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status SqliteIndex::DeleteRunner(int64_t runner_id) {
  return Locked("DeleteRunner", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    DS_ASSIGN_OR_RETURN(Runner runner, LoadRunner(runner_id));
    SQLite::Statement q(db_, "SELECT name FROM jobs WHERE runner_id = ? ORDER BY name");
    SQLite::bind(q, runner_id);
    std::vector<std::string> jobs;
    while (q.executeStep()) jobs.push_back(q.getColumn(0).getString());
    DS_RETURN_IF_ERROR(CheckDeletable(runner, jobs));
    SQLite::Statement del(db_, "DELETE FROM runners WHERE id = ?");
    SQLite::bind(del, runner_id);
    del.exec();
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status SqliteIndex::DeliverKey(const std::string& enrollment_id,
                                     const std::string& key_hash) {
  if (key_hash.empty()) return absl::InvalidArgumentError("DeliverKey: empty key hash");
  return Locked("DeliverKey", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
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
  return Locked("ListRunners", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<Runner>> {
    SQLite::Statement q(db_, RunnerQuery(R"sql(ORDER BY name)sql"));
    std::vector<Runner> runners;
    while (q.executeStep()) runners.push_back(RunnerFromRow(q));
    return runners;
  });
}

absl::StatusOr<Runner> SqliteIndex::GetRunnerByName(const std::string& name) {
  return Locked("GetRunnerByName", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Runner> {
    SQLite::Statement q(db_, "SELECT id FROM runners WHERE name = ?");
    q.bind(1, name);
    if (!q.executeStep()) {
      return absl::NotFoundError(absl::StrCat("runner \"", name, "\" not found"));
    }
    return LoadRunner(q.getColumn(0).getInt64());
  });
}

absl::StatusOr<Runner> SqliteIndex::GetRunnerById(int64_t id) {
  return Locked("GetRunnerById", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Runner> { return LoadRunner(id); });
}

absl::StatusOr<Runner> SqliteIndex::FindRunnerByKeyHash(const std::string& key_hash) {
  return Locked("FindRunnerByKeyHash", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Runner> {
    // Only an approved runner's key authenticates, whatever the status change left behind.
    SQLite::Statement q(db_,
                        "SELECT id FROM runners WHERE api_key_hash = ? AND status = 'approved'");
    q.bind(1, key_hash);
    if (!q.executeStep()) return absl::NotFoundError("no approved runner has this key");
    return LoadRunner(q.getColumn(0).getInt64());
  });
}

absl::Status SqliteIndex::SetRunnerGroup(int64_t runner_id, const std::string& group,
                                         int64_t now_ms) {
  return Locked("SetRunnerGroup", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    if (!RunnerExists(runner_id)) return absl::NotFoundError(absl::StrCat("no runner ", runner_id));
    if (group.empty()) {
      SQLite::Statement clear(db_, "UPDATE runners SET group_id = NULL WHERE id = ?");
      clear.bind(1, runner_id);
      clear.exec();
    } else {
      SQLite::Statement create(db_, R"sql(
        INSERT INTO runner_groups (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING)sql");
      create.bind(1, group);
      create.bind(2, now_ms);
      create.exec();
      SQLite::Statement set(db_, R"sql(
        UPDATE runners SET group_id = (SELECT id FROM runner_groups WHERE name = ?) WHERE id = ?)sql");
      set.bind(1, group);
      set.bind(2, runner_id);
      set.exec();
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status SqliteIndex::TransitionRunner(int64_t runner_id, const std::string& from,
                                           const std::string& to, int64_t now_ms) {
  if (!IsRunnerStatus(to)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown runner status \"", to, "\""));
  }
  return Locked("TransitionRunner", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    if (to == "approved" || to == "rejected") {
      SQLite::Statement n(db_, R"sql(
        SELECT COUNT(*) FROM enrollments WHERE runner_id = ? AND status = 'pending')sql");
      SQLite::bind(n, runner_id);
      n.executeStep();
      DS_RETURN_IF_ERROR(CheckSinglePendingEnrollment(runner_id, n.getColumn(0).getInt64()));
    }
    SQLite::Statement cas(db_, R"sql(
      UPDATE runners
      SET status = ?1,
          approved_at = CASE WHEN ?1 = 'approved' THEN ?2 ELSE approved_at END,
          api_key_hash = CASE WHEN ?1 = 'revoked' THEN NULL ELSE api_key_hash END,
          next_key_hash = CASE WHEN ?1 = 'revoked' THEN NULL ELSE next_key_hash END,
          retired_key_hash = CASE WHEN ?1 = 'revoked' THEN NULL ELSE retired_key_hash END,
          quarantined_at = CASE WHEN ?1 = 'revoked' THEN 0 ELSE quarantined_at END
      WHERE id = ?3
        AND (CASE WHEN status = 'approved' AND quarantined_at > 0 THEN 'quarantined' ELSE status END) = ?4)sql");
    cas.bind(1, to);
    cas.bind(2, now_ms);
    cas.bind(3, runner_id);
    cas.bind(4, from);
    if (cas.exec() == 0) {
      DS_ASSIGN_OR_RETURN(Runner current, LoadRunner(runner_id));
      return absl::FailedPreconditionError(
          absl::StrCat("runner ", runner_id, " is ", current.status, ", not ", from));
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
                                          const std::string& current_run,
                                          const std::string& health_json, int64_t now_ms) {
  return Locked("RecordHeartbeat", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    // One statement, one implicit transaction. An empty agent_version keeps the one reported at
    // registration; an empty health keeps the last one.
    SQLite::Statement update(db_, R"sql(
      UPDATE runners
      SET agent_version = CASE WHEN ?1 = '' THEN agent_version ELSE ?1 END,
          runtime_state = ?2, current_run = ?3, last_heartbeat_at = ?4,
          health = CASE WHEN ?6 = '' THEN health ELSE ?6 END
      WHERE id = ?5)sql");
    update.bind(1, agent_version);
    update.bind(2, runtime_state);
    update.bind(3, current_run);
    update.bind(4, now_ms);
    update.bind(5, runner_id);
    update.bind(6, health_json);
    if (update.exec() == 0) {
      return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
    }
    return absl::OkStatus();
  });
}

// ---- jobs ---------------------------------------------------------------------------------------

absl::StatusOr<Job> SqliteIndex::PutJob(int64_t runner_id, const protocol::JobSpec& spec,
                                        bool replace, int64_t now_ms) {
  if (spec.name.empty()) return absl::InvalidArgumentError("PutJob: empty job name");
  return Locked("PutJob", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Job> {
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
    ForgetJobManifest(db_, job_id);  // source, destination or filters may have changed
    DS_ASSIGN_OR_RETURN(Job job, LoadJob(job_id));
    tx.commit();
    return job;
  });
}

absl::StatusOr<Job> SqliteIndex::GetJob(int64_t runner_id, const std::string& name) {
  return Locked("GetJob", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Job> {
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
  return Locked("GetJobById", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Job> { return LoadJob(job_id); });
}

absl::StatusOr<std::vector<Job>> SqliteIndex::ListJobs(std::optional<int64_t> runner_id) {
  return Locked("ListJobs", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<Job>> {
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
  return Locked("DeleteJob", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
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
  return Locked("BeginRun", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Run> {
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
  // The one connection is shared by every request: a 5,000-path compare batch looks its rows up
  // in slices, letting the heartbeats of a large fleet in between. Each path's answer stands on
  // its own, so slices need not share a snapshot.
  constexpr size_t kSlice = 256;
  std::vector<SyncedFile> found;
  for (size_t begin = 0; begin < paths.size(); begin += kSlice) {
    const size_t end = std::min(paths.size(), begin + kSlice);
    DS_RETURN_IF_ERROR(Locked("LookupSyncedFiles", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      SQLite::Transaction tx(db_);  // one read transaction: one lock acquisition per slice
      SQLite::Statement q(db_, R"sql(
        SELECT job_id, path, size, mtime_ns, sha256, synced_at, run_id
        FROM synced_files WHERE job_id = ? AND path = ?)sql");
      for (size_t i = begin; i < end; ++i) {
        q.reset();
        q.bind(1, job_id);
        q.bind(2, paths[i]);
        if (q.executeStep()) found.push_back(SyncedFileFromRow(q));
      }
      q.reset();
      tx.commit();
      return absl::OkStatus();
    }));
  }
  return found;
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
  return Locked("RecordPlanned", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    DS_RETURN_IF_ERROR(LoadRunningRun(run_id).status());
    SQLite::Statement upsert(db_, R"sql(
      INSERT INTO run_files (run_id, path, planned_reason, size, sha256) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (run_id, path) DO UPDATE
      SET planned_reason = excluded.planned_reason, size = excluded.size,
          sha256 = excluded.sha256)sql");
    // files_planned grows by the paths not planned before (counting the whole run per batch
    // would make a 1,000,000-file plan quadratic).
    SQLite::Statement was_planned(db_, R"sql(
      SELECT 1 FROM run_files WHERE run_id = ? AND path = ? AND planned_reason <> '')sql");
    int64_t added = 0;
    for (const RunFile& f : planned) {
      was_planned.reset();
      was_planned.bind(1, run_id);
      was_planned.bind(2, f.path);
      if (!was_planned.executeStep()) ++added;
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
      SET files_planned = files_planned + ?4,
          files_seen = CASE WHEN ?2 >= 0 THEN ?2 ELSE files_seen END,
          bytes_seen = CASE WHEN ?3 >= 0 THEN ?3 ELSE bytes_seen END
      WHERE id = ?1)sql");
    totals.bind(1, run_id);
    totals.bind(2, total_files);
    totals.bind(3, total_bytes);
    totals.bind(4, added);
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
  return Locked("RecordResults", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<uint64_t> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    DS_ASSIGN_OR_RETURN(const RunningRun run, LoadRunningRun(run_id, /*allow_abandoned=*/true));
    if (run.job_id != 0 && !results.empty()) ForgetJobManifest(db_, run.job_id);
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
  return Locked("FinishRun", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Run> {
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
      SQLite::Statement run_q(db_, "SELECT job_id, manifest_digest FROM sync_runs WHERE id = ?");
      run_q.bind(1, run_id);
      if (run_q.executeStep() && !run_q.getColumn(0).isNull()) {
        const int64_t job_id = run_q.getColumn(0).getInt64();
        const std::string digest = run_q.getColumn(1).getString();
        if (state == "succeeded" && !digest.empty()) {
          SQLite::Statement set(db_, R"sql(
            INSERT INTO job_manifests (job_id, digest, run_id, updated_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (job_id) DO UPDATE
            SET digest = excluded.digest, run_id = excluded.run_id, updated_at = excluded.updated_at)sql");
          set.bind(1, job_id);
          set.bind(2, digest);
          set.bind(3, run_id);
          set.bind(4, now_ms);
          set.exec();
        } else {
          ForgetJobManifest(db_, job_id);
        }
      }
    } else if (current != state) {
      return absl::FailedPreconditionError(
          absl::StrCat("run ", run_id, " is already ", current, ", cannot become ", state));
    }
    DS_ASSIGN_OR_RETURN(Run run, LoadRun(run_id));
    tx.commit();
    return run;
  });
}

absl::Status SqliteIndex::SetRunManifestDigest(const std::string& run_id, const std::string& digest) {
  return Locked("SetRunManifestDigest", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement q(db_, "UPDATE sync_runs SET manifest_digest = ? WHERE id = ?");
    q.bind(1, digest);
    q.bind(2, run_id);
    if (q.exec() == 0) return absl::NotFoundError(absl::StrCat("run ", run_id, " not found"));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::string> SqliteIndex::GetJobManifestDigest(int64_t job_id) {
  return Locked("GetJobManifestDigest", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::string> {
    SQLite::Statement q(db_, "SELECT digest FROM job_manifests WHERE job_id = ?");
    q.bind(1, job_id);
    return q.executeStep() ? q.getColumn(0).getString() : std::string();
  });
}

absl::StatusOr<Run> SqliteIndex::GetRun(const std::string& run_id) {
  return Locked("GetRun", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Run> { return LoadRun(run_id); });
}

absl::StatusOr<std::vector<Run>> SqliteIndex::ListRuns(const RunFilter& filter) {
  if (filter.limit < 1) return absl::InvalidArgumentError("ListRuns: limit must be positive");
  if (filter.offset < 0) return absl::InvalidArgumentError("ListRuns: negative offset");
  return Locked("ListRuns", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<Run>> {
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
    sql += " ORDER BY s.started_at DESC, s.rowid DESC LIMIT :limit OFFSET :offset";
    SQLite::Statement q(db_, sql);
    if (filter.runner_id) q.bind(":runner_id", *filter.runner_id);
    if (filter.job_id) q.bind(":job_id", *filter.job_id);
    if (filter.state) q.bind(":state", *filter.state);
    q.bind(":limit", std::min(filter.limit, kMaxRunsPerPage));
    q.bind(":offset", filter.offset);
    std::vector<Run> runs;
    while (q.executeStep()) runs.push_back(RunFromRow(q));
    return runs;
  });
}

absl::StatusOr<std::vector<RunFile>> SqliteIndex::ListRunFiles(const std::string& run_id,
                                                               const std::string& after_path,
                                                               int limit) {
  if (limit < 1) return absl::InvalidArgumentError("ListRunFiles: limit must be positive");
  return Locked("ListRunFiles", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<RunFile>> {
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
    while (q.executeStep()) files.push_back(RunFileFromRow(q));
    q.reset();
    tx.commit();
    return files;
  });
}

absl::StatusOr<RunFile> SqliteIndex::GetRunFile(const std::string& run_id,
                                                const std::string& path) {
  return Locked("GetRunFile", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<RunFile> {
    SQLite::Statement q(db_, R"sql(
      SELECT path, planned_reason, size, sha256, result, error, kept_version
      FROM run_files WHERE run_id = ? AND path = ?)sql");
    q.bind(1, run_id);
    q.bind(2, path);
    if (!q.executeStep()) {
      return absl::NotFoundError(absl::StrCat("run ", run_id, " has no file \"", path, "\""));
    }
    return RunFileFromRow(q);
  });
}

// ---- synced files -------------------------------------------------------------------------------

absl::StatusOr<std::vector<SyncedFile>> SqliteIndex::ListSyncedFiles(int64_t job_id,
                                                                     const std::string& after_path,
                                                                     int limit) {
  if (limit < 1) return absl::InvalidArgumentError("ListSyncedFiles: limit must be positive");
  return Locked("ListSyncedFiles", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<SyncedFile>> {
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
  return Locked("CountSyncedFiles", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
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
  return Locked("EnqueueCommand", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<protocol::Command> {
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
  return Locked("TakeCommands", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<protocol::Command>> {
    // Asked by every heartbeat and long-poll, almost always with nothing pending: look first
    // without the write lock (mu_ is held, so nothing can slip in between on this connection).
    {
      SQLite::Statement any(db_, R"sql(
        SELECT EXISTS (SELECT 1 FROM commands WHERE runner_id = ? AND state = 'pending'))sql");
      any.bind(1, runner_id);
      if (any.executeStep() && any.getColumn(0).getInt() == 0) return std::vector<protocol::Command>{};
    }
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
                                                         int64_t now_ms,
                                                         const std::string& created_by) {
  if (role != "admin" && role != "viewer") {
    return absl::InvalidArgumentError(absl::StrCat("unknown admin token role \"", role, "\""));
  }
  if (token_hash.empty()) return absl::InvalidArgumentError("CreateAdminToken: empty token hash");
  return Locked("CreateAdminToken", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<AdminToken> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement insert(db_, R"sql(
      INSERT INTO admin_tokens (name, role, token_hash, created_at, created_by)
      VALUES (?, ?, ?, ?, ?))sql");
    insert.bind(1, name);
    insert.bind(2, role);
    insert.bind(3, token_hash);
    insert.bind(4, now_ms);
    insert.bind(5, created_by);
    insert.exec();
    AdminToken token;
    token.id = db_.getLastInsertRowid();
    token.name = name;
    token.role = role;
    token.created_at_ms = now_ms;
    token.created_by = created_by;
    tx.commit();
    return token;
  });
}

absl::StatusOr<AdminToken> SqliteIndex::FindAdminToken(const std::string& token_hash) {
  return Locked("FindAdminToken", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<AdminToken> {
    SQLite::Statement q(db_, R"sql(
      SELECT id, name, role, created_at, revoked_at, created_by FROM admin_tokens
      WHERE token_hash = ? AND revoked_at = 0)sql");
    q.bind(1, token_hash);
    if (!q.executeStep()) return absl::NotFoundError("no active admin token has this hash");
    return AdminTokenFromRow(q);
  });
}

absl::StatusOr<int64_t> SqliteIndex::CountAdminTokens() {
  return Locked("CountAdminTokens", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    SQLite::Statement q(db_, "SELECT COUNT(*) FROM admin_tokens WHERE revoked_at = 0");
    q.executeStep();
    return q.getColumn(0).getInt64();
  });
}

absl::StatusOr<std::vector<AdminToken>> SqliteIndex::ListAdminTokens() {
  return Locked("ListAdminTokens", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<AdminToken>> {
    SQLite::Statement q(db_, R"sql(
      SELECT id, name, role, created_at, revoked_at, created_by FROM admin_tokens
      ORDER BY id DESC)sql");
    std::vector<AdminToken> out;
    while (q.executeStep()) out.push_back(AdminTokenFromRow(q));
    return out;
  });
}

absl::StatusOr<AdminToken> SqliteIndex::RevokeAdminToken(int64_t id, int64_t now_ms) {
  return Locked("RevokeAdminToken", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<AdminToken> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    AdminToken t;
    {
      SQLite::Statement q(db_, R"sql(
        SELECT id, name, role, created_at, revoked_at, created_by FROM admin_tokens WHERE id = ?)sql");
      q.bind(1, id);
      if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("no admin token ", id));
      t = AdminTokenFromRow(q);
    }
    if (t.revoked_at_ms != 0) {
      return absl::FailedPreconditionError(absl::StrCat("admin token ", id, " is already revoked"));
    }
    SQLite::Statement u(db_, "UPDATE admin_tokens SET revoked_at = ? WHERE id = ?");
    u.bind(1, now_ms);
    u.bind(2, id);
    u.exec();
    tx.commit();
    t.revoked_at_ms = now_ms;
    return t;
  });
}

// ---- operator accounts ----------------------------------------------------------------------------

absl::StatusOr<User> SqliteIndex::CreateUser(const std::string& name, const std::string& role,
                                             const std::string& password_hash, int64_t now_ms) {
  if (role != "admin" && role != "viewer") {
    return absl::InvalidArgumentError(absl::StrCat("unknown role \"", role, "\" (admin or viewer)"));
  }
  if (name.empty() || password_hash.empty()) {
    return absl::InvalidArgumentError("CreateUser: empty name or password hash");
  }
  return Locked("CreateUser", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<User> {
    SQLite::Statement q(db_, R"sql(
      INSERT INTO users (name, role, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?))sql");
    q.bind(1, name);
    q.bind(2, role);
    q.bind(3, password_hash);
    q.bind(4, now_ms);
    q.bind(5, now_ms);
    try {
      q.exec();
    } catch (const SQLite::Exception& e) {
      if ((e.getErrorCode() & 0xff) == SQLITE_CONSTRAINT) {
        return absl::AlreadyExistsError(absl::StrCat("a user named '", name, "' exists"));
      }
      throw;
    }
    User u;
    u.id = db_.getLastInsertRowid();
    u.name = name;
    u.role = role;
    u.password_hash = password_hash;
    u.created_at_ms = u.updated_at_ms = now_ms;
    return u;
  });
}

absl::StatusOr<User> SqliteIndex::GetUserByName(const std::string& name) {
  return Locked("GetUserByName", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<User> {
    SQLite::Statement q(db_, R"sql(
      SELECT id, name, role, password_hash, created_at, updated_at, last_login_at
      FROM users WHERE name = ?)sql");
    q.bind(1, name);
    if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("no user named '", name, "'"));
    return UserFromRow(q);
  });
}

absl::StatusOr<std::vector<User>> SqliteIndex::ListUsers() {
  return Locked("ListUsers", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<User>> {
    SQLite::Statement q(db_, R"sql(
      SELECT id, name, role, password_hash, created_at, updated_at, last_login_at
      FROM users ORDER BY name)sql");
    std::vector<User> out;
    while (q.executeStep()) out.push_back(UserFromRow(q));
    return out;
  });
}

absl::Status SqliteIndex::SetUserPassword(const std::string& name, const std::string& password_hash,
                                          int64_t now_ms) {
  if (password_hash.empty()) return absl::InvalidArgumentError("SetUserPassword: empty hash");
  return Locked("SetUserPassword", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement u(db_, "UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?");
    u.bind(1, password_hash);
    u.bind(2, now_ms);
    u.bind(3, name);
    if (u.exec() == 0) return absl::NotFoundError(absl::StrCat("no user named '", name, "'"));
    SQLite::Statement d(db_, "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?)");
    d.bind(1, name);
    d.exec();
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status SqliteIndex::DeleteUser(const std::string& name) {
  return Locked("DeleteUser", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement d(db_, "DELETE FROM users WHERE name = ?");
    d.bind(1, name);
    if (d.exec() == 0) return absl::NotFoundError(absl::StrCat("no user named '", name, "'"));
    return absl::OkStatus();
  });
}

absl::Status SqliteIndex::CreateSession(const Session& s) {
  if (s.id_hash.empty()) return absl::InvalidArgumentError("CreateSession: empty id hash");
  return Locked("CreateSession", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement q(db_, R"sql(
      INSERT INTO sessions (id_hash, user_id, csrf_token, source_ip, created_at, expires_at,
                            last_seen_at)
      VALUES (?, ?, ?, ?, ?, ?, ?))sql");
    q.bind(1, s.id_hash);
    q.bind(2, s.user_id);
    q.bind(3, s.csrf_token);
    q.bind(4, s.source_ip);
    q.bind(5, s.created_at_ms);
    q.bind(6, s.expires_at_ms);
    q.bind(7, s.last_seen_at_ms);
    q.exec();
    SQLite::Statement u(db_, "UPDATE users SET last_login_at = ? WHERE id = ?");
    u.bind(1, s.created_at_ms);
    u.bind(2, s.user_id);
    u.exec();
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<Session> SqliteIndex::FindSession(const std::string& id_hash) {
  return Locked("FindSession", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Session> {
    SQLite::Statement q(db_, R"sql(
      SELECT s.id_hash, s.user_id, u.name, u.role, s.csrf_token, s.source_ip, s.created_at,
             s.expires_at, s.last_seen_at
      FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?)sql");
    q.bind(1, id_hash);
    if (!q.executeStep()) return absl::NotFoundError("no such session");
    Session s;
    s.id_hash = q.getColumn(0).getString();
    s.user_id = q.getColumn(1).getInt64();
    s.user_name = q.getColumn(2).getString();
    s.role = q.getColumn(3).getString();
    s.csrf_token = q.getColumn(4).getString();
    s.source_ip = q.getColumn(5).getString();
    s.created_at_ms = q.getColumn(6).getInt64();
    s.expires_at_ms = q.getColumn(7).getInt64();
    s.last_seen_at_ms = q.getColumn(8).getInt64();
    return s;
  });
}

absl::Status SqliteIndex::TouchSession(const std::string& id_hash, int64_t now_ms) {
  return Locked("TouchSession", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement u(db_, "UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?");
    u.bind(1, now_ms);
    u.bind(2, id_hash);
    u.exec();
    return absl::OkStatus();
  });
}

absl::Status SqliteIndex::DeleteSession(const std::string& id_hash) {
  return Locked("DeleteSession", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement d(db_, "DELETE FROM sessions WHERE id_hash = ?");
    d.bind(1, id_hash);
    d.exec();
    return absl::OkStatus();
  });
}

absl::StatusOr<int64_t> SqliteIndex::PruneSessions(int64_t now_ms, int64_t idle_before_ms) {
  return Locked("PruneSessions", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    SQLite::Statement d(db_, "DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at < ?");
    d.bind(1, now_ms);
    d.bind(2, idle_before_ms);
    return static_cast<int64_t>(d.exec());
  });
}

absl::StatusOr<int64_t> SqliteIndex::PruneStalePending(int64_t registered_before_ms) {
  return Locked("PruneStalePending", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement runners(db_, R"sql(
      DELETE FROM runners
       WHERE status = 'pending' AND created_at < ?1
         AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.runner_id = runners.id)
         AND NOT EXISTS (SELECT 1 FROM enrollments e
                          WHERE e.runner_id = runners.id AND e.created_at >= ?1))sql");
    runners.bind(1, registered_before_ms);
    int64_t n = runners.exec();
    SQLite::Statement requests(db_, R"sql(
      DELETE FROM enrollments WHERE status = 'pending' AND created_at < ?)sql");
    requests.bind(1, registered_before_ms);
    n += requests.exec();
    tx.commit();
    return n;
  });
}

absl::StatusOr<LoginThrottle> SqliteIndex::GetLoginThrottle(const std::string& subject) {
  return Locked("GetLoginThrottle", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<LoginThrottle> {
    SQLite::Statement q(db_, R"sql(
      SELECT failures, last_failure_at, locked_until FROM login_failures WHERE subject = ?)sql");
    q.bind(1, subject);
    LoginThrottle t;
    if (q.executeStep()) {
      t.failures = q.getColumn(0).getInt64();
      t.last_failure_at_ms = q.getColumn(1).getInt64();
      t.locked_until_ms = q.getColumn(2).getInt64();
    }
    return t;
  });
}

absl::StatusOr<LoginThrottle> SqliteIndex::RecordLoginFailure(const std::string& subject,
                                                              int64_t now_ms,
                                                              const LockoutPolicy& policy) {
  return Locked("RecordLoginFailure", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<LoginThrottle> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    LoginThrottle t;
    {
      SQLite::Statement q(db_, R"sql(
        SELECT failures, last_failure_at FROM login_failures WHERE subject = ?)sql");
      q.bind(1, subject);
      if (q.executeStep()) {
        t.failures = q.getColumn(0).getInt64();
        t.last_failure_at_ms = q.getColumn(1).getInt64();
      }
    }
    t = NextLoginThrottle(t, now_ms, policy);
    SQLite::Statement u(db_, R"sql(
      INSERT INTO login_failures (subject, failures, last_failure_at, locked_until)
      VALUES (?, ?, ?, ?)
      ON CONFLICT (subject) DO UPDATE SET failures = excluded.failures,
        last_failure_at = excluded.last_failure_at, locked_until = excluded.locked_until)sql");
    u.bind(1, subject);
    u.bind(2, t.failures);
    u.bind(3, t.last_failure_at_ms);
    u.bind(4, t.locked_until_ms);
    u.exec();
    tx.commit();
    return t;
  });
}

absl::Status SqliteIndex::ClearLoginFailures(const std::string& subject) {
  return Locked("ClearLoginFailures", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement d(db_, "DELETE FROM login_failures WHERE subject = ?");
    d.bind(1, subject);
    d.exec();
    return absl::OkStatus();
  });
}

// ---- audit log ----------------------------------------------------------------------------------

absl::StatusOr<int64_t> SqliteIndex::AppendAudit(const AuditEntry& e) {
  return Locked("AppendAudit", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    SQLite::Statement q(db_, R"sql(
      INSERT INTO audit_log (at, actor, action, target, result, details, source_ip)
      VALUES (?, ?, ?, ?, ?, ?, ?))sql");
    q.bind(1, e.at_ms);
    q.bind(2, e.actor);
    q.bind(3, e.action);
    q.bind(4, e.target);
    q.bind(5, e.result);
    q.bind(6, e.details_json.empty() ? std::string("{}") : e.details_json);
    q.bind(7, e.source_ip);
    q.exec();
    return static_cast<int64_t>(db_.getLastInsertRowid());
  });
}

absl::StatusOr<std::vector<AuditEntry>> SqliteIndex::ListAudit(const AuditFilter& f) {
  return Locked("ListAudit", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<AuditEntry>> {
    SQLite::Statement q(db_, R"sql(
      SELECT id, at, actor, action, target, result, details, source_ip FROM audit_log
      WHERE (?1 = 0 OR id < ?1) AND (?2 = '' OR actor = ?2)
        AND (?3 = '' OR instr(action, ?3) > 0 OR instr(target, ?3) > 0)
      ORDER BY id DESC LIMIT ?4)sql");
    q.bind(1, f.before_id);
    q.bind(2, f.actor);
    q.bind(3, f.action_contains);
    q.bind(4, std::clamp(f.limit, 1, 1000));
    std::vector<AuditEntry> out;
    while (q.executeStep()) out.push_back(AuditFromRow(q));
    return out;
  });
}

// ---- dashboard queries --------------------------------------------------------------------------

absl::StatusOr<std::vector<HourlyStat>> SqliteIndex::HourlyStats(int64_t since_ms) {
  return Locked("HourlyStats", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<HourlyStat>> {
    SQLite::Statement q(db_, R"sql(
      SELECT started_at - started_at % 3600000 AS hour, COUNT(*), SUM(files_uploaded),
             SUM(bytes_uploaded), SUM(files_failed)
      FROM sync_runs WHERE started_at >= ? GROUP BY hour ORDER BY hour)sql");
    q.bind(1, since_ms);
    std::vector<HourlyStat> out;
    while (q.executeStep()) {
      HourlyStat h;
      h.hour_start_ms = q.getColumn(0).getInt64();
      h.runs = static_cast<uint64_t>(q.getColumn(1).getInt64());
      h.files_uploaded = static_cast<uint64_t>(q.getColumn(2).getInt64());
      h.bytes_uploaded = static_cast<uint64_t>(q.getColumn(3).getInt64());
      h.files_failed = static_cast<uint64_t>(q.getColumn(4).getInt64());
      out.push_back(h);
    }
    return out;
  });
}

absl::StatusOr<std::vector<SyncedFile>> SqliteIndex::SearchSyncedFiles(
    int64_t job_id, const std::string& text, bool prefix, const std::string& after_path,
    int limit) {
  if (limit < 1) return absl::InvalidArgumentError("SearchSyncedFiles: limit must be positive");
  return Locked("SearchSyncedFiles", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<SyncedFile>> {
    SQLite::Transaction tx(db_);
    if (!JobExists(job_id)) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    // A prefix is a range of the (job_id, path) primary key: [text, text with its last byte
    // raised); a substring scans the job's rows in path order after after_path until `limit` match.
    std::string lower = after_path;
    std::string upper;
    bool strict = true;
    if (prefix) {
      if (text > after_path) lower = text, strict = false;
      upper = text;
      while (!upper.empty() && static_cast<unsigned char>(upper.back()) == 0xff) upper.pop_back();
      if (!upper.empty()) upper.back() = static_cast<char>(upper.back() + 1);
    }
    const std::string sql = absl::StrCat(
        "SELECT job_id, path, size, mtime_ns, sha256, synced_at, run_id FROM synced_files "
        "WHERE job_id = ?1 AND path ", strict ? ">" : ">=", " ?2",
        prefix ? (upper.empty() ? "" : " AND path < ?3") : " AND instr(path, ?4) > 0",
        " ORDER BY path LIMIT ?7");
    SQLite::Statement q(db_, sql);
    q.bind(1, job_id);
    q.bind(2, lower);
    if (prefix && !upper.empty()) q.bind(3, upper);
    if (!prefix) q.bind(4, text);
    q.bind(7, std::min(limit, kMaxFilesPerPage));
    std::vector<SyncedFile> files;
    while (q.executeStep()) files.push_back(SyncedFileFromRow(q));
    q.reset();
    tx.commit();
    return files;
  });
}

// ---- runner key rotation ------------------------------------------------------------------------

absl::Status SqliteIndex::RequestKeyRotation(int64_t runner_id, int64_t now_ms) {
  return Locked("RequestKeyRotation", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement u(db_, R"sql(
      UPDATE runners SET rotate_requested_at = ?, next_key_hash = NULL
      WHERE id = ? AND status = 'approved' AND quarantined_at = 0 AND api_key_hash IS NOT NULL)sql");
    u.bind(1, now_ms);
    u.bind(2, runner_id);
    if (u.exec() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("runner ", runner_id, " is not an approved runner with a key"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<bool> SqliteIndex::OfferNextKey(int64_t runner_id, const std::string& next_hash) {
  if (next_hash.empty()) return absl::InvalidArgumentError("OfferNextKey: empty hash");
  return Locked("OfferNextKey", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<bool> {
    SQLite::Statement u(db_, R"sql(
      UPDATE runners SET next_key_hash = ?
      WHERE id = ? AND status = 'approved' AND quarantined_at = 0 AND rotate_requested_at > 0
        AND next_key_hash IS NULL)sql");
    u.bind(1, next_hash);
    u.bind(2, runner_id);
    return u.exec() == 1;
  });
}

absl::StatusOr<Runner> SqliteIndex::PromoteNextKey(const std::string& key_hash, int64_t now_ms) {
  return Locked("PromoteNextKey", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Runner> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    int64_t id = 0;
    {
      SQLite::Statement q(db_, R"sql(
        SELECT id FROM runners WHERE next_key_hash = ? AND status = 'approved' AND quarantined_at = 0)sql");
      q.bind(1, key_hash);
      if (!q.executeStep()) return absl::NotFoundError("no runner has this pending key");
      id = q.getColumn(0).getInt64();
    }
    SQLite::Statement u(db_, R"sql(
      UPDATE runners SET retired_key_hash = api_key_hash, key_retired_at = ?,
        api_key_hash = next_key_hash, next_key_hash = NULL, rotate_requested_at = 0
      WHERE id = ?)sql");
    SQLite::bind(u, now_ms, id);
    u.exec();
    DS_ASSIGN_OR_RETURN(Runner r, LoadRunner(id));
    tx.commit();
    return r;
  });
}

absl::StatusOr<StateIndex::RetiredKeyUse> SqliteIndex::UseRetiredKey(const std::string& key_hash,
                                                                     int64_t retired_before_ms,
                                                                     int64_t now_ms) {
  return Locked("UseRetiredKey", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<RetiredKeyUse> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    RetiredKeyUse use;
    {
      SQLite::Statement q(db_, R"sql(
        SELECT id FROM runners WHERE retired_key_hash = ? AND status = 'approved')sql");
      q.bind(1, key_hash);
      if (!q.executeStep()) return absl::NotFoundError("no runner retired this key");
      use.runner.id = q.getColumn(0).getInt64();
    }
    SQLite::Statement u(db_, R"sql(
      UPDATE runners SET quarantined_at = ?
      WHERE id = ? AND quarantined_at = 0 AND key_retired_at < ?)sql");
    SQLite::bind(u, now_ms, use.runner.id, retired_before_ms);
    use.quarantined_now = u.exec() == 1;
    DS_ASSIGN_OR_RETURN(use.runner, LoadRunner(use.runner.id));
    tx.commit();
    return use;
  });
}

}  // namespace


// ---- reconcile ----------------------------------------------------------------------------------

namespace {
constexpr char kReconcileColumns[] = R"sql(
  c.id, c.job_id, r.name, j.name, c.state, c.verify, c.claimed_by, c.requested_at, c.started_at,
  c.updated_at, c.finished_at, c.files_expected, c.files_seen, c.bytes_seen, c.rows_added,
  c.rows_removed, c.rows_updated, c.rows_unchanged, c.mismatches, c.temp_files, c.report, c.error
  FROM reconciles c JOIN jobs j ON j.id = c.job_id JOIN runners r ON r.id = j.runner_id)sql";

Reconcile ReconcileFromRow(const SQLite::Statement& s) {
  Reconcile c;
  c.id = s.getColumn(0).getString();
  c.job_id = s.getColumn(1).getInt64();
  c.runner_name = s.getColumn(2).getString();
  c.job_name = s.getColumn(3).getString();
  c.state = s.getColumn(4).getString();
  c.verify = s.getColumn(5).getInt() != 0;
  c.claimed_by = s.getColumn(6).getString();
  c.requested_at_ms = s.getColumn(7).getInt64();
  c.started_at_ms = s.getColumn(8).getInt64();
  c.updated_at_ms = s.getColumn(9).getInt64();
  c.finished_at_ms = s.getColumn(10).getInt64();
  auto u = [&](int i) { return static_cast<uint64_t>(s.getColumn(i).getInt64()); };
  c.files_expected = u(11);
  c.files_seen = u(12);
  c.bytes_seen = u(13);
  c.rows_added = u(14);
  c.rows_removed = u(15);
  c.rows_updated = u(16);
  c.rows_unchanged = u(17);
  c.mismatches = u(18);
  c.temp_files = u(19);
  c.report_json = s.getColumn(20).getString();
  c.error = s.getColumn(21).getString();
  return c;
}
}  // namespace

absl::StatusOr<Reconcile> SqliteIndex::LoadReconcile(const std::string& id) {
  SQLite::Statement q(db_, std::string("SELECT ") + kReconcileColumns + " WHERE c.id = ?");
  q.bind(1, id);
  if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("reconcile ", id, " not found"));
  return ReconcileFromRow(q);
}

absl::StatusOr<Reconcile> SqliteIndex::CreateReconcile(const std::string& id, int64_t job_id,
                                                       bool verify, int64_t now_ms) {
  return Locked("CreateReconcile", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Reconcile> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    if (!JobExists(job_id)) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    {
      SQLite::Statement active(
          db_, "SELECT id FROM reconciles WHERE job_id = ? AND state IN ('queued','running')");
      active.bind(1, job_id);
      if (active.executeStep()) {
        return absl::AlreadyExistsError(absl::StrCat("reconcile ", active.getColumn(0).getString(),
                                                     " of this job is already in progress"));
      }
    }
    SQLite::Statement ins(db_, R"sql(
      INSERT INTO reconciles (id, job_id, state, verify, requested_at, files_expected)
      VALUES (?, ?, 'queued', ?, ?, (SELECT COUNT(*) FROM synced_files WHERE job_id = ?)))sql");
    ins.bind(1, id);
    ins.bind(2, job_id);
    ins.bind(3, verify ? 1 : 0);
    ins.bind(4, now_ms);
    ins.bind(5, job_id);
    ins.exec();
    DS_ASSIGN_OR_RETURN(Reconcile c, LoadReconcile(id));
    tx.commit();
    return c;
  });
}

absl::StatusOr<Reconcile> SqliteIndex::ClaimReconcile(const std::string& worker, int64_t now_ms,
                                                      int64_t stale_before_ms) {
  return Locked("ClaimReconcile", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Reconcile> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement pick(db_, R"sql(
      SELECT id FROM reconciles
      WHERE state = 'queued' OR (state = 'running' AND updated_at < ?)
      ORDER BY requested_at LIMIT 1)sql");
    pick.bind(1, stale_before_ms);
    if (!pick.executeStep()) return absl::NotFoundError("no reconcile waiting");
    std::string id = pick.getColumn(0).getString();
    pick.reset();
    SQLite::Statement claim(db_, R"sql(
      UPDATE reconciles SET state = 'running', claimed_by = ?, started_at = ?, updated_at = ?,
        files_seen = 0, bytes_seen = 0
      WHERE id = ?)sql");
    claim.bind(1, worker);
    claim.bind(2, now_ms);
    claim.bind(3, now_ms);
    claim.bind(4, id);
    claim.exec();
    DS_ASSIGN_OR_RETURN(Reconcile c, LoadReconcile(id));
    tx.commit();
    return c;
  });
}

absl::Status SqliteIndex::UpdateReconcile(const Reconcile& r, int64_t now_ms) {
  if (!IsOneOf(r.state, {"running", "succeeded", "failed"})) {
    return absl::InvalidArgumentError(absl::StrCat("UpdateReconcile: bad state \"", r.state, "\""));
  }
  return Locked("UpdateReconcile", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement q(db_, R"sql(
      UPDATE reconciles SET state = ?, updated_at = ?, finished_at = ?, files_seen = ?,
        bytes_seen = ?, rows_added = ?, rows_removed = ?, rows_updated = ?, rows_unchanged = ?,
        mismatches = ?, temp_files = ?, report = ?, error = ?
      WHERE id = ? AND state = 'running' AND claimed_by = ?)sql");
    int i = 1;
    q.bind(i++, r.state);
    q.bind(i++, now_ms);
    q.bind(i++, r.finished_at_ms);
    for (uint64_t v : {r.files_seen, r.bytes_seen, r.rows_added, r.rows_removed, r.rows_updated,
                       r.rows_unchanged, r.mismatches, r.temp_files}) {
      q.bind(i++, static_cast<int64_t>(v));
    }
    q.bind(i++, r.report_json);
    q.bind(i++, r.error);
    q.bind(i++, r.id);
    q.bind(i++, r.claimed_by);
    if (q.exec() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("reconcile ", r.id, " is not running under ", r.claimed_by));
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<Reconcile> SqliteIndex::GetReconcile(const std::string& id) {
  return Locked("GetReconcile", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Reconcile> { return LoadReconcile(id); });
}

absl::StatusOr<std::vector<Reconcile>> SqliteIndex::ListReconciles(std::optional<int64_t> job_id,
                                                                   bool active_only, int limit) {
  if (limit < 1) return absl::InvalidArgumentError("ListReconciles: limit must be positive");
  return Locked("ListReconciles", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<Reconcile>> {
    std::string sql = std::string("SELECT ") + kReconcileColumns + " WHERE 1 = 1";
    if (job_id) sql += " AND c.job_id = ?";
    if (active_only) sql += " AND c.state IN ('queued','running')";
    sql += " ORDER BY c.requested_at DESC LIMIT ?";
    SQLite::Statement q(db_, sql);
    int i = 1;
    if (job_id) q.bind(i++, *job_id);
    q.bind(i++, std::min(limit, 1000));
    std::vector<Reconcile> out;
    while (q.executeStep()) out.push_back(ReconcileFromRow(q));
    return out;
  });
}

absl::Status SqliteIndex::ApplySyncedFiles(int64_t job_id, const std::vector<SyncedFile>& upserts,
                                           const std::vector<std::string>& deletes) {
  return Locked("ApplySyncedFiles", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    if (!JobExists(job_id)) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    ForgetJobManifest(db_, job_id);
    {
      // A run in flight compared its manifest against the rows before this change: its digest
      // must not become the job's when it succeeds.
      SQLite::Statement stale(
          db_, "UPDATE sync_runs SET manifest_digest = '' WHERE job_id = ? AND state = 'running'");
      SQLite::bind(stale, job_id);
      stale.exec();
    }
    SQLite::Statement up(db_, R"sql(
      INSERT INTO synced_files (job_id, path, size, mtime_ns, sha256, synced_at, run_id)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (job_id, path) DO UPDATE
      SET size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
          synced_at = excluded.synced_at, run_id = excluded.run_id)sql");
    for (const SyncedFile& f : upserts) {
      up.reset();
      up.bind(1, job_id);
      up.bind(2, f.path);
      up.bind(3, static_cast<int64_t>(f.size));
      up.bind(4, f.mtime_ns);
      up.bind(5, f.sha256);
      up.bind(6, f.synced_at_ms);
      up.bind(7, f.run_id);
      up.exec();
    }
    SQLite::Statement del(db_, "DELETE FROM synced_files WHERE job_id = ? AND path = ?");
    for (const std::string& p : deletes) {
      del.reset();
      del.bind(1, job_id);
      del.bind(2, p);
      del.exec();
    }
    tx.commit();
    return absl::OkStatus();
  });
}

// ---- orphaned runs ------------------------------------------------------------------------------

absl::StatusOr<std::vector<std::string>> SqliteIndex::AbandonStaleRuns(
    std::optional<int64_t> runner_id, const std::string& keep_run_id, int64_t started_before_ms,
    const std::string& reason, int64_t now_ms) {
  return Locked("AbandonStaleRuns", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<std::string>> {
    std::string sql =
        "SELECT id FROM sync_runs WHERE state = 'running' AND started_at < ? AND id <> ?";
    if (runner_id) sql += " AND runner_id = ?";
    {
      // Every heartbeat asks; almost never is there anything: look without the write lock.
      SQLite::Statement peek(db_, sql + " LIMIT 1");
      peek.bind(1, started_before_ms);
      peek.bind(2, keep_run_id);
      if (runner_id) peek.bind(3, *runner_id);
      if (!peek.executeStep()) return std::vector<std::string>{};
    }
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement q(db_, sql);
    q.bind(1, started_before_ms);
    q.bind(2, keep_run_id);
    if (runner_id) q.bind(3, *runner_id);
    std::vector<std::string> ids;
    while (q.executeStep()) ids.push_back(q.getColumn(0).getString());
    q.reset();
    SQLite::Statement close(db_, R"sql(
      UPDATE sync_runs SET state = 'abandoned', error = ?, finished_at = ?
      WHERE id = ? AND state = 'running')sql");
    for (const auto& id : ids) {
      close.reset();
      close.bind(1, reason);
      close.bind(2, now_ms);
      close.bind(3, id);
      close.exec();
    }
    tx.commit();
    return ids;
  });
}

// ---- replaced PCs -------------------------------------------------------------------------------

absl::StatusOr<Enrollment> SqliteIndex::PendingEnrollmentByName(const std::string& name) {
  return Locked("PendingEnrollmentByName", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Enrollment> {
    SQLite::Statement q(db_, R"sql(
      SELECT e.id, e.runner_id, e.secret_hash, e.status, e.created_at, e.hostname, e.os,
             e.machine_id, e.agent_version, e.address
      FROM enrollments e JOIN runners r ON r.id = e.runner_id
      WHERE r.name = ? AND e.status = 'pending' ORDER BY e.created_at DESC LIMIT 1)sql");
    q.bind(1, name);
    if (!q.executeStep()) {
      return absl::NotFoundError(absl::StrCat("no pending registration named '", name, "'"));
    }
    return EnrollmentFromRow(q);
  });
}

absl::Status SqliteIndex::ReplaceRunnerMachine(int64_t runner_id, const std::string& enrollment_id,
                                               int64_t now_ms) {
  return Locked("ReplaceRunnerMachine", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    DS_ASSIGN_OR_RETURN(Runner target, LoadRunner(runner_id));
    if (target.status == "rejected") {
      return absl::FailedPreconditionError(
          absl::StrCat("runner '", target.name, "' was rejected and cannot take a machine"));
    }
    int64_t source_runner = 0;
    std::array<std::string, 4> machine;  // hostname, os, machine_id, agent_version
    {
      SQLite::Statement q(db_, R"sql(
        SELECT runner_id, status, hostname, os, machine_id, agent_version
        FROM enrollments WHERE id = ?)sql");
      q.bind(1, enrollment_id);
      if (!q.executeStep()) {
        return absl::NotFoundError(absl::StrCat("enrollment ", enrollment_id, " not found"));
      }
      source_runner = q.getColumn(0).getInt64();
      machine = {q.getColumn(2).getString(), q.getColumn(3).getString(),
                 q.getColumn(4).getString(), q.getColumn(5).getString()};
      if (q.getColumn(1).getString() != "pending") {
        return absl::FailedPreconditionError(
            absl::StrCat("enrollment ", enrollment_id, " is ", q.getColumn(1).getString()));
      }
    }
    DS_ASSIGN_OR_RETURN(Runner source, LoadRunner(source_runner));
    if (source_runner != runner_id && source.status != "pending") {
      return absl::FailedPreconditionError("the registration belongs to an enrolled runner");
    }
    // Older enrollments of the target can no longer deliver a key.
    SQLite::Statement old(db_, R"sql(
      UPDATE enrollments SET status = 'rejected'
      WHERE runner_id = ? AND status IN ('pending','approved') AND id <> ?)sql");
    old.bind(1, runner_id);
    old.bind(2, enrollment_id);
    old.exec();
    SQLite::Statement move(
        db_, "UPDATE enrollments SET runner_id = ?, status = 'approved' WHERE id = ?");
    move.bind(1, runner_id);
    move.bind(2, enrollment_id);
    move.exec();
    SQLite::Statement upd(db_, R"sql(
      UPDATE runners SET status = 'approved', api_key_hash = NULL, approved_at = ?,
        hostname = ?, os = ?, machine_id = ?, agent_version = ?, runtime_state = '',
        current_run = '', next_key_hash = NULL, rotate_requested_at = 0, retired_key_hash = NULL,
        quarantined_at = 0
      WHERE id = ?)sql");
    upd.bind(1, now_ms);
    for (int i = 0; i < 4; ++i) upd.bind(2 + i, machine[static_cast<size_t>(i)]);
    upd.bind(6, runner_id);
    upd.exec();
    if (source_runner != runner_id) {
      SQLite::Statement del(db_, "DELETE FROM runners WHERE id = ? AND status = 'pending'");
      del.bind(1, source_runner);
      del.exec();
    }
    tx.commit();
    return absl::OkStatus();
  });
}

// ---- retention and size -------------------------------------------------------------------------

absl::StatusOr<int64_t> SqliteIndex::PruneHistory(int64_t finished_before_ms) {
  return Locked("PruneHistory", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement files(db_, R"sql(
      DELETE FROM run_files WHERE run_id IN (
        SELECT id FROM sync_runs WHERE state <> 'running' AND finished_at > 0
          AND finished_at < ?))sql");
    files.bind(1, finished_before_ms);
    files.exec();
    SQLite::Statement runs(db_, R"sql(
      DELETE FROM sync_runs WHERE state <> 'running' AND finished_at > 0 AND finished_at < ?)sql");
    runs.bind(1, finished_before_ms);
    int n = runs.exec();
    SQLite::Statement cmds(
        db_, "DELETE FROM commands WHERE state = 'delivered' AND created_at < ?");
    cmds.bind(1, finished_before_ms);
    cmds.exec();
    SQLite::Statement recs(db_, R"sql(
      DELETE FROM reconciles WHERE state IN ('succeeded','failed') AND finished_at < ?)sql");
    recs.bind(1, finished_before_ms);
    recs.exec();
    tx.commit();
    return static_cast<int64_t>(n);
  });
}

absl::StatusOr<int64_t> SqliteIndex::SizeBytes() {
  return Locked("SizeBytes", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    SQLite::Statement q(db_, R"sql(
      SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())sql");
    q.executeStep();
    return q.getColumn(0).getInt64();
  });
}

absl::Status SqliteIndex::BackupTo(const std::string& path) {
  if (std::filesystem::exists(path)) {
    return absl::AlreadyExistsError(absl::StrCat(path, " exists; refusing to overwrite it"));
  }
  std::string tmp = path + ".partial";
  std::filesystem::remove(tmp);
  DS_RETURN_IF_ERROR(KeepIndexFilesPrivate(tmp));
  absl::Status st = Locked("BackupTo", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Database dest(tmp, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    sqlite3_backup* b = sqlite3_backup_init(dest.getHandle(), "main", db_.getHandle(), "main");
    if (b == nullptr) return absl::InternalError(sqlite3_errmsg(dest.getHandle()));
    int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
      return absl::InternalError(absl::StrCat("backup: ", sqlite3_errstr(rc)));
    }
    return absl::OkStatus();
  });
  if (!st.ok()) {
    std::filesystem::remove(tmp);
    return st;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("rename backup into place: ", ec.message()));
  return absl::OkStatus();
}

// ---- several server instances ------------------------------------------------------------------

absl::StatusOr<bool> SqliteIndex::TryAcquireLease(const std::string& name,
                                                  const std::string& holder, int64_t ttl_ms,
                                                  int64_t now_ms) {
  if (name.empty() || holder.empty() || ttl_ms <= 0) {
    return absl::InvalidArgumentError("TryAcquireLease: name, holder and a positive ttl required");
  }
  return Locked("TryAcquireLease", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<bool> {
    // One statement: the upsert's WHERE decides, so the check and the claim are atomic.
    SQLite::Statement q(db_, R"sql(
      INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?3 + ?4)
      ON CONFLICT (name) DO UPDATE
      SET acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at
                             ELSE excluded.acquired_at END,
          holder = excluded.holder, expires_at = excluded.expires_at
      WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at)sql");
    q.bind(1, name);
    q.bind(2, holder);
    q.bind(3, now_ms);
    q.bind(4, ttl_ms);
    return q.exec() == 1;
  });
}

absl::Status SqliteIndex::ReleaseLease(const std::string& name, const std::string& holder) {
  return Locked("ReleaseLease", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement q(db_, "DELETE FROM leases WHERE name = ? AND holder = ?");
    q.bind(1, name);
    q.bind(2, holder);
    q.exec();
    return absl::OkStatus();
  });
}

absl::Status SqliteIndex::RecordLongPoll(int64_t runner_id, const std::string& poll_id,
                                         int64_t now_ms) {
  if (poll_id.empty()) return absl::InvalidArgumentError("RecordLongPoll: empty poll id");
  return Locked("RecordLongPoll", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement q(db_, R"sql(
      INSERT INTO long_polls (runner_id, poll_id, started_at)
      SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM runners WHERE id = ?1)
      ON CONFLICT (runner_id) DO UPDATE
      SET poll_id = excluded.poll_id, started_at = excluded.started_at)sql");
    q.bind(1, runner_id);
    q.bind(2, poll_id);
    q.bind(3, now_ms);
    if (q.exec() == 0) return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<StateIndex::WaitingRunner>> SqliteIndex::CheckWaitingRunners(
    const std::vector<int64_t>& runner_ids) {
  // Asked once a second for every long-poll this instance holds (10,000 with a large fleet): in
  // slices, so that the one shared connection serves other requests in between.
  constexpr size_t kSlice = 500;
  std::vector<WaitingRunner> out;
  for (size_t begin = 0; begin < runner_ids.size(); begin += kSlice) {
    const std::vector<int64_t> slice(
        runner_ids.begin() + static_cast<long>(begin),
        runner_ids.begin() + static_cast<long>(std::min(runner_ids.size(), begin + kSlice)));
    DS_RETURN_IF_ERROR(Locked("CheckWaitingRunners", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      // The ids travel as one JSON array parameter, however many there are.
      SQLite::Statement q(db_, R"sql(
        SELECT r.id,
               EXISTS (SELECT 1 FROM commands c WHERE c.runner_id = r.id AND c.state = 'pending'),
               COALESCE((SELECT p.poll_id FROM long_polls p WHERE p.runner_id = r.id), '')
        FROM runners r
        WHERE r.id IN (SELECT value FROM json_each(?))
        ORDER BY r.id)sql");
      q.bind(1, nlohmann::json(slice).dump());
      while (q.executeStep()) {
        WaitingRunner w;
        w.runner_id = q.getColumn(0).getInt64();
        w.pending_commands = q.getColumn(1).getInt() != 0;
        w.newest_poll_id = q.getColumn(2).getString();
        out.push_back(std::move(w));
      }
      return absl::OkStatus();
    }));
  }
  return out;
}

// ---- observability ------------------------------------------------------------------------------

namespace {

constexpr int kMaxLogsPerPage = 1000;
constexpr int kMaxAlertsPerPage = 1000;

// SQL rank of a severity column or parameter: info 0, warning 1, critical 2.
std::string SeverityRank(const std::string& expr) {
  return absl::StrCat("(CASE ", expr, " WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 ELSE 0 END)");
}

constexpr char kAlertColumns[] = R"sql(
  a.id, a.rule_id, r.name, r.kind, r.severity, a.subject, a.message, a.details, a.fired_at,
  a.resolved_at, a.acknowledged_by, a.acknowledged_at
  FROM alerts a JOIN alert_rules r ON r.id = a.rule_id)sql";

// Columns: kAlertColumns, starting at `at`.
Alert AlertFromRow(const SQLite::Statement& s, int at = 0) {
  Alert a;
  a.id = s.getColumn(at + 0).getInt64();
  a.rule_id = s.getColumn(at + 1).getInt64();
  a.rule_name = s.getColumn(at + 2).getString();
  a.kind = s.getColumn(at + 3).getString();
  a.severity = s.getColumn(at + 4).getString();
  a.subject = s.getColumn(at + 5).getString();
  a.message = s.getColumn(at + 6).getString();
  a.details_json = s.getColumn(at + 7).getString();
  a.fired_at_ms = s.getColumn(at + 8).getInt64();
  a.resolved_at_ms = s.getColumn(at + 9).getInt64();
  a.acknowledged_by = s.getColumn(at + 10).getString();
  a.acknowledged_at_ms = s.getColumn(at + 11).getInt64();
  return a;
}

constexpr char kRuleColumns[] =
    "id, name, kind, severity, scope_kind, scope, params, enabled, created_at, updated_at";

AlertRule RuleFromRow(const SQLite::Statement& s) {
  AlertRule r;
  r.id = s.getColumn(0).getInt64();
  r.name = s.getColumn(1).getString();
  r.kind = s.getColumn(2).getString();
  r.severity = s.getColumn(3).getString();
  r.scope_kind = s.getColumn(4).getString();
  r.scope = s.getColumn(5).getString();
  r.params_json = s.getColumn(6).getString();
  r.enabled = s.getColumn(7).getInt() != 0;
  r.created_at_ms = s.getColumn(8).getInt64();
  r.updated_at_ms = s.getColumn(9).getInt64();
  return r;
}

constexpr char kChannelColumns[] = R"sql(
  c.id, c.name, c.kind, c.config, c.min_severity, c.enabled, c.created_at, c.last_success_at,
  c.last_error, c.last_error_at)sql";

NotificationChannel ChannelFromRow(const SQLite::Statement& s, int at = 0) {
  NotificationChannel c;
  c.id = s.getColumn(at + 0).getInt64();
  c.name = s.getColumn(at + 1).getString();
  c.kind = s.getColumn(at + 2).getString();
  c.config_json = s.getColumn(at + 3).getString();
  c.min_severity = s.getColumn(at + 4).getString();
  c.enabled = s.getColumn(at + 5).getInt() != 0;
  c.created_at_ms = s.getColumn(at + 6).getInt64();
  c.last_success_at_ms = s.getColumn(at + 7).getInt64();
  c.last_error = s.getColumn(at + 8).getString();
  c.last_error_at_ms = s.getColumn(at + 9).getInt64();
  return c;
}

}  // namespace

absl::StatusOr<Alert> SqliteIndex::LoadAlert(int64_t id) {
  SQLite::Statement q(db_, absl::StrCat("SELECT ", kAlertColumns, " WHERE a.id = ?"));
  q.bind(1, id);
  if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("alert ", id, " not found"));
  return AlertFromRow(q);
}

void SqliteIndex::QueueDeliveries(int64_t alert_id, const std::string& transition, int64_t now_ms) {
  SQLite::Statement q(db_, absl::StrCat(R"sql(
    INSERT INTO notification_deliveries (alert_id, transition, channel_id, next_attempt_at, created_at)
    SELECT a.id, ?2, c.id, ?3, ?3
    FROM alerts a JOIN alert_rules r ON r.id = a.rule_id, notification_channels c
    WHERE a.id = ?1 AND c.enabled <> 0 AND )sql",
                                        SeverityRank("r.severity"), " >= ", SeverityRank("c.min_severity"),
                                        " ON CONFLICT DO NOTHING"));
  q.bind(1, alert_id);
  q.bind(2, transition);
  q.bind(3, now_ms);
  q.exec();
}

absl::StatusOr<int64_t> SqliteIndex::AppendAgentLogs(int64_t runner_id,
                                                     const std::vector<AgentLogRecord>& records,
                                                     int64_t now_ms) {
  return Locked("AppendAgentLogs", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    if (!RunnerExists(runner_id)) {
      return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
    }
    SQLite::Statement q(db_, R"sql(
      INSERT INTO agent_logs (runner_id, seq, time_ms, level, message, correlation_id, fields,
                              received_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (runner_id, seq) DO NOTHING)sql");
    int64_t n = 0;
    for (const auto& r : records) {
      q.bind(1, runner_id);
      q.bind(2, r.seq);
      q.bind(3, r.time_ms);
      q.bind(4, r.level);
      q.bind(5, r.message);
      q.bind(6, r.correlation_id);
      q.bind(7, r.fields_json);
      q.bind(8, now_ms);
      n += q.exec();
      q.reset();
    }
    tx.commit();
    return n;
  });
}

absl::StatusOr<std::vector<AgentLogRecord>> SqliteIndex::ListAgentLogs(const AgentLogFilter& f) {
  return Locked("ListAgentLogs", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<AgentLogRecord>> {
    std::string sql = R"sql(
      SELECT l.id, l.runner_id, r.name, l.seq, l.time_ms, l.level, l.message, l.correlation_id,
             l.fields
      FROM agent_logs l JOIN runners r ON r.id = l.runner_id
      WHERE (?1 = 0 OR l.runner_id = ?1)
        AND (?2 = '[]' OR l.level IN (SELECT value FROM json_each(?2)))
        AND (?3 = '' OR instr(l.message, ?3) > 0)
        AND (?4 = 0 OR l.time_ms >= ?4) AND (?5 = 0 OR l.time_ms < ?5)
        AND (?6 = 0 OR l.id < ?6) AND (?7 = 0 OR l.id > ?7))sql";
    sql += f.after_id > 0 ? " ORDER BY l.id ASC LIMIT ?8" : " ORDER BY l.id DESC LIMIT ?8";
    SQLite::Statement q(db_, sql);
    q.bind(1, f.runner_id.value_or(0));
    q.bind(2, nlohmann::json(f.levels).dump());
    q.bind(3, f.grep);
    q.bind(4, f.since_ms);
    q.bind(5, f.until_ms);
    q.bind(6, f.before_id);
    q.bind(7, f.after_id);
    q.bind(8, std::clamp(f.limit, 1, kMaxLogsPerPage));
    std::vector<AgentLogRecord> out;
    while (q.executeStep()) {
      AgentLogRecord r;
      r.id = q.getColumn(0).getInt64();
      r.runner_id = q.getColumn(1).getInt64();
      r.runner_name = q.getColumn(2).getString();
      r.seq = q.getColumn(3).getInt64();
      r.time_ms = q.getColumn(4).getInt64();
      r.level = q.getColumn(5).getString();
      r.message = q.getColumn(6).getString();
      r.correlation_id = q.getColumn(7).getString();
      r.fields_json = q.getColumn(8).getString();
      out.push_back(std::move(r));
    }
    return out;
  });
}

absl::StatusOr<int64_t> SqliteIndex::PruneAgentLogs(int64_t before_ms) {
  return Locked("PruneAgentLogs", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    SQLite::Statement q(db_, "DELETE FROM agent_logs WHERE time_ms < ?");
    q.bind(1, before_ms);
    return static_cast<int64_t>(q.exec());
  });
}

absl::StatusOr<AlertRule> SqliteIndex::PutAlertRule(const AlertRule& rule, int64_t now_ms) {
  return Locked("PutAlertRule", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<AlertRule> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    int64_t id = rule.id;
    if (id == 0) {
      SQLite::Statement q(db_, R"sql(
        INSERT INTO alert_rules (name, kind, severity, scope_kind, scope, params, enabled,
                                 created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?))sql");
      q.bind(1, rule.name);
      q.bind(2, rule.kind);
      q.bind(3, rule.severity);
      q.bind(4, rule.scope_kind);
      q.bind(5, rule.scope);
      q.bind(6, rule.params_json);
      q.bind(7, rule.enabled ? 1 : 0);
      q.bind(8, now_ms);
      q.bind(9, now_ms);
      q.exec();
      id = db_.getLastInsertRowid();
    } else {
      SQLite::Statement q(db_, R"sql(
        UPDATE alert_rules SET name = ?, kind = ?, severity = ?, scope_kind = ?, scope = ?,
          params = ?, enabled = ?, updated_at = ? WHERE id = ?)sql");
      q.bind(1, rule.name);
      q.bind(2, rule.kind);
      q.bind(3, rule.severity);
      q.bind(4, rule.scope_kind);
      q.bind(5, rule.scope);
      q.bind(6, rule.params_json);
      q.bind(7, rule.enabled ? 1 : 0);
      q.bind(8, now_ms);
      q.bind(9, id);
      if (q.exec() == 0) return absl::NotFoundError(absl::StrCat("alert rule ", id, " not found"));
    }
    SQLite::Statement get(db_, absl::StrCat("SELECT ", kRuleColumns, " FROM alert_rules WHERE id = ?"));
    get.bind(1, id);
    get.executeStep();
    AlertRule out = RuleFromRow(get);
    tx.commit();
    return out;
  });
}

absl::StatusOr<std::vector<AlertRule>> SqliteIndex::ListAlertRules() {
  return Locked("ListAlertRules", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<AlertRule>> {
    SQLite::Statement q(db_, absl::StrCat("SELECT ", kRuleColumns, " FROM alert_rules ORDER BY id"));
    std::vector<AlertRule> out;
    while (q.executeStep()) out.push_back(RuleFromRow(q));
    return out;
  });
}

absl::Status SqliteIndex::DeleteAlertRule(int64_t rule_id) {
  return Locked("DeleteAlertRule", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement q(db_, "DELETE FROM alert_rules WHERE id = ?");
    q.bind(1, rule_id);
    if (q.exec() == 0) return absl::NotFoundError(absl::StrCat("alert rule ", rule_id, " not found"));
    return absl::OkStatus();
  });
}

absl::StatusOr<StateIndex::FireResult> SqliteIndex::FireAlert(int64_t rule_id,
                                                              const std::string& subject,
                                                              const std::string& message,
                                                              const std::string& details_json,
                                                              int64_t now_ms) {
  return Locked("FireAlert", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<FireResult> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement active(db_, "SELECT id FROM alerts WHERE rule_id = ? AND subject = ? AND resolved_at = 0");
    active.bind(1, rule_id);
    active.bind(2, subject);
    if (active.executeStep()) {
      DS_ASSIGN_OR_RETURN(Alert a, LoadAlert(active.getColumn(0).getInt64()));
      return FireResult{std::move(a), false};
    }
    SQLite::Statement rule(db_, "SELECT 1 FROM alert_rules WHERE id = ?");
    rule.bind(1, rule_id);
    if (!rule.executeStep()) return absl::NotFoundError(absl::StrCat("alert rule ", rule_id, " not found"));
    SQLite::Statement q(db_, R"sql(
      INSERT INTO alerts (rule_id, subject, message, details, fired_at) VALUES (?, ?, ?, ?, ?))sql");
    q.bind(1, rule_id);
    q.bind(2, subject);
    q.bind(3, message);
    q.bind(4, details_json);
    q.bind(5, now_ms);
    q.exec();
    const int64_t id = db_.getLastInsertRowid();
    QueueDeliveries(id, "fired", now_ms);
    DS_ASSIGN_OR_RETURN(Alert a, LoadAlert(id));
    tx.commit();
    return FireResult{std::move(a), true};
  });
}

absl::StatusOr<bool> SqliteIndex::ResolveAlert(int64_t alert_id, int64_t now_ms) {
  return Locked("ResolveAlert", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<bool> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement q(db_, "UPDATE alerts SET resolved_at = ? WHERE id = ? AND resolved_at = 0");
    q.bind(1, now_ms);
    q.bind(2, alert_id);
    if (q.exec() == 0) {
      DS_RETURN_IF_ERROR(LoadAlert(alert_id).status());
      return false;
    }
    QueueDeliveries(alert_id, "resolved", now_ms);
    tx.commit();
    return true;
  });
}

absl::StatusOr<Alert> SqliteIndex::GetAlert(int64_t alert_id) {
  return Locked("GetAlert", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Alert> { return LoadAlert(alert_id); });
}

absl::StatusOr<std::vector<Alert>> SqliteIndex::ListAlerts(const AlertFilter& f) {
  return Locked("ListAlerts", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<Alert>> {
    SQLite::Statement q(db_, absl::StrCat("SELECT ", kAlertColumns, R"sql(
      WHERE (?1 = 0 OR a.resolved_at = 0) AND (?2 = 0 OR a.rule_id = ?2) AND (?3 = 0 OR a.id < ?3)
      ORDER BY a.id DESC LIMIT ?4)sql"));
    q.bind(1, f.active_only ? 1 : 0);
    q.bind(2, f.rule_id.value_or(0));
    q.bind(3, f.before_id);
    q.bind(4, std::clamp(f.limit, 1, kMaxAlertsPerPage));
    std::vector<Alert> out;
    while (q.executeStep()) out.push_back(AlertFromRow(q));
    return out;
  });
}

absl::StatusOr<Alert> SqliteIndex::AckAlert(int64_t alert_id, const std::string& by, int64_t now_ms) {
  return Locked("AckAlert", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Alert> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement q(db_, R"sql(
      UPDATE alerts SET acknowledged_by = ?, acknowledged_at = ? WHERE id = ? AND acknowledged_at = 0)sql");
    q.bind(1, by);
    q.bind(2, now_ms);
    q.bind(3, alert_id);
    q.exec();
    DS_ASSIGN_OR_RETURN(Alert a, LoadAlert(alert_id));
    tx.commit();
    return a;
  });
}

absl::StatusOr<NotificationChannel> SqliteIndex::PutNotificationChannel(const NotificationChannel& c,
                                                                        int64_t now_ms) {
  return Locked("PutNotificationChannel", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<NotificationChannel> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    int64_t id = c.id;
    if (id == 0) {
      SQLite::Statement q(db_, R"sql(
        INSERT INTO notification_channels (name, kind, config, min_severity, enabled, created_at)
        VALUES (?, ?, ?, ?, ?, ?))sql");
      q.bind(1, c.name);
      q.bind(2, c.kind);
      q.bind(3, c.config_json);
      q.bind(4, c.min_severity);
      q.bind(5, c.enabled ? 1 : 0);
      q.bind(6, now_ms);
      q.exec();
      id = db_.getLastInsertRowid();
    } else {
      SQLite::Statement q(db_, R"sql(
        UPDATE notification_channels SET name = ?, kind = ?, config = ?, min_severity = ?, enabled = ?
        WHERE id = ?)sql");
      q.bind(1, c.name);
      q.bind(2, c.kind);
      q.bind(3, c.config_json);
      q.bind(4, c.min_severity);
      q.bind(5, c.enabled ? 1 : 0);
      q.bind(6, id);
      if (q.exec() == 0) return absl::NotFoundError(absl::StrCat("channel ", id, " not found"));
    }
    SQLite::Statement get(db_, absl::StrCat("SELECT ", kChannelColumns,
                                            " FROM notification_channels c WHERE c.id = ?"));
    get.bind(1, id);
    get.executeStep();
    NotificationChannel out = ChannelFromRow(get);
    tx.commit();
    return out;
  });
}

absl::StatusOr<std::vector<NotificationChannel>> SqliteIndex::ListNotificationChannels() {
  return Locked("ListNotificationChannels", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<NotificationChannel>> {
    SQLite::Statement q(db_, absl::StrCat("SELECT ", kChannelColumns,
                                          " FROM notification_channels c ORDER BY c.id"));
    std::vector<NotificationChannel> out;
    while (q.executeStep()) out.push_back(ChannelFromRow(q));
    return out;
  });
}

absl::Status SqliteIndex::DeleteNotificationChannel(int64_t channel_id) {
  return Locked("DeleteNotificationChannel", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement q(db_, "DELETE FROM notification_channels WHERE id = ?");
    q.bind(1, channel_id);
    if (q.exec() == 0) return absl::NotFoundError(absl::StrCat("channel ", channel_id, " not found"));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<PendingDelivery>> SqliteIndex::DueDeliveries(int64_t now_ms,
                                                                        int max_attempts, int limit) {
  return Locked("DueDeliveries", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<PendingDelivery>> {
    SQLite::Statement q(db_, absl::StrCat("SELECT d.id, d.transition, d.attempts, ", kChannelColumns, ", ",
                                          kAlertColumns, R"sql(
      JOIN notification_deliveries d ON d.alert_id = a.id
      JOIN notification_channels c ON c.id = d.channel_id
      WHERE d.delivered_at = 0 AND d.next_attempt_at <= ? AND d.attempts < ? AND c.enabled <> 0
      ORDER BY d.id LIMIT ?)sql"));
    q.bind(1, now_ms);
    q.bind(2, max_attempts);
    q.bind(3, std::clamp(limit, 1, 1000));
    std::vector<PendingDelivery> out;
    while (q.executeStep()) {
      PendingDelivery d;
      d.id = q.getColumn(0).getInt64();
      d.transition = q.getColumn(1).getString();
      d.attempts = q.getColumn(2).getInt();
      d.channel = ChannelFromRow(q, 3);
      d.alert = AlertFromRow(q, 13);
      out.push_back(std::move(d));
    }
    return out;
  });
}

absl::Status SqliteIndex::RecordDeliveryAttempt(int64_t delivery_id, const std::string& error,
                                                int64_t next_attempt_ms, int64_t now_ms) {
  return Locked("RecordDeliveryAttempt", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement q(db_, R"sql(
      UPDATE notification_deliveries
      SET attempts = attempts + 1, last_error = ?1,
          delivered_at = CASE WHEN ?1 = '' THEN ?3 ELSE 0 END,
          next_attempt_at = CASE WHEN ?1 = '' THEN next_attempt_at ELSE ?2 END
      WHERE id = ?4 AND delivered_at = 0)sql");
    q.bind(1, error);
    q.bind(2, next_attempt_ms);
    q.bind(3, now_ms);
    q.bind(4, delivery_id);
    if (q.exec() == 0) return absl::NotFoundError(absl::StrCat("no undelivered delivery ", delivery_id));
    SQLite::Statement c(db_, R"sql(
      UPDATE notification_channels
      SET last_success_at = CASE WHEN ?1 = '' THEN ?2 ELSE last_success_at END,
          last_error = CASE WHEN ?1 = '' THEN last_error ELSE ?1 END,
          last_error_at = CASE WHEN ?1 = '' THEN last_error_at ELSE ?2 END
      WHERE id = (SELECT channel_id FROM notification_deliveries WHERE id = ?3))sql");
    c.bind(1, error);
    c.bind(2, now_ms);
    c.bind(3, delivery_id);
    c.exec();
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::unique_ptr<StateIndex>> OpenSqliteIndex(const std::string& path) {
  DS_RETURN_IF_ERROR(KeepIndexFilesPrivate(path));
  try {
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, kBusyTimeoutMs);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec("PRAGMA foreign_keys = ON");
    std::unique_ptr<Checkpointer> checkpointer;
    if (path != ":memory:" && path.rfind("file::memory:", 0) != 0) {
      db.exec("PRAGMA wal_autocheckpoint = 0");  // the Checkpointer's thread does it
      checkpointer = std::make_unique<Checkpointer>(path);
    }
    return std::make_unique<SqliteIndex>(std::move(db), std::move(checkpointer));
  } catch (const SQLite::Exception& e) {
    return FromSqliteException(absl::StrCat("opening SQLite index ", path), e);
  }
}

// ---- scrub -------------------------------------------------------------------------------------

namespace {
constexpr char kScrubColumns[] = R"sql(
  c.id, c.job_id, r.name, j.name, c.state, c.trigger_kind, c.rehash_fraction, c.claimed_by,
  c.requested_at, c.started_at, c.updated_at, c.finished_at, c.objects_listed, c.bytes_listed,
  c.objects_rehashed, c.missing, c.extra, c.size_mismatches, c.hash_mismatches, c.temp_files,
  c.healed, c.unhealed, c.report, c.error
  FROM scrubs c JOIN jobs j ON j.id = c.job_id JOIN runners r ON r.id = j.runner_id)sql";

Scrub ScrubFromRow(const SQLite::Statement& q) {
  Scrub c;
  c.id = q.getColumn(0).getString();
  c.job_id = q.getColumn(1).getInt64();
  c.runner_name = q.getColumn(2).getString();
  c.job_name = q.getColumn(3).getString();
  c.state = q.getColumn(4).getString();
  c.trigger = q.getColumn(5).getString();
  c.rehash_fraction = q.getColumn(6).getDouble();
  c.claimed_by = q.getColumn(7).getString();
  c.requested_at_ms = q.getColumn(8).getInt64();
  c.started_at_ms = q.getColumn(9).getInt64();
  c.updated_at_ms = q.getColumn(10).getInt64();
  c.finished_at_ms = q.getColumn(11).getInt64();
  uint64_t* counters[] = {&c.objects_listed, &c.bytes_listed, &c.objects_rehashed, &c.missing,
                          &c.extra, &c.size_mismatches, &c.hash_mismatches, &c.temp_files,
                          &c.healed, &c.unhealed};
  int i = 12;
  for (uint64_t* v : counters) *v = static_cast<uint64_t>(q.getColumn(i++).getInt64());
  c.report_json = q.getColumn(22).getString();
  c.error = q.getColumn(23).getString();
  return c;
}
}  // namespace

absl::StatusOr<Scrub> SqliteIndex::LoadScrub(const std::string& id) {
  SQLite::Statement q(db_, std::string("SELECT ") + kScrubColumns + " WHERE c.id = ?");
  SQLite::bind(q, id);
  if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("scrub ", id, " not found"));
  return ScrubFromRow(q);
}

absl::StatusOr<Scrub> SqliteIndex::CreateScrub(const std::string& id, int64_t job_id,
                                               const std::string& trigger, double rehash_fraction,
                                               int64_t now_ms) {
  DS_RETURN_IF_ERROR(ValidateScrubRequest(trigger, rehash_fraction));
  return Locked("CreateScrub", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Scrub> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    if (!JobExists(job_id)) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    {
      SQLite::Statement active(
          db_, "SELECT id FROM scrubs WHERE job_id = ? AND state IN ('queued','running')");
      SQLite::bind(active, job_id);
      if (active.executeStep()) {
        return absl::AlreadyExistsError(absl::StrCat("scrub ", active.getColumn(0).getString(),
                                                     " of this job is already in progress"));
      }
    }
    SQLite::Statement ins(db_, R"sql(
      INSERT INTO scrubs (id, job_id, state, trigger_kind, rehash_fraction, requested_at)
      VALUES (?, ?, 'queued', ?, ?, ?))sql");
    SQLite::bind(ins, id, job_id, trigger, rehash_fraction, now_ms);
    ins.exec();
    DS_ASSIGN_OR_RETURN(Scrub c, LoadScrub(id));
    tx.commit();
    return c;
  });
}

absl::StatusOr<Scrub> SqliteIndex::ClaimScrub(const std::string& worker, int64_t now_ms,
                                              int64_t stale_before_ms) {
  return Locked("ClaimScrub", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Scrub> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement pick(db_, R"sql(
      SELECT id FROM scrubs
      WHERE state = 'queued' OR (state = 'running' AND updated_at < ?)
      ORDER BY requested_at LIMIT 1)sql");
    SQLite::bind(pick, stale_before_ms);
    if (!pick.executeStep()) return absl::NotFoundError("no scrub waiting");
    std::string id = pick.getColumn(0).getString();
    pick.reset();
    SQLite::Statement claim(db_, R"sql(
      UPDATE scrubs SET state = 'running', claimed_by = ?, started_at = ?, updated_at = ?,
        objects_listed = 0, bytes_listed = 0, objects_rehashed = 0, missing = 0, extra = 0,
        size_mismatches = 0, hash_mismatches = 0, temp_files = 0, healed = 0, unhealed = 0
      WHERE id = ?)sql");
    SQLite::bind(claim, worker, now_ms, now_ms, id);
    claim.exec();
    DS_ASSIGN_OR_RETURN(Scrub c, LoadScrub(id));
    tx.commit();
    return c;
  });
}

absl::Status SqliteIndex::UpdateScrub(const Scrub& c, int64_t now_ms) {
  if (!IsOneOf(c.state, {"running", "succeeded", "failed"})) {
    return absl::InvalidArgumentError(absl::StrCat("UpdateScrub: bad state \"", c.state, "\""));
  }
  return Locked("UpdateScrub", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Statement q(db_, R"sql(
      UPDATE scrubs SET state = ?, updated_at = ?, finished_at = ?, objects_listed = ?,
        bytes_listed = ?, objects_rehashed = ?, missing = ?, extra = ?, size_mismatches = ?,
        hash_mismatches = ?, temp_files = ?, healed = ?, unhealed = ?, report = ?, error = ?
      WHERE id = ? AND state = 'running' AND claimed_by = ?)sql");
    auto i64 = [](uint64_t v) { return static_cast<int64_t>(v); };
    SQLite::bind(q, c.state, now_ms, c.finished_at_ms, i64(c.objects_listed), i64(c.bytes_listed),
                 i64(c.objects_rehashed), i64(c.missing), i64(c.extra), i64(c.size_mismatches),
                 i64(c.hash_mismatches), i64(c.temp_files), i64(c.healed), i64(c.unhealed),
                 c.report_json, c.error, c.id, c.claimed_by);
    if (q.exec() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("scrub ", c.id, " is not running under ", c.claimed_by));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<Scrub> SqliteIndex::GetScrub(const std::string& id) {
  return Locked("GetScrub", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<Scrub> { return LoadScrub(id); });
}

absl::StatusOr<std::vector<Scrub>> SqliteIndex::ListScrubs(const ScrubFilter& f) {
  if (f.limit < 1) return absl::InvalidArgumentError("ListScrubs: limit must be positive");
  return Locked("ListScrubs", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<Scrub>> {
    std::string sql = std::string("SELECT ") + kScrubColumns + " WHERE 1 = 1";
    if (f.job_id) sql += " AND c.job_id = ?";
    if (f.state) sql += " AND c.state = ?";
    sql += " ORDER BY c.requested_at DESC, c.id DESC LIMIT ?";
    SQLite::Statement q(db_, sql);
    int i = 1;
    if (f.job_id) q.bind(i++, *f.job_id);
    if (f.state) q.bind(i++, *f.state);
    q.bind(i++, std::min(f.limit, 1000));
    std::vector<Scrub> out;
    while (q.executeStep()) out.push_back(ScrubFromRow(q));
    return out;
  });
}

absl::StatusOr<std::vector<Scrub>> SqliteIndex::LatestScrubs(const std::vector<std::string>& states) {
  return Locked("LatestScrubs", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<Scrub>> {
    std::string in;
    for (size_t i = 0; i < states.size(); ++i) absl::StrAppend(&in, i ? ", ?" : " AND x.state IN (?", "");
    if (!states.empty()) in += ")";
    SQLite::Statement q(db_, absl::StrCat("SELECT ", kScrubColumns, R"sql(
      WHERE c.id = (SELECT x.id FROM scrubs x WHERE x.job_id = c.job_id)sql", in, R"sql(
                    ORDER BY x.requested_at DESC, x.id DESC LIMIT 1)
      ORDER BY c.job_id)sql"));
    int i = 1;
    for (const std::string& st : states) q.bind(i++, st);
    std::vector<Scrub> out;
    while (q.executeStep()) out.push_back(ScrubFromRow(q));
    return out;
  });
}

absl::Status SqliteIndex::RecordScrubLost(const std::vector<ScrubLost>& lost) {
  return Locked("RecordScrubLost", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement up(db_, R"sql(
      INSERT INTO scrub_lost (job_id, path, size, sha256, kind, detected_at, scrub_id)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (job_id, path) DO UPDATE
      SET size = excluded.size, sha256 = excluded.sha256, kind = excluded.kind,
          detected_at = excluded.detected_at, scrub_id = excluded.scrub_id)sql");
    for (const ScrubLost& l : lost) {
      up.reset();
      SQLite::bind(up, l.job_id, l.path, static_cast<int64_t>(l.size), l.sha256, l.kind,
                   l.detected_at_ms, l.scrub_id);
      up.exec();
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<ScrubLost>> SqliteIndex::ListScrubLost(int64_t job_id) {
  return Locked("ListScrubLost", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<ScrubLost>> {
    SQLite::Statement q(db_, R"sql(
      SELECT job_id, path, size, sha256, kind, detected_at, scrub_id FROM scrub_lost
      WHERE job_id = ? ORDER BY path)sql");
    SQLite::bind(q, job_id);
    std::vector<ScrubLost> out;
    while (q.executeStep()) {
      out.push_back(ScrubLost{q.getColumn(0).getInt64(), q.getColumn(1).getString(),
                              static_cast<uint64_t>(q.getColumn(2).getInt64()),
                              q.getColumn(3).getString(), q.getColumn(4).getString(),
                              q.getColumn(5).getInt64(), q.getColumn(6).getString()});
    }
    return out;
  });
}

absl::StatusOr<int64_t> SqliteIndex::ClearScrubLost(int64_t job_id,
                                                    const std::vector<std::string>& paths) {
  if (paths.empty()) return 0;
  return Locked("ClearScrubLost", [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement del(db_, "DELETE FROM scrub_lost WHERE job_id = ? AND path = ?");
    int64_t n = 0;
    for (const std::string& p : paths) {
      del.reset();
      SQLite::bind(del, job_id, p);
      n += del.exec();
    }
    tx.commit();
    return n;
  });
}

}  // namespace ds
