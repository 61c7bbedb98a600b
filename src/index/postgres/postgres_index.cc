// PostgreSQL implementation of StateIndex over a small pool of libpqxx connections. Semantics match
// sqlite/sqlite_index.cc; where SQLite relied on its single writer for compare-and-set, this file
// takes row locks (SELECT ... FOR UPDATE) or uses INSERT ... ON CONFLICT. Every exception from
// libpqxx (and nlohmann/json) is converted to an absl::Status here and never leaves this file.
//
// Lock order, to keep concurrent transactions from deadlocking: sync_runs rows, then jobs rows,
// then runners rows, then enrollments rows. A deadlock PostgreSQL still detects is retried.
#include "index/postgres/postgres_index.h"

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/mutex.h"
#include "common/time_util.h"
#include "index/migrations.h"
#include "index/postgres/conninfo.h"

namespace ds {
namespace {

constexpr int kMaxRunsPerPage = 1000;
constexpr int kMaxFilesPerPage = 10'000;
// Key of the transaction-level advisory lock that serialises Migrate() across servers
// (ASCII "DSMIGRAT"); any constant works as long as every server uses the same one.
constexpr int64_t kMigrationLockKey = 0x44534d4947524154;
// Attempts of one call when a pooled connection turns out dead, or PostgreSQL aborts the
// transaction for a serialization failure or deadlock; then the call fails with Unavailable.
constexpr int kMaxAttempts = 3;

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

// libpq sends text parameters as C strings, so a NUL byte would silently cut the value short.
bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

std::string ToJsonArray(const std::vector<std::string>& values) {
  return nlohmann::json(values).dump();
}
// Throws nlohmann::json::exception on a malformed column (reported as Internal).
std::vector<std::string> FromJsonArray(const std::string& text) {
  return ParseJsonOr(text).get<std::vector<std::string>>();
}

// A PostgreSQL array literal for a text[] parameter; every element is quoted.
// REQUIRES: no element contains NUL.
std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (const char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

// A PostgreSQL array literal for a bigint[] parameter.
std::string BigintArray(const std::vector<int64_t>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(values[i]);
  }
  out += '}';
  return out;
}

// A nullable text parameter: libpqxx sends a null `const char*` as SQL NULL.
const char* OrNull(const std::optional<std::string>& value) {
  return value ? value->c_str() : nullptr;
}

// ---- connection string --------------------------------------------------------------------------

// A parsed libpq connection string.
struct Conninfo {
  std::string conninfo;  // key/value form, with our defaults added; holds the password
  std::string password;  // to scrub from messages; empty when the string has none
  std::string where;     // "host:port/dbname", safe to show
};

// Quotes `value` for a key/value connection string.
std::string QuoteConninfoValue(const std::string& value) {
  std::string out = "'";
  for (const char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

absl::StatusOr<Conninfo> ParseConninfo(const std::string& text,
                                       const PostgresPoolOptions& options) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(text.c_str(), &error);
  if (parsed == nullptr) {
    if (error != nullptr) PQfreemem(error);
    // libpq's explanation may quote part of the string, password included: withhold it.
    return absl::InvalidArgumentError(
        "PostgreSQL connection string does not parse (expected postgresql://user@host:port/db "
        "or host=... dbname=...)");
  }
  Conninfo info;
  std::string host, port, dbname;
  bool has_connect_timeout = false;
  // Only the options present in `text` have values (PQconninfoParse adds no defaults).
  for (const PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string keyword = o->keyword;
    const std::string value = o->val;
    if (keyword == "password") info.password = value;
    if (keyword == "host" || keyword == "hostaddr") host = value;
    if (keyword == "port") port = value;
    if (keyword == "dbname") dbname = value;
    if (keyword == "connect_timeout") has_connect_timeout = true;
    absl::StrAppend(&info.conninfo, keyword, "=", QuoteConninfoValue(value), " ");
  }
  PQconninfoFree(parsed);
  if (!has_connect_timeout) {
    // libpq treats 1 s as 2 s; 0 would mean "wait forever".
    const int64_t seconds = std::max<int64_t>(2, options.connect_timeout.count());
    absl::StrAppend(&info.conninfo, "connect_timeout=", seconds, " ");
  }
  absl::StrAppend(&info.conninfo, "fallback_application_name=datasync");
  info.where = absl::StrCat(host.empty() ? "(default host)" : host, ":",
                            port.empty() ? "(default port)" : port, "/",
                            dbname.empty() ? "(default database)" : dbname);
  return info;
}

// ---- connection pool ----------------------------------------------------------------------------

// Defines the hot-path statements (below) on a new connection; PostgreSQL prepares each on its
// first use there.
void DefineHotStatements(pqxx::connection& conn);

// Which calls a connection serves. Bulk calls (a compare batch's thousands of paths, listing every
// runner) take long; they may not take the last kReservedForShortCalls connections, so
// heartbeats, long-polls and the other short calls never wait behind them for a connection.
enum class Lane { kShort, kBulk };
constexpr size_t kReservedForShortCalls = 2;

// Up to max_connections connections to one database, opened on demand. Thread-safe.
class ConnectionPool {
 public:
  // A connection held exclusively by one call; returned to the pool when destroyed, unless it
  // was marked broken (then it is closed and a later Acquire opens a new one).
  class Lease {
   public:
    Lease(ConnectionPool* pool, std::unique_ptr<pqxx::connection> conn, bool reused, Lane lane)
        : pool_(pool), conn_(std::move(conn)), reused_(reused), lane_(lane) {}
    Lease(Lease&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)),
          conn_(std::move(other.conn_)),
          reused_(other.reused_),
          lane_(other.lane_),
          broken_(other.broken_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_ != nullptr) pool_->Release(std::move(conn_), broken_, lane_);
    }

    pqxx::connection& conn() { return *conn_; }
    // True when the connection was opened by an earlier call (so it may have gone stale).
    bool reused() const { return reused_; }
    void MarkBroken() { broken_ = true; }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<pqxx::connection> conn_;
    bool reused_;
    Lane lane_;
    bool broken_ = false;
  };

  ConnectionPool(Conninfo info, PostgresPoolOptions options)
      : info_(std::move(info)),
        options_(options),
        max_bulk_(options.max_connections > kReservedForShortCalls
                      ? options.max_connections - kReservedForShortCalls
                      : std::max<size_t>(1, options.max_connections)) {}

  // REQUIRES: no Lease outstanding.
  ~ConnectionPool() = default;

  // A connection: an idle one, or a new one while fewer than max_connections are open; otherwise
  // waits up to acquire_timeout for one to be returned. A kBulk call also waits while bulk calls
  // hold all but kReservedForShortCalls of max_connections (when max_connections leaves room
  // for the reserve). Unavailable when the wait times out or the server cannot be reached.
  absl::StatusOr<Lease> Acquire(Lane lane);

  // Closes every idle connection (after one of them proved dead, the others likely are too).
  void DiscardIdle();

  const Conninfo& info() const { return info_; }
  // `message` with the password (if any) replaced.
  std::string Scrub(std::string message) const;

 private:
  void Release(std::unique_ptr<pqxx::connection> conn, bool broken, Lane lane);
  bool CanLease() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < options_.max_connections;
  }
  bool CanLeaseBulk() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return CanLease() && bulk_leased_ < max_bulk_;
  }
  bool CanLeaseFor(Lane lane) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return lane == Lane::kBulk ? CanLeaseBulk() : CanLease();
  }

  // Constant after construction.
  const Conninfo info_;
  const PostgresPoolOptions options_;
  const size_t max_bulk_;  // connections bulk calls may hold at once

  Mutex mu_;
  CondVar returned_;  // a connection slot may have become free: idle, or one fewer open
  std::vector<std::unique_ptr<pqxx::connection>> idle_ ABSL_GUARDED_BY(mu_);
  size_t open_ ABSL_GUARDED_BY(mu_) = 0;  // idle + leased + being opened
  size_t bulk_leased_ ABSL_GUARDED_BY(mu_) = 0;  // leased (or being opened) for kBulk calls
};

std::string ConnectionPool::Scrub(std::string message) const {
  return ScrubPassword(std::move(message), info_.password);
}

absl::StatusOr<ConnectionPool::Lease> ConnectionPool::Acquire(Lane lane) {
  {
    const auto deadline = std::chrono::steady_clock::now() + options_.acquire_timeout;
    MutexLock lock(&mu_);
    bool timed_out = false;
    while (!CanLeaseFor(lane) && !timed_out) timed_out = !returned_.WaitUntil(&mu_, deadline);
    if (!CanLeaseFor(lane)) {
      return absl::UnavailableError(
          absl::StrCat("all ", options_.max_connections, " connections to PostgreSQL at ",
                       info_.where, " stayed busy for ", options_.acquire_timeout.count(), " ms"));
    }
    if (lane == Lane::kBulk) ++bulk_leased_;
    if (!idle_.empty()) {
      std::unique_ptr<pqxx::connection> conn = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(conn), /*reused=*/true, lane);
    }
    ++open_;  // reserves the slot while connecting outside the lock
  }
  try {
    auto conn = std::make_unique<pqxx::connection>(info_.conninfo);
    pqxx::nontransaction setup(*conn);
    // lock_timeout plays SQLite's busy timeout; notices (e.g. "relation already exists,
    // skipping") would otherwise be printed on stderr by libpqxx.
    setup.exec(absl::StrCat("SET lock_timeout = ", options_.lock_timeout.count(),
                            "; SET client_min_messages = warning"));
    setup.commit();
    DefineHotStatements(*conn);
    return Lease(this, std::move(conn), /*reused=*/false, lane);
  } catch (const std::exception& e) {
    MutexLock lock(&mu_);
    --open_;
    if (lane == Lane::kBulk) --bulk_leased_;
    returned_.SignalAll();
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL at ", info_.where, ": ", Scrub(e.what())));
  }
}

void ConnectionPool::DiscardIdle() {
  std::vector<std::unique_ptr<pqxx::connection>> discarded;
  {
    MutexLock lock(&mu_);
    discarded.swap(idle_);
    open_ -= discarded.size();
    returned_.SignalAll();
  }
  // Closed here, outside the lock.
}

void ConnectionPool::Release(std::unique_ptr<pqxx::connection> conn, bool broken, Lane lane) {
  const bool keep = conn != nullptr && !broken && conn->is_open();
  MutexLock lock(&mu_);
  if (lane == Lane::kBulk) --bulk_leased_;
  if (keep) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
  returned_.SignalAll();
  // `conn`, if not kept, is closed after the lock is released (parameters outlive locals).
}

// ---- row conversions ----------------------------------------------------------------------------

std::string Text(const pqxx::field& f) { return f.is_null() ? std::string() : f.c_str(); }

// The one column list for Runner rows (RunnerFromRow reads it in this order): every column of
// runners, whether a key is set, and whether a registration is waiting on the runner (pending,
// or a replacement request on an enrolled one).
// Written so that listing 10,000 runners costs no per-row subquery: the pending enrollments
// are one hashed set, the group is looked up only for runners in one.
constexpr char kRunnerColumns[] = R"sql(
  id, name, CASE WHEN status = 'approved' AND quarantined_at > 0 THEN 'quarantined' ELSE status END,
  hostname, os, machine_id, agent_version, runtime_state, current_run,
  api_key_hash IS NOT NULL, jobs_version, created_at, approved_at, last_heartbeat_at,
  last_activity_at,
  id IN (SELECT e.runner_id FROM enrollments e WHERE e.status = 'pending'),
  health,
  CASE WHEN group_id IS NULL THEN ''
       ELSE COALESCE((SELECT g.name FROM runner_groups g WHERE g.id = runners.group_id), '') END,
  rotate_requested_at > 0)sql";

// "SELECT <runner columns> FROM runners <tail>".
std::string RunnerQuery(const char* tail) {
  return std::string("SELECT ") + kRunnerColumns + " FROM runners " + tail;
}

// ---- hot-path statements --------------------------------------------------------------------------

// What every heartbeat, long-poll and compare batch runs: prepared once per connection, so
// PostgreSQL parses and plans them once instead of on every call (a fleet of 10,000 agents makes
// well over 1,000 of these calls a second). Executed with exec_prepared(name, ...).
constexpr char kFindRunnerByKey[] = "find_runner_by_key";
constexpr char kRecordHeartbeat[] = "record_heartbeat";
constexpr char kAbandonStaleRuns[] = "abandon_stale_runs";
constexpr char kTakeCommands[] = "take_commands";
constexpr char kRecordLongPoll[] = "record_long_poll";
constexpr char kCheckWaitingRunners[] = "check_waiting_runners";
constexpr char kLookupSyncedFiles[] = "lookup_synced_files";
constexpr char kLoadRun[] = "load_run";
constexpr char kHeartbeat[] = "heartbeat";

void DefineHotStatements(pqxx::connection& conn) {
  // Only an approved runner's key authenticates, whatever a status change left.
  conn.prepare(kFindRunnerByKey, RunnerQuery("WHERE api_key_hash = $1 AND status = 'approved'"));
  // An empty agent_version keeps the one reported at registration; an empty health keeps the
  // last one.
  conn.prepare(kRecordHeartbeat, R"sql(
      UPDATE runners
      SET agent_version = CASE WHEN $1::text = '' THEN agent_version ELSE $1::text END,
          runtime_state = $2, current_run = $3, last_heartbeat_at = $4,
          health = CASE WHEN $6::text = '' THEN health ELSE $6::text END
      WHERE id = $5)sql");
  // One statement, so atomic; a run that another session closes first is re-checked (state)
  // after its lock is released and left alone. Ids come back in the order the runs began.
  conn.prepare(kAbandonStaleRuns, R"sql(
      WITH closed AS (
        UPDATE sync_runs SET state = 'abandoned', error = $1, finished_at = $2
        WHERE state = 'running' AND started_at < $3 AND id <> $4
          AND ($5::bigint IS NULL OR runner_id = $5::bigint)
        RETURNING id, seq)
      SELECT id FROM closed ORDER BY seq)sql");
  // One statement: the rows it marks are the rows it returns. A concurrent taker waits on the
  // row locks, re-checks state = 'pending' and skips them, so each command is delivered once.
  conn.prepare(kTakeCommands, R"sql(
      UPDATE commands SET state = 'delivered'
      WHERE id IN (SELECT id FROM commands
                   WHERE runner_id = $1 AND state = 'pending' FOR UPDATE)
        AND state = 'pending'
      RETURNING id, type, job_name, run_id)sql");
  conn.prepare(kRecordLongPoll, R"sql(
      INSERT INTO long_polls (runner_id, poll_id, started_at)
      SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM runners WHERE id = $1)
      ON CONFLICT (runner_id) DO UPDATE
      SET poll_id = excluded.poll_id, started_at = excluded.started_at)sql");
  conn.prepare(kCheckWaitingRunners, R"sql(
      SELECT r.id,
             EXISTS (SELECT 1 FROM commands c WHERE c.runner_id = r.id AND c.state = 'pending'),
             COALESCE(p.poll_id, '')
      FROM runners r LEFT JOIN long_polls p ON p.runner_id = r.id
      WHERE r.id = ANY($1::bigint[])
      ORDER BY r.id)sql");
  conn.prepare(kLookupSyncedFiles, R"sql(
      SELECT job_id, path, size, mtime_ns, sha256, synced_at, run_id
      FROM synced_files WHERE job_id = $1 AND path = ANY ($2::text[]))sql");
  // Heartbeat(): kAbandonStaleRuns and kTakeCommands for one runner, then kRecordHeartbeat, in one
  // statement. The UNION's branches run in order, so the locks follow the file's lock order
  // (sync_runs rows before runners rows). An unknown runner has no runs and no commands: then
  // nothing changes and no 'r' row comes back.
  conn.prepare(kHeartbeat, R"sql(
      WITH abandoned AS (
        UPDATE sync_runs SET state = 'abandoned', error = $7, finished_at = $4
        WHERE state = 'running' AND started_at < $8 AND id <> $3 AND runner_id = $5
        RETURNING id, seq),
      taken AS (
        UPDATE commands SET state = 'delivered'
        WHERE id IN (SELECT id FROM commands
                     WHERE runner_id = $5 AND state = 'pending' FOR UPDATE)
          AND state = 'pending'
        RETURNING id, type, job_name, run_id),
      beat AS (
        UPDATE runners
        SET agent_version = CASE WHEN $1::text = '' THEN agent_version ELSE $1::text END,
            runtime_state = $2, current_run = $3, last_heartbeat_at = $4,
            health = CASE WHEN $6::text = '' THEN health ELSE $6::text END
        WHERE id = $5
        RETURNING id)
      SELECT 'a', seq, id, '', '' FROM abandoned
      UNION ALL SELECT 'c', id, type, job_name, run_id FROM taken
      UNION ALL SELECT 'r', id, '', '', '' FROM beat)sql");
  conn.prepare(kLoadRun, R"sql(
      SELECT s.id, s.runner_id, r.name, s.job_id, s.job_name, s.state, s."trigger", s.files_seen,
             s.files_planned, s.files_uploaded, s.files_failed, s.files_skipped, s.bytes_seen,
             s.bytes_uploaded, s.started_at, s.finished_at, s.error
      FROM sync_runs s JOIN runners r ON r.id = s.runner_id
      WHERE s.id = $1)sql");
}

// Columns: kRunnerColumns.
Runner RunnerFromRow(const pqxx::row& row) {
  Runner r;
  r.id = row[0].as<int64_t>();
  r.name = Text(row[1]);
  r.status = Text(row[2]);
  r.hostname = Text(row[3]);
  r.os = Text(row[4]);
  r.machine_id = Text(row[5]);
  r.agent_version = Text(row[6]);
  r.runtime_state = Text(row[7]);
  r.current_run = Text(row[8]);
  r.has_key = row[9].as<bool>();
  r.jobs_version = row[10].as<int64_t>();
  r.created_at_ms = row[11].as<int64_t>();
  r.approved_at_ms = row[12].as<int64_t>();
  r.last_heartbeat_at_ms = row[13].as<int64_t>();
  r.last_activity_at_ms = row[14].as<int64_t>();
  r.pending_enrollment = row[15].as<bool>();
  r.health_json = Text(row[16]);
  r.group = Text(row[17]);
  r.key_rotation_pending = row[18].as<bool>();
  return r;
}

// Columns: j.id, j.runner_id, r.name, j.name, j.source, j.dest_prefix, j.includes, j.excludes,
// j.interval_ms, j.settle_ms, j.enabled, j.created_at.
Job JobFromRow(const pqxx::row& row) {
  Job j;
  j.spec.id = row[0].as<int64_t>();
  j.runner_id = row[1].as<int64_t>();
  j.runner_name = Text(row[2]);
  j.spec.name = Text(row[3]);
  j.spec.source = Text(row[4]);
  j.spec.dest_prefix = Text(row[5]);
  j.spec.includes = FromJsonArray(Text(row[6]));
  j.spec.excludes = FromJsonArray(Text(row[7]));
  j.spec.interval_ms = row[8].as<int64_t>();
  j.spec.settle_ms = row[9].as<int64_t>();
  j.spec.enabled = row[10].as<bool>();
  j.created_at_ms = row[11].as<int64_t>();
  return j;
}

// Columns: s.id, s.runner_id, r.name, s.job_id (NULL once the job is deleted), s.job_name,
// s.state, s.trigger, s.files_seen, s.files_planned, s.files_uploaded, s.files_failed,
// s.files_skipped, s.bytes_seen, s.bytes_uploaded, s.started_at, s.finished_at, s.error.
Run RunFromRow(const pqxx::row& row) {
  Run run;
  protocol::RunSummary& sum = run.summary;
  sum.run_id = Text(row[0]);
  run.runner_id = row[1].as<int64_t>();
  sum.runner = Text(row[2]);
  run.job_id = row[3].is_null() ? 0 : row[3].as<int64_t>();
  sum.job = Text(row[4]);
  sum.state = Text(row[5]);
  sum.trigger = Text(row[6]);
  sum.files_seen = static_cast<uint64_t>(row[7].as<int64_t>());
  sum.files_planned = static_cast<uint64_t>(row[8].as<int64_t>());
  sum.files_uploaded = static_cast<uint64_t>(row[9].as<int64_t>());
  sum.files_failed = static_cast<uint64_t>(row[10].as<int64_t>());
  sum.files_skipped = static_cast<uint64_t>(row[11].as<int64_t>());
  sum.bytes_seen = static_cast<uint64_t>(row[12].as<int64_t>());
  sum.bytes_uploaded = static_cast<uint64_t>(row[13].as<int64_t>());
  sum.started_at_ms = row[14].as<int64_t>();
  sum.finished_at_ms = row[15].as<int64_t>();
  sum.error = Text(row[16]);
  return run;
}

// Columns: job_id, path, size, mtime_ns, sha256, synced_at, run_id.
SyncedFile SyncedFileFromRow(const pqxx::row& row) {
  SyncedFile f;
  f.job_id = row[0].as<int64_t>();
  f.path = Text(row[1]);
  f.size = static_cast<uint64_t>(row[2].as<int64_t>());
  f.mtime_ns = row[3].as<int64_t>();
  f.sha256 = Text(row[4]);
  f.synced_at_ms = row[5].as<int64_t>();
  f.run_id = Text(row[6]);
  return f;
}

// Columns: path, planned_reason, size, sha256, result, error, kept_version.
RunFile RunFileFromRow(const pqxx::row& row) {
  RunFile f;
  f.path = Text(row[0]);
  f.planned_reason = Text(row[1]);
  f.size = static_cast<uint64_t>(row[2].as<int64_t>());
  f.sha256 = Text(row[3]);
  f.result = Text(row[4]);
  f.error = Text(row[5]);
  f.kept_version = Text(row[6]);
  return f;
}

// Columns: id, name, role, created_at, revoked_at, created_by.
AdminToken AdminTokenFromRow(const pqxx::row& row) {
  AdminToken t;
  t.id = row[0].as<int64_t>();
  t.name = Text(row[1]);
  t.role = Text(row[2]);
  t.created_at_ms = row[3].as<int64_t>();
  t.revoked_at_ms = row[4].as<int64_t>();
  t.created_by = Text(row[5]);
  return t;
}

// Columns: id, name, role, password_hash, created_at, updated_at, last_login_at.
User UserFromRow(const pqxx::row& row) {
  User u;
  u.id = row[0].as<int64_t>();
  u.name = Text(row[1]);
  u.role = Text(row[2]);
  u.password_hash = Text(row[3]);
  u.created_at_ms = row[4].as<int64_t>();
  u.updated_at_ms = row[5].as<int64_t>();
  u.last_login_at_ms = row[6].as<int64_t>();
  return u;
}

// Columns: id, at, actor, action, target, result, details, source_ip.
AuditEntry AuditFromRow(const pqxx::row& row) {
  AuditEntry e;
  e.id = row[0].as<int64_t>();
  e.at_ms = row[1].as<int64_t>();
  e.actor = Text(row[2]);
  e.action = Text(row[3]);
  e.target = Text(row[4]);
  e.result = Text(row[5]);
  e.details_json = Text(row[6]);
  e.source_ip = Text(row[7]);
  return e;
}

// `text` as a LIKE pattern matching itself literally (escape character '\\').
std::string LikeLiteral(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// Selected columns and joins of a Reconcile; ReconcileFromRow reads them in this order.
constexpr char kReconcileColumns[] = R"sql(
  c.id, c.job_id, r.name, j.name, c.state, c.verify, c.claimed_by, c.requested_at, c.started_at,
  c.updated_at, c.finished_at, c.files_expected, c.files_seen, c.bytes_seen, c.rows_added,
  c.rows_removed, c.rows_updated, c.rows_unchanged, c.mismatches, c.temp_files, c.report, c.error
  FROM reconciles c JOIN jobs j ON j.id = c.job_id JOIN runners r ON r.id = j.runner_id)sql";

Reconcile ReconcileFromRow(const pqxx::row& row) {
  Reconcile c;
  c.id = Text(row[0]);
  c.job_id = row[1].as<int64_t>();
  c.runner_name = Text(row[2]);
  c.job_name = Text(row[3]);
  c.state = Text(row[4]);
  c.verify = row[5].as<bool>();
  c.claimed_by = Text(row[6]);
  c.requested_at_ms = row[7].as<int64_t>();
  c.started_at_ms = row[8].as<int64_t>();
  c.updated_at_ms = row[9].as<int64_t>();
  c.finished_at_ms = row[10].as<int64_t>();
  const auto u = [&](int i) { return static_cast<uint64_t>(row[i].as<int64_t>()); };
  c.files_expected = u(11);
  c.files_seen = u(12);
  c.bytes_seen = u(13);
  c.rows_added = u(14);
  c.rows_removed = u(15);
  c.rows_updated = u(16);
  c.rows_unchanged = u(17);
  c.mismatches = u(18);
  c.temp_files = u(19);
  c.report_json = Text(row[20]);
  c.error = Text(row[21]);
  return c;
}

// Selected columns and joins of a Scrub; ScrubFromRow reads them in this order.
constexpr char kScrubColumns[] = R"sql(
  c.id, c.job_id, r.name, j.name, c.state, c.trigger_kind, c.rehash_fraction, c.claimed_by,
  c.requested_at, c.started_at, c.updated_at, c.finished_at, c.objects_listed, c.bytes_listed,
  c.objects_rehashed, c.missing, c.extra, c.size_mismatches, c.hash_mismatches, c.temp_files,
  c.healed, c.unhealed, c.report, c.error
  FROM scrubs c JOIN jobs j ON j.id = c.job_id JOIN runners r ON r.id = j.runner_id)sql";

Scrub ScrubFromRow(const pqxx::row& row) {
  Scrub c;
  c.id = Text(row[0]);
  c.job_id = row[1].as<int64_t>();
  c.runner_name = Text(row[2]);
  c.job_name = Text(row[3]);
  c.state = Text(row[4]);
  c.trigger = Text(row[5]);
  c.rehash_fraction = row[6].as<double>();
  c.claimed_by = Text(row[7]);
  c.requested_at_ms = row[8].as<int64_t>();
  c.started_at_ms = row[9].as<int64_t>();
  c.updated_at_ms = row[10].as<int64_t>();
  c.finished_at_ms = row[11].as<int64_t>();
  uint64_t* counters[] = {&c.objects_listed, &c.bytes_listed, &c.objects_rehashed, &c.missing,
                          &c.extra, &c.size_mismatches, &c.hash_mismatches, &c.temp_files,
                          &c.healed, &c.unhealed};
  int i = 12;
  for (uint64_t* v : counters) *v = static_cast<uint64_t>(row[i++].as<int64_t>());
  c.report_json = Text(row[22]);
  c.error = Text(row[23]);
  return c;
}

// Columns: id, runner_id, secret_hash, status, created_at.
// The one column list for Enrollment rows (EnrollmentFromRow reads it in this order).
constexpr char kEnrollmentColumns[] = R"sql(
  id, runner_id, secret_hash, status, created_at, hostname, os, machine_id, agent_version,
  address)sql";

// Columns: kEnrollmentColumns.
Enrollment EnrollmentFromRow(const pqxx::row& row) {
  Enrollment e;
  e.id = Text(row[0]);
  e.runner_id = row[1].as<int64_t>();
  e.secret_hash = Text(row[2]);
  e.status = Text(row[3]);
  e.created_at_ms = row[4].as<int64_t>();
  e.hostname = Text(row[5]);
  e.os = Text(row[6]);
  e.machine_id = Text(row[7]);
  e.agent_version = Text(row[8]);
  e.address = Text(row[9]);
  return e;
}

// The run a batch of plan or results belongs to.
struct RunningRun {
  int64_t runner_id = 0;
  int64_t job_id = 0;  // 0 once the job is deleted
};

// How a call talks to the database.
enum class TxMode {
  kWrite,       // one read-write transaction (READ COMMITTED), committed when fn returns OK
  kSnapshot,    // one read-only REPEATABLE READ transaction: several reads, one snapshot
  kAutocommit,  // no BEGIN/COMMIT: for a single statement, which is its own transaction
};

// Maps a PostgreSQL error (by SQLSTATE) as FromSqliteException maps SQLite's.
absl::Status FromSqlState(const std::string& sqlstate, const std::string& message) {
  if (sqlstate == "23505") return absl::AlreadyExistsError(message);             // unique_violation
  if (sqlstate == "23503") return absl::FailedPreconditionError(message);        // foreign_key
  if (sqlstate.rfind("23", 0) == 0) return absl::InvalidArgumentError(message);  // check, not null
  // data_exception: a value PostgreSQL cannot store (invalid UTF-8, out of range, bad array).
  if (sqlstate.rfind("22", 0) == 0) return absl::InvalidArgumentError(message);
  if (sqlstate == "55P03" || sqlstate == "57014") {  // lock_timeout, statement_timeout
    return absl::UnavailableError(message);
  }
  if (sqlstate == "53100") return absl::ResourceExhaustedError(message);     // disk_full
  if (sqlstate.rfind("53", 0) == 0) return absl::UnavailableError(message);  // out of resources
  return absl::InternalError(message);
}

// The connection is gone: connection_exception (08) or the server shutting down / terminating
// this backend (57P01..57P03).
bool IsConnectionLoss(const std::string& sqlstate) {
  return sqlstate.rfind("08", 0) == 0 || sqlstate == "57P01" || sqlstate == "57P02" ||
         sqlstate == "57P03";
}

class PostgresIndex final : public StateIndex {
 public:
  PostgresIndex(Conninfo info, const PostgresPoolOptions& options)
      : pool_(std::move(info), options) {}

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
  absl::StatusOr<HeartbeatOutcome> Heartbeat(const HeartbeatRecord& hb, int64_t now_ms) override;

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

 private:
  // Runs `fn(tx)` on a pooled connection in a transaction of kind `mode` and turns any exception
  // into a status. For kWrite/kSnapshot the transaction commits only when fn returns OK; an error
  // status or exception rolls it back, so nothing is partially applied. The whole call is
  // retried (fn runs again from the start) when a pooled connection proves dead before commit, or
  // on a serialization failure or deadlock. `op` names the method in messages; `lane` says
  // whether the call is a long one (ConnectionPool::Acquire).
  // `fn`: (pqxx::transaction_base&) -> absl::Status or absl::StatusOr<T>; may throw.
  template <typename Fn>
  std::invoke_result_t<Fn&, pqxx::transaction_base&> Execute(const char* op, TxMode mode, Fn&& fn,
                                                             Lane lane = Lane::kShort);

  // "op: <first line of the server's message>". The DETAIL/HINT lines that follow may quote row
  // values (key hashes, secrets' hashes), so they are left out.
  std::string Message(const char* op, const std::exception& e) const {
    std::string text = e.what();
    text = text.substr(0, text.find('\n'));
    if (text.rfind("ERROR:", 0) == 0) text.erase(0, text.find_first_not_of(' ', 6));
    return absl::StrCat(op, ": ", pool_.Scrub(std::move(text)));
  }

  // The helpers below run inside Execute()'s transaction `tx` and may throw pqxx exceptions.
  static int CurrentSchemaVersion(pqxx::transaction_base& tx);  // 0 when nothing was applied
  static absl::StatusOr<Runner> LoadRunner(pqxx::transaction_base& tx, int64_t id);
  static absl::StatusOr<Job> LoadJob(pqxx::transaction_base& tx, int64_t id);
  static absl::StatusOr<Run> LoadRun(pqxx::transaction_base& tx, const std::string& id);
  static absl::StatusOr<Reconcile> LoadReconcile(pqxx::transaction_base& tx, const std::string& id);
  static absl::StatusOr<Scrub> LoadScrub(pqxx::transaction_base& tx, const std::string& id);
  // Locks the run's row (FOR UPDATE) until the transaction ends. NotFound for an unknown run,
  // FailedPrecondition unless it is `running` (or, with allow_abandoned, `abandoned`: late
  // results of a recovered agent).
  static absl::StatusOr<RunningRun> LockRunningRun(pqxx::transaction_base& tx,
                                                   const std::string& run_id,
                                                   bool allow_abandoned = false);

  ConnectionPool pool_;
};

template <typename Fn>
std::invoke_result_t<Fn&, pqxx::transaction_base&> PostgresIndex::Execute(const char* op,
                                                                          TxMode mode, Fn&& fn,
                                                                          Lane lane) {
  absl::Status last;
  for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
    if (attempt > 1) std::this_thread::sleep_for(std::chrono::milliseconds(5 * attempt));
    absl::StatusOr<ConnectionPool::Lease> lease = pool_.Acquire(lane);
    if (!lease.ok()) {
      return absl::UnavailableError(absl::StrCat(op, ": ", lease.status().message()));
    }
    bool retry = false;
    try {
      switch (mode) {
        case TxMode::kWrite: {
          pqxx::work tx(lease->conn());
          auto result = fn(static_cast<pqxx::transaction_base&>(tx));
          if (result.ok()) tx.commit();
          return result;
        }
        case TxMode::kSnapshot: {
          pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(lease->conn());
          auto result = fn(static_cast<pqxx::transaction_base&>(tx));
          if (result.ok()) tx.commit();
          return result;
        }
        case TxMode::kAutocommit: {
          pqxx::nontransaction tx(lease->conn());
          return fn(static_cast<pqxx::transaction_base&>(tx));
        }
      }
      return absl::InternalError(absl::StrCat(op, ": unknown transaction mode"));
    } catch (const pqxx::broken_connection& e) {
      // Nothing was committed (a lost COMMIT raises in_doubt_error instead). A connection that
      // sat in the pool may have been cut while idle (server restart): retry on a fresh one.
      lease->MarkBroken();
      last = absl::UnavailableError(absl::StrCat(op, ": PostgreSQL at ", pool_.info().where,
                                                 " unavailable: ", pool_.Scrub(e.what())));
      retry = lease->reused();
      // Its idle siblings were most likely cut by the same event.
      if (retry) pool_.DiscardIdle();
    } catch (const pqxx::in_doubt_error& e) {
      lease->MarkBroken();
      return absl::UnavailableError(absl::StrCat(
          op, ": connection lost during COMMIT, the outcome is unknown: ", pool_.Scrub(e.what())));
    } catch (const pqxx::statement_completion_unknown& e) {
      lease->MarkBroken();
      return absl::UnavailableError(Message(op, e));
    } catch (const pqxx::transaction_rollback& e) {
      // serialization_failure, deadlock_detected: PostgreSQL rolled back; running again is safe.
      last = absl::UnavailableError(Message(op, e));
      retry = true;
    } catch (const pqxx::sql_error& e) {
      const std::string& sqlstate = e.sqlstate();
      if (sqlstate == "40001" || sqlstate == "40P01") {
        last = absl::UnavailableError(Message(op, e));
        retry = true;
      } else if (IsConnectionLoss(sqlstate)) {
        lease->MarkBroken();
        last = absl::UnavailableError(Message(op, e));
        retry = lease->reused();
        if (retry) pool_.DiscardIdle();
      } else {
        return FromSqlState(sqlstate, Message(op, e));
      }
    } catch (const std::exception& e) {
      // pqxx::failure (protocol trouble), conversion errors, malformed JSON columns.
      if (!lease->conn().is_open()) lease->MarkBroken();
      return absl::InternalError(Message(op, e));
    }
    if (!retry) return last;
  }
  return last;
}

// ---- helpers ------------------------------------------------------------------------------------

int PostgresIndex::CurrentSchemaVersion(pqxx::transaction_base& tx) {
  if (tx.exec("SELECT to_regclass('schema_migrations') IS NULL")[0][0].as<bool>()) return 0;
  return tx.exec("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0].as<int>();
}

absl::StatusOr<Runner> PostgresIndex::LoadRunner(pqxx::transaction_base& tx, int64_t id) {
  const pqxx::result r = tx.exec_params(RunnerQuery(R"sql(WHERE id = $1)sql"),
                                        id);
  if (r.empty()) return absl::NotFoundError(absl::StrCat("runner ", id, " not found"));
  return RunnerFromRow(r[0]);
}

absl::StatusOr<Job> PostgresIndex::LoadJob(pqxx::transaction_base& tx, int64_t id) {
  const pqxx::result r = tx.exec_params(R"sql(
    SELECT j.id, j.runner_id, r.name, j.name, j.source, j.dest_prefix, j.includes, j.excludes,
           j.interval_ms, j.settle_ms, j.enabled, j.created_at
    FROM jobs j JOIN runners r ON r.id = j.runner_id
    WHERE j.id = $1)sql",
                                        id);
  if (r.empty()) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  return JobFromRow(r[0]);
}

absl::StatusOr<Run> PostgresIndex::LoadRun(pqxx::transaction_base& tx, const std::string& id) {
  const pqxx::result r = tx.exec_prepared(kLoadRun, id);
  if (r.empty()) return absl::NotFoundError(absl::StrCat("run ", id, " not found"));
  return RunFromRow(r[0]);
}

absl::StatusOr<Reconcile> PostgresIndex::LoadReconcile(pqxx::transaction_base& tx,
                                                       const std::string& id) {
  const pqxx::result r =
      tx.exec_params(absl::StrCat("SELECT ", kReconcileColumns, " WHERE c.id = $1"), id);
  if (r.empty()) return absl::NotFoundError(absl::StrCat("reconcile ", id, " not found"));
  return ReconcileFromRow(r[0]);
}

absl::StatusOr<Scrub> PostgresIndex::LoadScrub(pqxx::transaction_base& tx, const std::string& id) {
  const pqxx::result r =
      tx.exec_params(absl::StrCat("SELECT ", kScrubColumns, " WHERE c.id = $1"), id);
  if (r.empty()) return absl::NotFoundError(absl::StrCat("scrub ", id, " not found"));
  return ScrubFromRow(r[0]);
}

absl::StatusOr<RunningRun> PostgresIndex::LockRunningRun(pqxx::transaction_base& tx,
                                                         const std::string& run_id,
                                                         bool allow_abandoned) {
  const pqxx::result r = tx.exec_params(
      "SELECT state, runner_id, job_id FROM sync_runs WHERE id = $1 FOR UPDATE", run_id);
  if (r.empty()) return absl::NotFoundError(absl::StrCat("run ", run_id, " not found"));
  const std::string state = Text(r[0][0]);
  if (state != "running" && !(allow_abandoned && state == "abandoned")) {
    return absl::FailedPreconditionError(absl::StrCat("run ", run_id, " is ", state));
  }
  RunningRun run;
  run.runner_id = r[0][1].as<int64_t>();
  run.job_id = r[0][2].is_null() ? 0 : r[0][2].as<int64_t>();
  return run;
}

// ---- schema -------------------------------------------------------------------------------------

absl::Status PostgresIndex::Migrate() {
  const int latest = LatestKnownSchemaVersion();
  // One migration per transaction. Each transaction first takes the migration advisory lock
  // (released at its end), so servers starting together take turns and each re-reads the version
  // the others recorded: every migration is applied exactly once.
  for (;;) {
    absl::StatusOr<bool> done =
        Execute("Migrate", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<bool> {
          tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey);
          tx.exec(R"sql(
            CREATE TABLE IF NOT EXISTS schema_migrations (
              version     INTEGER PRIMARY KEY,  -- NNNN of the migration file
              name        TEXT NOT NULL,        -- migration file name
              applied_at  BIGINT NOT NULL       -- Unix ms
            ))sql");
          const int current = CurrentSchemaVersion(tx);
          if (current > latest) {
            return absl::FailedPreconditionError(
                absl::StrCat("index schema version ", current, " is newer than this server knows (",
                             latest, "); upgrade datasync-server"));
          }
          if (current == latest) return true;
          // The lowest version above the current one (numbers are reserved per feature branch).
          const auto next =
              std::find_if(kPostgresMigrations.begin(), kPostgresMigrations.end(),
                           [&](const Migration& m) { return m.version > current; });
          if (next == kPostgresMigrations.end()) {
            return absl::InternalError(
                absl::StrCat("PostgreSQL migration after ", current, " is missing"));
          }
          tx.exec(std::string(next->sql));
          tx.exec_params(
              "INSERT INTO schema_migrations (version, name, applied_at) "
              "VALUES ($1, $2, $3)",
              next->version, std::string(next->name), SystemClock()->NowUnixMs());
          return false;
        });
    if (!done.ok()) return done.status();
    if (*done) return absl::OkStatus();
  }
}

absl::StatusOr<int> PostgresIndex::SchemaVersion() {
  return Execute(
      "SchemaVersion", TxMode::kSnapshot,
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<int> { return CurrentSchemaVersion(tx); });
}

int PostgresIndex::LatestKnownSchemaVersion() const {
  return kPostgresMigrations.empty() ? 0 : kPostgresMigrations.back().version;
}

absl::Status PostgresIndex::Ping() {
  return Execute("Ping", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::Status {
    tx.exec("SELECT 1");
    return absl::OkStatus();
  });
}

// ---- runners and enrollment ---------------------------------------------------------------------

absl::StatusOr<Runner> PostgresIndex::RegisterRunner(const RegisterInfo& info,
                                                     const std::string& enrollment_id,
                                                     const std::string& secret_hash,
                                                     int64_t now_ms) {
  if (info.name.empty() || enrollment_id.empty() || secret_hash.empty()) {
    return absl::InvalidArgumentError(
        "RegisterRunner: name, enrollment id and secret hash are required");
  }
  return Execute(
      "RegisterRunner", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<Runner> {
        int64_t runner_id = 0;
        // Either the existing runner's row is locked, or the insert wins the unique name; when a
        // concurrent registration inserted the name after our SELECT, ON CONFLICT waited for it and
        // the second round locks its row. So registrations of one name take turns, as in SQLite.
        for (int round = 0; runner_id == 0; ++round) {
          if (round == 2) {
            return absl::UnavailableError(
                absl::StrCat("RegisterRunner: runner name \"", info.name, "\" is contended"));
          }
          const pqxx::result found = tx.exec_params(
              "SELECT id, status FROM runners WHERE name = $1 FOR UPDATE", info.name);
          if (!found.empty()) {
            const std::string status = Text(found[0][1]);
            if (status == "rejected") {
              return absl::AlreadyExistsError(
                  absl::StrCat("runner name \"", info.name, "\" belongs to a rejected runner"));
            }
            // An existing runner keeps its row and key: the new enrollment waits beside others.
            // (A pending runner nobody registered yet, a job import's, shows the first's host.)
            runner_id = found[0][0].as<int64_t>();
            tx.exec_params(R"sql(
          UPDATE runners SET hostname = $1, os = $2, machine_id = $3, agent_version = $4
          WHERE id = $5 AND status = 'pending' AND hostname = '' AND machine_id = ''
            AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.runner_id = runners.id))sql",
                           info.hostname, info.os, info.machine_id, info.agent_version, runner_id);
            break;
          }
          const pqxx::result inserted = tx.exec_params(R"sql(
        INSERT INTO runners (name, status, hostname, os, machine_id, agent_version, created_at)
        VALUES ($1, 'pending', $2, $3, $4, $5, $6)
        ON CONFLICT (name) DO NOTHING
        RETURNING id)sql",
                                                       info.name, info.hostname, info.os,
                                                       info.machine_id, info.agent_version, now_ms);
          if (!inserted.empty()) runner_id = inserted[0][0].as<int64_t>();
        }
        tx.exec_params(R"sql(
      INSERT INTO enrollments (id, runner_id, secret_hash, status, created_at, hostname, os,
                               machine_id, agent_version, address)
      VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9))sql",
                       enrollment_id, runner_id, secret_hash, now_ms, info.hostname, info.os,
                       info.machine_id, info.agent_version, info.address);
        return LoadRunner(tx, runner_id);
      });
}

absl::StatusOr<Enrollment> PostgresIndex::GetEnrollment(const std::string& id) {
  return Execute(
      "GetEnrollment", TxMode::kAutocommit,
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<Enrollment> {
        const pqxx::result r = tx.exec_params(
            absl::StrCat("SELECT ", kEnrollmentColumns, " FROM enrollments WHERE id = $1"), id);
        if (r.empty()) {
          return absl::NotFoundError(absl::StrCat("enrollment ", id, " not found"));
        }
        return EnrollmentFromRow(r[0]);
      });
}

absl::StatusOr<Runner> PostgresIndex::CreatePendingRunner(const std::string& name, int64_t now_ms) {
  if (HasNul(name)) return absl::InvalidArgumentError("CreatePendingRunner: the name contains NUL");
  return Execute("CreatePendingRunner", TxMode::kWrite,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<Runner> {
                   const pqxx::result r = tx.exec_params(R"sql(
                     INSERT INTO runners (name, status, created_at) VALUES ($1, 'pending', $2)
                     RETURNING id)sql",
                                                         name, now_ms);
                   return LoadRunner(tx, r[0][0].as<int64_t>());
                 });
}

absl::StatusOr<std::vector<Enrollment>> PostgresIndex::ListPendingEnrollments(int64_t runner_id) {
  return Execute("ListPendingEnrollments", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<Enrollment>> {
                   const pqxx::result r = tx.exec_params(
                       absl::StrCat("SELECT ", kEnrollmentColumns, R"sql( FROM enrollments
                         WHERE runner_id = $1 AND status = 'pending' ORDER BY created_at, id)sql"),
                       runner_id);
                   std::vector<Enrollment> out;
                   for (const pqxx::row& row : r) out.push_back(EnrollmentFromRow(row));
                   return out;
                 });
}

absl::Status PostgresIndex::DecideEnrollment(int64_t runner_id, const std::string& enrollment_id,
                                             bool approve, int64_t now_ms) {
  return Execute(
      "DecideEnrollment", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
        // Runner first, then enrollment (the file's lock order).
        if (tx.exec_params("SELECT 1 FROM runners WHERE id = $1 FOR UPDATE", runner_id).empty()) {
          return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
        }
        DS_ASSIGN_OR_RETURN(Runner runner, LoadRunner(tx, runner_id));
        const pqxx::result r = tx.exec_params(
            absl::StrCat("SELECT ", kEnrollmentColumns,
                         " FROM enrollments WHERE id = $1 AND runner_id = $2 FOR UPDATE"),
            enrollment_id, runner_id);
        if (r.empty()) {
          return absl::NotFoundError(
              absl::StrCat("runner '", runner.name, "' has no enrollment ", enrollment_id));
        }
        const Enrollment e = EnrollmentFromRow(r[0]);
        DS_RETURN_IF_ERROR(CheckDecidable(runner, e));
        tx.exec_params("UPDATE enrollments SET status = $1 WHERE id = $2",
                       approve ? "approved" : "rejected", enrollment_id);
        if (approve) {
          tx.exec_params(
              "UPDATE enrollments SET status = 'rejected' WHERE runner_id = $1 AND status = "
              "'pending'",
              runner_id);
          tx.exec_params(R"sql(
        UPDATE runners SET status = 'approved', approved_at = $1, hostname = $2, os = $3,
          machine_id = $4, agent_version = $5
        WHERE id = $6)sql",
                         now_ms, e.hostname, e.os, e.machine_id, e.agent_version, runner_id);
        } else {
          tx.exec_params(R"sql(
        UPDATE runners SET status = 'rejected'
        WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM enrollments e
                                       WHERE e.runner_id = runners.id AND e.status = 'pending'))sql",
                         runner_id);
        }
        return absl::OkStatus();
      });
}

absl::Status PostgresIndex::DeleteRunner(int64_t runner_id) {
  return Execute("DeleteRunner", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
    if (tx.exec_params("SELECT 1 FROM runners WHERE id = $1 FOR UPDATE", runner_id).empty()) {
      return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
    }
    DS_ASSIGN_OR_RETURN(Runner runner, LoadRunner(tx, runner_id));
    std::vector<std::string> jobs;
    for (const pqxx::row& row :
         tx.exec_params("SELECT name FROM jobs WHERE runner_id = $1 ORDER BY name", runner_id)) {
      jobs.push_back(Text(row[0]));
    }
    DS_RETURN_IF_ERROR(CheckDeletable(runner, jobs));
    tx.exec_params("DELETE FROM runners WHERE id = $1", runner_id);
    return absl::OkStatus();
  });
}

absl::Status PostgresIndex::DeliverKey(const std::string& enrollment_id,
                                       const std::string& key_hash) {
  if (key_hash.empty()) return absl::InvalidArgumentError("DeliverKey: empty key hash");
  return Execute("DeliverKey", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
    const pqxx::result owner =
        tx.exec_params("SELECT runner_id FROM enrollments WHERE id = $1", enrollment_id);
    if (owner.empty()) {
      return absl::NotFoundError(absl::StrCat("enrollment ", enrollment_id, " not found"));
    }
    const int64_t runner_id = owner[0][0].as<int64_t>();
    // Runner first, then enrollment (the file's lock order); both stay locked until commit, so
    // the checks below hold when the key is written and a key is issued exactly once.
    const pqxx::result runner =
        tx.exec_params("SELECT status FROM runners WHERE id = $1 FOR UPDATE", runner_id);
    const pqxx::result enrollment =
        tx.exec_params("SELECT status FROM enrollments WHERE id = $1 FOR UPDATE", enrollment_id);
    if (runner.empty() || enrollment.empty()) {
      return absl::NotFoundError(absl::StrCat("enrollment ", enrollment_id, " not found"));
    }
    const std::string enrollment_status = Text(enrollment[0][0]);
    const std::string runner_status = Text(runner[0][0]);
    if (enrollment_status != "approved") {
      return absl::FailedPreconditionError(
          absl::StrCat("enrollment ", enrollment_id, " is ", enrollment_status));
    }
    // Approved, then revoked before the agent polled: no key.
    if (runner_status != "approved") {
      return absl::FailedPreconditionError(
          absl::StrCat("runner of enrollment ", enrollment_id, " is ", runner_status));
    }
    tx.exec_params("UPDATE runners SET api_key_hash = $1 WHERE id = $2", key_hash, runner_id);
    tx.exec_params("UPDATE enrollments SET status = 'delivered' WHERE id = $1", enrollment_id);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<Runner>> PostgresIndex::ListRunners() {
  return Execute("ListRunners", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<Runner>> {
                   const pqxx::result r = tx.exec(RunnerQuery(R"sql(ORDER BY name)sql"));
                   std::vector<Runner> runners;
                   for (const pqxx::row& row : r) runners.push_back(RunnerFromRow(row));
                   return runners;
                 },
                 Lane::kBulk);
}

absl::StatusOr<Runner> PostgresIndex::GetRunnerByName(const std::string& name) {
  return Execute("GetRunnerByName", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<Runner> {
                   const pqxx::result r = tx.exec_params(RunnerQuery(R"sql(WHERE name = $1)sql"),
                                                         name);
                   if (r.empty()) {
                     return absl::NotFoundError(absl::StrCat("runner \"", name, "\" not found"));
                   }
                   return RunnerFromRow(r[0]);
                 });
}

absl::StatusOr<Runner> PostgresIndex::GetRunnerById(int64_t id) {
  return Execute("GetRunnerById", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) { return LoadRunner(tx, id); });
}

absl::StatusOr<Runner> PostgresIndex::FindRunnerByKeyHash(const std::string& key_hash) {
  return Execute("FindRunnerByKeyHash", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<Runner> {
                   const pqxx::result r = tx.exec_prepared(kFindRunnerByKey, key_hash);
                   if (r.empty()) return absl::NotFoundError("no approved runner has this key");
                   return RunnerFromRow(r[0]);
                 });
}

absl::Status PostgresIndex::SetRunnerGroup(int64_t runner_id, const std::string& group,
                                           int64_t now_ms) {
  if (HasNul(group)) return absl::InvalidArgumentError("SetRunnerGroup: the name contains NUL");
  return Execute("SetRunnerGroup", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
    std::optional<int64_t> group_id;
    if (!group.empty()) {
      tx.exec_params(R"sql(
        INSERT INTO runner_groups (name, created_at) VALUES ($1, $2::bigint)
        ON CONFLICT (name) DO NOTHING)sql",
                     group, now_ms);
      group_id = tx.exec_params("SELECT id FROM runner_groups WHERE name = $1", group)[0][0]
                     .as<int64_t>();
    }
    const pqxx::result r = tx.exec_params(
        "UPDATE runners SET group_id = $1 WHERE id = $2 RETURNING id", group_id, runner_id);
    if (r.empty()) return absl::NotFoundError(absl::StrCat("no runner ", runner_id));
    return absl::OkStatus();
  });
}

absl::Status PostgresIndex::TransitionRunner(int64_t runner_id, const std::string& from,
                                             const std::string& to, int64_t now_ms) {
  if (!IsRunnerStatus(to)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown runner status \"", to, "\""));
  }
  return Execute(
      "TransitionRunner", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
        // The row lock makes the compare and the set one step: a second operator acting on the same
        // stale view waits here, then sees the new status and loses.
        const pqxx::result current = tx.exec_params(R"sql(
      SELECT CASE WHEN status = 'approved' AND quarantined_at > 0 THEN 'quarantined' ELSE status END
      FROM runners WHERE id = $1 FOR UPDATE)sql",
                                                    runner_id);
        if (current.empty()) {
          return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
        }
        const std::string status = Text(current[0][0]);
        if (status != from) {
          return absl::FailedPreconditionError(
              absl::StrCat("runner ", runner_id, " is ", status, ", not ", from));
        }
        if (to == "approved" || to == "rejected") {
          DS_RETURN_IF_ERROR(CheckSinglePendingEnrollment(
              runner_id,
              tx.exec_params(
                    "SELECT COUNT(*) FROM enrollments WHERE runner_id = $1 AND status = 'pending'",
                    runner_id)[0][0]
                  .as<int64_t>()));
        }
        tx.exec_params(R"sql(
      UPDATE runners
      SET status = $1::text,
          approved_at = CASE WHEN $1::text = 'approved' THEN $2::bigint ELSE approved_at END,
          api_key_hash = CASE WHEN $1::text = 'revoked' THEN NULL ELSE api_key_hash END,
          next_key_hash = CASE WHEN $1::text = 'revoked' THEN NULL ELSE next_key_hash END,
          retired_key_hash = CASE WHEN $1::text = 'revoked' THEN NULL ELSE retired_key_hash END,
          quarantined_at = CASE WHEN $1::text = 'revoked' THEN 0 ELSE quarantined_at END
      WHERE id = $3)sql",
                       to, now_ms, runner_id);
        if (to == "approved" || to == "rejected") {
          tx.exec_params(
              "UPDATE enrollments SET status = $1 WHERE runner_id = $2 AND status = 'pending'", to,
              runner_id);
        }
        return absl::OkStatus();
      });
}

absl::Status PostgresIndex::RecordHeartbeat(int64_t runner_id, const std::string& agent_version,
                                            const std::string& runtime_state,
                                            const std::string& current_run,
                                            const std::string& health_json, int64_t now_ms) {
  if (HasNul(health_json)) return absl::InvalidArgumentError("RecordHeartbeat: NUL in health");
  return Execute("RecordHeartbeat", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::Status {
                   const pqxx::result r =
                       tx.exec_prepared(kRecordHeartbeat, agent_version, runtime_state,
                                        current_run, now_ms, runner_id, health_json);
                   if (r.affected_rows() == 0) {
                     return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
                   }
                   return absl::OkStatus();
                 });
}

absl::StatusOr<StateIndex::HeartbeatOutcome> PostgresIndex::Heartbeat(const HeartbeatRecord& hb,
                                                                      int64_t now_ms) {
  if (HasNul(hb.health_json) || HasNul(hb.agent_version) || HasNul(hb.runtime_state) ||
      HasNul(hb.current_run) || HasNul(hb.orphan_reason)) {
    return absl::InvalidArgumentError("Heartbeat: a value contains NUL");
  }
  return Execute(
      "Heartbeat", TxMode::kAutocommit,
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<HeartbeatOutcome> {
        const pqxx::result r =
            tx.exec_prepared(kHeartbeat, hb.agent_version, hb.runtime_state, hb.current_run,
                             now_ms, hb.runner_id, hb.health_json, hb.orphan_reason,
                             hb.orphans_started_before_ms);
        HeartbeatOutcome out;
        bool recorded = false;
        std::vector<std::pair<int64_t, std::string>> abandoned;  // (seq, id)
        for (const pqxx::row& row : r) {
          const std::string kind = Text(row[0]);
          if (kind == "r") {
            recorded = true;
          } else if (kind == "a") {
            abandoned.emplace_back(row[1].as<int64_t>(), Text(row[2]));
          } else {
            protocol::Command c;
            c.id = row[1].as<int64_t>();
            c.type = Text(row[2]);
            c.job = Text(row[3]);
            c.run_id = Text(row[4]);
            out.commands.push_back(std::move(c));
          }
        }
        if (!recorded) {
          return absl::NotFoundError(absl::StrCat("runner ", hb.runner_id, " not found"));
        }
        std::sort(abandoned.begin(), abandoned.end());
        for (auto& [seq, id] : abandoned) out.abandoned_runs.push_back(std::move(id));
        std::sort(out.commands.begin(), out.commands.end(),
                  [](const protocol::Command& a, const protocol::Command& b) { return a.id < b.id; });
        return out;
      });
}

// ---- jobs ---------------------------------------------------------------------------------------

absl::StatusOr<Job> PostgresIndex::PutJob(int64_t runner_id, const protocol::JobSpec& spec,
                                          bool replace, int64_t now_ms) {
  if (spec.name.empty()) return absl::InvalidArgumentError("PutJob: empty job name");
  return Execute("PutJob", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<Job> {
    if (tx.exec_params("SELECT 1 FROM runners WHERE id = $1", runner_id).empty()) {
      return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
    }
    const std::string includes = ToJsonArray(spec.includes);
    const std::string excludes = ToJsonArray(spec.excludes);
    int64_t job_id = 0;
    // As in RegisterRunner: lock the existing job, or win the unique (runner, name) on insert.
    for (int round = 0; job_id == 0; ++round) {
      if (round == 2) {
        return absl::UnavailableError(
            absl::StrCat("PutJob: job name \"", spec.name, "\" is contended"));
      }
      const pqxx::result found =
          tx.exec_params("SELECT id FROM jobs WHERE runner_id = $1 AND name = $2 FOR UPDATE",
                         runner_id, spec.name);
      if (!found.empty()) {
        if (!replace) {
          return absl::AlreadyExistsError(
              absl::StrCat("runner ", runner_id, " already has a job named \"", spec.name, "\""));
        }
        job_id = found[0][0].as<int64_t>();
        tx.exec_params(R"sql(
          UPDATE jobs
          SET source = $1, dest_prefix = $2, includes = $3, excludes = $4,
              interval_ms = $5, settle_ms = $6, enabled = $7
          WHERE id = $8)sql",
                       spec.source, spec.dest_prefix, includes, excludes, spec.interval_ms,
                       spec.settle_ms, spec.enabled, job_id);
        break;
      }
      const pqxx::result inserted =
          tx.exec_params(R"sql(
        INSERT INTO jobs (runner_id, name, source, dest_prefix, includes, excludes, interval_ms,
                          settle_ms, enabled, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (runner_id, name) DO NOTHING
        RETURNING id)sql",
                         runner_id, spec.name, spec.source, spec.dest_prefix, includes, excludes,
                         spec.interval_ms, spec.settle_ms, spec.enabled, now_ms);
      if (!inserted.empty()) job_id = inserted[0][0].as<int64_t>();
    }
    const pqxx::result bumped = tx.exec_params(
        "UPDATE runners SET jobs_version = jobs_version + 1 WHERE id = $1", runner_id);
    if (bumped.affected_rows() == 0) {
      return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
    }
    // Source, destination or filters may have changed: the manifest digest no longer holds.
    tx.exec_params("DELETE FROM job_manifests WHERE job_id = $1", job_id);
    return LoadJob(tx, job_id);
  });
}

absl::StatusOr<Job> PostgresIndex::GetJob(int64_t runner_id, const std::string& name) {
  return Execute("GetJob", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<Job> {
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT j.id, j.runner_id, r.name, j.name, j.source, j.dest_prefix, j.includes, j.excludes,
             j.interval_ms, j.settle_ms, j.enabled, j.created_at
      FROM jobs j JOIN runners r ON r.id = j.runner_id
      WHERE j.runner_id = $1 AND j.name = $2)sql",
                                                         runner_id, name);
                   if (r.empty()) {
                     return absl::NotFoundError(
                         absl::StrCat("runner ", runner_id, " has no job named \"", name, "\""));
                   }
                   return JobFromRow(r[0]);
                 });
}

absl::StatusOr<Job> PostgresIndex::GetJobById(int64_t job_id) {
  return Execute("GetJobById", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) { return LoadJob(tx, job_id); });
}

absl::StatusOr<std::vector<Job>> PostgresIndex::ListJobs(std::optional<int64_t> runner_id) {
  return Execute("ListJobs", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<Job>> {
                   const std::optional<std::string> runner =
                       runner_id ? std::optional<std::string>(std::to_string(*runner_id))
                                 : std::nullopt;
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT j.id, j.runner_id, r.name, j.name, j.source, j.dest_prefix, j.includes, j.excludes,
             j.interval_ms, j.settle_ms, j.enabled, j.created_at
      FROM jobs j JOIN runners r ON r.id = j.runner_id
      WHERE $1::bigint IS NULL OR j.runner_id = $1::bigint
      ORDER BY r.name, j.name)sql",
                                                         OrNull(runner));
                   std::vector<Job> jobs;
                   for (const pqxx::row& row : r) jobs.push_back(JobFromRow(row));
                   return jobs;
                 });
}

absl::Status PostgresIndex::DeleteJob(int64_t job_id) {
  return Execute("DeleteJob", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
    if (tx.exec_params("SELECT 1 FROM jobs WHERE id = $1", job_id).empty()) {
      return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    }
    // Lock order: the job's runs (RecordPlanned/RecordResults hold them), then the job, then
    // the runner. Runs begun between the first lock and the job lock are locked by the second.
    constexpr const char* kLockRuns =
        "SELECT id FROM sync_runs WHERE job_id = $1 ORDER BY id FOR UPDATE";
    tx.exec_params(kLockRuns, job_id);
    const pqxx::result job =
        tx.exec_params("SELECT runner_id FROM jobs WHERE id = $1 FOR UPDATE", job_id);
    if (job.empty()) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    const int64_t runner_id = job[0][0].as<int64_t>();
    tx.exec_params(kLockRuns, job_id);
    tx.exec_params(
        "DELETE FROM run_files WHERE run_id IN (SELECT id FROM sync_runs WHERE job_id = $1)",
        job_id);
    tx.exec_params("DELETE FROM synced_files WHERE job_id = $1", job_id);
    // sync_runs.job_id becomes NULL (ON DELETE SET NULL); the runs keep job_name.
    tx.exec_params("DELETE FROM jobs WHERE id = $1", job_id);
    tx.exec_params("UPDATE runners SET jobs_version = jobs_version + 1 WHERE id = $1", runner_id);
    return absl::OkStatus();
  });
}

// ---- runs ---------------------------------------------------------------------------------------

absl::StatusOr<Run> PostgresIndex::BeginRun(const std::string& run_id, int64_t runner_id,
                                            int64_t job_id, const std::string& trigger,
                                            int64_t now_ms) {
  if (run_id.empty()) return absl::InvalidArgumentError("BeginRun: empty run id");
  return Execute(
      "BeginRun", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<Run> {
        // Two rounds at most: when a concurrent BeginRun of the same id inserted it after our
        // SELECT, ON CONFLICT waited for its commit and the second round sees (and locks) its row.
        for (int round = 0; round < 2; ++round) {
          const pqxx::result existing = tx.exec_params(
              "SELECT runner_id, job_id, state FROM sync_runs WHERE id = $1 FOR UPDATE", run_id);
          if (!existing.empty()) {
            const bool same = existing[0][0].as<int64_t>() == runner_id &&
                              !existing[0][1].is_null() && existing[0][1].as<int64_t>() == job_id;
            const std::string state = Text(existing[0][2]);
            if (!same) {
              return absl::FailedPreconditionError(
                  absl::StrCat("run ", run_id, " belongs to another runner or job"));
            }
            if (state != "running") {
              return absl::FailedPreconditionError(absl::StrCat("run ", run_id, " is ", state));
            }
            return LoadRun(tx, run_id);
          }
          // KEY SHARE keeps the job from being deleted before this transaction ends.
          const pqxx::result job = tx.exec_params(
              "SELECT runner_id, name FROM jobs WHERE id = $1 FOR KEY SHARE", job_id);
          if (job.empty()) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
          if (job[0][0].as<int64_t>() != runner_id) {
            return absl::InvalidArgumentError(
                absl::StrCat("job ", job_id, " does not belong to runner ", runner_id));
          }
          const pqxx::result inserted =
              tx.exec_params(R"sql(
        INSERT INTO sync_runs (id, runner_id, job_id, job_name, state, "trigger", started_at)
        VALUES ($1, $2, $3, $4, 'running', $5, $6)
        ON CONFLICT (id) DO NOTHING
        RETURNING id)sql",
                             run_id, runner_id, job_id, Text(job[0][1]), trigger, now_ms);
          if (!inserted.empty()) return LoadRun(tx, run_id);
        }
        return absl::UnavailableError(absl::StrCat("BeginRun: run ", run_id, " is contended"));
      });
}

absl::StatusOr<std::vector<SyncedFile>> PostgresIndex::LookupSyncedFiles(
    int64_t job_id, const std::vector<std::string>& paths) {
  if (std::any_of(paths.begin(), paths.end(), HasNul)) {
    return absl::InvalidArgumentError("LookupSyncedFiles: a path contains NUL");
  }
  if (paths.empty()) return std::vector<SyncedFile>{};
  return Execute("LookupSyncedFiles", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<SyncedFile>> {
                   // One round trip for the whole batch.
                   const pqxx::result r =
                       tx.exec_prepared(kLookupSyncedFiles, job_id, TextArray(paths));
                   std::map<std::string, SyncedFile> by_path;
                   for (const pqxx::row& row : r) {
                     SyncedFile f = SyncedFileFromRow(row);
                     std::string path = f.path;
                     by_path.emplace(std::move(path), std::move(f));
                   }
                   // In the order asked, as the SQLite version answers.
                   std::vector<SyncedFile> found;
                   for (const std::string& path : paths) {
                     const auto it = by_path.find(path);
                     if (it != by_path.end()) found.push_back(it->second);
                   }
                   return found;
                 },
                 Lane::kBulk);
}

absl::Status PostgresIndex::RecordPlanned(const std::string& run_id,
                                          const std::vector<RunFile>& planned, int64_t total_files,
                                          int64_t total_bytes) {
  for (const RunFile& f : planned) {
    if (f.path.empty() || f.planned_reason.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "RecordPlanned: path and planned_reason are required (path \"", f.path, "\")"));
    }
    if (HasNul(f.path) || HasNul(f.planned_reason) || HasNul(f.sha256)) {
      return absl::InvalidArgumentError("RecordPlanned: a value contains NUL");
    }
  }
  // One row per path, the last one winning, as a row-by-row upsert would leave it (a single
  // INSERT ... ON CONFLICT may not touch a row twice). Sorted by path: a stable lock order.
  std::map<std::string, const RunFile*> rows;
  for (const RunFile& f : planned) rows[f.path] = &f;
  std::vector<std::string> paths, reasons, hashes;
  std::vector<int64_t> sizes;
  for (const auto& [path, f] : rows) {
    paths.push_back(path);
    reasons.push_back(f->planned_reason);
    sizes.push_back(static_cast<int64_t>(f->size));
    hashes.push_back(f->sha256);
  }
  return Execute("RecordPlanned", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
    DS_RETURN_IF_ERROR(LockRunningRun(tx, run_id).status());
    // files_planned grows by the paths not planned before (counting the whole run per batch
    // would make a 1,000,000-file plan quadratic).
    int64_t added = 0;
    if (!paths.empty()) {
      const int64_t before = tx.exec_params(R"sql(
        SELECT COUNT(*) FROM run_files
        WHERE run_id = $1 AND path = ANY($2::text[]) AND planned_reason <> '')sql",
                                             run_id, TextArray(paths))[0][0]
                                 .as<int64_t>();
      added = static_cast<int64_t>(paths.size()) - before;
      tx.exec_params(R"sql(
        INSERT INTO run_files (run_id, path, planned_reason, size, sha256)
        SELECT $1, u.path, u.reason, u.size, u.sha256
        FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) AS u(path, reason, size, sha256)
        ON CONFLICT (run_id, path) DO UPDATE
        SET planned_reason = excluded.planned_reason, size = excluded.size,
            sha256 = excluded.sha256)sql",
                     run_id, TextArray(paths), TextArray(reasons), BigintArray(sizes),
                     TextArray(hashes));
    }
    tx.exec_params(R"sql(
      UPDATE sync_runs
      SET files_planned = files_planned + $4::bigint,
          files_seen = CASE WHEN $2::bigint >= 0 THEN $2::bigint ELSE files_seen END,
          bytes_seen = CASE WHEN $3::bigint >= 0 THEN $3::bigint ELSE bytes_seen END
      WHERE id = $1)sql",
                   run_id, total_files, total_bytes, added);
    return absl::OkStatus();
  },
                 Lane::kBulk);
}

absl::StatusOr<uint64_t> PostgresIndex::RecordResults(
    const std::string& run_id, const std::vector<protocol::FileResult>& results, int64_t now_ms) {
  for (const protocol::FileResult& r : results) {
    if (r.path.empty() || !IsFileResult(r.status)) {
      return absl::InvalidArgumentError(
          absl::StrCat("RecordResults: bad result \"", r.status, "\" for path \"", r.path, "\""));
    }
    if (HasNul(r.path) || HasNul(r.error) || HasNul(r.kept_version) || HasNul(r.sha256)) {
      return absl::InvalidArgumentError("RecordResults: a value contains NUL");
    }
  }
  return Execute(
      "RecordResults", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<uint64_t> {
        // The run's row lock serialises every writer of this run's rows and counters.
        DS_ASSIGN_OR_RETURN(const RunningRun run,
                            LockRunningRun(tx, run_id, /*allow_abandoned=*/true));
        if (run.job_id != 0 && !results.empty()) {
          tx.exec_params("DELETE FROM job_manifests WHERE job_id = $1", run.job_id);
        }

        // The batch is applied in memory first, result by result exactly as the SQLite version
        // applies it row by row; then the final rows are written with a few set-based statements.
        struct FileState {
          bool existed = false;  // the run_files row was there before this batch
          bool has_row = false;
          bool planned = false;
          bool dirty = false;  // to be written back
          std::string result, error, kept_version;
          int64_t size = 0;  // planned size until uploaded, then the uploaded size
        };
        std::map<std::string, FileState> files;  // by path: a stable lock order for the writes
        for (const protocol::FileResult& r : results) files.try_emplace(r.path);
        {
          std::vector<std::string> paths;
          paths.reserve(files.size());
          for (const auto& [path, state] : files) paths.push_back(path);
          const pqxx::result rows = tx.exec_params(R"sql(
        SELECT path, planned_reason, result, size, error, kept_version
        FROM run_files WHERE run_id = $1 AND path = ANY ($2::text[]))sql",
                                                   run_id, TextArray(paths));
          for (const pqxx::row& row : rows) {
            FileState& s = files[Text(row[0])];
            s.existed = s.has_row = true;
            s.planned = !Text(row[1]).empty();
            s.result = Text(row[2]);
            s.size = row[3].as<int64_t>();
            s.error = Text(row[4]);
            s.kept_version = Text(row[5]);
          }
        }

        struct Synced {
          int64_t size = 0, mtime_ns = 0;
          std::string sha256;
        };
        std::map<std::string, Synced> synced;  // by path; the last upload of a path wins
        int64_t d_uploaded = 0, d_failed = 0, d_skipped = 0, d_bytes = 0;
        uint64_t applied = 0;
        for (const protocol::FileResult& r : results) {
          FileState& s = files[r.path];
          if (r.status != "skipped" && !s.planned) {
            return absl::InvalidArgumentError(absl::StrCat(
                "run ", run_id, ": result \"", r.status, "\" for unplanned path \"", r.path, "\""));
          }
          if (r.status == s.result) continue;
          if (r.status == "uploaded" && run.job_id == 0) {
            return absl::FailedPreconditionError(
                absl::StrCat("the job of run ", run_id, " has been deleted"));
          }

          if (s.result == "uploaded") {
            --d_uploaded;
            d_bytes -= s.size;
          } else if (s.result == "failed") {
            --d_failed;
          } else if (s.result == "skipped") {
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

          if (s.has_row) {
            s.result = r.status;
            s.error = r.error;
            s.kept_version = r.kept_version;
            if (r.status == "uploaded") s.size = static_cast<int64_t>(r.size);
          } else {  // an unplanned `skipped`: a new row
            s.has_row = true;
            s.result = "skipped";
            s.error = r.error;
            s.size = static_cast<int64_t>(r.size);
          }
          s.dirty = true;
          if (r.status == "uploaded") {
            synced[r.path] = Synced{static_cast<int64_t>(r.size), r.mtime_ns, r.sha256};
          }
          ++applied;
        }

        // Write back: updated rows, new (skipped, unplanned) rows, synced files.
        std::vector<std::string> up_paths, up_results, up_errors, up_kept;
        std::vector<int64_t> up_sizes;
        std::vector<std::string> new_paths, new_errors, new_kept, new_results;
        std::vector<int64_t> new_sizes;
        for (const auto& [path, s] : files) {
          if (!s.dirty) continue;
          if (s.existed) {
            up_paths.push_back(path);
            up_results.push_back(s.result);
            up_errors.push_back(s.error);
            up_kept.push_back(s.kept_version);
            up_sizes.push_back(s.size);
          } else {
            new_paths.push_back(path);
            new_results.push_back(s.result);
            new_errors.push_back(s.error);
            new_kept.push_back(s.kept_version);
            new_sizes.push_back(s.size);
          }
        }
        if (!up_paths.empty()) {
          tx.exec_params(R"sql(
        UPDATE run_files AS f
        SET result = u.result, error = u.error, kept_version = u.kept_version, size = u.size
        FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
             AS u(path, result, error, kept_version, size)
        WHERE f.run_id = $1 AND f.path = u.path)sql",
                         run_id, TextArray(up_paths), TextArray(up_results), TextArray(up_errors),
                         TextArray(up_kept), BigintArray(up_sizes));
        }
        if (!new_paths.empty()) {
          tx.exec_params(R"sql(
        INSERT INTO run_files (run_id, path, size, result, error, kept_version)
        SELECT $1, u.path, u.size, u.result, u.error, u.kept_version
        FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[])
             AS u(path, size, result, error, kept_version))sql",
                         run_id, TextArray(new_paths), BigintArray(new_sizes),
                         TextArray(new_results), TextArray(new_errors), TextArray(new_kept));
        }
        if (!synced.empty()) {
          std::vector<std::string> paths, hashes;
          std::vector<int64_t> sizes, mtimes;
          for (const auto& [path, f] : synced) {
            paths.push_back(path);
            sizes.push_back(f.size);
            mtimes.push_back(f.mtime_ns);
            hashes.push_back(f.sha256);
          }
          tx.exec_params(R"sql(
        INSERT INTO synced_files (job_id, path, size, mtime_ns, sha256, synced_at, run_id)
        SELECT $1, u.path, u.size, u.mtime_ns, u.sha256, $2, $3
        FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::text[])
             AS u(path, size, mtime_ns, sha256)
        ON CONFLICT (job_id, path) DO UPDATE
        SET size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
            synced_at = excluded.synced_at, run_id = excluded.run_id)sql",
                         run.job_id, now_ms, run_id, TextArray(paths), BigintArray(sizes),
                         BigintArray(mtimes), TextArray(hashes));
        }
        if (applied > 0) {
          tx.exec_params(R"sql(
        UPDATE sync_runs
        SET files_uploaded = files_uploaded + $1, files_failed = files_failed + $2,
            files_skipped = files_skipped + $3, bytes_uploaded = bytes_uploaded + $4
        WHERE id = $5)sql",
                         d_uploaded, d_failed, d_skipped, d_bytes, run_id);
        }
        if (!synced.empty()) {
          tx.exec_params(R"sql(
        UPDATE runners SET last_activity_at = GREATEST(last_activity_at, $1) WHERE id = $2)sql",
                         now_ms, run.runner_id);
        }
        return applied;
      });
}

absl::StatusOr<Run> PostgresIndex::FinishRun(const std::string& run_id, const std::string& state,
                                             const std::string& error, int64_t now_ms) {
  if (!IsFinalRunState(state)) {
    return absl::InvalidArgumentError(absl::StrCat("FinishRun: bad final state \"", state, "\""));
  }
  return Execute(
      "FinishRun", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<Run> {
        const pqxx::result r =
            tx.exec_params("SELECT state FROM sync_runs WHERE id = $1 FOR UPDATE", run_id);
        if (r.empty()) return absl::NotFoundError(absl::StrCat("run ", run_id, " not found"));
        const std::string current = Text(r[0][0]);
        if (current == "running") {
          tx.exec_params(
              "UPDATE sync_runs SET state = $1, error = $2, finished_at = $3 WHERE id = $4", state,
              error, now_ms, run_id);
          const pqxx::result run =
              tx.exec_params("SELECT job_id, manifest_digest FROM sync_runs WHERE id = $1", run_id);
          if (!run[0][0].is_null()) {
            const int64_t job_id = run[0][0].as<int64_t>();
            const std::string digest = Text(run[0][1]);
            if (state == "succeeded" && !digest.empty()) {
              tx.exec_params(R"sql(
                INSERT INTO job_manifests (job_id, digest, run_id, updated_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (job_id) DO UPDATE
                SET digest = excluded.digest, run_id = excluded.run_id, updated_at = excluded.updated_at)sql",
                             job_id, digest, run_id, now_ms);
            } else {
              tx.exec_params("DELETE FROM job_manifests WHERE job_id = $1", job_id);
            }
          }
        } else if (current != state) {
          return absl::FailedPreconditionError(
              absl::StrCat("run ", run_id, " is already ", current, ", cannot become ", state));
        }
        return LoadRun(tx, run_id);
      });
}

absl::Status PostgresIndex::SetRunManifestDigest(const std::string& run_id, const std::string& digest) {
  if (HasNul(digest)) return absl::InvalidArgumentError("SetRunManifestDigest: digest contains NUL");
  return Execute("SetRunManifestDigest", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
    const pqxx::result r =
        tx.exec_params("UPDATE sync_runs SET manifest_digest = $1 WHERE id = $2", digest, run_id);
    if (r.affected_rows() == 0) return absl::NotFoundError(absl::StrCat("run ", run_id, " not found"));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::string> PostgresIndex::GetJobManifestDigest(int64_t job_id) {
  return Execute("GetJobManifestDigest", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::string> {
                   const pqxx::result r =
                       tx.exec_params("SELECT digest FROM job_manifests WHERE job_id = $1", job_id);
                   return r.empty() ? std::string() : Text(r[0][0]);
                 });
}

absl::StatusOr<Run> PostgresIndex::GetRun(const std::string& run_id) {
  return Execute("GetRun", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) { return LoadRun(tx, run_id); });
}

absl::StatusOr<std::vector<Run>> PostgresIndex::ListRuns(const RunFilter& filter) {
  if (filter.limit < 1) return absl::InvalidArgumentError("ListRuns: limit must be positive");
  if (filter.offset < 0) return absl::InvalidArgumentError("ListRuns: negative offset");
  return Execute("ListRuns", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<Run>> {
                   const auto as_text = [](const std::optional<int64_t>& v) {
                     return v ? std::optional<std::string>(std::to_string(*v)) : std::nullopt;
                   };
                   const std::optional<std::string> runner = as_text(filter.runner_id);
                   const std::optional<std::string> job = as_text(filter.job_id);
                   // An unnamed statement is planned with its parameter values, so the filters not
                   // given fold away and the (runner|job, started_at) indexes stay usable. seq
                   // breaks started_at ties in insertion order, as SQLite's rowid does.
                   const pqxx::result r =
                       tx.exec_params(R"sql(
      SELECT s.id, s.runner_id, r.name, s.job_id, s.job_name, s.state, s."trigger", s.files_seen,
             s.files_planned, s.files_uploaded, s.files_failed, s.files_skipped, s.bytes_seen,
             s.bytes_uploaded, s.started_at, s.finished_at, s.error
      FROM sync_runs s JOIN runners r ON r.id = s.runner_id
      WHERE ($1::bigint IS NULL OR s.runner_id = $1::bigint)
        AND ($2::bigint IS NULL OR s.job_id = $2::bigint)
        AND ($3::text IS NULL OR s.state = $3::text)
      ORDER BY s.started_at DESC, s.seq DESC
      LIMIT $4 OFFSET $5)sql",
                                      OrNull(runner), OrNull(job), OrNull(filter.state),
                                      std::min(filter.limit, kMaxRunsPerPage), filter.offset);
                   std::vector<Run> runs;
                   for (const pqxx::row& row : r) runs.push_back(RunFromRow(row));
                   return runs;
                 });
}

absl::StatusOr<std::vector<RunFile>> PostgresIndex::ListRunFiles(const std::string& run_id,
                                                                 const std::string& after_path,
                                                                 int limit) {
  if (limit < 1) return absl::InvalidArgumentError("ListRunFiles: limit must be positive");
  if (HasNul(after_path)) return absl::InvalidArgumentError("ListRunFiles: path contains NUL");
  return Execute("ListRunFiles", TxMode::kSnapshot,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<RunFile>> {
                   if (tx.exec_params("SELECT 1 FROM sync_runs WHERE id = $1", run_id).empty()) {
                     return absl::NotFoundError(absl::StrCat("run ", run_id, " not found"));
                   }
                   // path is COLLATE "C": byte order, as SQLite's keyset paging.
                   const pqxx::result r =
                       tx.exec_params(R"sql(
      SELECT path, planned_reason, size, sha256, result, error, kept_version
      FROM run_files WHERE run_id = $1 AND path > $2
      ORDER BY path LIMIT $3)sql",
                                      run_id, after_path, std::min(limit, kMaxFilesPerPage));
                   std::vector<RunFile> files;
                   for (const pqxx::row& row : r) files.push_back(RunFileFromRow(row));
                   return files;
                 });
}

absl::StatusOr<RunFile> PostgresIndex::GetRunFile(const std::string& run_id,
                                                  const std::string& path) {
  if (HasNul(run_id) || HasNul(path)) {
    return absl::InvalidArgumentError("GetRunFile: run id or path contains NUL");
  }
  return Execute("GetRunFile", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<RunFile> {
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT path, planned_reason, size, sha256, result, error, kept_version
      FROM run_files WHERE run_id = $1 AND path = $2)sql",
                                                         run_id, path);
                   if (r.empty()) {
                     return absl::NotFoundError(
                         absl::StrCat("run ", run_id, " has no file \"", path, "\""));
                   }
                   return RunFileFromRow(r[0]);
                 });
}

// ---- synced files -------------------------------------------------------------------------------

absl::StatusOr<std::vector<SyncedFile>> PostgresIndex::ListSyncedFiles(
    int64_t job_id, const std::string& after_path, int limit) {
  if (limit < 1) return absl::InvalidArgumentError("ListSyncedFiles: limit must be positive");
  if (HasNul(after_path)) return absl::InvalidArgumentError("ListSyncedFiles: path contains NUL");
  return Execute("ListSyncedFiles", TxMode::kSnapshot,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<SyncedFile>> {
                   if (tx.exec_params("SELECT 1 FROM jobs WHERE id = $1", job_id).empty()) {
                     return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
                   }
                   const pqxx::result r =
                       tx.exec_params(R"sql(
      SELECT job_id, path, size, mtime_ns, sha256, synced_at, run_id
      FROM synced_files WHERE job_id = $1 AND path > $2
      ORDER BY path LIMIT $3)sql",
                                      job_id, after_path, std::min(limit, kMaxFilesPerPage));
                   std::vector<SyncedFile> files;
                   for (const pqxx::row& row : r) files.push_back(SyncedFileFromRow(row));
                   return files;
                 },
                 Lane::kBulk);
}

absl::StatusOr<int64_t> PostgresIndex::CountSyncedFiles(int64_t job_id) {
  return Execute("CountSyncedFiles", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<int64_t> {
                   // One statement, one snapshot.
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1),
             (SELECT COUNT(*) FROM synced_files WHERE job_id = $1))sql",
                                                         job_id);
                   if (!r[0][0].as<bool>()) {
                     return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
                   }
                   return r[0][1].as<int64_t>();
                 });
}

// ---- commands -----------------------------------------------------------------------------------

absl::StatusOr<protocol::Command> PostgresIndex::EnqueueCommand(int64_t runner_id,
                                                                const std::string& type,
                                                                const std::string& job,
                                                                const std::string& run_id,
                                                                int64_t now_ms) {
  if (type.empty()) return absl::InvalidArgumentError("EnqueueCommand: empty command type");
  return Execute("EnqueueCommand", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<protocol::Command> {
                   const pqxx::result r = tx.exec_params(R"sql(
      INSERT INTO commands (runner_id, type, job_name, run_id, state, created_at)
      SELECT $1, $2, $3, $4, 'pending', $5
      WHERE EXISTS (SELECT 1 FROM runners WHERE id = $1)
      RETURNING id)sql",
                                                         runner_id, type, job, run_id, now_ms);
                   if (r.empty()) {
                     return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
                   }
                   protocol::Command command;
                   command.id = r[0][0].as<int64_t>();
                   command.type = type;
                   command.job = job;
                   command.run_id = run_id;
                   return command;
                 });
}

absl::StatusOr<std::vector<protocol::Command>> PostgresIndex::TakeCommands(int64_t runner_id) {
  return Execute("TakeCommands", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<protocol::Command>> {
                   const pqxx::result r = tx.exec_prepared(kTakeCommands, runner_id);
                   std::vector<protocol::Command> commands;
                   for (const pqxx::row& row : r) {
                     protocol::Command c;
                     c.id = row[0].as<int64_t>();
                     c.type = Text(row[1]);
                     c.job = Text(row[2]);
                     c.run_id = Text(row[3]);
                     commands.push_back(std::move(c));
                   }
                   // RETURNING has no order; oldest first.
                   std::sort(commands.begin(), commands.end(),
                             [](const protocol::Command& a, const protocol::Command& b) {
                               return a.id < b.id;
                             });
                   return commands;
                 });
}

// ---- reconcile ----------------------------------------------------------------------------------

absl::StatusOr<Reconcile> PostgresIndex::CreateReconcile(const std::string& id, int64_t job_id,
                                                         bool verify, int64_t now_ms) {
  return Execute(
      "CreateReconcile", TxMode::kWrite,
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<Reconcile> {
        // KEY SHARE keeps the job from being deleted before this transaction ends.
        if (tx.exec_params("SELECT 1 FROM jobs WHERE id = $1 FOR KEY SHARE", job_id).empty()) {
          return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
        }
        const pqxx::result active = tx.exec_params(
            "SELECT id FROM reconciles WHERE job_id = $1 AND state IN ('queued','running')",
            job_id);
        if (!active.empty()) {
          return absl::AlreadyExistsError(absl::StrCat("reconcile ", Text(active[0][0]),
                                                       " of this job is already in progress"));
        }
        // A concurrent CreateReconcile of the same job that got past the check above loses on the
        // partial unique index reconciles_one_active (AlreadyExists).
        tx.exec_params(R"sql(
      INSERT INTO reconciles (id, job_id, state, verify, requested_at, files_expected)
      VALUES ($1, $2, 'queued', $3, $4, (SELECT COUNT(*) FROM synced_files WHERE job_id = $2)))sql",
                       id, job_id, verify, now_ms);
        return LoadReconcile(tx, id);
      });
}

absl::StatusOr<Reconcile> PostgresIndex::ClaimReconcile(const std::string& worker, int64_t now_ms,
                                                        int64_t stale_before_ms) {
  return Execute("ClaimReconcile", TxMode::kWrite,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<Reconcile> {
                   // SKIP LOCKED: servers claiming at the same time take different reconciles
                   // instead of queueing on the same row. The lock holds until commit, so a
                   // reconcile is claimed once.
                   const pqxx::result pick = tx.exec_params(R"sql(
      SELECT id FROM reconciles
      WHERE state = 'queued' OR (state = 'running' AND updated_at < $1)
      ORDER BY requested_at LIMIT 1
      FOR UPDATE SKIP LOCKED)sql",
                                                            stale_before_ms);
                   if (pick.empty()) return absl::NotFoundError("no reconcile waiting");
                   const std::string id = Text(pick[0][0]);
                   tx.exec_params(R"sql(
      UPDATE reconciles SET state = 'running', claimed_by = $1, started_at = $2, updated_at = $2,
        files_seen = 0, bytes_seen = 0
      WHERE id = $3)sql",
                                  worker, now_ms, id);
                   return LoadReconcile(tx, id);
                 });
}

absl::Status PostgresIndex::UpdateReconcile(const Reconcile& r, int64_t now_ms) {
  if (!IsOneOf(r.state, {"running", "succeeded", "failed"})) {
    return absl::InvalidArgumentError(absl::StrCat("UpdateReconcile: bad state \"", r.state, "\""));
  }
  if (HasNul(r.report_json) || HasNul(r.error)) {
    return absl::InvalidArgumentError("UpdateReconcile: a value contains NUL");
  }
  const auto i64 = [](uint64_t v) { return static_cast<int64_t>(v); };
  return Execute(
      "UpdateReconcile", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::Status {
        // One statement: the claim check and the write are atomic.
        const pqxx::result q = tx.exec_params(
            R"sql(
      UPDATE reconciles SET state = $1, updated_at = $2, finished_at = $3, files_seen = $4,
        bytes_seen = $5, rows_added = $6, rows_removed = $7, rows_updated = $8,
        rows_unchanged = $9, mismatches = $10, temp_files = $11, report = $12, error = $13
      WHERE id = $14 AND state = 'running' AND claimed_by = $15)sql",
            r.state, now_ms, r.finished_at_ms, i64(r.files_seen), i64(r.bytes_seen),
            i64(r.rows_added), i64(r.rows_removed), i64(r.rows_updated), i64(r.rows_unchanged),
            i64(r.mismatches), i64(r.temp_files), r.report_json, r.error, r.id, r.claimed_by);
        if (q.affected_rows() == 0) {
          return absl::FailedPreconditionError(
              absl::StrCat("reconcile ", r.id, " is not running under ", r.claimed_by));
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<Reconcile> PostgresIndex::GetReconcile(const std::string& id) {
  return Execute("GetReconcile", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) { return LoadReconcile(tx, id); });
}

absl::StatusOr<std::vector<Reconcile>> PostgresIndex::ListReconciles(std::optional<int64_t> job_id,
                                                                     bool active_only, int limit) {
  if (limit < 1) return absl::InvalidArgumentError("ListReconciles: limit must be positive");
  return Execute("ListReconciles", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<Reconcile>> {
                   const std::optional<std::string> job =
                       job_id ? std::optional<std::string>(std::to_string(*job_id)) : std::nullopt;
                   const pqxx::result r =
                       tx.exec_params(absl::StrCat("SELECT ", kReconcileColumns, R"sql(
      WHERE ($1::bigint IS NULL OR c.job_id = $1::bigint)
        AND (NOT $2::boolean OR c.state IN ('queued','running'))
      ORDER BY c.requested_at DESC LIMIT $3)sql"),
                                      OrNull(job), active_only, std::min(limit, 1000));
                   std::vector<Reconcile> out;
                   for (const pqxx::row& row : r) out.push_back(ReconcileFromRow(row));
                   return out;
                 });
}

absl::Status PostgresIndex::ApplySyncedFiles(int64_t job_id, const std::vector<SyncedFile>& upserts,
                                             const std::vector<std::string>& deletes) {
  for (const SyncedFile& f : upserts) {
    if (HasNul(f.path) || HasNul(f.sha256) || HasNul(f.run_id)) {
      return absl::InvalidArgumentError("ApplySyncedFiles: a value contains NUL");
    }
  }
  if (std::any_of(deletes.begin(), deletes.end(), HasNul)) {
    return absl::InvalidArgumentError("ApplySyncedFiles: a path contains NUL");
  }
  // One row per path, the last one winning as in a row-by-row upsert; sorted by path.
  std::map<std::string, const SyncedFile*> rows;
  for (const SyncedFile& f : upserts) rows[f.path] = &f;
  std::vector<std::string> paths, hashes, run_ids;
  std::vector<int64_t> sizes, mtimes, synced_ats;
  for (const auto& [path, f] : rows) {
    paths.push_back(path);
    sizes.push_back(static_cast<int64_t>(f->size));
    mtimes.push_back(f->mtime_ns);
    hashes.push_back(f->sha256);
    synced_ats.push_back(f->synced_at_ms);
    run_ids.push_back(f->run_id);
  }
  return Execute(
      "ApplySyncedFiles", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
        if (tx.exec_params("SELECT 1 FROM jobs WHERE id = $1 FOR KEY SHARE", job_id).empty()) {
          return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
        }
        tx.exec_params("DELETE FROM job_manifests WHERE job_id = $1", job_id);
        // A run in flight compared its manifest against the rows before this change: its
        // digest must not become the job's when it succeeds.
        tx.exec_params(
            "UPDATE sync_runs SET manifest_digest = '' WHERE job_id = $1 AND state = 'running'",
            job_id);
        if (!paths.empty()) {
          tx.exec_params(R"sql(
        INSERT INTO synced_files (job_id, path, size, mtime_ns, sha256, synced_at, run_id)
        SELECT $1, u.path, u.size, u.mtime_ns, u.sha256, u.synced_at, u.run_id
        FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::text[])
             AS u(path, size, mtime_ns, sha256, synced_at, run_id)
        ON CONFLICT (job_id, path) DO UPDATE
        SET size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
            synced_at = excluded.synced_at, run_id = excluded.run_id)sql",
                         job_id, TextArray(paths), BigintArray(sizes), BigintArray(mtimes),
                         TextArray(hashes), BigintArray(synced_ats), TextArray(run_ids));
        }
        if (!deletes.empty()) {  // after the upserts, as in the SQLite version
          tx.exec_params("DELETE FROM synced_files WHERE job_id = $1 AND path = ANY ($2::text[])",
                         job_id, TextArray(deletes));
        }
        return absl::OkStatus();
      });
}

// ---- scrub -------------------------------------------------------------------------------------

absl::StatusOr<Scrub> PostgresIndex::CreateScrub(const std::string& id, int64_t job_id,
                                                 const std::string& trigger,
                                                 double rehash_fraction, int64_t now_ms) {
  DS_RETURN_IF_ERROR(ValidateScrubRequest(trigger, rehash_fraction));
  if (HasNul(id)) return absl::InvalidArgumentError("CreateScrub: the id contains NUL");
  return Execute(
      "CreateScrub", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<Scrub> {
        // KEY SHARE keeps the job from being deleted before this transaction ends.
        if (tx.exec_params("SELECT 1 FROM jobs WHERE id = $1 FOR KEY SHARE", job_id).empty()) {
          return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
        }
        const pqxx::result active = tx.exec_params(
            "SELECT id FROM scrubs WHERE job_id = $1 AND state IN ('queued','running')", job_id);
        if (!active.empty()) {
          return absl::AlreadyExistsError(
              absl::StrCat("scrub ", Text(active[0][0]), " of this job is already in progress"));
        }
        // A concurrent CreateScrub of the same job loses on scrubs_one_active (AlreadyExists).
        tx.exec_params(R"sql(
      INSERT INTO scrubs (id, job_id, state, trigger_kind, rehash_fraction, requested_at)
      VALUES ($1, $2, 'queued', $3, $4, $5))sql",
                       id, job_id, trigger, rehash_fraction, now_ms);
        return LoadScrub(tx, id);
      });
}

absl::StatusOr<Scrub> PostgresIndex::ClaimScrub(const std::string& worker, int64_t now_ms,
                                                int64_t stale_before_ms) {
  return Execute(
      "ClaimScrub", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<Scrub> {
        // SKIP LOCKED: concurrent claimers take different scrubs; the row lock holds until
        // commit, so a scrub is claimed once.
        const pqxx::result pick = tx.exec_params(R"sql(
      SELECT id FROM scrubs
      WHERE state = 'queued' OR (state = 'running' AND updated_at < $1)
      ORDER BY requested_at LIMIT 1
      FOR UPDATE SKIP LOCKED)sql",
                                                 stale_before_ms);
        if (pick.empty()) return absl::NotFoundError("no scrub waiting");
        const std::string id = Text(pick[0][0]);
        tx.exec_params(R"sql(
      UPDATE scrubs SET state = 'running', claimed_by = $1, started_at = $2, updated_at = $2,
        objects_listed = 0, bytes_listed = 0, objects_rehashed = 0, missing = 0, extra = 0,
        size_mismatches = 0, hash_mismatches = 0, temp_files = 0, healed = 0, unhealed = 0
      WHERE id = $3)sql",
                       worker, now_ms, id);
        return LoadScrub(tx, id);
      });
}

absl::Status PostgresIndex::UpdateScrub(const Scrub& c, int64_t now_ms) {
  if (!IsOneOf(c.state, {"running", "succeeded", "failed"})) {
    return absl::InvalidArgumentError(absl::StrCat("UpdateScrub: bad state \"", c.state, "\""));
  }
  if (HasNul(c.report_json) || HasNul(c.error)) {
    return absl::InvalidArgumentError("UpdateScrub: a value contains NUL");
  }
  const auto i64 = [](uint64_t v) { return static_cast<int64_t>(v); };
  return Execute("UpdateScrub", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::Status {
    // One statement: the claim check and the write are atomic.
    const pqxx::result q = tx.exec_params(
        R"sql(
      UPDATE scrubs SET state = $1, updated_at = $2, finished_at = $3, objects_listed = $4,
        bytes_listed = $5, objects_rehashed = $6, missing = $7, extra = $8, size_mismatches = $9,
        hash_mismatches = $10, temp_files = $11, healed = $12, unhealed = $13, report = $14,
        error = $15
      WHERE id = $16 AND state = 'running' AND claimed_by = $17)sql",
        c.state, now_ms, c.finished_at_ms, i64(c.objects_listed), i64(c.bytes_listed),
        i64(c.objects_rehashed), i64(c.missing), i64(c.extra), i64(c.size_mismatches),
        i64(c.hash_mismatches), i64(c.temp_files), i64(c.healed), i64(c.unhealed), c.report_json,
        c.error, c.id, c.claimed_by);
    if (q.affected_rows() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("scrub ", c.id, " is not running under ", c.claimed_by));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<Scrub> PostgresIndex::GetScrub(const std::string& id) {
  if (HasNul(id)) return absl::NotFoundError("scrub not found");
  return Execute("GetScrub", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) { return LoadScrub(tx, id); });
}

absl::StatusOr<std::vector<Scrub>> PostgresIndex::ListScrubs(const ScrubFilter& f) {
  if (f.limit < 1) return absl::InvalidArgumentError("ListScrubs: limit must be positive");
  if (f.state && HasNul(*f.state)) return std::vector<Scrub>{};
  return Execute(
      "ListScrubs", TxMode::kAutocommit,
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<Scrub>> {
        const std::optional<std::string> job =
            f.job_id ? std::optional<std::string>(std::to_string(*f.job_id)) : std::nullopt;
        const pqxx::result r = tx.exec_params(absl::StrCat("SELECT ", kScrubColumns, R"sql(
      WHERE ($1::bigint IS NULL OR c.job_id = $1::bigint)
        AND ($2::text IS NULL OR c.state = $2::text)
      ORDER BY c.requested_at DESC, c.id DESC LIMIT $3)sql"),
                                              OrNull(job), OrNull(f.state), std::min(f.limit, 1000));
        std::vector<Scrub> out;
        for (const pqxx::row& row : r) out.push_back(ScrubFromRow(row));
        return out;
      });
}

absl::StatusOr<std::vector<Scrub>> PostgresIndex::LatestScrubs(const std::vector<std::string>& states) {
  if (std::any_of(states.begin(), states.end(), HasNul)) return std::vector<Scrub>{};
  return Execute(
      "LatestScrubs", TxMode::kAutocommit,
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<Scrub>> {
        const pqxx::result r =
            tx.exec_params(absl::StrCat("SELECT DISTINCT ON (c.job_id) ", kScrubColumns, R"sql(
      WHERE cardinality($1::text[]) = 0 OR c.state = ANY ($1::text[])
      ORDER BY c.job_id, c.requested_at DESC, c.id DESC)sql"),
                           TextArray(states));
        std::vector<Scrub> out;
        for (const pqxx::row& row : r) out.push_back(ScrubFromRow(row));
        return out;
      });
}

absl::Status PostgresIndex::RecordScrubLost(const std::vector<ScrubLost>& lost) {
  for (const ScrubLost& l : lost) {
    if (HasNul(l.path) || HasNul(l.sha256) || HasNul(l.kind) || HasNul(l.scrub_id)) {
      return absl::InvalidArgumentError("RecordScrubLost: a value contains NUL");
    }
  }
  return Execute("RecordScrubLost", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
    for (const ScrubLost& l : lost) {
      tx.exec_params(R"sql(
      INSERT INTO scrub_lost (job_id, path, size, sha256, kind, detected_at, scrub_id)
      VALUES ($1, $2, $3, $4, $5, $6, $7)
      ON CONFLICT (job_id, path) DO UPDATE
      SET size = excluded.size, sha256 = excluded.sha256, kind = excluded.kind,
          detected_at = excluded.detected_at, scrub_id = excluded.scrub_id)sql",
                     l.job_id, l.path, static_cast<int64_t>(l.size), l.sha256, l.kind,
                     l.detected_at_ms, l.scrub_id);
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<ScrubLost>> PostgresIndex::ListScrubLost(int64_t job_id) {
  return Execute(
      "ListScrubLost", TxMode::kAutocommit,
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<ScrubLost>> {
        const pqxx::result r = tx.exec_params(R"sql(
      SELECT job_id, path, size, sha256, kind, detected_at, scrub_id FROM scrub_lost
      WHERE job_id = $1 ORDER BY path COLLATE "C")sql",
                                              job_id);
        std::vector<ScrubLost> out;
        for (const pqxx::row& row : r) {
          out.push_back(ScrubLost{row[0].as<int64_t>(), Text(row[1]),
                                  static_cast<uint64_t>(row[2].as<int64_t>()), Text(row[3]),
                                  Text(row[4]), row[5].as<int64_t>(), Text(row[6])});
        }
        return out;
      });
}

absl::StatusOr<int64_t> PostgresIndex::ClearScrubLost(int64_t job_id,
                                                      const std::vector<std::string>& paths) {
  if (paths.empty()) return 0;
  if (std::any_of(paths.begin(), paths.end(), HasNul)) {
    return absl::InvalidArgumentError("ClearScrubLost: a path contains NUL");
  }
  return Execute(
      "ClearScrubLost", TxMode::kAutocommit,
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<int64_t> {
        const pqxx::result r = tx.exec_params(
            "DELETE FROM scrub_lost WHERE job_id = $1 AND path = ANY ($2::text[])", job_id,
            TextArray(paths));
        return static_cast<int64_t>(r.affected_rows());
      });
}

// ---- orphaned runs ------------------------------------------------------------------------------

absl::StatusOr<std::vector<std::string>> PostgresIndex::AbandonStaleRuns(
    std::optional<int64_t> runner_id, const std::string& keep_run_id, int64_t started_before_ms,
    const std::string& reason, int64_t now_ms) {
  return Execute("AbandonStaleRuns", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<std::string>> {
                   const std::optional<std::string> runner =
                       runner_id ? std::optional<std::string>(std::to_string(*runner_id))
                                 : std::nullopt;
                   const pqxx::result r =
                       tx.exec_prepared(kAbandonStaleRuns, reason, now_ms, started_before_ms,
                                        keep_run_id, OrNull(runner));
                   std::vector<std::string> ids;
                   for (const pqxx::row& row : r) ids.push_back(Text(row[0]));
                   return ids;
                 });
}

// ---- replaced PCs -------------------------------------------------------------------------------

absl::StatusOr<Enrollment> PostgresIndex::PendingEnrollmentByName(const std::string& name) {
  return Execute(
      "PendingEnrollmentByName", TxMode::kAutocommit,
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<Enrollment> {
        const pqxx::result r = tx.exec_params(R"sql(
      SELECT e.id, e.runner_id, e.secret_hash, e.status, e.created_at, e.hostname, e.os,
             e.machine_id, e.agent_version, e.address
      FROM enrollments e JOIN runners r ON r.id = e.runner_id
      WHERE r.name = $1 AND e.status = 'pending' ORDER BY e.created_at DESC LIMIT 1)sql",
                                              name);
        if (r.empty()) {
          return absl::NotFoundError(absl::StrCat("no pending registration named '", name, "'"));
        }
        return EnrollmentFromRow(r[0]);
      });
}

absl::Status PostgresIndex::ReplaceRunnerMachine(int64_t runner_id,
                                                 const std::string& enrollment_id, int64_t now_ms) {
  return Execute(
      "ReplaceRunnerMachine", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
        // Lock both runners (target, and the registration's own) in id order, then the enrollment:
        // the file's lock order. While the enrollment is pending it cannot have moved, so the
        // runner read before locking is still its owner when the status check below passes.
        const pqxx::result owner =
            tx.exec_params("SELECT runner_id FROM enrollments WHERE id = $1", enrollment_id);
        const int64_t owner_id = owner.empty() ? runner_id : owner[0][0].as<int64_t>();
        const pqxx::result runners = tx.exec_params(R"sql(
      SELECT id, status, name FROM runners WHERE id IN ($1, $2) ORDER BY id FOR UPDATE)sql",
                                                    runner_id, owner_id);
        std::string target_status, target_name, source_status;
        bool target_found = false, source_found = false;
        for (const pqxx::row& row : runners) {
          const int64_t id = row[0].as<int64_t>();
          if (id == runner_id) {
            target_found = true;
            target_status = Text(row[1]);
            target_name = Text(row[2]);
          }
          if (id == owner_id) {
            source_found = true;
            source_status = Text(row[1]);
          }
        }
        if (!target_found)
          return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
        if (target_status == "rejected") {
          return absl::FailedPreconditionError(
              absl::StrCat("runner '", target_name, "' was rejected and cannot take a machine"));
        }
        const pqxx::result enrollment = tx.exec_params(R"sql(
      SELECT runner_id, status, hostname, os, machine_id, agent_version
      FROM enrollments WHERE id = $1 FOR UPDATE)sql",
                                                       enrollment_id);
        if (enrollment.empty()) {
          return absl::NotFoundError(absl::StrCat("enrollment ", enrollment_id, " not found"));
        }
        const std::string enrollment_status = Text(enrollment[0][1]);
        if (enrollment_status != "pending") {
          return absl::FailedPreconditionError(
              absl::StrCat("enrollment ", enrollment_id, " is ", enrollment_status));
        }
        const int64_t source_runner = enrollment[0][0].as<int64_t>();
        if (source_runner != owner_id || !source_found) {
          return absl::UnavailableError(
              absl::StrCat("enrollment ", enrollment_id, " changed concurrently; retry"));
        }
        if (source_runner != runner_id && source_status != "pending") {
          return absl::FailedPreconditionError("the registration belongs to an enrolled runner");
        }
        // Older enrollments of the target can no longer deliver a key.
        tx.exec_params(R"sql(
      UPDATE enrollments SET status = 'rejected'
      WHERE runner_id = $1 AND status IN ('pending','approved') AND id <> $2)sql",
                       runner_id, enrollment_id);
        tx.exec_params("UPDATE enrollments SET runner_id = $1, status = 'approved' WHERE id = $2",
                       runner_id, enrollment_id);
        tx.exec_params(R"sql(
      UPDATE runners SET status = 'approved', api_key_hash = NULL, approved_at = $1,
        hostname = $2, os = $3, machine_id = $4, agent_version = $5, runtime_state = '',
        current_run = '', next_key_hash = NULL, rotate_requested_at = 0, retired_key_hash = NULL,
        quarantined_at = 0
      WHERE id = $6)sql",
                       now_ms, Text(enrollment[0][2]), Text(enrollment[0][3]),
                       Text(enrollment[0][4]), Text(enrollment[0][5]), runner_id);
        if (source_runner != runner_id) {
          tx.exec_params("DELETE FROM runners WHERE id = $1 AND status = 'pending'", source_runner);
        }
        return absl::OkStatus();
      });
}

// ---- retention and size -------------------------------------------------------------------------

absl::StatusOr<int64_t> PostgresIndex::PruneHistory(int64_t finished_before_ms) {
  return Execute(
      "PruneHistory", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<int64_t> {
        tx.exec_params(R"sql(
      DELETE FROM run_files WHERE run_id IN (
        SELECT id FROM sync_runs WHERE state <> 'running' AND finished_at > 0
          AND finished_at < $1))sql",
                       finished_before_ms);
        const pqxx::result runs = tx.exec_params(R"sql(
      DELETE FROM sync_runs WHERE state <> 'running' AND finished_at > 0 AND finished_at < $1)sql",
                                                 finished_before_ms);
        tx.exec_params("DELETE FROM commands WHERE state = 'delivered' AND created_at < $1",
                       finished_before_ms);
        tx.exec_params(R"sql(
      DELETE FROM reconciles WHERE state IN ('succeeded','failed') AND finished_at < $1)sql",
                       finished_before_ms);
        return static_cast<int64_t>(runs.affected_rows());
      });
}

absl::StatusOr<int64_t> PostgresIndex::SizeBytes() {
  return Execute(
      "SizeBytes", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::StatusOr<int64_t> {
        return tx.exec("SELECT pg_database_size(current_database())")[0][0].as<int64_t>();
      });
}

absl::Status PostgresIndex::BackupTo(const std::string& path) {
  return absl::UnimplementedError(
      "BackupTo: online backup is SQLite-only; back up a PostgreSQL index with pg_dump");
}

// ---- several server instances ------------------------------------------------------------------

absl::StatusOr<bool> PostgresIndex::TryAcquireLease(const std::string& name,
                                                    const std::string& holder, int64_t ttl_ms,
                                                    int64_t now_ms) {
  if (name.empty() || holder.empty() || ttl_ms <= 0) {
    return absl::InvalidArgumentError("TryAcquireLease: name, holder and a positive ttl required");
  }
  if (HasNul(name) || HasNul(holder)) {
    return absl::InvalidArgumentError("TryAcquireLease: a value contains NUL");
  }
  return Execute("TryAcquireLease", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<bool> {
                   // One statement: ON CONFLICT locks the existing row and evaluates the WHERE
                   // on its latest version, so two instances never both acquire.
                   const pqxx::result r = tx.exec_params(R"sql(
      INSERT INTO leases AS l (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3::bigint, $3::bigint + $4::bigint)
      ON CONFLICT (name) DO UPDATE
      SET acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at
                             ELSE excluded.acquired_at END,
          holder = excluded.holder, expires_at = excluded.expires_at
      WHERE l.holder = excluded.holder OR l.expires_at <= excluded.acquired_at)sql",
                                                         name, holder, now_ms, ttl_ms);
                   return r.affected_rows() == 1;
                 });
}

absl::Status PostgresIndex::ReleaseLease(const std::string& name, const std::string& holder) {
  if (HasNul(name) || HasNul(holder)) return absl::OkStatus();  // cannot name a stored lease
  return Execute(
      "ReleaseLease", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::Status {
        tx.exec_params("DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder);
        return absl::OkStatus();
      });
}

absl::Status PostgresIndex::RecordLongPoll(int64_t runner_id, const std::string& poll_id,
                                           int64_t now_ms) {
  if (poll_id.empty() || HasNul(poll_id)) {
    return absl::InvalidArgumentError("RecordLongPoll: empty poll id or NUL in it");
  }
  return Execute("RecordLongPoll", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::Status {
                   const pqxx::result r =
                       tx.exec_prepared(kRecordLongPoll, runner_id, poll_id, now_ms);
                   if (r.affected_rows() == 0) {
                     return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
                   }
                   return absl::OkStatus();
                 });
}

absl::StatusOr<std::vector<StateIndex::WaitingRunner>> PostgresIndex::CheckWaitingRunners(
    const std::vector<int64_t>& runner_ids) {
  if (runner_ids.empty()) return std::vector<WaitingRunner>{};
  return Execute("CheckWaitingRunners", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<WaitingRunner>> {
                   const pqxx::result r =
                       tx.exec_prepared(kCheckWaitingRunners, BigintArray(runner_ids));
                   std::vector<WaitingRunner> out;
                   out.reserve(r.size());
                   for (const pqxx::row& row : r) {
                     WaitingRunner w;
                     w.runner_id = row[0].as<int64_t>();
                     w.pending_commands = row[1].as<bool>();
                     w.newest_poll_id = Text(row[2]);
                     out.push_back(std::move(w));
                   }
                   return out;
                 });
}

// ---- admin tokens -------------------------------------------------------------------------------

absl::StatusOr<AdminToken> PostgresIndex::CreateAdminToken(const std::string& name,
                                                           const std::string& role,
                                                           const std::string& token_hash,
                                                           int64_t now_ms,
                                                           const std::string& created_by) {
  if (role != "admin" && role != "viewer") {
    return absl::InvalidArgumentError(absl::StrCat("unknown admin token role \"", role, "\""));
  }
  if (token_hash.empty()) return absl::InvalidArgumentError("CreateAdminToken: empty token hash");
  return Execute("CreateAdminToken", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<AdminToken> {
                   const pqxx::result r = tx.exec_params(R"sql(
      INSERT INTO admin_tokens (name, role, token_hash, created_at, created_by)
      VALUES ($1, $2, $3, $4, $5) RETURNING id)sql",
                                                         name, role, token_hash, now_ms, created_by);
                   AdminToken token;
                   token.id = r[0][0].as<int64_t>();
                   token.name = name;
                   token.role = role;
                   token.created_at_ms = now_ms;
                   token.created_by = created_by;
                   return token;
                 });
}

absl::StatusOr<AdminToken> PostgresIndex::FindAdminToken(const std::string& token_hash) {
  return Execute("FindAdminToken", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<AdminToken> {
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT id, name, role, created_at, revoked_at, created_by FROM admin_tokens
      WHERE token_hash = $1 AND revoked_at = 0)sql",
                                                         token_hash);
                   if (r.empty()) return absl::NotFoundError("no active admin token has this hash");
                   return AdminTokenFromRow(r[0]);
                 });
}

absl::StatusOr<int64_t> PostgresIndex::CountAdminTokens() {
  return Execute("CountAdminTokens", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<int64_t> {
                   return tx.exec("SELECT COUNT(*) FROM admin_tokens WHERE revoked_at = 0")[0][0]
                       .as<int64_t>();
                 });
}

absl::StatusOr<std::vector<AdminToken>> PostgresIndex::ListAdminTokens() {
  return Execute("ListAdminTokens", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<AdminToken>> {
                   std::vector<AdminToken> out;
                   for (const pqxx::row& row : tx.exec(R"sql(
      SELECT id, name, role, created_at, revoked_at, created_by FROM admin_tokens
      ORDER BY id DESC)sql")) {
                     out.push_back(AdminTokenFromRow(row));
                   }
                   return out;
                 });
}

absl::StatusOr<AdminToken> PostgresIndex::RevokeAdminToken(int64_t id, int64_t now_ms) {
  return Execute("RevokeAdminToken", TxMode::kWrite,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<AdminToken> {
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT id, name, role, created_at, revoked_at, created_by FROM admin_tokens
      WHERE id = $1 FOR UPDATE)sql",
                                                         id);
                   if (r.empty()) return absl::NotFoundError(absl::StrCat("no admin token ", id));
                   AdminToken t = AdminTokenFromRow(r[0]);
                   if (t.revoked_at_ms != 0) {
                     return absl::FailedPreconditionError(
                         absl::StrCat("admin token ", id, " is already revoked"));
                   }
                   tx.exec_params("UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2", now_ms, id);
                   t.revoked_at_ms = now_ms;
                   return t;
                 });
}

// ---- operator accounts ----------------------------------------------------------------------------

absl::StatusOr<User> PostgresIndex::CreateUser(const std::string& name, const std::string& role,
                                               const std::string& password_hash, int64_t now_ms) {
  if (role != "admin" && role != "viewer") {
    return absl::InvalidArgumentError(absl::StrCat("unknown role \"", role, "\" (admin or viewer)"));
  }
  if (name.empty() || password_hash.empty()) {
    return absl::InvalidArgumentError("CreateUser: empty name or password hash");
  }
  auto created = Execute("CreateUser", TxMode::kAutocommit,
                         [&](pqxx::transaction_base& tx) -> absl::StatusOr<User> {
                           const pqxx::result r = tx.exec_params(R"sql(
      INSERT INTO users (name, role, password_hash, created_at, updated_at)
      VALUES ($1, $2, $3, $4, $4) RETURNING id)sql",
                                                                 name, role, password_hash, now_ms);
                           User u;
                           u.id = r[0][0].as<int64_t>();
                           u.name = name;
                           u.role = role;
                           u.password_hash = password_hash;
                           u.created_at_ms = u.updated_at_ms = now_ms;
                           return u;
                         });
  if (absl::IsAlreadyExists(created.status())) {
    return absl::AlreadyExistsError(absl::StrCat("a user named '", name, "' exists"));
  }
  return created;
}

absl::StatusOr<User> PostgresIndex::GetUserByName(const std::string& name) {
  if (HasNul(name)) return absl::NotFoundError("no such user");
  return Execute("GetUserByName", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<User> {
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT id, name, role, password_hash, created_at, updated_at, last_login_at
      FROM users WHERE name = $1)sql",
                                                         name);
                   if (r.empty()) return absl::NotFoundError(absl::StrCat("no user named '", name, "'"));
                   return UserFromRow(r[0]);
                 });
}

absl::StatusOr<std::vector<User>> PostgresIndex::ListUsers() {
  return Execute("ListUsers", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<User>> {
                   std::vector<User> out;
                   for (const pqxx::row& row : tx.exec(R"sql(
      SELECT id, name, role, password_hash, created_at, updated_at, last_login_at
      FROM users ORDER BY name)sql")) {
                     out.push_back(UserFromRow(row));
                   }
                   return out;
                 });
}

absl::Status PostgresIndex::SetUserPassword(const std::string& name,
                                            const std::string& password_hash, int64_t now_ms) {
  if (password_hash.empty()) return absl::InvalidArgumentError("SetUserPassword: empty hash");
  return Execute("SetUserPassword", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
    const pqxx::result r = tx.exec_params(R"sql(
      UPDATE users SET password_hash = $1, updated_at = $2 WHERE name = $3 RETURNING id)sql",
                                          password_hash, now_ms, name);
    if (r.empty()) return absl::NotFoundError(absl::StrCat("no user named '", name, "'"));
    tx.exec_params("DELETE FROM sessions WHERE user_id = $1", r[0][0].as<int64_t>());
    return absl::OkStatus();
  });
}

absl::Status PostgresIndex::DeleteUser(const std::string& name) {
  return Execute("DeleteUser", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::Status {
    if (tx.exec_params("DELETE FROM users WHERE name = $1", name).affected_rows() == 0) {
      return absl::NotFoundError(absl::StrCat("no user named '", name, "'"));
    }
    return absl::OkStatus();
  });
}

absl::Status PostgresIndex::CreateSession(const Session& s) {
  if (s.id_hash.empty()) return absl::InvalidArgumentError("CreateSession: empty id hash");
  return Execute("CreateSession", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
    tx.exec_params(R"sql(
      INSERT INTO sessions (id_hash, user_id, csrf_token, source_ip, created_at, expires_at,
                            last_seen_at)
      VALUES ($1, $2, $3, $4, $5, $6, $7))sql",
                   s.id_hash, s.user_id, s.csrf_token, s.source_ip, s.created_at_ms,
                   s.expires_at_ms, s.last_seen_at_ms);
    tx.exec_params("UPDATE users SET last_login_at = $1 WHERE id = $2", s.created_at_ms, s.user_id);
    return absl::OkStatus();
  });
}

absl::StatusOr<Session> PostgresIndex::FindSession(const std::string& id_hash) {
  return Execute("FindSession", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<Session> {
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT s.id_hash, s.user_id, u.name, u.role, s.csrf_token, s.source_ip, s.created_at,
             s.expires_at, s.last_seen_at
      FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1)sql",
                                                         id_hash);
                   if (r.empty()) return absl::NotFoundError("no such session");
                   const pqxx::row& row = r[0];
                   Session s;
                   s.id_hash = Text(row[0]);
                   s.user_id = row[1].as<int64_t>();
                   s.user_name = Text(row[2]);
                   s.role = Text(row[3]);
                   s.csrf_token = Text(row[4]);
                   s.source_ip = Text(row[5]);
                   s.created_at_ms = row[6].as<int64_t>();
                   s.expires_at_ms = row[7].as<int64_t>();
                   s.last_seen_at_ms = row[8].as<int64_t>();
                   return s;
                 });
}

absl::Status PostgresIndex::TouchSession(const std::string& id_hash, int64_t now_ms) {
  return Execute("TouchSession", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::Status {
    tx.exec_params("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2", now_ms, id_hash);
    return absl::OkStatus();
  });
}

absl::Status PostgresIndex::DeleteSession(const std::string& id_hash) {
  return Execute("DeleteSession", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::Status {
    tx.exec_params("DELETE FROM sessions WHERE id_hash = $1", id_hash);
    return absl::OkStatus();
  });
}

absl::StatusOr<int64_t> PostgresIndex::PruneSessions(int64_t now_ms, int64_t idle_before_ms) {
  return Execute("PruneSessions", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<int64_t> {
                   return static_cast<int64_t>(
                       tx.exec_params("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at < $2",
                                      now_ms, idle_before_ms)
                           .affected_rows());
                 });
}

absl::StatusOr<int64_t> PostgresIndex::PruneStalePending(int64_t registered_before_ms) {
  return Execute("PruneStalePending", TxMode::kWrite,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<int64_t> {
                   int64_t n = tx.exec_params(R"sql(
                     DELETE FROM runners
                      WHERE status = 'pending' AND created_at < $1
                        AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.runner_id = runners.id)
                        AND NOT EXISTS (SELECT 1 FROM enrollments e
                                         WHERE e.runner_id = runners.id AND e.created_at >= $1))sql",
                                              registered_before_ms).affected_rows();
                   n += tx.exec_params(R"sql(
                     DELETE FROM enrollments WHERE status = 'pending' AND created_at < $1)sql",
                                       registered_before_ms)
                            .affected_rows();
                   return n;
                 });
}

absl::StatusOr<LoginThrottle> PostgresIndex::GetLoginThrottle(const std::string& subject) {
  return Execute("GetLoginThrottle", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<LoginThrottle> {
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT failures, last_failure_at, locked_until FROM login_failures WHERE subject = $1)sql",
                                                         subject);
                   LoginThrottle t;
                   if (!r.empty()) {
                     t.failures = r[0][0].as<int64_t>();
                     t.last_failure_at_ms = r[0][1].as<int64_t>();
                     t.locked_until_ms = r[0][2].as<int64_t>();
                   }
                   return t;
                 });
}

absl::StatusOr<LoginThrottle> PostgresIndex::RecordLoginFailure(const std::string& subject,
                                                                int64_t now_ms,
                                                                const LockoutPolicy& policy) {
  return Execute("RecordLoginFailure", TxMode::kWrite,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<LoginThrottle> {
                   // Make the row exist, then lock it: concurrent failures count one by one.
                   tx.exec_params(R"sql(
      INSERT INTO login_failures (subject, failures, last_failure_at, locked_until)
      VALUES ($1, 0, 0, 0) ON CONFLICT (subject) DO NOTHING)sql",
                                  subject);
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT failures, last_failure_at FROM login_failures WHERE subject = $1 FOR UPDATE)sql",
                                                         subject);
                   LoginThrottle t;
                   t.failures = r[0][0].as<int64_t>();
                   t.last_failure_at_ms = r[0][1].as<int64_t>();
                   t = NextLoginThrottle(t, now_ms, policy);
                   tx.exec_params(R"sql(
      UPDATE login_failures SET failures = $2, last_failure_at = $3, locked_until = $4
      WHERE subject = $1)sql",
                                  subject, t.failures, t.last_failure_at_ms, t.locked_until_ms);
                   return t;
                 });
}

absl::Status PostgresIndex::ClearLoginFailures(const std::string& subject) {
  return Execute("ClearLoginFailures", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::Status {
                   tx.exec_params("DELETE FROM login_failures WHERE subject = $1", subject);
                   return absl::OkStatus();
                 });
}

// ---- audit log ----------------------------------------------------------------------------------

absl::StatusOr<int64_t> PostgresIndex::AppendAudit(const AuditEntry& e) {
  return Execute("AppendAudit", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<int64_t> {
                   return tx.exec_params(R"sql(
      INSERT INTO audit_log (at, actor, action, target, result, details, source_ip)
      VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id)sql",
                                         e.at_ms, e.actor, e.action, e.target, e.result,
                                         e.details_json.empty() ? std::string("{}") : e.details_json,
                                         e.source_ip)[0][0]
                       .as<int64_t>();
                 });
}

absl::StatusOr<std::vector<AuditEntry>> PostgresIndex::ListAudit(const AuditFilter& f) {
  return Execute("ListAudit", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<AuditEntry>> {
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT id, at, actor, action, target, result, details, source_ip FROM audit_log
      WHERE ($1::bigint = 0 OR id < $1::bigint) AND ($2::text = '' OR actor = $2::text)
        AND ($3::text = '' OR strpos(action, $3::text) > 0 OR strpos(target, $3::text) > 0)
      ORDER BY id DESC LIMIT $4)sql",
                                                         f.before_id, f.actor, f.action_contains,
                                                         std::clamp(f.limit, 1, 1000));
                   std::vector<AuditEntry> out;
                   for (const pqxx::row& row : r) out.push_back(AuditFromRow(row));
                   return out;
                 });
}

// ---- dashboard queries --------------------------------------------------------------------------

absl::StatusOr<std::vector<HourlyStat>> PostgresIndex::HourlyStats(int64_t since_ms) {
  return Execute("HourlyStats", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<HourlyStat>> {
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT started_at - started_at % 3600000 AS hour, COUNT(*), SUM(files_uploaded),
             SUM(bytes_uploaded), SUM(files_failed)
      FROM sync_runs WHERE started_at >= $1 GROUP BY hour ORDER BY hour)sql",
                                                         since_ms);
                   std::vector<HourlyStat> out;
                   for (const pqxx::row& row : r) {
                     HourlyStat h;
                     h.hour_start_ms = row[0].as<int64_t>();
                     h.runs = static_cast<uint64_t>(row[1].as<int64_t>());
                     h.files_uploaded = static_cast<uint64_t>(row[2].as<int64_t>());
                     h.bytes_uploaded = static_cast<uint64_t>(row[3].as<int64_t>());
                     h.files_failed = static_cast<uint64_t>(row[4].as<int64_t>());
                     out.push_back(h);
                   }
                   return out;
                 });
}

absl::StatusOr<std::vector<SyncedFile>> PostgresIndex::SearchSyncedFiles(
    int64_t job_id, const std::string& text, bool prefix, const std::string& after_path,
    int limit) {
  if (limit < 1) return absl::InvalidArgumentError("SearchSyncedFiles: limit must be positive");
  if (HasNul(after_path) || HasNul(text)) {
    return absl::InvalidArgumentError("SearchSyncedFiles: text contains NUL");
  }
  return Execute("SearchSyncedFiles", TxMode::kSnapshot,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<SyncedFile>> {
                   if (tx.exec_params("SELECT 1 FROM jobs WHERE id = $1", job_id).empty()) {
                     return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
                   }
                   // path is COLLATE "C": a LIKE 'prefix%' is a range of the primary key.
                   const std::string pattern =
                       prefix ? LikeLiteral(text) + "%" : "%" + LikeLiteral(text) + "%";
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT job_id, path, size, mtime_ns, sha256, synced_at, run_id
      FROM synced_files WHERE job_id = $1 AND path > $2 AND path LIKE $3
      ORDER BY path LIMIT $4)sql",
                                                         job_id, after_path, pattern,
                                                         std::min(limit, kMaxFilesPerPage));
                   std::vector<SyncedFile> files;
                   for (const pqxx::row& row : r) files.push_back(SyncedFileFromRow(row));
                   return files;
                 });
}

// ---- runner key rotation ------------------------------------------------------------------------

absl::Status PostgresIndex::RequestKeyRotation(int64_t runner_id, int64_t now_ms) {
  return Execute("RequestKeyRotation", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::Status {
                   if (tx.exec_params(R"sql(
      UPDATE runners SET rotate_requested_at = $1, next_key_hash = NULL
      WHERE id = $2 AND status = 'approved' AND quarantined_at = 0 AND api_key_hash IS NOT NULL)sql",
                                      now_ms, runner_id)
                           .affected_rows() == 0) {
                     return absl::FailedPreconditionError(absl::StrCat(
                         "runner ", runner_id, " is not an approved runner with a key"));
                   }
                   return absl::OkStatus();
                 });
}

absl::StatusOr<bool> PostgresIndex::OfferNextKey(int64_t runner_id, const std::string& next_hash) {
  if (next_hash.empty()) return absl::InvalidArgumentError("OfferNextKey: empty hash");
  return Execute("OfferNextKey", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<bool> {
                   return tx.exec_params(R"sql(
      UPDATE runners SET next_key_hash = $1
      WHERE id = $2 AND status = 'approved' AND quarantined_at = 0 AND rotate_requested_at > 0
        AND next_key_hash IS NULL)sql",
                                         next_hash, runner_id)
                              .affected_rows() == 1;
                 });
}

absl::StatusOr<Runner> PostgresIndex::PromoteNextKey(const std::string& key_hash, int64_t now_ms) {
  return Execute("PromoteNextKey", TxMode::kWrite,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<Runner> {
                   const pqxx::result r = tx.exec_params(R"sql(
      UPDATE runners SET retired_key_hash = api_key_hash, key_retired_at = $2,
        api_key_hash = next_key_hash, next_key_hash = NULL, rotate_requested_at = 0
      WHERE next_key_hash = $1 AND status = 'approved' AND quarantined_at = 0 RETURNING id)sql",
                                                         key_hash, now_ms);
                   if (r.empty()) return absl::NotFoundError("no runner has this pending key");
                   return LoadRunner(tx, r[0][0].as<int64_t>());
                 });
}

absl::StatusOr<StateIndex::RetiredKeyUse> PostgresIndex::UseRetiredKey(const std::string& key_hash,
                                                                       int64_t retired_before_ms,
                                                                       int64_t now_ms) {
  return Execute("UseRetiredKey", TxMode::kWrite,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<RetiredKeyUse> {
                   const pqxx::result r = tx.exec_params(R"sql(
      SELECT id FROM runners WHERE retired_key_hash = $1 AND status = 'approved' FOR UPDATE)sql",
                                                         key_hash);
                   if (r.empty()) return absl::NotFoundError("no runner retired this key");
                   const int64_t id = r[0][0].as<int64_t>();
                   RetiredKeyUse use;
                   use.quarantined_now = tx.exec_params(R"sql(
      UPDATE runners SET quarantined_at = $1
      WHERE id = $2 AND quarantined_at = 0 AND key_retired_at < $3)sql",
                                                        now_ms, id, retired_before_ms)
                                             .affected_rows() == 1;
                   DS_ASSIGN_OR_RETURN(use.runner, LoadRunner(tx, id));
                   return use;
                 });
}

// ---- observability ------------------------------------------------------------------------------

namespace {

constexpr int kMaxLogsPerPage = 1000;
constexpr int kMaxAlertsPerPage = 1000;

std::string SeverityRank(const std::string& expr) {
  return absl::StrCat("(CASE ", expr, " WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 ELSE 0 END)");
}

constexpr char kAlertColumns[] = R"sql(
  a.id, a.rule_id, r.name, r.kind, r.severity, a.subject, a.message, a.details, a.fired_at,
  a.resolved_at, a.acknowledged_by, a.acknowledged_at
  FROM alerts a JOIN alert_rules r ON r.id = a.rule_id)sql";

Alert AlertFromRow(const pqxx::row& row, int at = 0) {
  Alert a;
  a.id = row[at + 0].as<int64_t>();
  a.rule_id = row[at + 1].as<int64_t>();
  a.rule_name = Text(row[at + 2]);
  a.kind = Text(row[at + 3]);
  a.severity = Text(row[at + 4]);
  a.subject = Text(row[at + 5]);
  a.message = Text(row[at + 6]);
  a.details_json = Text(row[at + 7]);
  a.fired_at_ms = row[at + 8].as<int64_t>();
  a.resolved_at_ms = row[at + 9].as<int64_t>();
  a.acknowledged_by = Text(row[at + 10]);
  a.acknowledged_at_ms = row[at + 11].as<int64_t>();
  return a;
}

constexpr char kRuleColumns[] =
    "id, name, kind, severity, scope_kind, scope, params, enabled, created_at, updated_at";

AlertRule RuleFromRow(const pqxx::row& row) {
  AlertRule r;
  r.id = row[0].as<int64_t>();
  r.name = Text(row[1]);
  r.kind = Text(row[2]);
  r.severity = Text(row[3]);
  r.scope_kind = Text(row[4]);
  r.scope = Text(row[5]);
  r.params_json = Text(row[6]);
  r.enabled = row[7].as<bool>();
  r.created_at_ms = row[8].as<int64_t>();
  r.updated_at_ms = row[9].as<int64_t>();
  return r;
}

constexpr char kChannelColumns[] = R"sql(
  c.id, c.name, c.kind, c.config, c.min_severity, c.enabled, c.created_at, c.last_success_at,
  c.last_error, c.last_error_at)sql";

NotificationChannel ChannelFromRow(const pqxx::row& row, int at = 0) {
  NotificationChannel c;
  c.id = row[at + 0].as<int64_t>();
  c.name = Text(row[at + 1]);
  c.kind = Text(row[at + 2]);
  c.config_json = Text(row[at + 3]);
  c.min_severity = Text(row[at + 4]);
  c.enabled = row[at + 5].as<bool>();
  c.created_at_ms = row[at + 6].as<int64_t>();
  c.last_success_at_ms = row[at + 7].as<int64_t>();
  c.last_error = Text(row[at + 8]);
  c.last_error_at_ms = row[at + 9].as<int64_t>();
  return c;
}

absl::StatusOr<Alert> LoadAlertTx(pqxx::transaction_base& tx, int64_t id) {
  const pqxx::result r = tx.exec_params(absl::StrCat("SELECT ", kAlertColumns, " WHERE a.id = $1"), id);
  if (r.empty()) return absl::NotFoundError(absl::StrCat("alert ", id, " not found"));
  return AlertFromRow(r[0]);
}

void QueueDeliveriesTx(pqxx::transaction_base& tx, int64_t alert_id, const std::string& transition,
                       int64_t now_ms) {
  tx.exec_params(absl::StrCat(R"sql(
    INSERT INTO notification_deliveries (alert_id, transition, channel_id, next_attempt_at, created_at)
    SELECT a.id, $2::text, c.id, $3::bigint, $3::bigint
    FROM alerts a JOIN alert_rules r ON r.id = a.rule_id CROSS JOIN notification_channels c
    WHERE a.id = $1 AND c.enabled AND )sql",
                              SeverityRank("r.severity"), " >= ", SeverityRank("c.min_severity"),
                              " ON CONFLICT DO NOTHING"),
                 alert_id, transition, now_ms);
}

bool AnyNul(std::initializer_list<const std::string*> values) {
  return std::any_of(values.begin(), values.end(), [](const std::string* v) { return HasNul(*v); });
}

}  // namespace

absl::StatusOr<int64_t> PostgresIndex::AppendAgentLogs(int64_t runner_id,
                                                       const std::vector<AgentLogRecord>& records,
                                                       int64_t now_ms) {
  for (const auto& r : records) {
    if (AnyNul({&r.level, &r.message, &r.correlation_id, &r.fields_json})) {
      return absl::InvalidArgumentError("AppendAgentLogs: a value contains NUL");
    }
  }
  return Execute("AppendAgentLogs", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<int64_t> {
    if (tx.exec_params("SELECT 1 FROM runners WHERE id = $1", runner_id).empty()) {
      return absl::NotFoundError(absl::StrCat("runner ", runner_id, " not found"));
    }
    // One statement for the batch: the columns travel as arrays.
    std::vector<int64_t> seqs, times;
    std::vector<std::string> levels, messages, correlations, fields;
    for (const auto& r : records) {
      seqs.push_back(r.seq);
      times.push_back(r.time_ms);
      levels.push_back(r.level);
      messages.push_back(r.message);
      correlations.push_back(r.correlation_id);
      fields.push_back(r.fields_json);
    }
    const pqxx::result res = tx.exec_params(R"sql(
      INSERT INTO agent_logs (runner_id, seq, time_ms, level, message, correlation_id, fields,
                              received_at)
      SELECT $1::bigint, s, t, l, m, c, f, $8::bigint
      FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
           AS x(s, t, l, m, c, f)
      ON CONFLICT (runner_id, seq) DO NOTHING)sql",
                                            runner_id, BigintArray(seqs), BigintArray(times),
                                            TextArray(levels), TextArray(messages),
                                            TextArray(correlations), TextArray(fields), now_ms);
    return static_cast<int64_t>(res.affected_rows());
  });
}

absl::StatusOr<std::vector<AgentLogRecord>> PostgresIndex::ListAgentLogs(const AgentLogFilter& f) {
  if (HasNul(f.grep)) return std::vector<AgentLogRecord>{};
  for (const auto& l : f.levels) {
    if (HasNul(l)) return std::vector<AgentLogRecord>{};
  }
  return Execute("ListAgentLogs", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<AgentLogRecord>> {
    std::string sql = R"sql(
      SELECT l.id, l.runner_id, r.name, l.seq, l.time_ms, l.level, l.message, l.correlation_id,
             l.fields
      FROM agent_logs l JOIN runners r ON r.id = l.runner_id
      WHERE ($1::bigint = 0 OR l.runner_id = $1::bigint)
        AND (cardinality($2::text[]) = 0 OR l.level = ANY($2::text[]))
        AND ($3::text = '' OR strpos(l.message, $3::text) > 0)
        AND ($4::bigint = 0 OR l.time_ms >= $4::bigint) AND ($5::bigint = 0 OR l.time_ms < $5::bigint)
        AND ($6::bigint = 0 OR l.id < $6::bigint) AND ($7::bigint = 0 OR l.id > $7::bigint))sql";
    sql += f.after_id > 0 ? " ORDER BY l.id ASC LIMIT $8::int" : " ORDER BY l.id DESC LIMIT $8::int";
    const pqxx::result res = tx.exec_params(sql, f.runner_id.value_or(0), TextArray(f.levels), f.grep,
                                            f.since_ms, f.until_ms, f.before_id, f.after_id,
                                            std::clamp(f.limit, 1, kMaxLogsPerPage));
    std::vector<AgentLogRecord> out;
    out.reserve(res.size());
    for (const pqxx::row& row : res) {
      AgentLogRecord r;
      r.id = row[0].as<int64_t>();
      r.runner_id = row[1].as<int64_t>();
      r.runner_name = Text(row[2]);
      r.seq = row[3].as<int64_t>();
      r.time_ms = row[4].as<int64_t>();
      r.level = Text(row[5]);
      r.message = Text(row[6]);
      r.correlation_id = Text(row[7]);
      r.fields_json = Text(row[8]);
      out.push_back(std::move(r));
    }
    return out;
  });
}

absl::StatusOr<int64_t> PostgresIndex::PruneAgentLogs(int64_t before_ms) {
  return Execute("PruneAgentLogs", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::StatusOr<int64_t> {
    return static_cast<int64_t>(
        tx.exec_params("DELETE FROM agent_logs WHERE time_ms < $1", before_ms).affected_rows());
  });
}

absl::StatusOr<AlertRule> PostgresIndex::PutAlertRule(const AlertRule& rule, int64_t now_ms) {
  if (AnyNul({&rule.name, &rule.kind, &rule.severity, &rule.scope_kind, &rule.scope, &rule.params_json})) {
    return absl::InvalidArgumentError("PutAlertRule: a value contains NUL");
  }
  return Execute("PutAlertRule", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<AlertRule> {
    pqxx::result r;
    if (rule.id == 0) {
      r = tx.exec_params(absl::StrCat(R"sql(
        INSERT INTO alert_rules (name, kind, severity, scope_kind, scope, params, enabled,
                                 created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING )sql", kRuleColumns),
                         rule.name, rule.kind, rule.severity, rule.scope_kind, rule.scope,
                         rule.params_json, rule.enabled, now_ms);
    } else {
      r = tx.exec_params(absl::StrCat(R"sql(
        UPDATE alert_rules SET name = $1, kind = $2, severity = $3, scope_kind = $4, scope = $5,
          params = $6, enabled = $7, updated_at = $8 WHERE id = $9 RETURNING )sql", kRuleColumns),
                         rule.name, rule.kind, rule.severity, rule.scope_kind, rule.scope,
                         rule.params_json, rule.enabled, now_ms, rule.id);
      if (r.empty()) return absl::NotFoundError(absl::StrCat("alert rule ", rule.id, " not found"));
    }
    return RuleFromRow(r[0]);
  });
}

absl::StatusOr<std::vector<AlertRule>> PostgresIndex::ListAlertRules() {
  return Execute("ListAlertRules", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<AlertRule>> {
    const pqxx::result r = tx.exec(absl::StrCat("SELECT ", kRuleColumns, " FROM alert_rules ORDER BY id"));
    std::vector<AlertRule> out;
    for (const pqxx::row& row : r) out.push_back(RuleFromRow(row));
    return out;
  });
}

absl::Status PostgresIndex::DeleteAlertRule(int64_t rule_id) {
  return Execute("DeleteAlertRule", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::Status {
    if (tx.exec_params("DELETE FROM alert_rules WHERE id = $1", rule_id).affected_rows() == 0) {
      return absl::NotFoundError(absl::StrCat("alert rule ", rule_id, " not found"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<StateIndex::FireResult> PostgresIndex::FireAlert(int64_t rule_id,
                                                                const std::string& subject,
                                                                const std::string& message,
                                                                const std::string& details_json,
                                                                int64_t now_ms) {
  if (AnyNul({&subject, &message, &details_json})) {
    return absl::InvalidArgumentError("FireAlert: a value contains NUL");
  }
  return Execute("FireAlert", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<FireResult> {
    if (tx.exec_params("SELECT 1 FROM alert_rules WHERE id = $1", rule_id).empty()) {
      return absl::NotFoundError(absl::StrCat("alert rule ", rule_id, " not found"));
    }
    const pqxx::result ins = tx.exec_params(R"sql(
      INSERT INTO alerts (rule_id, subject, message, details, fired_at) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT (rule_id, subject) WHERE resolved_at = 0 DO NOTHING RETURNING id)sql",
                                            rule_id, subject, message, details_json, now_ms);
    if (!ins.empty()) {
      const int64_t id = ins[0][0].as<int64_t>();
      QueueDeliveriesTx(tx, id, "fired", now_ms);
      DS_ASSIGN_OR_RETURN(Alert a, LoadAlertTx(tx, id));
      return FireResult{std::move(a), true};
    }
    const pqxx::result active = tx.exec_params(
        absl::StrCat("SELECT ", kAlertColumns, " WHERE a.rule_id = $1 AND a.subject = $2 AND a.resolved_at = 0"),
        rule_id, subject);
    if (active.empty()) return absl::UnavailableError("FireAlert: the active alert went away; retry");
    return FireResult{AlertFromRow(active[0]), false};
  });
}

absl::StatusOr<bool> PostgresIndex::ResolveAlert(int64_t alert_id, int64_t now_ms) {
  return Execute("ResolveAlert", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<bool> {
    const pqxx::result r = tx.exec_params(
        "UPDATE alerts SET resolved_at = $1 WHERE id = $2 AND resolved_at = 0", now_ms, alert_id);
    if (r.affected_rows() == 0) {
      DS_RETURN_IF_ERROR(LoadAlertTx(tx, alert_id).status());
      return false;
    }
    QueueDeliveriesTx(tx, alert_id, "resolved", now_ms);
    return true;
  });
}

absl::StatusOr<Alert> PostgresIndex::GetAlert(int64_t alert_id) {
  return Execute("GetAlert", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<Alert> { return LoadAlertTx(tx, alert_id); });
}

absl::StatusOr<std::vector<Alert>> PostgresIndex::ListAlerts(const AlertFilter& f) {
  return Execute("ListAlerts", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<Alert>> {
    const pqxx::result r = tx.exec_params(absl::StrCat("SELECT ", kAlertColumns, R"sql(
      WHERE (NOT $1::boolean OR a.resolved_at = 0) AND ($2::bigint = 0 OR a.rule_id = $2::bigint)
        AND ($3::bigint = 0 OR a.id < $3::bigint)
      ORDER BY a.id DESC LIMIT $4::int)sql"),
                                          f.active_only, f.rule_id.value_or(0), f.before_id,
                                          std::clamp(f.limit, 1, kMaxAlertsPerPage));
    std::vector<Alert> out;
    for (const pqxx::row& row : r) out.push_back(AlertFromRow(row));
    return out;
  });
}

absl::StatusOr<Alert> PostgresIndex::AckAlert(int64_t alert_id, const std::string& by, int64_t now_ms) {
  if (HasNul(by)) return absl::InvalidArgumentError("AckAlert: NUL in name");
  return Execute("AckAlert", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::StatusOr<Alert> {
    tx.exec_params(
        "UPDATE alerts SET acknowledged_by = $1, acknowledged_at = $2 WHERE id = $3 AND acknowledged_at = 0",
        by, now_ms, alert_id);
    return LoadAlertTx(tx, alert_id);
  });
}

absl::StatusOr<NotificationChannel> PostgresIndex::PutNotificationChannel(const NotificationChannel& c,
                                                                          int64_t now_ms) {
  if (AnyNul({&c.name, &c.kind, &c.config_json, &c.min_severity})) {
    return absl::InvalidArgumentError("PutNotificationChannel: a value contains NUL");
  }
  return Execute("PutNotificationChannel", TxMode::kWrite,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<NotificationChannel> {
    int64_t id = c.id;
    if (id == 0) {
      id = tx.exec_params(R"sql(
        INSERT INTO notification_channels (name, kind, config, min_severity, enabled, created_at)
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING id)sql",
                          c.name, c.kind, c.config_json, c.min_severity, c.enabled, now_ms)[0][0]
               .as<int64_t>();
    } else {
      const pqxx::result r = tx.exec_params(R"sql(
        UPDATE notification_channels SET name = $1, kind = $2, config = $3, min_severity = $4, enabled = $5
        WHERE id = $6)sql",
                                            c.name, c.kind, c.config_json, c.min_severity, c.enabled, id);
      if (r.affected_rows() == 0) return absl::NotFoundError(absl::StrCat("channel ", id, " not found"));
    }
    const pqxx::result r = tx.exec_params(
        absl::StrCat("SELECT ", kChannelColumns, " FROM notification_channels c WHERE c.id = $1"), id);
    return ChannelFromRow(r[0]);
  });
}

absl::StatusOr<std::vector<NotificationChannel>> PostgresIndex::ListNotificationChannels() {
  return Execute("ListNotificationChannels", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<NotificationChannel>> {
    const pqxx::result r =
        tx.exec(absl::StrCat("SELECT ", kChannelColumns, " FROM notification_channels c ORDER BY c.id"));
    std::vector<NotificationChannel> out;
    for (const pqxx::row& row : r) out.push_back(ChannelFromRow(row));
    return out;
  });
}

absl::Status PostgresIndex::DeleteNotificationChannel(int64_t channel_id) {
  return Execute("DeleteNotificationChannel", TxMode::kAutocommit, [&](pqxx::transaction_base& tx) -> absl::Status {
    if (tx.exec_params("DELETE FROM notification_channels WHERE id = $1", channel_id).affected_rows() == 0) {
      return absl::NotFoundError(absl::StrCat("channel ", channel_id, " not found"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<PendingDelivery>> PostgresIndex::DueDeliveries(int64_t now_ms, int max_attempts,
                                                                          int limit) {
  return Execute("DueDeliveries", TxMode::kAutocommit,
                 [&](pqxx::transaction_base& tx) -> absl::StatusOr<std::vector<PendingDelivery>> {
    const pqxx::result r = tx.exec_params(
        absl::StrCat("SELECT d.id, d.transition, d.attempts, ", kChannelColumns, ", ", kAlertColumns, R"sql(
      JOIN notification_deliveries d ON d.alert_id = a.id
      JOIN notification_channels c ON c.id = d.channel_id
      WHERE d.delivered_at = 0 AND d.next_attempt_at <= $1::bigint AND d.attempts < $2::int AND c.enabled
      ORDER BY d.id LIMIT $3::int)sql"),
        now_ms, max_attempts, std::clamp(limit, 1, 1000));
    std::vector<PendingDelivery> out;
    for (const pqxx::row& row : r) {
      PendingDelivery d;
      d.id = row[0].as<int64_t>();
      d.transition = Text(row[1]);
      d.attempts = row[2].as<int>();
      d.channel = ChannelFromRow(row, 3);
      d.alert = AlertFromRow(row, 13);
      out.push_back(std::move(d));
    }
    return out;
  });
}

absl::Status PostgresIndex::RecordDeliveryAttempt(int64_t delivery_id, const std::string& error,
                                                  int64_t next_attempt_ms, int64_t now_ms) {
  std::string err = error;
  err.erase(std::remove(err.begin(), err.end(), '\0'), err.end());
  return Execute("RecordDeliveryAttempt", TxMode::kWrite, [&](pqxx::transaction_base& tx) -> absl::Status {
    const pqxx::result r = tx.exec_params(R"sql(
      UPDATE notification_deliveries
      SET attempts = attempts + 1, last_error = $1::text,
          delivered_at = CASE WHEN $1::text = '' THEN $3::bigint ELSE 0 END,
          next_attempt_at = CASE WHEN $1::text = '' THEN next_attempt_at ELSE $2::bigint END
      WHERE id = $4::bigint AND delivered_at = 0 RETURNING channel_id)sql",
                                          err, next_attempt_ms, now_ms, delivery_id);
    if (r.empty()) return absl::NotFoundError(absl::StrCat("no undelivered delivery ", delivery_id));
    tx.exec_params(R"sql(
      UPDATE notification_channels
      SET last_success_at = CASE WHEN $1::text = '' THEN $2::bigint ELSE last_success_at END,
          last_error = CASE WHEN $1::text = '' THEN last_error ELSE $1::text END,
          last_error_at = CASE WHEN $1::text = '' THEN last_error_at ELSE $2::bigint END
      WHERE id = $3::bigint)sql",
                   err, now_ms, r[0][0].as<int64_t>());
    return absl::OkStatus();
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<StateIndex>> OpenPostgresIndex(const std::string& conninfo,
                                                              const PostgresPoolOptions& options) {
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError("OpenPostgresIndex: max_connections must be positive");
  }
  DS_ASSIGN_OR_RETURN(Conninfo info, ParseConninfo(conninfo, options));
  return std::make_unique<PostgresIndex>(std::move(info), options);
}

}  // namespace ds
