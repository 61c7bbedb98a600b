// The state index: runners, jobs, runs, synced files, commands and admin tokens, behind one
// interface that SQLite (embedded default) and PostgreSQL (scale-out) implement. Every
// implementation passes index_conformance_test.cc.
//
// Thread-safety: all methods may be called concurrently from any thread.
// Errors: NotFound (no such row), AlreadyExists (unique constraint), FailedPrecondition (state
// does not allow the change), InvalidArgument (caller bug or bad input), Unavailable (database
// unreachable or busy beyond the timeout), Internal (anything else). Nothing is partially applied:
// each mutating method is one transaction.
// Times are Unix milliseconds (`*_ms`); file mtimes are Unix nanoseconds (`mtime_ns`).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "protocol/messages.h"

namespace ds {

struct Runner {
  int64_t id = 0;
  std::string name;
  // pending | approved | rejected | revoked | quarantined (approved, but a retired key was used
  // again: UseRetiredKey; neither key authenticates until ReplaceRunnerMachine or revocation)
  std::string status;
  std::string hostname, os, machine_id, agent_version;
  std::string runtime_state;     // last reported: idle | syncing | ...
  std::string current_run;
  std::string group;             // runner group name, "" = none
  bool has_key = false;
  bool key_rotation_pending = false;  // an operator asked to rotate the key (RequestKeyRotation)
  bool pending_enrollment = false;  // a registration waits on it (replacement request if enrolled)
  int64_t jobs_version = 0;      // bumped on every job change of this runner
  int64_t created_at_ms = 0, approved_at_ms = 0, last_heartbeat_at_ms = 0,
          last_activity_at_ms = 0;
  // Last reported health, JSON object (see migrations 0005): disk_free, backlog_files,
  // backlog_bytes, current_run, clock_offset_ms, at_ms. "{}" before the first report.
  std::string health_json = "{}";
};

struct Enrollment {
  std::string id;                // UUID
  int64_t runner_id = 0;
  std::string secret_hash;       // SHA-256 hex of the enrollment secret
  std::string status;            // pending | approved | rejected | delivered
  int64_t created_at_ms = 0;
  std::string hostname, os, machine_id, agent_version;  // as the registration reported them
  std::string address;  // the registering caller's address, as the server saw it
};

struct RegisterInfo {
  std::string name, hostname, os, machine_id, agent_version;
  std::string address;  // the caller's address (ClientAddress), kept on the enrollment
};

struct Job {
  int64_t runner_id = 0;
  std::string runner_name;
  protocol::JobSpec spec;        // spec.id is the job id
  int64_t created_at_ms = 0;
};

struct SyncedFile {
  int64_t job_id = 0;
  std::string path;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  std::string sha256;
  int64_t synced_at_ms = 0;
  std::string run_id;
};

// One file of one run: what compare planned and what complete reported.
struct RunFile {
  std::string path;
  std::string planned_reason;    // new | changed | missing; empty for files never planned
  uint64_t size = 0;
  std::string sha256;            // planned hash
  std::string result;            // empty (pending) | uploaded | failed | skipped
  std::string error;
  std::string kept_version;
};

struct Run {
  protocol::RunSummary summary;  // runner/job are names
  int64_t runner_id = 0;
  int64_t job_id = 0;
};

struct RunFilter {
  std::optional<int64_t> runner_id;
  std::optional<int64_t> job_id;
  std::optional<std::string> state;
  int limit = 50;                // at most 1000
  int offset = 0;                // newest runs skipped (paging), >= 0
};

struct StoredCommand {
  protocol::Command command;
  int64_t runner_id = 0;
  std::string state;             // pending | delivered
  int64_t created_at_ms = 0;
};

// A background rebuild of one job's synced-file rows from what storage holds.
struct Reconcile {
  std::string id;                // UUID
  int64_t job_id = 0;
  std::string runner_name, job_name;
  std::string state;             // queued | running | succeeded | failed
  bool verify = false;           // re-hash every object
  std::string claimed_by;        // worker (server instance) running it
  int64_t requested_at_ms = 0, started_at_ms = 0, updated_at_ms = 0, finished_at_ms = 0;
  uint64_t files_expected = 0;   // estimate (rows before the reconcile), for the ETA
  uint64_t files_seen = 0, bytes_seen = 0;
  uint64_t rows_added = 0, rows_removed = 0, rows_updated = 0, rows_unchanged = 0;
  uint64_t mismatches = 0, temp_files = 0;
  std::string report_json = "{}";  // JSON object: bounded lists of mismatches and temp files
  std::string error;
};

// A background check of one job's objects in storage against its index rows (migration 0008).
struct Scrub {
  std::string id;                // UUID
  int64_t job_id = 0;
  std::string runner_name, job_name;
  std::string state;             // queued | running | succeeded | failed
  std::string trigger;           // schedule | operator
  double rehash_fraction = 0;    // 0..1: share of objects whose content is re-hashed
  std::string claimed_by;        // worker (server instance) running it
  int64_t requested_at_ms = 0, started_at_ms = 0, updated_at_ms = 0, finished_at_ms = 0;
  uint64_t objects_listed = 0, bytes_listed = 0, objects_rehashed = 0;
  uint64_t missing = 0, extra = 0, size_mismatches = 0, hash_mismatches = 0, temp_files = 0;
  uint64_t healed = 0, unhealed = 0;
  std::string report_json = "{}";  // JSON object: bounded lists of findings
  std::string error;
};

struct ScrubFilter {
  std::optional<int64_t> job_id;
  std::optional<std::string> state;
  int limit = 20;                // at most 1000
};

// A file a scrub found lost or corrupted whose index row it removed (so the runner uploads it
// again), until a `complete` uploads it.
struct ScrubLost {
  int64_t job_id = 0;
  std::string path;
  uint64_t size = 0;             // of the removed row, bytes
  std::string sha256;            // of the removed row
  std::string kind;              // missing | size | hash
  int64_t detected_at_ms = 0;
  std::string scrub_id;
};

struct AdminToken {
  int64_t id = 0;
  std::string name;
  std::string role;              // admin | viewer
  int64_t created_at_ms = 0;
  int64_t revoked_at_ms = 0;     // 0 = active
  std::string created_by;        // actor that created it ('user:NAME', 'token:NAME'; '' = bootstrap)
};

// An operator account of the dashboard.
struct User {
  int64_t id = 0;
  std::string name;
  std::string role;              // admin | viewer
  std::string password_hash;     // Argon2id encoded string
  int64_t created_at_ms = 0, updated_at_ms = 0, last_login_at_ms = 0;
};

// A dashboard session; the cookie holds the id, the index only its SHA-256.
struct Session {
  std::string id_hash;           // SHA-256 hex of the session id
  int64_t user_id = 0;
  std::string user_name, role;   // of the user, filled by FindSession
  std::string csrf_token;
  std::string source_ip;
  int64_t created_at_ms = 0, expires_at_ms = 0, last_seen_at_ms = 0;
};

// Failed sign-ins of one subject ('user:NAME' or 'ip:ADDRESS').
struct LoginThrottle {
  int64_t failures = 0;          // consecutive, since the last success
  int64_t last_failure_at_ms = 0;
  int64_t locked_until_ms = 0;   // 0 = not locked
};

// How failed sign-ins lock a subject out: after `free_failures` failures in a row, each further
// failure locks it for base_lock_ms * 2^(extra failures - 1), at most max_lock_ms. Failures older
// than reset_after_ms start the count again.
struct LockoutPolicy {
  int free_failures = 5;
  int64_t base_lock_ms = 1'000;
  int64_t max_lock_ms = 15 * 60'000;
  int64_t reset_after_ms = 60 * 60'000;
};

// One line of the audit log.
struct AuditEntry {
  int64_t id = 0;
  int64_t at_ms = 0;
  std::string actor;             // 'user:NAME', 'token:NAME', or '' for an anonymous request
  std::string action;            // method + route pattern, or a named event ('login', ...)
  std::string target;            // request path or the object acted on
  std::string result;            // HTTP status as text
  std::string details_json = "{}";  // JSON object
  std::string source_ip;
};

struct AuditFilter {
  int64_t before_id = 0;         // 0 = from the newest
  std::string actor;             // exact; "" = any
  std::string action_contains;   // substring; "" = any
  int limit = 100;               // at most 1000
};

// Files and bytes uploaded by runs that started in one hour.
struct HourlyStat {
  int64_t hour_start_ms = 0;     // Unix ms, a multiple of 3,600,000
  uint64_t runs = 0, files_uploaded = 0, bytes_uploaded = 0, files_failed = 0;
};

// ---- observability (migration 0005) ----------------------------------------------------------

// One log record shipped by an agent.
struct AgentLogRecord {
  int64_t id = 0;                // assigned by the index
  int64_t runner_id = 0;
  std::string runner_name;       // filled by ListAgentLogs
  int64_t seq = 0;               // agent-side sequence number; unique per runner
  int64_t time_ms = 0;           // Unix ms, agent clock
  std::string level;             // debug | info | warn | error
  std::string message;
  std::string correlation_id;
  std::string fields_json = "{}";  // JSON object
};

struct AgentLogFilter {
  std::optional<int64_t> runner_id;
  std::vector<std::string> levels;  // empty = all
  std::string grep;              // substring of the message; "" = any
  int64_t since_ms = 0;          // time_ms >= since_ms (0 = no bound)
  int64_t until_ms = 0;          // time_ms <  until_ms (0 = no bound)
  int64_t before_id = 0;         // id < before_id (0 = no bound): newest-first paging
  int64_t after_id = 0;          // id > after_id (0 = no bound): following new records
  int limit = 100;               // at most 1000
};

struct AlertRule {
  int64_t id = 0;
  std::string name;              // unique, [A-Za-z0-9._-]
  std::string kind;              // runner_offline | job_no_sync | ... (server/alerts.h)
  std::string severity;          // info | warning | critical
  std::string scope_kind;        // "" | runner | group | job
  std::string scope;             // runner name, group name or RUNNER/JOB
  std::string params_json = "{}";  // JSON object of thresholds
  bool enabled = true;
  int64_t created_at_ms = 0, updated_at_ms = 0;
};

struct Alert {
  int64_t id = 0;
  int64_t rule_id = 0;
  std::string rule_name, kind, severity;  // of the rule, filled by reads
  std::string subject;
  std::string message;
  std::string details_json = "{}";
  int64_t fired_at_ms = 0;
  int64_t resolved_at_ms = 0;    // 0 = active
  std::string acknowledged_by;   // "" = not acknowledged
  int64_t acknowledged_at_ms = 0;
};

struct AlertFilter {
  bool active_only = false;
  std::optional<int64_t> rule_id;
  int64_t before_id = 0;         // id < before_id (0 = no bound); newest first
  int limit = 100;               // at most 1000
};

struct NotificationChannel {
  int64_t id = 0;
  std::string name;
  std::string kind;              // webhook | email
  std::string config_json = "{}";  // JSON object; may hold secrets (SMTP password): never logged
  std::string min_severity = "info";
  bool enabled = true;
  int64_t created_at_ms = 0, last_success_at_ms = 0, last_error_at_ms = 0;
  std::string last_error;
};

// One due outbox row with what sending it needs.
struct PendingDelivery {
  int64_t id = 0;
  std::string transition;        // fired | resolved
  int attempts = 0;              // made so far
  Alert alert;
  NotificationChannel channel;
};

class StateIndex {
 public:
  virtual ~StateIndex() = default;

  // Applies pending migrations in order, each in its own transaction, recording it in
  // schema_migrations. Idempotent. FailedPrecondition when the database has a newer schema than
  // this binary knows (the message says both versions).
  [[nodiscard]] virtual absl::Status Migrate() = 0;
  [[nodiscard]] virtual absl::StatusOr<int> SchemaVersion() = 0;
  virtual int LatestKnownSchemaVersion() const = 0;
  // Cheap round trip for readiness probes.
  [[nodiscard]] virtual absl::Status Ping() = 0;

  // ---- runners and enrollment -----------------------------------------------------------------
  // Creates a pending runner named info.name and its enrollment. If a runner of that name exists
  // and is not rejected, only a pending enrollment is added to it and nothing is displaced: on a
  // pending runner, one more registration for the operator to choose from (DecideEnrollment);
  // on an approved or revoked one (a replaced PC), a replacement request that does nothing until
  // ReplaceRunnerMachine. The runner row and its key are untouched (except that a pending runner
  // without any enrollment yet, a job import's, takes the host, os, machine id and agent version
  // of its first registration). AlreadyExists when the name belongs to a rejected runner
  // (DeleteRunner frees it).
  [[nodiscard]] virtual absl::StatusOr<Runner> RegisterRunner(const RegisterInfo& info,
                                                              const std::string& enrollment_id,
                                                              const std::string& secret_hash,
                                                              int64_t now_ms) = 0;
  [[nodiscard]] virtual absl::StatusOr<Enrollment> GetEnrollment(const std::string& id) = 0;
  // A pending runner without any enrollment (a job import's runner; its agent registers later).
  // AlreadyExists when the name is taken.
  [[nodiscard]] virtual absl::StatusOr<Runner> CreatePendingRunner(const std::string& name,
                                                                   int64_t now_ms) = 0;
  // The runner's pending enrollments, oldest first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<Enrollment>> ListPendingEnrollments(
      int64_t runner_id) = 0;
  // An operator's decision on one pending enrollment of a pending runner, atomically.
  // approve: the enrollment becomes approved (its poll receives the key), the runner approved
  // with the enrollment's hostname, os, machine id and agent version, and every other pending
  // enrollment of the runner rejected. reject: the enrollment becomes rejected; the runner too
  // once none of its enrollments is pending any more. NotFound when the runner has no such
  // enrollment; FailedPrecondition when the runner or the enrollment is not pending.
  [[nodiscard]] virtual absl::Status DecideEnrollment(int64_t runner_id,
                                                      const std::string& enrollment_id,
                                                      bool approve, int64_t now_ms) = 0;
  // Deletes a pending, rejected or revoked runner with its enrollments (its name is free
  // again), and its run history and logs. FailedPrecondition when it is approved or still has
  // jobs; NotFound for an unknown runner.
  [[nodiscard]] virtual absl::Status DeleteRunner(int64_t runner_id) = 0;
  // Atomically: if the enrollment is `approved`, stores `key_hash` on its runner and marks the
  // enrollment `delivered`. FailedPrecondition otherwise (so a key is issued exactly once).
  [[nodiscard]] virtual absl::Status DeliverKey(const std::string& enrollment_id,
                                                const std::string& key_hash) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<Runner>> ListRunners() = 0;
  [[nodiscard]] virtual absl::StatusOr<Runner> GetRunnerByName(const std::string& name) = 0;
  [[nodiscard]] virtual absl::StatusOr<Runner> GetRunnerById(int64_t id) = 0;
  [[nodiscard]] virtual absl::StatusOr<Runner> FindRunnerByKeyHash(const std::string& key_hash) = 0;
  // Compare-and-set of the runner's status: FailedPrecondition unless it is `from`. Moving to
  // approved/rejected also moves the runner's live (pending) enrollment to the same status and
  // sets approved_at; FailedPrecondition when more than one enrollment is pending (an operator
  // must choose: DecideEnrollment). Moving to revoked clears every key hash (and a quarantine);
  // `from` may be quarantined.
  // Puts the runner in group `group` (created when new; a name as IsValidName), or in none when
  // `group` is empty. NotFound for an unknown runner.
  [[nodiscard]] virtual absl::Status SetRunnerGroup(int64_t runner_id, const std::string& group,
                                                    int64_t now_ms) = 0;
  [[nodiscard]] virtual absl::Status TransitionRunner(int64_t runner_id, const std::string& from,
                                                      const std::string& to, int64_t now_ms) = 0;
  // One write per heartbeat: what the agent reports and, unless `health_json` is "" (an agent
  // that sends none), its health (a JSON object). NotFound for an unknown runner.
  [[nodiscard]] virtual absl::Status RecordHeartbeat(int64_t runner_id,
                                                     const std::string& agent_version,
                                                     const std::string& runtime_state,
                                                     const std::string& current_run,
                                                     const std::string& health_json,
                                                     int64_t now_ms) = 0;

  // What one agent heartbeat changes, in one call (on PostgreSQL one statement, one round trip):
  // RecordHeartbeat with these fields, then AbandonStaleRuns(runner_id, current_run,
  // orphans_started_before_ms, orphan_reason, now_ms), then TakeCommands(runner_id).
  struct HeartbeatRecord {
    int64_t runner_id = 0;
    std::string agent_version, runtime_state, current_run;
    std::string health_json;             // as RecordHeartbeat: "" keeps the last one
    int64_t orphans_started_before_ms = 0;
    std::string orphan_reason;
  };
  struct HeartbeatOutcome {
    std::vector<std::string> abandoned_runs;   // ids, in the order the runs began
    std::vector<protocol::Command> commands;   // taken (now delivered), oldest first
  };
  // NotFound (nothing changed) for an unknown runner. Each of the three steps is atomic; the
  // default runs them as those three calls (SQLite: in-process, nothing to save), so an error
  // in a later step can leave an earlier one applied — harmless, as a retried heartbeat records
  // the same again. Overridden where one round trip matters (PostgreSQL).
  [[nodiscard]] virtual absl::StatusOr<HeartbeatOutcome> Heartbeat(const HeartbeatRecord& hb,
                                                                   int64_t now_ms);

  // ---- jobs -------------------------------------------------------------------------------------
  // Creates the job (replace=false: AlreadyExists if the runner has one of that name) or replaces
  // its definition (replace=true: same id, same index rows). Bumps the runner's jobs_version.
  [[nodiscard]] virtual absl::StatusOr<Job> PutJob(int64_t runner_id, const protocol::JobSpec& spec,
                                                   bool replace, int64_t now_ms) = 0;
  [[nodiscard]] virtual absl::StatusOr<Job> GetJob(int64_t runner_id, const std::string& name) = 0;
  [[nodiscard]] virtual absl::StatusOr<Job> GetJobById(int64_t job_id) = 0;
  // All jobs, or one runner's; ordered by runner name, job name.
  [[nodiscard]] virtual absl::StatusOr<std::vector<Job>> ListJobs(std::optional<int64_t> runner_id) = 0;
  // Deletes the job, its synced-file rows and its run-file rows (runs stay, for history).
  [[nodiscard]] virtual absl::Status DeleteJob(int64_t job_id) = 0;

  // ---- runs ---------------------------------------------------------------------------------------
  // Creates the run in state `running`, or returns the existing one when the same run id was
  // already begun for this runner and job (idempotent retries). FailedPrecondition if the id
  // exists for another runner/job or is no longer running.
  [[nodiscard]] virtual absl::StatusOr<Run> BeginRun(const std::string& run_id, int64_t runner_id,
                                                     int64_t job_id, const std::string& trigger,
                                                     int64_t now_ms) = 0;
  // Rows of synced_files for `paths` of the job (missing paths are simply absent).
  [[nodiscard]] virtual absl::StatusOr<std::vector<SyncedFile>> LookupSyncedFiles(
      int64_t job_id, const std::vector<std::string>& paths) = 0;
  // Records planned files (upsert by run id + path) and, when totals are given (>= 0), the
  // manifest totals files_seen / bytes_seen. files_planned is kept equal to the planned rows.
  [[nodiscard]] virtual absl::Status RecordPlanned(const std::string& run_id,
                                                   const std::vector<RunFile>& planned,
                                                   int64_t total_files, int64_t total_bytes) = 0;
  // Applies a batch of results of a running run in one transaction. Idempotent by run id + path:
  // a repeated result changes nothing. `uploaded` upserts the job's synced_files row (synced_at =
  // now, run_id = this run) and sets the runner's last_activity_at. InvalidArgument (and nothing
  // applied) if any uploaded/failed result names a path not planned in this run; `skipped` may
  // name any path. FailedPrecondition unless the run is running or abandoned (an agent that
  // comes back reports what it did in a run the server gave up on: no drift). Returns the number
  // of results that changed something.
  [[nodiscard]] virtual absl::StatusOr<uint64_t> RecordResults(
      const std::string& run_id, const std::vector<protocol::FileResult>& results,
      int64_t now_ms) = 0;
  // Closes a running run with `state` (succeeded | partial | failed | abandoned).
  // Idempotent when already closed with the same state; FailedPrecondition otherwise.
  [[nodiscard]] virtual absl::StatusOr<Run> FinishRun(const std::string& run_id,
                                                      const std::string& state,
                                                      const std::string& error, int64_t now_ms) = 0;
  [[nodiscard]] virtual absl::StatusOr<Run> GetRun(const std::string& run_id) = 0;

  // Manifest digests (the no-op cycle). A run may carry the digest of the agent's whole manifest
  // (SHA-256 hex, see sync/manifest_digest.h); when FinishRun closes it as `succeeded`, that
  // digest becomes the job's. Closing any run otherwise, RecordResults of any run of the job,
  // ApplySyncedFiles and PutJob forget the job's digest: it stands only while synced_files holds
  // exactly what that run's manifest described. NotFound for an unknown run.
  [[nodiscard]] virtual absl::Status SetRunManifestDigest(const std::string& run_id,
                                                          const std::string& digest) = 0;
  // The job's digest, or "" when there is none.
  [[nodiscard]] virtual absl::StatusOr<std::string> GetJobManifestDigest(int64_t job_id) = 0;
  // Newest first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<Run>> ListRuns(const RunFilter& filter) = 0;
  // Ordered by path; paths > after_path; at most `limit`.
  [[nodiscard]] virtual absl::StatusOr<std::vector<RunFile>> ListRunFiles(
      const std::string& run_id, const std::string& after_path, int limit) = 0;
  // The run_files row of `path` in `run_id`. NotFound when the run has no row for that path
  // (or there is no such run).
  [[nodiscard]] virtual absl::StatusOr<RunFile> GetRunFile(const std::string& run_id,
                                                           const std::string& path) = 0;

  // ---- synced files ------------------------------------------------------------------------------
  // Ordered by path; paths > after_path (keyset paging); at most `limit` (<= 10000).
  [[nodiscard]] virtual absl::StatusOr<std::vector<SyncedFile>> ListSyncedFiles(
      int64_t job_id, const std::string& after_path, int limit) = 0;
  [[nodiscard]] virtual absl::StatusOr<int64_t> CountSyncedFiles(int64_t job_id) = 0;

  // ---- commands -------------------------------------------------------------------------------
  [[nodiscard]] virtual absl::StatusOr<protocol::Command> EnqueueCommand(
      int64_t runner_id, const std::string& type, const std::string& job,
      const std::string& run_id, int64_t now_ms) = 0;
  // Returns the runner's pending commands (oldest first) and marks them delivered.
  [[nodiscard]] virtual absl::StatusOr<std::vector<protocol::Command>> TakeCommands(
      int64_t runner_id) = 0;

  // ---- reconcile ------------------------------------------------------------------------------
  // Queues a reconcile of the job. AlreadyExists when one is queued or running for that job.
  [[nodiscard]] virtual absl::StatusOr<Reconcile> CreateReconcile(const std::string& id,
                                                                  int64_t job_id, bool verify,
                                                                  int64_t now_ms) = 0;
  // Atomically claims the oldest queued reconcile for `worker` (→ running, started_at = now), or a
  // running one whose updated_at is before `stale_before_ms` (its worker died). NotFound if none.
  [[nodiscard]] virtual absl::StatusOr<Reconcile> ClaimReconcile(const std::string& worker,
                                                                 int64_t now_ms,
                                                                 int64_t stale_before_ms) = 0;
  // Writes r's state, counters, report, error and finished_at (updated_at = now).
  // FailedPrecondition unless the row is running and claimed by r.claimed_by.
  [[nodiscard]] virtual absl::Status UpdateReconcile(const Reconcile& r, int64_t now_ms) = 0;
  [[nodiscard]] virtual absl::StatusOr<Reconcile> GetReconcile(const std::string& id) = 0;
  // Newest first; only queued/running ones when active_only.
  [[nodiscard]] virtual absl::StatusOr<std::vector<Reconcile>> ListReconciles(
      std::optional<int64_t> job_id, bool active_only, int limit) = 0;
  // One transaction: upserts `upserts` into the job's synced_files and deletes `deletes` (paths).
  // Forgets the job's manifest digest, and the digests of its running runs (they compared
  // against the rows before the change, so none of them may become the job's).
  [[nodiscard]] virtual absl::Status ApplySyncedFiles(int64_t job_id,
                                                      const std::vector<SyncedFile>& upserts,
                                                      const std::vector<std::string>& deletes) = 0;

  // ---- scrub ----------------------------------------------------------------------------------
  // Queues a scrub of the job (trigger schedule | operator, rehash_fraction in [0, 1]).
  // AlreadyExists when one is queued or running for that job; NotFound for an unknown job.
  [[nodiscard]] virtual absl::StatusOr<Scrub> CreateScrub(const std::string& id, int64_t job_id,
                                                          const std::string& trigger,
                                                          double rehash_fraction,
                                                          int64_t now_ms) = 0;
  // Atomically claims the oldest queued scrub for `worker` (-> running, started_at = now), or a
  // running one whose updated_at is before `stale_before_ms` (its worker died; its counters start
  // again). NotFound if none.
  [[nodiscard]] virtual absl::StatusOr<Scrub> ClaimScrub(const std::string& worker, int64_t now_ms,
                                                         int64_t stale_before_ms) = 0;
  // Writes s's state, counters, report, error and finished_at (updated_at = now).
  // FailedPrecondition unless the row is running and claimed by s.claimed_by.
  [[nodiscard]] virtual absl::Status UpdateScrub(const Scrub& s, int64_t now_ms) = 0;
  [[nodiscard]] virtual absl::StatusOr<Scrub> GetScrub(const std::string& id) = 0;
  // Newest first (by requested_at).
  [[nodiscard]] virtual absl::StatusOr<std::vector<Scrub>> ListScrubs(const ScrubFilter& filter) = 0;
  // The newest scrub in one of `states` (empty: any state) of every job that has one, ordered by
  // job id.
  [[nodiscard]] virtual absl::StatusOr<std::vector<Scrub>> LatestScrubs(
      const std::vector<std::string>& states) = 0;
  // Records (replacing any earlier entry of the same path) files whose row a scrub removed.
  [[nodiscard]] virtual absl::Status RecordScrubLost(const std::vector<ScrubLost>& lost) = 0;
  // The job's entries, ordered by path.
  [[nodiscard]] virtual absl::StatusOr<std::vector<ScrubLost>> ListScrubLost(int64_t job_id) = 0;
  // Deletes the job's entries for `paths` (absent ones are fine). Returns how many were deleted.
  [[nodiscard]] virtual absl::StatusOr<int64_t> ClearScrubLost(int64_t job_id,
                                                               const std::vector<std::string>& paths) = 0;

  // ---- orphaned runs ----------------------------------------------------------------------------
  // Closes as `abandoned` (error = reason) the running runs started before `started_before_ms`,
  // of `runner_id` (or of every runner), except `keep_run_id`. Returns their ids.
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> AbandonStaleRuns(
      std::optional<int64_t> runner_id, const std::string& keep_run_id, int64_t started_before_ms,
      const std::string& reason, int64_t now_ms) = 0;

  // ---- replaced PCs -----------------------------------------------------------------------------
  // Binds a new machine to an existing runner: the pending enrollment `enrollment_id` (made by a
  // fresh registration, whose own pending runner row is deleted unless it is `runner_id`) moves to
  // `runner_id` and becomes approved, so the new machine receives a fresh key on its next poll;
  // the runner keeps its id, jobs and index rows, becomes approved, takes the new machine's
  // host/os/machine id, and its old key stops working at once (as do a pending and a retired
  // key; a quarantine ends). NotFound / FailedPrecondition
  // (enrollment not pending; runner rejected).
  [[nodiscard]] virtual absl::Status ReplaceRunnerMachine(int64_t runner_id,
                                                          const std::string& enrollment_id,
                                                          int64_t now_ms) = 0;
  // The newest pending enrollment for a runner named `name` (its pending registration), if any.
  [[nodiscard]] virtual absl::StatusOr<Enrollment> PendingEnrollmentByName(const std::string& name) = 0;
  // Removes registrations nobody acted on before `registered_before_ms`: pending runners without
  // jobs (an import's runner stays) and without an enrollment made since, with their
  // enrollments; and, on the runners that remain, pending enrollments made before it (a pending
  // runner's older registrations, replacement requests). Returns how many runners plus
  // enrollments were removed that way.
  [[nodiscard]] virtual absl::StatusOr<int64_t> PruneStalePending(int64_t registered_before_ms) = 0;

  // ---- retention and size -------------------------------------------------------------------------
  // Deletes closed runs (and their run files) that finished before `finished_before_ms`, and
  // delivered commands created before it. Returns the number of runs deleted.
  [[nodiscard]] virtual absl::StatusOr<int64_t> PruneHistory(int64_t finished_before_ms) = 0;
  // Bytes the index occupies (SQLite: page_count * page_size; PostgreSQL: pg_database_size).
  [[nodiscard]] virtual absl::StatusOr<int64_t> SizeBytes() = 0;
  // Consistent copy of the live index into a new SQLite file at `path` (SQLite online backup).
  // Unimplemented for PostgreSQL (use pg_dump). AlreadyExists when `path` exists.
  [[nodiscard]] virtual absl::Status BackupTo(const std::string& path) = 0;

  // ---- several server instances -----------------------------------------------------------------
  // Leases name a piece of background work that exactly one instance should do at a time.
  // Atomically: when lease `name` is free, expired (expires_at <= now_ms) or already held by
  // `holder`, makes `holder` its holder until now_ms + ttl_ms and returns true (acquired or
  // renewed); otherwise returns false and changes nothing. Instances' clocks must agree to well
  // within ttl_ms. InvalidArgument for an empty name or holder, or ttl_ms <= 0.
  [[nodiscard]] virtual absl::StatusOr<bool> TryAcquireLease(const std::string& name,
                                                             const std::string& holder,
                                                             int64_t ttl_ms, int64_t now_ms) = 0;
  // Frees lease `name` if `holder` holds it (so another instance may take it at once); otherwise
  // changes nothing. OK either way.
  [[nodiscard]] virtual absl::Status ReleaseLease(const std::string& name,
                                                  const std::string& holder) = 0;
  // Records `poll_id` as the runner's newest long-poll, replacing the previous one, whichever
  // instance holds either. NotFound for an unknown runner; InvalidArgument for an empty poll_id.
  [[nodiscard]] virtual absl::Status RecordLongPoll(int64_t runner_id, const std::string& poll_id,
                                                    int64_t now_ms) = 0;
  // What an instance needs to know about the runners whose long-polls it holds: for each of
  // `runner_ids` that exists, whether it has pending commands and its newest long-poll ("" when
  // none was recorded). One round trip, however many ids; ordered by runner id; unknown ids are
  // absent.
  struct WaitingRunner {
    int64_t runner_id = 0;
    bool pending_commands = false;
    std::string newest_poll_id;
  };
  [[nodiscard]] virtual absl::StatusOr<std::vector<WaitingRunner>> CheckWaitingRunners(
      const std::vector<int64_t>& runner_ids) = 0;

  // ---- admin tokens ---------------------------------------------------------------------------
  // `created_by`: the actor creating it ('' for the bootstrap token). (A default argument on a
  // virtual, against the style guide, so that the callers written before it need no change.)
  [[nodiscard]] virtual absl::StatusOr<AdminToken> CreateAdminToken(
      const std::string& name, const std::string& role, const std::string& token_hash,
      int64_t now_ms, const std::string& created_by = "") = 0;
  // Active (not revoked) token by hash; NotFound otherwise.
  [[nodiscard]] virtual absl::StatusOr<AdminToken> FindAdminToken(const std::string& token_hash) = 0;

  // ---- observability: agent logs ---------------------------------------------------------------
  // Inserts the records of one runner (their runner_id is ignored), skipping any whose seq the
  // runner already shipped (idempotent retries). Returns the number inserted. One transaction.
  [[nodiscard]] virtual absl::StatusOr<int64_t> AppendAgentLogs(
      int64_t runner_id, const std::vector<AgentLogRecord>& records, int64_t now_ms) = 0;
  // Newest first (by id), or oldest first when filter.after_id > 0.
  [[nodiscard]] virtual absl::StatusOr<std::vector<AgentLogRecord>> ListAgentLogs(
      const AgentLogFilter& filter) = 0;
  // Deletes records with time_ms < before_ms. Returns how many.
  [[nodiscard]] virtual absl::StatusOr<int64_t> PruneAgentLogs(int64_t before_ms) = 0;

  // ---- observability: alert rules ----------------------------------------------------------------
  // rule.id == 0 creates (AlreadyExists on a taken name), else replaces every field but
  // created_at (NotFound for an unknown id). Returns the stored rule.
  [[nodiscard]] virtual absl::StatusOr<AlertRule> PutAlertRule(const AlertRule& rule,
                                                               int64_t now_ms) = 0;
  // Ordered by id.
  [[nodiscard]] virtual absl::StatusOr<std::vector<AlertRule>> ListAlertRules() = 0;
  // Deletes the rule and its alerts. NotFound for an unknown id.
  [[nodiscard]] virtual absl::Status DeleteAlertRule(int64_t rule_id) = 0;

  // ---- observability: alerts ---------------------------------------------------------------------
  // Fires an alert of `rule_id` about `subject` unless one is active already: then returns that
  // one and fired = false. A new alert queues a `fired` delivery for every enabled channel whose
  // min_severity the rule's severity reaches, in the same transaction.
  struct FireResult {
    Alert alert;
    bool fired = false;
  };
  [[nodiscard]] virtual absl::StatusOr<FireResult> FireAlert(int64_t rule_id,
                                                             const std::string& subject,
                                                             const std::string& message,
                                                             const std::string& details_json,
                                                             int64_t now_ms) = 0;
  // Resolves the alert if active (queueing `resolved` deliveries like FireAlert); returns true
  // when it was active. NotFound for an unknown id.
  [[nodiscard]] virtual absl::StatusOr<bool> ResolveAlert(int64_t alert_id, int64_t now_ms) = 0;
  [[nodiscard]] virtual absl::StatusOr<Alert> GetAlert(int64_t alert_id) = 0;
  // Newest first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<Alert>> ListAlerts(const AlertFilter& filter) = 0;
  // Records who acknowledged it (the first acknowledgement stays). NotFound for an unknown id.
  [[nodiscard]] virtual absl::StatusOr<Alert> AckAlert(int64_t alert_id, const std::string& by,
                                                       int64_t now_ms) = 0;

  // ---- observability: notification channels and their outbox ----------------------------------
  // channel.id == 0 creates (AlreadyExists on a taken name), else replaces name, kind, config,
  // min_severity and enabled (NotFound for an unknown id).
  [[nodiscard]] virtual absl::StatusOr<NotificationChannel> PutNotificationChannel(
      const NotificationChannel& channel, int64_t now_ms) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<NotificationChannel>> ListNotificationChannels() = 0;
  [[nodiscard]] virtual absl::Status DeleteNotificationChannel(int64_t channel_id) = 0;
  // Undelivered deliveries to enabled channels with next_attempt_at <= now_ms and attempts <
  // max_attempts, oldest first, at most `limit`. Callers serialise sending through a lease (nothing is claimed here).
  [[nodiscard]] virtual absl::StatusOr<std::vector<PendingDelivery>> DueDeliveries(
      int64_t now_ms, int max_attempts, int limit) = 0;
  // Records one attempt: delivered (error == "") sets delivered_at and the channel's
  // last_success_at; otherwise stores the error on the delivery and the channel and schedules
  // the next attempt at next_attempt_ms. attempts += 1.
  [[nodiscard]] virtual absl::Status RecordDeliveryAttempt(int64_t delivery_id,
                                                           const std::string& error,
                                                           int64_t next_attempt_ms,
                                                           int64_t now_ms) = 0;
  [[nodiscard]] virtual absl::StatusOr<int64_t> CountAdminTokens() = 0;
  // Every token, revoked ones too, newest first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<AdminToken>> ListAdminTokens() = 0;
  // Marks the token revoked at now_ms. NotFound for an unknown id; FailedPrecondition when it is
  // already revoked.
  [[nodiscard]] virtual absl::StatusOr<AdminToken> RevokeAdminToken(int64_t id, int64_t now_ms) = 0;

  // ---- operator accounts --------------------------------------------------------------------
  // AlreadyExists for a taken name; InvalidArgument for a role other than admin|viewer or an empty
  // hash.
  [[nodiscard]] virtual absl::StatusOr<User> CreateUser(const std::string& name,
                                                        const std::string& role,
                                                        const std::string& password_hash,
                                                        int64_t now_ms) = 0;
  [[nodiscard]] virtual absl::StatusOr<User> GetUserByName(const std::string& name) = 0;
  // Ordered by name.
  [[nodiscard]] virtual absl::StatusOr<std::vector<User>> ListUsers() = 0;
  // Sets a new password hash and ends all the user's sessions. NotFound for an unknown user.
  [[nodiscard]] virtual absl::Status SetUserPassword(const std::string& name,
                                                     const std::string& password_hash,
                                                     int64_t now_ms) = 0;
  // Deletes the user and its sessions. NotFound for an unknown user.
  [[nodiscard]] virtual absl::Status DeleteUser(const std::string& name) = 0;

  // Stores s (s.user_id must exist: FailedPrecondition otherwise) and sets the user's
  // last_login_at to s.created_at_ms. AlreadyExists for a duplicate id hash.
  [[nodiscard]] virtual absl::Status CreateSession(const Session& s) = 0;
  // The session with that id hash, with its user's name and role. NotFound when absent (expiry is
  // the caller's decision: compare expires_at_ms / last_seen_at_ms).
  [[nodiscard]] virtual absl::StatusOr<Session> FindSession(const std::string& id_hash) = 0;
  // Sets last_seen_at (idle expiry). OK when the session is gone.
  [[nodiscard]] virtual absl::Status TouchSession(const std::string& id_hash, int64_t now_ms) = 0;
  // OK when absent.
  [[nodiscard]] virtual absl::Status DeleteSession(const std::string& id_hash) = 0;
  // Deletes sessions past expires_at (<= now_ms) or idle since before idle_before_ms. Returns how many.
  [[nodiscard]] virtual absl::StatusOr<int64_t> PruneSessions(int64_t now_ms,
                                                              int64_t idle_before_ms) = 0;

  // The subject's throttle row (all zero when it has none).
  [[nodiscard]] virtual absl::StatusOr<LoginThrottle> GetLoginThrottle(const std::string& subject) = 0;
  // Atomically counts one more failure of `subject` at now_ms and applies `policy`; returns the new
  // row.
  [[nodiscard]] virtual absl::StatusOr<LoginThrottle> RecordLoginFailure(
      const std::string& subject, int64_t now_ms, const LockoutPolicy& policy) = 0;
  // Forgets the subject's failures (after a successful sign-in). OK when it has none.
  [[nodiscard]] virtual absl::Status ClearLoginFailures(const std::string& subject) = 0;

  // ---- audit log ------------------------------------------------------------------------------
  // Appends e (e.id is ignored) and returns its id.
  [[nodiscard]] virtual absl::StatusOr<int64_t> AppendAudit(const AuditEntry& e) = 0;
  // Newest first; ids < filter.before_id when it is set (keyset paging).
  [[nodiscard]] virtual absl::StatusOr<std::vector<AuditEntry>> ListAudit(const AuditFilter& filter) = 0;

  // ---- dashboard queries ----------------------------------------------------------------------
  // Runs started in [since_ms, now) grouped by hour (only hours with runs), oldest first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<HourlyStat>> HourlyStats(int64_t since_ms) = 0;
  // The job's synced files whose path starts with `text` (prefix) or contains it (otherwise;
  // case-sensitive bytes), ordered by path, paths > after_path, at most `limit` (<= 10000).
  // NotFound for an unknown job.
  [[nodiscard]] virtual absl::StatusOr<std::vector<SyncedFile>> SearchSyncedFiles(
      int64_t job_id, const std::string& text, bool prefix, const std::string& after_path,
      int limit) = 0;

  // ---- runner key rotation ----------------------------------------------------------------------
  // Asks for a new key at the runner's next heartbeat. FailedPrecondition unless it is approved
  // with a key (a quarantined runner is not). A repeated request discards a new key handed out
  // but not yet used, so the next heartbeat gets another.
  [[nodiscard]] virtual absl::Status RequestKeyRotation(int64_t runner_id, int64_t now_ms) = 0;
  // When a rotation is requested for the runner and no new key was handed out for it yet, stores
  // next_hash as its pending key and returns true: a new key is handed out once per request.
  // Otherwise returns false and changes nothing.
  [[nodiscard]] virtual absl::StatusOr<bool> OfferNextKey(int64_t runner_id,
                                                          const std::string& next_hash) = 0;
  // The approved runner whose *pending* key has this hash: the pending key becomes its key, the
  // old one is retired (its hash kept, with now_ms, for UseRetiredKey) and the rotation request is
  // cleared. NotFound when none.
  [[nodiscard]] virtual absl::StatusOr<Runner> PromoteNextKey(const std::string& key_hash,
                                                              int64_t now_ms) = 0;
  // A request authenticated by the retired key `key_hash` of an approved runner. Retired at or
  // after `retired_before_ms` (a request in flight at the rotation): nothing changes. Before it:
  // two parties held the key, and the runner is quarantined (quarantined_now, when this call did
  // it). NotFound when no approved or quarantined runner retired this key.
  struct RetiredKeyUse {
    Runner runner;  // as it is after the call
    bool quarantined_now = false;
  };
  [[nodiscard]] virtual absl::StatusOr<RetiredKeyUse> UseRetiredKey(const std::string& key_hash,
                                                                    int64_t retired_before_ms,
                                                                    int64_t now_ms) = 0;
};

// The throttle row after one more failed sign-in at now_ms under `policy` (the one rule both
// backends apply in RecordLoginFailure).
LoginThrottle NextLoginThrottle(const LoginThrottle& current, int64_t now_ms,
                                const LockoutPolicy& policy);

// OK when a scrub may be queued with this trigger (schedule | operator) and re-hash fraction
// (0..1); InvalidArgument otherwise (the one rule both backends apply in CreateScrub).
[[nodiscard]] absl::Status ValidateScrubRequest(const std::string& trigger, double rehash_fraction);

// The rules both backends apply to enrollment decisions and runner deletion: OK when `e` (an
// enrollment of `runner`) may be approved or rejected (DecideEnrollment); when a runner with
// the jobs named `jobs` may be deleted (DeleteRunner); when TransitionRunner may move a runner with
// `pending` pending enrollments to approved/rejected. FailedPrecondition otherwise.
[[nodiscard]] absl::Status CheckDecidable(const Runner& runner, const Enrollment& e);
[[nodiscard]] absl::Status CheckDeletable(const Runner& runner,
                                          const std::vector<std::string>& jobs);
[[nodiscard]] absl::Status CheckSinglePendingEnrollment(int64_t runner_id, int64_t pending);

// Opens the index named by `url`: "sqlite:PATH" (PATH's directory is created), or
// "postgresql://..." / "postgres://..." (a libpq connection URI; connects lazily, see
// postgres/postgres_index.h). Does not migrate. InvalidArgument for an unknown scheme or a
// malformed URL; messages never repeat the URL past its scheme (it may hold a password).
[[nodiscard]] absl::StatusOr<std::unique_ptr<StateIndex>> OpenStateIndex(const std::string& url);

// `url` with any password replaced by "****", safe to log or show
// ("postgresql://ds:****@db/datasync"; "...?password=****"). Other URLs are returned unchanged.
std::string RedactIndexUrl(const std::string& url);

}  // namespace ds
