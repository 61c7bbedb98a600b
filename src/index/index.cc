// OpenStateIndex: the one place that knows every index dialect and maps a URL scheme onto it.
#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "index/postgres/postgres_index.h"
#include "index/sqlite/sqlite_index.h"
#include "index/state_index.h"
#include "platform/error.h"

namespace ds {

absl::StatusOr<StateIndex::HeartbeatOutcome> StateIndex::Heartbeat(const HeartbeatRecord& hb,
                                                                   int64_t now_ms) {
  DS_RETURN_IF_ERROR(RecordHeartbeat(hb.runner_id, hb.agent_version, hb.runtime_state,
                                     hb.current_run, hb.health_json, now_ms));
  HeartbeatOutcome out;
  DS_ASSIGN_OR_RETURN(out.abandoned_runs,
                      AbandonStaleRuns(hb.runner_id, hb.current_run, hb.orphans_started_before_ms,
                                       hb.orphan_reason, now_ms));
  DS_ASSIGN_OR_RETURN(out.commands, TakeCommands(hb.runner_id));
  return out;
}
namespace {

using IndexOpener = absl::StatusOr<std::unique_ptr<StateIndex>> (*)(const std::string& url);

// "sqlite:PATH": creates PATH's directory, then opens (or creates) the database file.
absl::StatusOr<std::unique_ptr<StateIndex>> OpenSqliteUrl(const std::string& url) {
  const std::string path = url.substr(url.find(':') + 1);
  if (path.empty()) return absl::InvalidArgumentError("index URL \"sqlite:\" has no path");
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec)
      return platform::ErrnoToStatus(ec.value(),
                                     absl::StrCat("creating index directory ", dir.string()));
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);  // only the server's
  }
  return OpenSqliteIndex(path);
}

// "postgresql://..." or "postgres://...": the whole URL is a libpq connection URI.
absl::StatusOr<std::unique_ptr<StateIndex>> OpenPostgresUrl(const std::string& url) {
  return OpenPostgresIndex(url);
}

struct Dialect {
  std::string_view scheme;
  IndexOpener open;  // receives the whole URL
};

// A new dialect is one more entry here.
constexpr Dialect kDialects[] = {
    {"sqlite", &OpenSqliteUrl},
    {"postgresql", &OpenPostgresUrl},
    {"postgres", &OpenPostgresUrl},
};

constexpr char kExpectedForms[] = "expected sqlite:PATH or postgresql://USER@HOST:PORT/DB";

}  // namespace

std::string RedactIndexUrl(const std::string& url) {
  constexpr std::string_view kMask = "****";
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  const std::string scheme = url.substr(0, scheme_end);
  if (scheme != "postgresql" && scheme != "postgres") return url;
  std::string out = url;
  // userinfo: "user:password@" before the host (the last '@' of the authority).
  const size_t authority = scheme_end + 3;
  const size_t authority_end = std::min(out.find_first_of("/?", authority), out.size());
  const size_t at = out.rfind('@', authority_end);
  if (at != std::string::npos && at >= authority) {
    const size_t colon = out.find(':', authority);
    if (colon < at) out.replace(colon + 1, at - colon - 1, kMask);
  }
  // "password=..." among the query parameters.
  const size_t query = out.find('?');
  for (size_t at_param = query; at_param != std::string::npos;
       at_param = out.find('&', at_param + 1)) {
    const size_t name = at_param + 1;
    if (out.compare(name, 9, "password=") != 0) continue;
    const size_t value = name + 9;
    const size_t value_end = std::min(out.find('&', value), out.size());
    out.replace(value, value_end - value, kMask);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<StateIndex>> OpenStateIndex(const std::string& url) {
  const size_t colon = url.find(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("index URL has no scheme: ", kExpectedForms));
  }
  const std::string scheme = url.substr(0, colon);
  for (const Dialect& dialect : kDialects) {
    if (scheme == dialect.scheme) return dialect.open(url);
  }
  // Only the scheme is quoted: the rest of a database URL may hold a password.
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported index URL scheme \"", scheme, "\": ", kExpectedForms));
}

absl::Status ValidateScrubRequest(const std::string& trigger, double rehash_fraction) {
  if (trigger != "schedule" && trigger != "operator") {
    return absl::InvalidArgumentError("scrub trigger must be schedule or operator");
  }
  if (!(rehash_fraction >= 0.0 && rehash_fraction <= 1.0)) {  // NaN fails too
    return absl::InvalidArgumentError("rehash_fraction must be a number from 0 to 1");
  }
  return absl::OkStatus();
}

absl::Status CheckDecidable(const Runner& runner, const Enrollment& e) {
  if (runner.status != "pending") {
    return absl::FailedPreconditionError(
        absl::StrCat("runner '", runner.name, "' is ", runner.status, ", not pending"));
  }
  if (e.status != "pending") {
    return absl::FailedPreconditionError(absl::StrCat("enrollment ", e.id, " is ", e.status));
  }
  return absl::OkStatus();
}

absl::Status CheckDeletable(const Runner& runner, const std::vector<std::string>& jobs) {
  if (runner.status != "pending" && runner.status != "rejected" && runner.status != "revoked") {
    return absl::FailedPreconditionError(
        absl::StrCat("runner '", runner.name, "' is ", runner.status, "; revoke it first"));
  }
  if (!jobs.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("runner '", runner.name, "' still has jobs ",
                                                      absl::StrJoin(jobs, ", "),
                                                      "; delete them first"));
  }
  return absl::OkStatus();
}

absl::Status CheckSinglePendingEnrollment(int64_t runner_id, int64_t pending) {
  if (pending > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("runner ", runner_id, " has ", pending, " pending enrollments; choose one"));
  }
  return absl::OkStatus();
}

LoginThrottle NextLoginThrottle(const LoginThrottle& current, int64_t now_ms,
                                const LockoutPolicy& policy) {
  LoginThrottle next;
  const bool stale = current.last_failure_at_ms > 0 &&
                     now_ms - current.last_failure_at_ms > policy.reset_after_ms;
  next.failures = (stale ? 0 : current.failures) + 1;
  next.last_failure_at_ms = now_ms;
  const int64_t extra = next.failures - policy.free_failures;
  if (extra > 0) {
    int64_t lock = policy.base_lock_ms;
    for (int64_t i = 1; i < extra && lock < policy.max_lock_ms; ++i) lock *= 2;
    next.locked_until_ms = now_ms + std::min(lock, policy.max_lock_ms);
  }
  return next;
}

}  // namespace ds
