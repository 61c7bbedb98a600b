// Alert rules: what each kind checks (EvaluateRule, a pure function of a snapshot and a time, so
// tests inject the clock), and the AlertService that evaluates the enabled rules on a schedule,
// fires and resolves alerts in the index, and sends the notification outbox. With several server
// instances only the holder of the index lease "alerts" does this.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/periodic_worker.h"
#include "common/status.h"
#include "index/state_index.h"
#include "server/lease.h"

namespace ds {

struct ServerContext;

// Rule kinds. file_changed_after_sync is an event (fired by compare, resolved by ack); every
// other kind is a condition, re-checked each pass and resolved when it no longer holds.
inline constexpr const char* kAlertKinds[] = {
    "runner_offline",           // params: minutes|seconds (silent longer than this)
    "job_no_sync",              // params: hours|minutes|seconds (no file uploaded while online)
    "consecutive_failed_runs",  // params: count
    "storage_failing",          // storage unreachable, or a job's newest run had failed uploads
    "index_size",               // params: percent (of --index-budget)
    "file_changed_after_sync",  // event: a synced file's content changed on the runner
    "pending_registration",     // params: minutes|seconds
    "clock_skew",               // params: seconds
    "disk_free_low",            // params: percent
    "channel_failing",          // a notification channel's last attempt failed
    "storage_drift",            // a job's last finished scrub found drift or could not heal all
};
bool IsAlertKind(const std::string& kind);
bool IsEventAlertKind(const std::string& kind);
// Validates a rule from the API (kind, severity, scope, params JSON object, name).
absl::Status ValidateAlertRule(const AlertRule& rule);

// Everything the condition kinds look at, read once per pass.
struct AlertInputs {
  std::vector<Runner> runners;
  std::vector<Job> jobs;
  std::map<int64_t, std::vector<Run>> runs_by_job;  // newest first, a few per job
  int64_t heartbeat_interval_ms = 60'000;
  int64_t index_size_bytes = 0;
  int64_t index_budget_bytes = 0;  // 0 = none
  std::string storage_error;       // "" = storage answered
  std::vector<NotificationChannel> channels;
  std::vector<Scrub> last_scrubs;  // the newest finished scrub of each job that has one
};

// One subject for which a rule's condition holds now.
struct AlertCondition {
  std::string subject;  // runner | RUNNER/JOB | storage | channel:NAME
  std::string runner;   // for scope matching ("" when not about a runner)
  std::string job;      // job name, "" when not about a job
  std::string message;
  std::string details_json = "{}";
  std::string group = "";  // the runner's group, for scope matching ("" = none); set by EvaluateRule
};

// The subjects for which `rule` (a condition kind) holds at `now_ms`, filtered by its scope.
// InvalidArgument for bad params; an event kind yields nothing.
[[nodiscard]] absl::StatusOr<std::vector<AlertCondition>> EvaluateRule(const AlertRule& rule,
                                                                       const AlertInputs& in,
                                                                       int64_t now_ms);

// Whether a runner counts as online (heartbeat within 3 intervals), as the admin API shows it.
bool RunnerOnline(const Runner& r, int64_t now_ms, int64_t heartbeat_interval_ms);

// A synced file whose content a compare found changed.
struct ChangedFile {
  SyncedFile synced;      // the index row (what was synced)
  uint64_t new_size = 0;  // bytes, as the agent sees it now
  std::string new_sha256;
};
// At most this many file-changed alerts per compare batch; the rest are counted in the log.
inline constexpr size_t kMaxChangedFileAlerts = 50;
// Fires `file_changed_after_sync` alerts (one per file and enabled rule of that kind whose scope
// matches), reading the rules once.
void ReportFilesChanged(ServerContext* ctx, const Runner& runner, const std::string& job,
                        const std::string& run_id, const std::vector<ChangedFile>& files);

// The alert as the admin API shows it (docs/api.md).
std::string AlertJsonText(const Alert& a);

class AlertService {
 public:
  // REQUIRES: ctx outlives the service.
  AlertService(ServerContext* ctx, std::string holder);
  ~AlertService() { worker_.Stop(); }  // stops the thread, then releases the lease if held
  // One pass now (evaluate + send due notifications) if this instance holds the lease.
  // Returns a summary for the log ("" when nothing happened). Not concurrently with itself.
  std::string RunOnce();
  void Wake() { worker_.Wake(); }

 private:
  bool Claim();
  std::string Evaluate();
  std::string SendDue();

  ServerContext* const ctx_;
  IndexLease lease_;       // Used by the service thread only.
  PeriodicWorker worker_;  // last: stops before the members it uses go
};

}  // namespace ds
