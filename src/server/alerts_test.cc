// Rule evaluation with an injected time: every condition kind fires when its threshold is passed
// and not before, and scopes narrow it.
#include "server/alerts.h"
#include "server/scrub.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;  // Unix ms
constexpr int64_t kMin = 60'000;

AlertRule Rule(const std::string& kind, const std::string& params = "{}") {
  AlertRule r;
  r.id = 1;
  r.name = "r";
  r.kind = kind;
  r.severity = "warning";
  r.params_json = params;
  return r;
}

Runner MakeRunner(int64_t id, const std::string& name, int64_t last_heartbeat_ms,
                  const std::string& status = "approved") {
  Runner r;
  r.id = id;
  r.name = name;
  r.status = status;
  r.last_heartbeat_at_ms = last_heartbeat_ms;
  r.created_at_ms = kNow - 100 * kMin;
  return r;
}

Job MakeJob(int64_t id, int64_t runner_id, const std::string& name) {
  Job j;
  j.spec.id = id;
  j.spec.name = name;
  j.runner_id = runner_id;
  j.created_at_ms = kNow - 1000 * kMin;
  return j;
}

Run MakeRun(const std::string& state, uint64_t uploaded, int64_t finished_ms, uint64_t failed = 0) {
  Run r;
  r.summary.state = state;
  r.summary.files_uploaded = uploaded;
  r.summary.files_failed = failed;
  r.summary.started_at_ms = finished_ms - 1000;
  r.summary.finished_at_ms = finished_ms;
  r.summary.error = state == "failed" ? "boom" : "";
  return r;
}

std::vector<std::string> Subjects(const absl::StatusOr<std::vector<AlertCondition>>& c) {
  std::vector<std::string> out;
  if (!c.ok()) return {"error: " + std::string(c.status().message())};
  for (const auto& x : *c) out.push_back(x.subject);
  return out;
}

using V = std::vector<std::string>;

TEST(AlertRules, RunnerOfflineAfterThresholdOnly) {
  AlertInputs in;
  in.runners = {MakeRunner(1, "pc1", kNow - 10 * kMin), MakeRunner(2, "pc2", kNow - 2 * kMin),
                MakeRunner(3, "never", 0), MakeRunner(4, "gone", kNow - 60 * kMin, "revoked")};
  EXPECT_EQ(Subjects(EvaluateRule(Rule("runner_offline", R"({"minutes":5})"), in, kNow)), V{"pc1"});
  EXPECT_EQ(Subjects(EvaluateRule(Rule("runner_offline", R"({"seconds":30})"), in, kNow)),
            (V{"pc1", "pc2"}));
  // Time passes: the same inputs later make pc2 offline too.
  EXPECT_EQ(Subjects(EvaluateRule(Rule("runner_offline", R"({"minutes":5})"), in, kNow + 4 * kMin)),
            (V{"pc1", "pc2"}));
  AlertRule scoped = Rule("runner_offline", R"({"minutes":1})");
  scoped.scope_kind = "runner";
  scoped.scope = "pc2";
  EXPECT_EQ(Subjects(EvaluateRule(scoped, in, kNow)), V{"pc2"});
  EXPECT_FALSE(EvaluateRule(Rule("runner_offline", R"({"minutes":"x"})"), in, kNow).ok());
}

TEST(AlertRules, GroupScopeMatchesTheRunnersOfThatGroupOnly) {
  AlertInputs in;
  in.runners = {MakeRunner(1, "pc1", kNow - 10 * kMin), MakeRunner(2, "pc2", kNow - 10 * kMin),
                MakeRunner(3, "pc3", kNow - 10 * kMin)};
  in.runners[0].group = "lab2";
  in.runners[2].group = "lab2";
  AlertRule scoped = Rule("runner_offline", R"({"minutes":5})");
  scoped.scope_kind = "group";
  scoped.scope = "lab2";
  EXPECT_EQ(Subjects(EvaluateRule(scoped, in, kNow)), (V{"pc1", "pc3"}));
  scoped.scope = "lab9";
  EXPECT_EQ(Subjects(EvaluateRule(scoped, in, kNow)), V{});
}

TEST(AlertRules, JobNoSyncOnlyWhileRunnerOnline) {
  AlertInputs in;
  in.heartbeat_interval_ms = kMin;
  in.runners = {MakeRunner(1, "pc1", kNow - 1000), MakeRunner(2, "pc2", kNow - 60 * kMin)};
  in.jobs = {MakeJob(10, 1, "a"), MakeJob(11, 1, "b"), MakeJob(12, 2, "c")};
  in.runs_by_job[10] = {MakeRun("succeeded", 0, kNow - kMin),
                        MakeRun("succeeded", 3, kNow - 5 * 60 * kMin)};
  in.runs_by_job[11] = {MakeRun("succeeded", 1, kNow - 10 * kMin)};
  EXPECT_EQ(Subjects(EvaluateRule(Rule("job_no_sync", R"({"hours":2})"), in, kNow)), V{"pc1/a"});
}

TEST(AlertRules, ConsecutiveFailedRunsCountsFromTheNewestClosedRun) {
  AlertInputs in;
  in.runners = {MakeRunner(1, "pc1", kNow)};
  in.jobs = {MakeJob(10, 1, "a"), MakeJob(11, 1, "b")};
  in.runs_by_job[10] = {MakeRun("running", 0, kNow), MakeRun("failed", 0, kNow - 1),
                        MakeRun("failed", 0, kNow - 2), MakeRun("failed", 0, kNow - 3),
                        MakeRun("succeeded", 1, kNow - 4)};
  in.runs_by_job[11] = {MakeRun("failed", 0, kNow - 1), MakeRun("succeeded", 0, kNow - 2),
                        MakeRun("failed", 0, kNow - 3)};
  auto c = EvaluateRule(Rule("consecutive_failed_runs", R"({"count":3})"), in, kNow);
  EXPECT_EQ(Subjects(c), V{"pc1/a"});
  EXPECT_NE(c->at(0).message.find("boom"), std::string::npos);
}

TEST(AlertRules, StorageIndexPendingSkewDiskAndChannels) {
  AlertInputs in;
  in.heartbeat_interval_ms = kMin;
  Runner pc1 = MakeRunner(1, "pc1", kNow);
  pc1.health_json =
      R"({"clock_offset_ms":-200000,"disk_free":[{"job":"a","path":"/d","free_bytes":5,"total_bytes":100},
                       {"job":"b","path":"/e","free_bytes":50,"total_bytes":100}]})";
  Runner waiting = MakeRunner(2, "new-pc", 0, "pending");
  waiting.created_at_ms = kNow - 90 * kMin;
  in.runners = {pc1, waiting};
  in.jobs = {MakeJob(10, 1, "a")};
  in.runs_by_job[10] = {MakeRun("partial", 3, kNow, /*failed=*/2)};
  in.storage_error = "connection refused";
  in.index_size_bytes = 90;
  in.index_budget_bytes = 100;
  NotificationChannel ok, bad;
  ok.name = "ok";
  ok.last_success_at_ms = kNow;
  bad.name = "bad";
  bad.last_error = "HTTP 500";
  bad.last_error_at_ms = kNow;
  bad.last_success_at_ms = kNow - 1;
  in.channels = {ok, bad};
  EXPECT_EQ(Subjects(EvaluateRule(Rule("storage_failing"), in, kNow)), (V{"storage", "pc1/a"}));
  EXPECT_EQ(Subjects(EvaluateRule(Rule("index_size", R"({"percent":80})"), in, kNow)), V{"index"});
  EXPECT_EQ(Subjects(EvaluateRule(Rule("index_size", R"({"percent":95})"), in, kNow)), V{});
  EXPECT_EQ(Subjects(EvaluateRule(Rule("pending_registration", R"({"minutes":60})"), in, kNow)),
            V{"new-pc"});
  EXPECT_EQ(Subjects(EvaluateRule(Rule("pending_registration", R"({"minutes":120})"), in, kNow)),
            V{});
  EXPECT_EQ(Subjects(EvaluateRule(Rule("clock_skew", R"({"seconds":120})"), in, kNow)), V{"pc1"});
  EXPECT_EQ(Subjects(EvaluateRule(Rule("clock_skew", R"({"seconds":300})"), in, kNow)), V{});
  EXPECT_EQ(Subjects(EvaluateRule(Rule("disk_free_low", R"({"percent":10})"), in, kNow)),
            V{"pc1/a"});
  EXPECT_EQ(Subjects(EvaluateRule(Rule("channel_failing"), in, kNow)), V{"channel:bad"});
  EXPECT_EQ(Subjects(EvaluateRule(Rule("file_changed_after_sync"), in, kNow)), V{});
  AlertRule job_scope = Rule("disk_free_low", R"({"percent":60})");
  job_scope.scope_kind = "job";
  job_scope.scope = "pc1/b";
  EXPECT_EQ(Subjects(EvaluateRule(job_scope, in, kNow)), V{"pc1/b"});
}

TEST(AlertRules, ValidationNamesTheProblem) {
  AlertRule r = Rule("runner_offline", R"({"minutes":5})");
  EXPECT_TRUE(ValidateAlertRule(r).ok());
  r.kind = "nonsense";
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateAlertRule(r)));
  r = Rule("runner_offline", "[]");
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateAlertRule(r)));
  r = Rule("runner_offline");
  r.severity = "loud";
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateAlertRule(r)));
  r = Rule("runner_offline");
  r.scope_kind = "runner";
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateAlertRule(r)));  // scope without a name
}

}  // namespace
}  // namespace ds

namespace ds {
namespace {

Scrub FinishedScrub(const std::string& job, const std::string& state, uint64_t missing,
                    uint64_t unhealed) {
  Scrub s;
  s.id = "s-" + job;
  s.runner_name = "pc1";
  s.job_name = job;
  s.state = state;
  s.finished_at_ms = kNow - kMin;
  s.missing = missing;
  s.healed = missing;
  s.unhealed = unhealed;
  return s;
}

TEST(AlertRules, StorageDriftFiresForTheLastSucceededScrubWithDriftOrUnhealedFindings) {
  AlertInputs in;
  in.runners = {MakeRunner(1, "pc1", kNow)};
  in.last_scrubs = {FinishedScrub("clean", "succeeded", 0, 0),
                    FinishedScrub("drifted", "succeeded", 2, 0),
                    FinishedScrub("lost", "succeeded", 0, 1),
                    FinishedScrub("failed", "failed", 0, 0)};
  auto conds = EvaluateRule(Rule("storage_drift"), in, kNow);
  ASSERT_TRUE(conds.ok()) << conds.status();
  std::vector<std::string> subjects;
  for (const auto& c : *conds) subjects.push_back(c.subject);
  EXPECT_EQ(subjects, (std::vector<std::string>{"pc1/drifted", "pc1/lost"}));
  EXPECT_NE((*conds)[0].message.find("2 missing"), std::string::npos) << (*conds)[0].message;
  EXPECT_NE((*conds)[1].details_json.find("\"unhealed\":1"), std::string::npos);
  AlertRule scoped = Rule("storage_drift");
  scoped.scope_kind = "job";
  scoped.scope = "pc1/lost";
  conds = EvaluateRule(scoped, in, kNow);
  ASSERT_TRUE(conds.ok());
  ASSERT_EQ(conds->size(), 1u);
  EXPECT_EQ((*conds)[0].subject, "pc1/lost");
}

TEST(Scrub, TheRehashSampleIsDeterministicOfTheRequestedShareAndMovesBetweenScrubs) {
  int in_a = 0, in_both = 0;
  for (int i = 0; i < 10'000; ++i) {
    const std::string path = "day/meas_" + std::to_string(i) + ".dat";
    EXPECT_TRUE(InRehashSample("s-1", path, 1.0));
    EXPECT_FALSE(InRehashSample("s-1", path, 0.0));
    EXPECT_EQ(InRehashSample("s-1", path, 0.25), InRehashSample("s-1", path, 0.25));
    bool a = InRehashSample("s-1", path, 0.25);
    in_a += a;
    in_both += a && InRehashSample("s-2", path, 0.25);
  }
  EXPECT_NEAR(in_a, 2'500, 250);
  EXPECT_NEAR(in_both, 625, 150);  // another scrub samples (mostly) other objects
}

TEST(Scrub, AJobIsDueAnIntervalAfterItsLastScrubOrItsCreation) {
  Scrub last;
  last.requested_at_ms = kNow;
  EXPECT_EQ(NextScrubDueMs(&last, kNow - 1000, 3'600'000), kNow + 3'600'000);
  EXPECT_EQ(NextScrubDueMs(nullptr, kNow - 1000, 3'600'000), kNow - 1000 + 3'600'000);
  EXPECT_EQ(NextScrubDueMs(&last, kNow, 0), 0);  // scheduling off
}

}  // namespace
}  // namespace ds
