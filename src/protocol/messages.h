// The wire format of /api/v1: every request and response body, and its one JSON codec.
// Field names are the contract with deployed agents and operators' scripts: add, don't rename.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace ds::protocol {

inline constexpr size_t kMaxManifestBatch = 10'000;  // entries per compare / complete request

// ---- enrollment -------------------------------------------------------------------------------
struct RegisterRequest {
  std::string name;           // requested runner name, [A-Za-z0-9._-]{1,64}
  std::string hostname;
  std::string os;
  std::string agent_version;
  std::string machine_id;     // stable id of the PC, informational
};
struct RegisterResponse {
  std::string enrollment_id;
  std::string enrollment_secret;  // shown once; the agent polls with it
  std::string status;             // "pending"
};
struct EnrollmentStatus {
  std::string status;          // pending | approved | rejected | delivered
  int64_t runner_id = 0;
  std::string runner_name;
  std::string api_key;         // present exactly once, on the first poll after approval
};

// ---- jobs and commands ------------------------------------------------------------------------
struct JobSpec {
  int64_t id = 0;
  std::string name;
  std::string source;              // folder on the runner
  std::string dest_prefix;         // validated relative key prefix in storage
  std::vector<std::string> includes;
  std::vector<std::string> excludes;
  int64_t interval_ms = 3'600'000;
  int64_t settle_ms = 60'000;      // minimum file age before a file is synced
  bool enabled = true;
};
struct Command {
  int64_t id = 0;
  std::string type;                // "sync"
  std::string job;                 // job name
  std::string run_id;              // correlation id the agent must use for the run
};

// ---- heartbeat --------------------------------------------------------------------------------
// Free space on the volume holding one job's folder (statvfs).
struct DiskFree {
  std::string job;
  std::string path;
  uint64_t free_bytes = 0;         // bytes available to the agent
  uint64_t total_bytes = 0;        // bytes
};
// Progress of the run in progress.
struct RunProgress {
  std::string run_id;
  std::string job;
  uint64_t files_total = 0, files_done = 0;   // files to upload, uploaded or failed so far
  uint64_t bytes_total = 0, bytes_done = 0;   // bytes
  int64_t started_at_ms = 0;                  // Unix ms, agent clock
};
struct HeartbeatRequest {
  std::string agent_version;
  std::string state;               // idle | syncing | offline-catchup
  std::string current_run;         // correlation id, empty when idle
  int64_t jobs_version = -1;       // what the agent holds; -1 = none
  // Health (optional; older agents send none of these):
  int64_t agent_time_ms = 0;       // Unix ms by the agent's clock when sent; 0 = not sent
  std::vector<DiskFree> disk_free;
  int64_t backlog_files = -1;      // files found by the last scans and not yet uploaded; -1 = unknown
  int64_t backlog_bytes = -1;      // bytes of those; -1 = unknown
  std::optional<RunProgress> progress;
};
struct HeartbeatResponse {
  int64_t interval_ms = 60'000;
  int64_t jobs_version = 0;
  std::optional<std::vector<JobSpec>> jobs;  // sent when the agent's version is stale
  std::string storage_url;         // where this runner uploads, e.g. file:///srv/share
  std::vector<Command> commands;
  // Key rotation: a new API key for this runner, sent once per heartbeat while an operator's
  // rotation is pending. The agent stores it and uses it from then on; the first request made with
  // it retires the old key. Empty = keep the current key.
  std::string new_api_key;
};
struct CommandsResponse {
  std::vector<Command> commands;
};

// ---- a run ------------------------------------------------------------------------------------
struct ManifestEntry {
  std::string path;                // relative to the job folder, validated
  uint64_t size = 0;               // bytes
  int64_t mtime_ns = 0;            // Unix nanoseconds
  std::string sha256;              // lowercase hex
};
struct CompareRequest {
  std::string run_id;              // correlation id (UUID)
  std::string trigger;             // schedule | command | startup
  std::vector<ManifestEntry> files;  // one batch, at most kMaxManifestBatch
  bool last = true;                // the final batch of this run's manifest
  uint64_t total_files = 0;        // whole manifest, set on the last batch
  uint64_t total_bytes = 0;
  // Optional (omitted when empty): ManifestDigest() of the whole manifest, sent first with no
  // files and last = false. The answer's manifest_match says the index already holds exactly
  // that manifest (nothing to upload; the plan is closed); otherwise the batches follow.
  std::string manifest_digest;
  // Optional (omitted when empty): the delta compare. On the digest-only first request: the
  // digest of the agent's previous manifest (the base). The answer's base_match says the index
  // holds exactly that base; the batches that follow then carry only the entries that differ from
  // it (new or changed; removed files need no entry), each batch again with base_digest, which
  // the server checks (http::BaseMovedError, a 409 with reason "base_moved", when the job's
  // digest moved on since).
  std::string base_digest;
};
struct UploadInstruction {
  std::string path;
  std::string key;                 // storage key (dest prefix + path)
  std::string reason;              // new | changed | missing
  // Object storage only (absent for a directory/share, which the agent writes itself):
  std::string url;               // the blob URL with a write-only SAS for exactly this key;
                                 // a secret until it expires: never logged, never journaled
  int64_t expires_at_ms = 0;     // Unix ms when `url` stops working (renew: POST .../grant)
  std::string kept_version;      // key the server kept the object being replaced under
  bool already_present = false;  // storage already holds exactly this content (no `url`):
                                 // upload nothing, report `uploaded` (the server checks)
};
struct CompareResponse {
  std::string run_id;
  std::string storage_url;
  std::vector<UploadInstruction> upload;
  bool manifest_match = false;     // optional (omitted when false): see manifest_digest
  bool base_match = false;         // optional (omitted when false): see base_digest
  // Optional (omitted when false): answered to an opening request (no files, no digests,
  // last = false): the job's index holds no file. The agent may then copy each new file while
  // it scans (reading it once) and compare the copies in batches before committing them.
  bool index_empty = false;
};

// POST /agent/runs/{run}/grant: a fresh write credential for one file planned in the run.
struct GrantRequest {
  std::string path;  // as in the compare answer
};
struct GrantResponse {
  std::string url;            // as UploadInstruction::url
  int64_t expires_at_ms = 0;  // Unix ms
  std::string kept_version;   // as UploadInstruction::kept_version
};

struct FileResult {
  std::string path;
  std::string status;              // uploaded | failed | skipped
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  std::string sha256;
  std::string error;
  std::string kept_version;        // storage key of the previous version moved aside, if any
  int64_t duration_ms = 0;
};
struct CompleteRequest {
  std::vector<FileResult> results;  // at most kMaxManifestBatch
  bool final = false;               // closes the run
  bool interrupted = false;         // with final: the agent stopped before finishing
  std::string error;                // run-level error, if any
};
struct CompleteResponse {
  uint64_t accepted = 0;
  std::string run_state;
};

// ---- admin views ------------------------------------------------------------------------------
struct RunSummary {
  std::string run_id;
  std::string runner;
  std::string job;
  std::string state;               // running | succeeded | partial | failed | abandoned
  std::string trigger;
  uint64_t files_seen = 0, files_planned = 0, files_uploaded = 0, files_failed = 0,
           files_skipped = 0;
  uint64_t bytes_seen = 0, bytes_uploaded = 0;
  int64_t started_at_ms = 0, finished_at_ms = 0;
  std::string error;
};

// ---- agent logs (POST /agent/logs) -------------------------------------------------------------
inline constexpr size_t kMaxLogBatch = 1'000;        // records per request
inline constexpr size_t kMaxLogMessageBytes = 8'192;  // longer messages are cut
struct LogRecord {
  int64_t seq = 0;                 // agent-side, increasing; the server de-duplicates by it
  int64_t time_ms = 0;             // Unix ms, agent clock
  std::string level;               // debug | info | warn | error
  std::string message;
  std::string correlation_id;      // run id, "" outside a run
  std::string fields_json = "{}";  // on the wire: a JSON object "fields"
};
struct LogBatch {
  std::vector<LogRecord> records;  // ascending seq, at most kMaxLogBatch
};
struct LogBatchResponse {
  uint64_t accepted = 0;           // newly stored (repeats are not counted)
};

struct Problem {
  std::string type = "about:blank";
  std::string title;
  int status = 500;
  std::string detail;
};

// ---- codecs -----------------------------------------------------------------------------------
#define DS_DECLARE_JSON(T)                  \
  void to_json(nlohmann::json& j, const T& v); \
  void from_json(const nlohmann::json& j, T& v);
DS_DECLARE_JSON(RegisterRequest)
DS_DECLARE_JSON(RegisterResponse)
DS_DECLARE_JSON(EnrollmentStatus)
DS_DECLARE_JSON(JobSpec)
DS_DECLARE_JSON(Command)
DS_DECLARE_JSON(DiskFree)
DS_DECLARE_JSON(RunProgress)
DS_DECLARE_JSON(HeartbeatRequest)
DS_DECLARE_JSON(LogRecord)
DS_DECLARE_JSON(LogBatch)
DS_DECLARE_JSON(LogBatchResponse)
DS_DECLARE_JSON(HeartbeatResponse)
DS_DECLARE_JSON(CommandsResponse)
DS_DECLARE_JSON(ManifestEntry)
DS_DECLARE_JSON(CompareRequest)
DS_DECLARE_JSON(UploadInstruction)
DS_DECLARE_JSON(CompareResponse)
DS_DECLARE_JSON(GrantRequest)
DS_DECLARE_JSON(GrantResponse)
DS_DECLARE_JSON(FileResult)
DS_DECLARE_JSON(CompleteRequest)
DS_DECLARE_JSON(CompleteResponse)
DS_DECLARE_JSON(RunSummary)
DS_DECLARE_JSON(Problem)
#undef DS_DECLARE_JSON

// Parses `body` as T. Malformed JSON, missing required fields or wrong types → InvalidArgument.
template <typename T>
[[nodiscard]] absl::StatusOr<T> Decode(std::string_view body);
template <typename T>
std::string Encode(const T& value);

}  // namespace ds::protocol
