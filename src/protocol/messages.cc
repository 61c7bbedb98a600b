#include "protocol/messages.h"

#include <nlohmann/json.hpp>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "common/json.h"

namespace ds::protocol {
namespace {

using nlohmann::json;

// Strict conversion: integers must be integers of the right sign (no silent wrap of -1 into
// 2^64-1, no truncation of 1.9), booleans booleans, strings strings.
template <typename V>
void Strict(const json& v, const char* key, V& out) {
  auto bad = [&](const char* what) {
    throw json::type_error::create(302, std::string("field '") + key + "' must be " + what, &v);
  };
  if constexpr (std::is_same_v<V, bool>) {
    if (!v.is_boolean()) bad("a boolean");
  } else if constexpr (std::is_integral_v<V> && std::is_unsigned_v<V>) {
    if (!v.is_number_unsigned()) bad("a non-negative integer");
  } else if constexpr (std::is_integral_v<V>) {
    if (!v.is_number_integer()) bad("an integer");
  } else if constexpr (std::is_same_v<V, std::string>) {
    if (!v.is_string()) bad("a string");
  }
  v.get_to(out);
}

// Optional field: leaves `out` untouched when absent or null.
template <typename V>
void Opt(const json& j, const char* key, V& out) {
  auto it = j.find(key);
  if (it != j.end() && !it->is_null()) Strict(*it, key, out);
}

template <typename V>
void Req(const json& j, const char* key, V& out) {
  Strict(j.at(key), key, out);
}

}  // namespace

#define DS_REQ(field) Req(j, #field, v.field)
#define DS_OPT(field) Opt(j, #field, v.field)

void to_json(json& j, const RegisterRequest& v) {
  j = json{{"name", v.name}, {"hostname", v.hostname}, {"os", v.os},
           {"agent_version", v.agent_version}, {"machine_id", v.machine_id}};
}
void from_json(const json& j, RegisterRequest& v) {
  DS_REQ(name);
  DS_OPT(hostname);
  DS_OPT(os);
  DS_OPT(agent_version);
  DS_OPT(machine_id);
}

void to_json(json& j, const RegisterResponse& v) {
  j = json{{"enrollment_id", v.enrollment_id}, {"enrollment_secret", v.enrollment_secret},
           {"status", v.status}};
}
void from_json(const json& j, RegisterResponse& v) {
  DS_REQ(enrollment_id);
  DS_REQ(enrollment_secret);
  DS_OPT(status);
}

void to_json(json& j, const EnrollmentStatus& v) {
  j = json{{"status", v.status}};
  if (v.runner_id != 0) j["runner_id"] = v.runner_id;
  if (!v.runner_name.empty()) j["runner_name"] = v.runner_name;
  if (!v.api_key.empty()) j["api_key"] = v.api_key;
}
void from_json(const json& j, EnrollmentStatus& v) {
  DS_REQ(status);
  DS_OPT(runner_id);
  DS_OPT(runner_name);
  DS_OPT(api_key);
}

void to_json(json& j, const JobSpec& v) {
  j = json{{"id", v.id},          {"name", v.name},         {"source", v.source},
           {"dest_prefix", v.dest_prefix}, {"includes", v.includes}, {"excludes", v.excludes},
           {"interval_ms", v.interval_ms}, {"settle_ms", v.settle_ms}, {"enabled", v.enabled}};
}
void from_json(const json& j, JobSpec& v) {
  DS_OPT(id);
  DS_REQ(name);
  DS_REQ(source);
  DS_OPT(dest_prefix);
  DS_OPT(includes);
  DS_OPT(excludes);
  DS_OPT(interval_ms);
  DS_OPT(settle_ms);
  DS_OPT(enabled);
}

void to_json(json& j, const Command& v) {
  j = json{{"id", v.id}, {"type", v.type}, {"job", v.job}, {"run_id", v.run_id}};
}
void from_json(const json& j, Command& v) {
  DS_REQ(id);
  DS_REQ(type);
  DS_OPT(job);
  DS_OPT(run_id);
}

void to_json(json& j, const DiskFree& v) {
  j = json{{"job", v.job}, {"path", v.path}, {"free_bytes", v.free_bytes}, {"total_bytes", v.total_bytes}};
}
void from_json(const json& j, DiskFree& v) {
  DS_OPT(job);
  DS_OPT(path);
  DS_REQ(free_bytes);
  DS_REQ(total_bytes);
}

void to_json(json& j, const RunProgress& v) {
  j = json{{"run_id", v.run_id}, {"job", v.job}, {"files_total", v.files_total},
           {"files_done", v.files_done}, {"bytes_total", v.bytes_total}, {"bytes_done", v.bytes_done},
           {"started_at_ms", v.started_at_ms}};
}
void from_json(const json& j, RunProgress& v) {
  DS_OPT(run_id);
  DS_OPT(job);
  DS_OPT(files_total);
  DS_OPT(files_done);
  DS_OPT(bytes_total);
  DS_OPT(bytes_done);
  DS_OPT(started_at_ms);
}

void to_json(json& j, const HeartbeatRequest& v) {
  j = json{{"agent_version", v.agent_version}, {"state", v.state},
           {"current_run", v.current_run}, {"jobs_version", v.jobs_version}};
  if (v.agent_time_ms != 0) j["agent_time_ms"] = v.agent_time_ms;
  if (!v.disk_free.empty()) j["disk_free"] = v.disk_free;
  if (v.backlog_files >= 0) j["backlog_files"] = v.backlog_files;
  if (v.backlog_bytes >= 0) j["backlog_bytes"] = v.backlog_bytes;
  if (v.progress) j["progress"] = *v.progress;
}
void from_json(const json& j, HeartbeatRequest& v) {
  DS_OPT(agent_version);
  DS_OPT(state);
  DS_OPT(current_run);
  DS_OPT(jobs_version);
  DS_OPT(agent_time_ms);
  DS_OPT(disk_free);
  DS_OPT(backlog_files);
  DS_OPT(backlog_bytes);
  auto it = j.find("progress");
  if (it != j.end() && !it->is_null()) v.progress = it->get<RunProgress>();
}

void to_json(json& j, const LogRecord& v) {
  j = json{{"seq", v.seq}, {"time_ms", v.time_ms}, {"level", v.level}, {"message", v.message},
           {"correlation_id", v.correlation_id}};
  json fields = ParseJsonOr(v.fields_json);
  j["fields"] = fields.is_object() ? fields : json::object();
}
void from_json(const json& j, LogRecord& v) {
  DS_REQ(seq);
  DS_REQ(time_ms);
  DS_REQ(level);
  DS_REQ(message);
  DS_OPT(correlation_id);
  auto it = j.find("fields");
  if (it != j.end() && !it->is_null()) {
    if (!it->is_object()) throw json::type_error::create(302, "field 'fields' must be an object", &*it);
    v.fields_json = it->dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

void to_json(json& j, const LogBatch& v) { j = json{{"records", v.records}}; }
void from_json(const json& j, LogBatch& v) { DS_REQ(records); }

void to_json(json& j, const LogBatchResponse& v) { j = json{{"accepted", v.accepted}}; }
void from_json(const json& j, LogBatchResponse& v) { DS_OPT(accepted); }

void to_json(json& j, const HeartbeatResponse& v) {
  j = json{{"interval_ms", v.interval_ms}, {"jobs_version", v.jobs_version},
           {"storage_url", v.storage_url}, {"commands", v.commands}};
  if (v.jobs) j["jobs"] = *v.jobs;
  if (!v.new_api_key.empty()) j["new_api_key"] = v.new_api_key;
}
void from_json(const json& j, HeartbeatResponse& v) {
  DS_OPT(interval_ms);
  DS_OPT(jobs_version);
  DS_OPT(storage_url);
  DS_OPT(commands);
  DS_OPT(new_api_key);
  auto it = j.find("jobs");
  if (it != j.end() && !it->is_null()) v.jobs = it->get<std::vector<JobSpec>>();
}

void to_json(json& j, const CommandsResponse& v) { j = json{{"commands", v.commands}}; }
void from_json(const json& j, CommandsResponse& v) { DS_OPT(commands); }

void to_json(json& j, const ManifestEntry& v) {
  j = json{{"path", v.path}, {"size", v.size}, {"mtime_ns", v.mtime_ns}, {"sha256", v.sha256}};
}
void from_json(const json& j, ManifestEntry& v) {
  DS_REQ(path);
  DS_REQ(size);
  DS_REQ(mtime_ns);
  DS_REQ(sha256);
}

void to_json(json& j, const CompareRequest& v) {
  j = json{{"run_id", v.run_id}, {"trigger", v.trigger}, {"files", v.files}, {"last", v.last},
           {"total_files", v.total_files}, {"total_bytes", v.total_bytes}};
  if (!v.manifest_digest.empty()) j["manifest_digest"] = v.manifest_digest;
  if (!v.base_digest.empty()) j["base_digest"] = v.base_digest;
}
void from_json(const json& j, CompareRequest& v) {
  DS_REQ(run_id);
  DS_OPT(trigger);
  DS_REQ(files);
  DS_OPT(last);
  DS_OPT(total_files);
  DS_OPT(total_bytes);
  DS_OPT(manifest_digest);
  DS_OPT(base_digest);
}

void to_json(json& j, const UploadInstruction& v) {
  j = json{{"path", v.path}, {"key", v.key}, {"reason", v.reason}};
  if (!v.url.empty()) {
    j["url"] = v.url;
    j["expires_at_ms"] = v.expires_at_ms;
  }
  if (!v.kept_version.empty()) j["kept_version"] = v.kept_version;
  if (v.already_present) j["already_present"] = true;
}
void from_json(const json& j, UploadInstruction& v) {
  DS_REQ(path);
  DS_REQ(key);
  DS_OPT(reason);
  DS_OPT(url);
  DS_OPT(expires_at_ms);
  DS_OPT(kept_version);
  DS_OPT(already_present);
}

void to_json(json& j, const CompareResponse& v) {
  j = json{{"run_id", v.run_id}, {"storage_url", v.storage_url}, {"upload", v.upload}};
  if (v.manifest_match) j["manifest_match"] = true;
  if (v.base_match) j["base_match"] = true;
  if (v.index_empty) j["index_empty"] = true;
}
void from_json(const json& j, CompareResponse& v) {
  DS_OPT(run_id);
  DS_OPT(storage_url);
  DS_REQ(upload);
  DS_OPT(manifest_match);
  DS_OPT(base_match);
  DS_OPT(index_empty);
}

void to_json(json& j, const GrantRequest& v) { j = json{{"path", v.path}}; }
void from_json(const json& j, GrantRequest& v) { DS_REQ(path); }

void to_json(json& j, const GrantResponse& v) {
  j = json{{"url", v.url}, {"expires_at_ms", v.expires_at_ms}};
  if (!v.kept_version.empty()) j["kept_version"] = v.kept_version;
}
void from_json(const json& j, GrantResponse& v) {
  DS_REQ(url);
  DS_OPT(expires_at_ms);
  DS_OPT(kept_version);
}

void to_json(json& j, const FileResult& v) {
  j = json{{"path", v.path}, {"status", v.status}, {"size", v.size}, {"mtime_ns", v.mtime_ns},
           {"sha256", v.sha256}, {"duration_ms", v.duration_ms}};
  if (!v.error.empty()) j["error"] = v.error;
  if (!v.kept_version.empty()) j["kept_version"] = v.kept_version;
}
void from_json(const json& j, FileResult& v) {
  DS_REQ(path);
  DS_REQ(status);
  DS_OPT(size);
  DS_OPT(mtime_ns);
  DS_OPT(sha256);
  DS_OPT(error);
  DS_OPT(kept_version);
  DS_OPT(duration_ms);
}

void to_json(json& j, const CompleteRequest& v) {
  j = json{{"results", v.results}, {"final", v.final}, {"interrupted", v.interrupted}};
  if (!v.error.empty()) j["error"] = v.error;
}
void from_json(const json& j, CompleteRequest& v) {
  DS_REQ(results);
  DS_OPT(final);
  DS_OPT(interrupted);
  DS_OPT(error);
}

void to_json(json& j, const CompleteResponse& v) {
  j = json{{"accepted", v.accepted}, {"run_state", v.run_state}};
}
void from_json(const json& j, CompleteResponse& v) {
  DS_OPT(accepted);
  DS_OPT(run_state);
}

void to_json(json& j, const RunSummary& v) {
  j = json{{"run_id", v.run_id},
           {"runner", v.runner},
           {"job", v.job},
           {"state", v.state},
           {"trigger", v.trigger},
           {"files_seen", v.files_seen},
           {"files_planned", v.files_planned},
           {"files_uploaded", v.files_uploaded},
           {"files_failed", v.files_failed},
           {"files_skipped", v.files_skipped},
           {"bytes_seen", v.bytes_seen},
           {"bytes_uploaded", v.bytes_uploaded},
           {"started_at_ms", v.started_at_ms},
           {"finished_at_ms", v.finished_at_ms},
           {"error", v.error}};
}
void from_json(const json& j, RunSummary& v) {
  DS_REQ(run_id);
  DS_OPT(runner);
  DS_OPT(job);
  DS_OPT(state);
  DS_OPT(trigger);
  DS_OPT(files_seen);
  DS_OPT(files_planned);
  DS_OPT(files_uploaded);
  DS_OPT(files_failed);
  DS_OPT(files_skipped);
  DS_OPT(bytes_seen);
  DS_OPT(bytes_uploaded);
  DS_OPT(started_at_ms);
  DS_OPT(finished_at_ms);
  DS_OPT(error);
}

void to_json(json& j, const Problem& v) {
  j = json{{"type", v.type}, {"title", v.title}, {"status", v.status}, {"detail", v.detail}};
}
void from_json(const json& j, Problem& v) {
  DS_OPT(type);
  DS_OPT(title);
  DS_OPT(status);
  DS_OPT(detail);
}

#undef DS_REQ
#undef DS_OPT

template <typename T>
absl::StatusOr<T> Decode(std::string_view body) {
  absl::StatusOr<json> j = ParseJson(body);
  if (!j.ok()) return absl::InvalidArgumentError(absl::StrCat("invalid JSON body: ", j.status().message()));
  if (!j->is_object()) return absl::InvalidArgumentError("invalid JSON body: expected an object");
  try {
    return j->get<T>();
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON body: ", e.what()));
  }
}

template <typename T>
std::string Encode(const T& value) {
  // Replace invalid UTF-8 rather than throw: paths from the filesystem are validated before use.
  return json(value).dump(-1, ' ', false, json::error_handler_t::replace);
}

#define DS_INSTANTIATE(T)                                        \
  template absl::StatusOr<T> Decode<T>(std::string_view body);   \
  template std::string Encode<T>(const T& value);
DS_INSTANTIATE(RegisterRequest)
DS_INSTANTIATE(RegisterResponse)
DS_INSTANTIATE(EnrollmentStatus)
DS_INSTANTIATE(JobSpec)
DS_INSTANTIATE(Command)
DS_INSTANTIATE(HeartbeatRequest)
DS_INSTANTIATE(LogBatch)
DS_INSTANTIATE(LogBatchResponse)
DS_INSTANTIATE(HeartbeatResponse)
DS_INSTANTIATE(CommandsResponse)
DS_INSTANTIATE(ManifestEntry)
DS_INSTANTIATE(CompareRequest)
DS_INSTANTIATE(UploadInstruction)
DS_INSTANTIATE(CompareResponse)
DS_INSTANTIATE(GrantRequest)
DS_INSTANTIATE(GrantResponse)
DS_INSTANTIATE(FileResult)
DS_INSTANTIATE(CompleteRequest)
DS_INSTANTIATE(CompleteResponse)
DS_INSTANTIATE(RunSummary)
DS_INSTANTIATE(Problem)
#undef DS_INSTANTIATE

}  // namespace ds::protocol
