// MigrateIndex: a SQLite index filled through the StateIndex interface is copied into a fresh
// PostgreSQL database (the fixture's throwaway server) and compared through the interface.
#include "index/migrate_index.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "index/state_index.h"
#include "index/testing/index_testing.h"
#include "index/testing/postgres_fixture.h"

namespace ds {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kT0 = 1'700'000'000'000;  // Unix ms

// One line per row, every field, so that a difference shows in the failure message.
std::string Describe(const Runner& r) {
  return absl::StrCat(r.id, "|", r.name, "|", r.status, "|", r.hostname, "|", r.os, "|",
                      r.machine_id, "|", r.agent_version, "|", r.runtime_state, "|", r.current_run,
                      "|", r.has_key, "|", r.jobs_version, "|", r.created_at_ms, "|",
                      r.approved_at_ms, "|", r.last_heartbeat_at_ms, "|", r.last_activity_at_ms);
}
std::string Describe(const Job& j) {
  const protocol::JobSpec& s = j.spec;
  return absl::StrCat(j.runner_id, "|", j.runner_name, "|", s.id, "|", s.name, "|", s.source, "|",
                      s.dest_prefix, "|", absl::StrJoin(s.includes, ","), "|",
                      absl::StrJoin(s.excludes, ","), "|", s.interval_ms, "|", s.settle_ms, "|",
                      s.enabled, "|", j.created_at_ms);
}
std::string Describe(const ds::Run& run) {
  const protocol::RunSummary& s = run.summary;
  return absl::StrCat(s.run_id, "|", run.runner_id, "|", s.runner, "|", run.job_id, "|", s.job, "|",
                      s.state, "|", s.trigger, "|", s.files_seen, "|", s.files_planned, "|",
                      s.files_uploaded, "|", s.files_failed, "|", s.files_skipped, "|",
                      s.bytes_seen, "|", s.bytes_uploaded, "|", s.started_at_ms, "|",
                      s.finished_at_ms, "|", s.error);
}
std::string Describe(const RunFile& f) {
  return absl::StrCat(f.path, "|", f.planned_reason, "|", f.size, "|", f.sha256, "|", f.result, "|",
                      f.error, "|", f.kept_version);
}
std::string Describe(const SyncedFile& f) {
  return absl::StrCat(f.job_id, "|", f.path, "|", f.size, "|", f.mtime_ns, "|", f.sha256, "|",
                      f.synced_at_ms, "|", f.run_id);
}
std::string Describe(const Reconcile& c) {
  return absl::StrCat(c.id, "|", c.job_id, "|", c.runner_name, "|", c.job_name, "|", c.state, "|",
                      c.verify, "|", c.claimed_by, "|", c.requested_at_ms, "|", c.started_at_ms,
                      "|", c.updated_at_ms, "|", c.finished_at_ms, "|", c.files_expected, "|",
                      c.files_seen, "|", c.rows_added, "|", c.rows_unchanged, "|", c.mismatches,
                      "|", c.report_json, "|", c.error);
}
std::string Describe(const Enrollment& e) {
  return absl::StrCat(e.id, "|", e.runner_id, "|", e.secret_hash, "|", e.status, "|",
                      e.created_at_ms);
}
std::string Describe(const AdminToken& t) {
  return absl::StrCat(t.id, "|", t.name, "|", t.role, "|", t.created_at_ms, "|", t.revoked_at_ms, "|", t.created_by);
}
std::string Describe(const protocol::Command& c) {
  return absl::StrCat(c.id, "|", c.type, "|", c.job, "|", c.run_id);
}
std::string Describe(const StateIndex::WaitingRunner& w) {
  return absl::StrCat(w.runner_id, "|", w.pending_commands, "|", w.newest_poll_id);
}
template <typename T>
std::vector<std::string> DescribeAll(const std::vector<T>& rows) {
  std::vector<std::string> out;
  for (const T& row : rows) out.push_back(Describe(row));
  return out;
}

RegisterInfo Info(const std::string& name) {
  return RegisterInfo{name, "host-" + name, "linux", "machine-" + name, "1.2.3"};
}

protocol::JobSpec Spec(const std::string& name) {
  protocol::JobSpec spec;
  spec.name = name;
  spec.source = "/data/" + name;
  spec.dest_prefix = "lab/" + name;
  spec.includes = {"*.dat", "Übersicht/**"};
  spec.excludes = {"tmp/**", "a \"quoted\" \\ glob"};
  spec.interval_ms = 600'000;
  spec.settle_ms = 30'000;
  return spec;
}

std::string Hex64(int i) {
  std::string h = absl::StrCat(i);
  return std::string(64 - h.size(), 'a') + h;
}

class MigrateIndexTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestTempDir("migrate");
    ASSERT_FALSE(dir_.empty());
    sqlite_url_ = "sqlite:" + (dir_ / "index.sqlite").string();
    auto db = CreateTestPostgresDatabase();
    ASSERT_TRUE(db.ok()) << db.status();
    pg_ = *db;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Fills the SQLite index through the interface with every kind of row.
  void Fill(StateIndex& index) {
    // Runners in every state, with keys, heartbeats and a replacement request.
    ASSERT_OK_AND_ASSIGN(Runner pc1, index.RegisterRunner(Info("pc1"), "enr-1", "sec-1", kT0));
    ASSERT_OK(index.TransitionRunner(pc1.id, "pending", "approved", kT0 + 1));
    ASSERT_OK(index.DeliverKey("enr-1", "key-1"));
    ASSERT_OK(index.RecordHeartbeat(pc1.id, "1.2.4", "syncing", "run-live", "", kT0 + 2));
    ASSERT_OK_AND_ASSIGN(Runner pc2, index.RegisterRunner(Info("pc2"), "enr-2", "sec-2", kT0 + 3));
    ASSERT_OK_AND_ASSIGN(Runner pc3, index.RegisterRunner(Info("pc3"), "enr-3", "sec-3", kT0 + 4));
    ASSERT_OK(index.TransitionRunner(pc3.id, "pending", "rejected", kT0 + 5));
    ASSERT_OK_AND_ASSIGN(Runner pc4, index.RegisterRunner(Info("pc4"), "enr-4", "sec-4", kT0 + 6));
    ASSERT_OK(index.TransitionRunner(pc4.id, "pending", "approved", kT0 + 7));
    ASSERT_OK(index.DeliverKey("enr-4", "key-4"));
    ASSERT_OK(index.TransitionRunner(pc4.id, "approved", "revoked", kT0 + 8));
    ASSERT_OK(index.RegisterRunner(Info("pc1"), "enr-1b", "sec-1b", kT0 + 9).status());
    (void)pc2;

    // Jobs; one is deleted later, leaving its runs without a job.
    ASSERT_OK_AND_ASSIGN(Job raw, index.PutJob(pc1.id, Spec("raw"), false, kT0 + 10));
    ASSERT_OK_AND_ASSIGN(Job old, index.PutJob(pc1.id, Spec("old"), false, kT0 + 11));
    protocol::JobSpec disabled = Spec("raw");
    disabled.enabled = false;
    ASSERT_OK(index.PutJob(pc1.id, disabled, true, kT0 + 12).status());

    // Runs, three starting in the same millisecond (their order must survive).
    for (int r = 0; r < 3; ++r) {
      const std::string run_id = absl::StrCat("run-", r);
      ASSERT_OK(index.BeginRun(run_id, pc1.id, raw.spec.id, "schedule", kT0 + 100).status());
      std::vector<RunFile> planned;
      std::vector<protocol::FileResult> results;
      for (int i = 0; i < 2'500; ++i) {
        RunFile f;
        f.path = absl::StrCat("2026-11-0", r + 1, "/Teil ü ", i % 7, "/meas_", i, ".dat");
        f.planned_reason = i % 2 ? "new" : "changed";
        f.size = static_cast<uint64_t>(i) * 1000 + 7;
        f.sha256 = Hex64(i);
        planned.push_back(f);
        protocol::FileResult res;
        res.path = f.path;
        res.status = i % 97 == 0 ? "failed" : "uploaded";
        res.size = f.size;
        res.mtime_ns = 1'600'000'000'000'000'000 + i;
        res.sha256 = f.sha256;
        if (res.status == "failed") res.error = "disk \"full\"";
        if (i % 101 == 0) res.kept_version = ".datasync/versions/x/" + f.path;
        results.push_back(res);
      }
      protocol::FileResult skipped;
      skipped.path = "locked.tmp";
      skipped.status = "skipped";
      skipped.error = "in use";
      results.push_back(skipped);
      ASSERT_OK(index.RecordPlanned(run_id, planned, 2'501, 123'456'789));
      ASSERT_OK(index.RecordResults(run_id, results, kT0 + 200 + r).status());
      ASSERT_OK(
          index.FinishRun(run_id, "partial", r == 1 ? "some failed" : "", kT0 + 300).status());
    }
    ASSERT_OK(index.BeginRun("run-old", pc1.id, old.spec.id, "command", kT0 + 50).status());
    ASSERT_OK(index.FinishRun("run-old", "succeeded", "", kT0 + 60).status());
    ASSERT_OK(index.BeginRun("run-live", pc1.id, raw.spec.id, "startup", kT0 + 400).status());
    ASSERT_OK(index.DeleteJob(old.spec.id));

    // Rows written by a reconcile, and the reconciles themselves.
    std::vector<SyncedFile> rebuilt;
    for (int i = 0; i < 50; ++i) {
      rebuilt.push_back(SyncedFile{raw.spec.id, absl::StrCat("rebuilt/", i), 10, 20, Hex64(i),
                                   kT0 + 500, "rec-1"});
    }
    ASSERT_OK(index.ApplySyncedFiles(raw.spec.id, rebuilt, {}));
    ASSERT_OK(index.CreateReconcile("rec-1", raw.spec.id, true, kT0 + 501).status());
    ASSERT_OK_AND_ASSIGN(Reconcile rec, index.ClaimReconcile("host:1:ab", kT0 + 502, 0));
    rec.state = "succeeded";
    rec.files_seen = 50;
    rec.rows_added = 50;
    rec.report_json = R"({"mismatches":[],"temp_files":[]})";
    rec.finished_at_ms = kT0 + 503;
    ASSERT_OK(index.UpdateReconcile(rec, kT0 + 503));
    ASSERT_OK(index.CreateReconcile("rec-2", raw.spec.id, false, kT0 + 504).status());

    // Commands, delivered and pending; tokens; a lease and a long-poll.
    ASSERT_OK(index.EnqueueCommand(pc1.id, "sync", "raw", "run-0", kT0 + 600).status());
    ASSERT_OK(index.TakeCommands(pc1.id).status());
    ASSERT_OK(index.EnqueueCommand(pc1.id, "sync", "raw", "run-next", kT0 + 601).status());
    ASSERT_OK(index.CreateAdminToken("initial-admin", "admin", "tok-1", kT0 + 700).status());
    ASSERT_OK(index.CreateAdminToken("dashboard", "viewer", "tok-2", kT0 + 701, "user:ann").status());
    // Operator accounts: a user, a session, a throttle row, audit lines.
    ASSERT_OK_AND_ASSIGN(User ann, index.CreateUser("ann", "admin", "$argon2id$v=19$x", kT0 + 710));
    Session session;
    session.id_hash = "sess-1";
    session.user_id = ann.id;
    session.csrf_token = "csrf-1";
    session.created_at_ms = session.last_seen_at_ms = kT0 + 711;
    session.expires_at_ms = kT0 + 99'999;
    ASSERT_OK(index.CreateSession(session));
    ASSERT_OK(index.RecordLoginFailure("ip:10.0.0.9", kT0 + 712, LockoutPolicy{}).status());
    for (int i = 0; i < 3; ++i) {
      AuditEntry e;
      e.at_ms = kT0 + 720 + i;
      e.actor = "user:ann";
      e.action = "POST /api/v1/admin/runners/{runner}/approve";
      e.target = "/api/v1/admin/runners/pc1/approve";
      e.result = "200";
      ASSERT_OK(index.AppendAudit(e).status());
    }
    ASSERT_OK_AND_ASSIGN(bool leased, index.TryAcquireLease("janitor", "host:1:ab", 60'000, kT0));
    ASSERT_TRUE(leased);
    ASSERT_OK(index.RecordLongPoll(pc1.id, "host:1:ab:7", kT0 + 800));

    // Observability: health, logs, an edited default rule, a new rule, alerts, a channel, outbox.
    ASSERT_OK(index.RecordHeartbeat(pc1.id, "1.2.4", "syncing", "run-live", R"({"backlog_files":2})",
                                    kT0 + 2));
    std::vector<AgentLogRecord> logs;
    for (int i = 1; i <= 30; ++i) {
      AgentLogRecord r;
      r.seq = i;
      r.time_ms = kT0 + 900 + i;
      r.level = i % 3 ? "info" : "warn";
      r.message = absl::StrCat("line \"", i, "\" ü");
      r.fields_json = R"({"job":"raw"})";
      logs.push_back(r);
    }
    ASSERT_OK(index.AppendAgentLogs(pc1.id, logs, kT0 + 950).status());
    ASSERT_OK_AND_ASSIGN(std::vector<AlertRule> rules, index.ListAlertRules());
    AlertRule edited = rules.front();
    edited.params_json = R"({"minutes":3})";
    edited.enabled = false;
    ASSERT_OK(index.PutAlertRule(edited, kT0 + 960).status());
    AlertRule mine;
    mine.name = "mine";
    mine.kind = "runner_offline";
    mine.severity = "critical";
    mine.scope_kind = "runner";
    mine.scope = "pc1";
    ASSERT_OK_AND_ASSIGN(mine, index.PutAlertRule(mine, kT0 + 961));
    NotificationChannel hook;
    hook.name = "hook";
    hook.kind = "webhook";
    hook.config_json = R"({"url":"http://x/y"})";
    ASSERT_OK(index.PutNotificationChannel(hook, kT0 + 962).status());
    ASSERT_OK_AND_ASSIGN(auto fired, index.FireAlert(mine.id, "pc1", "pc1 offline", R"({"a":1})", kT0 + 963));
    ASSERT_OK(index.FireAlert(mine.id, "pc2", "pc2 offline", "{}", kT0 + 964).status());
    ASSERT_OK(index.ResolveAlert(fired.alert.id, kT0 + 965).status());
    ASSERT_OK(index.AckAlert(fired.alert.id, "alice", kT0 + 966).status());
  }

  void ExpectSameObservability(StateIndex& a, StateIndex& b) {
    auto rules = [](StateIndex& x) {
      std::string out;
      auto list = x.ListAlertRules();
      EXPECT_TRUE(list.ok());
      for (const auto& r : *list) {
        absl::StrAppend(&out, r.id, "|", r.name, "|", r.kind, "|", r.severity, "|", r.scope_kind, ":", r.scope,
                        "|", r.params_json, "|", r.enabled, "|", r.updated_at_ms, "\n");
      }
      return out;
    };
    EXPECT_EQ(rules(a), rules(b));
    EXPECT_NE(rules(b).find("mine|runner_offline|critical|runner:pc1"), std::string::npos);
    auto logs = [](StateIndex& x) {
      std::string out;
      AgentLogFilter f;
      f.limit = 1000;
      auto list = x.ListAgentLogs(f);
      EXPECT_TRUE(list.ok());
      for (const auto& r : *list) {
        absl::StrAppend(&out, r.id, "|", r.runner_name, "|", r.seq, "|", r.time_ms, "|", r.level, "|", r.message,
                        "|", r.fields_json, "\n");
      }
      return out;
    };
    EXPECT_EQ(logs(a), logs(b));
    auto alerts = [](StateIndex& x) {
      std::string out;
      auto list = x.ListAlerts(AlertFilter{});
      EXPECT_TRUE(list.ok());
      for (const auto& r : *list) {
        absl::StrAppend(&out, r.id, "|", r.rule_name, "|", r.subject, "|", r.details_json, "|", r.fired_at_ms, "|",
                        r.resolved_at_ms, "|", r.acknowledged_by, "\n");
      }
      auto due = x.DueDeliveries(kT0 + 10'000, 10, 100);
      EXPECT_TRUE(due.ok());
      for (const auto& d : *due) absl::StrAppend(&out, d.id, ":", d.transition, ":", d.channel.name, "\n");
      return out;
    };
    EXPECT_EQ(alerts(a), alerts(b));
    ASSERT_OK_AND_ASSIGN(Runner pc1, b.GetRunnerByName("pc1"));
    EXPECT_EQ(pc1.health_json, R"({"backlog_files":2})");
  }

  // Asserts that `a` and `b` answer every read alike.
  void ExpectSameThroughInterface(StateIndex& a, StateIndex& b) {
    ExpectSameObservability(a, b);
    ASSERT_OK_AND_ASSIGN(std::vector<Runner> runners, a.ListRunners());
    ASSERT_OK_AND_ASSIGN(std::vector<Runner> runners_b, b.ListRunners());
    EXPECT_EQ(DescribeAll(runners), DescribeAll(runners_b));
    ASSERT_EQ(runners.size(), 4u);
    for (const char* id : {"enr-1", "enr-1b", "enr-2", "enr-3", "enr-4"}) {
      ASSERT_OK_AND_ASSIGN(Enrollment e, a.GetEnrollment(id));
      ASSERT_OK_AND_ASSIGN(Enrollment e_b, b.GetEnrollment(id));
      EXPECT_EQ(Describe(e), Describe(e_b));
    }
    ASSERT_OK_AND_ASSIGN(Runner by_key, b.FindRunnerByKeyHash("key-1"));
    EXPECT_EQ(by_key.name, "pc1");

    ASSERT_OK_AND_ASSIGN(std::vector<Job> jobs, a.ListJobs(std::nullopt));
    ASSERT_OK_AND_ASSIGN(std::vector<Job> jobs_b, b.ListJobs(std::nullopt));
    EXPECT_EQ(DescribeAll(jobs), DescribeAll(jobs_b));
    ASSERT_EQ(jobs.size(), 1u);

    RunFilter all;
    all.limit = 1000;
    ASSERT_OK_AND_ASSIGN(std::vector<ds::Run> runs, a.ListRuns(all));
    ASSERT_OK_AND_ASSIGN(std::vector<ds::Run> runs_b, b.ListRuns(all));
    EXPECT_EQ(DescribeAll(runs), DescribeAll(runs_b));  // same order, ties included
    ASSERT_EQ(runs.size(), 5u);
    for (const ds::Run& run : runs) {
      std::vector<RunFile> files, files_b;
      for (std::string after;;) {
        ASSERT_OK_AND_ASSIGN(std::vector<RunFile> page,
                             a.ListRunFiles(run.summary.run_id, after, 1000));
        ASSERT_OK_AND_ASSIGN(std::vector<RunFile> page_b,
                             b.ListRunFiles(run.summary.run_id, after, 1000));
        files.insert(files.end(), page.begin(), page.end());
        files_b.insert(files_b.end(), page_b.begin(), page_b.end());
        if (page.size() < 1000) break;
        after = page.back().path;
      }
      EXPECT_EQ(DescribeAll(files), DescribeAll(files_b)) << run.summary.run_id;
    }

    for (const Job& job : jobs) {
      std::vector<SyncedFile> rows, rows_b;
      for (std::string after;;) {
        ASSERT_OK_AND_ASSIGN(std::vector<SyncedFile> page,
                             a.ListSyncedFiles(job.spec.id, after, 3000));
        ASSERT_OK_AND_ASSIGN(std::vector<SyncedFile> page_b,
                             b.ListSyncedFiles(job.spec.id, after, 3000));
        rows.insert(rows.end(), page.begin(), page.end());
        rows_b.insert(rows_b.end(), page_b.begin(), page_b.end());
        if (page.size() < 3000) break;
        after = page.back().path;
      }
      EXPECT_EQ(DescribeAll(rows), DescribeAll(rows_b));
      EXPECT_GT(rows.size(), 7'000u);
      ASSERT_OK_AND_ASSIGN(int64_t count_b, b.CountSyncedFiles(job.spec.id));
      EXPECT_EQ(count_b, static_cast<int64_t>(rows.size()));
    }

    ASSERT_OK_AND_ASSIGN(std::vector<Reconcile> recs, a.ListReconciles(std::nullopt, false, 100));
    ASSERT_OK_AND_ASSIGN(std::vector<Reconcile> recs_b, b.ListReconciles(std::nullopt, false, 100));
    EXPECT_EQ(DescribeAll(recs), DescribeAll(recs_b));
    ASSERT_EQ(recs.size(), 2u);

    for (const char* hash : {"tok-1", "tok-2"}) {
      ASSERT_OK_AND_ASSIGN(AdminToken t, a.FindAdminToken(hash));
      ASSERT_OK_AND_ASSIGN(AdminToken t_b, b.FindAdminToken(hash));
      EXPECT_EQ(Describe(t), Describe(t_b));
    }

    ASSERT_OK_AND_ASSIGN(Session session_b, b.FindSession("sess-1"));
    EXPECT_EQ(session_b.user_name, "ann");
    EXPECT_EQ(session_b.csrf_token, "csrf-1");
    ASSERT_OK_AND_ASSIGN(LoginThrottle throttle_b, b.GetLoginThrottle("ip:10.0.0.9"));
    EXPECT_EQ(throttle_b.failures, 1);
    ASSERT_OK_AND_ASSIGN(std::vector<AuditEntry> audit, a.ListAudit(AuditFilter{}));
    ASSERT_OK_AND_ASSIGN(std::vector<AuditEntry> audit_b, b.ListAudit(AuditFilter{}));
    ASSERT_EQ(audit_b.size(), 3u);
    EXPECT_EQ(audit_b[0].id, audit[0].id);
    EXPECT_EQ(audit_b[0].target, audit[0].target);
    ASSERT_OK_AND_ASSIGN(std::vector<User> users_b, b.ListUsers());
    ASSERT_EQ(users_b.size(), 1u);
    EXPECT_EQ(users_b[0].password_hash, "$argon2id$v=19$x");

    std::vector<int64_t> ids;
    for (const Runner& r : runners) ids.push_back(r.id);
    ASSERT_OK_AND_ASSIGN(std::vector<StateIndex::WaitingRunner> waiting,
                         a.CheckWaitingRunners(ids));
    ASSERT_OK_AND_ASSIGN(std::vector<StateIndex::WaitingRunner> waiting_b,
                         b.CheckWaitingRunners(ids));
    EXPECT_EQ(DescribeAll(waiting), DescribeAll(waiting_b));
    ASSERT_OK_AND_ASSIGN(bool stolen, b.TryAcquireLease("janitor", "other", 1'000, kT0 + 1));
    EXPECT_FALSE(stolen) << "the lease and its holder were copied";
    // Consumes the pending command on both sides, last.
    ASSERT_OK_AND_ASSIGN(std::vector<protocol::Command> cmds, a.TakeCommands(runners[0].id));
    ASSERT_OK_AND_ASSIGN(std::vector<protocol::Command> cmds_b, b.TakeCommands(runners[0].id));
    EXPECT_EQ(DescribeAll(cmds), DescribeAll(cmds_b));
    EXPECT_EQ(cmds.size(), 1u);
  }

  std::filesystem::path dir_;
  std::string sqlite_url_;
  TestPostgresDatabase pg_;
};

TEST_F(MigrateIndexTest, CopiesEveryTableAndTheCopyAnswersAlike) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<StateIndex> source, OpenStateIndex(sqlite_url_));
  ASSERT_OK(source->Migrate());
  Fill(*source);
  if (HasFatalFailure()) return;

  std::vector<std::string> progress;
  MigrateIndexOptions options;
  options.batch_rows = 1'000;  // several batches per big table
  options.progress = [&](const std::string& table, int64_t copied, int64_t total) {
    progress.push_back(absl::StrCat(table, ":", copied, "/", total));
  };
  ASSERT_OK_AND_ASSIGN(MigrateIndexReport report, MigrateIndex(sqlite_url_, pg_.url, options));
  EXPECT_EQ(report.schema_version, source->LatestKnownSchemaVersion());
  std::vector<std::string> order;
  for (const auto& [table, rows] : report.tables) order.push_back(table);
  // Parents before children.
  const auto pos = [&](const std::string& t) {
    return std::find(order.begin(), order.end(), t) - order.begin();
  };
  EXPECT_LT(pos("runners"), pos("jobs"));
  EXPECT_LT(pos("jobs"), pos("synced_files"));
  EXPECT_LT(pos("sync_runs"), pos("run_files"));
  EXPECT_LT(pos("runners"), pos("long_polls"));
  EXPECT_LT(static_cast<size_t>(pos("leases")), order.size());
  for (const auto& [table, rows] : report.tables) {
    if (table == "run_files") EXPECT_EQ(rows, 3 * 2'501 + 0);
    if (table == "runners") EXPECT_EQ(rows, 4);
  }
  EXPECT_THAT(progress, testing::Contains("run_files:1000/7503"));
  EXPECT_THAT(progress, testing::Contains("run_files:7503/7503"));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<StateIndex> target, OpenStateIndex(pg_.url));
  ExpectSameThroughInterface(*source, *target);
  if (HasFatalFailure()) return;

  // The copy is a working index: new rows get fresh ids past the copied ones.
  ASSERT_OK_AND_ASSIGN(std::vector<Runner> runners, target->ListRunners());
  int64_t max_runner = 0;
  for (const Runner& r : runners) max_runner = std::max(max_runner, r.id);
  ASSERT_OK_AND_ASSIGN(Runner pc5, target->RegisterRunner(Info("pc5"), "enr-5", "sec-5", kT0));
  EXPECT_GT(pc5.id, max_runner);
  ASSERT_OK_AND_ASSIGN(Job job, target->PutJob(pc5.id, Spec("new"), false, kT0));
  EXPECT_GT(job.spec.id,
            1);  // past the copied ids (the deleted job's id is free again, as in SQLite)
  ASSERT_OK_AND_ASSIGN(protocol::Command cmd,
                       target->EnqueueCommand(pc5.id, "sync", "new", "r", kT0));
  EXPECT_GT(cmd.id, 2);
  ASSERT_OK_AND_ASSIGN(AdminToken token, target->CreateAdminToken("x", "admin", "tok-3", kT0));
  EXPECT_EQ(token.id, 3);
  RunFilter newest;
  newest.limit = 2;
  ASSERT_OK_AND_ASSIGN(std::vector<ds::Run> runs, target->ListRuns(newest));
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].summary.run_id, "run-live");  // started kT0 + 400
  EXPECT_EQ(runs[1].summary.run_id, "run-2");     // the latest of the three tied at kT0 + 100
  // A run begun after the copy sorts before those ties: its seq is past the copied rowids.
  ASSERT_OK(target->BeginRun("run-new", pc5.id, job.spec.id, "schedule", kT0 + 100).status());
  ASSERT_OK_AND_ASSIGN(runs, target->ListRuns(newest));
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[1].summary.run_id, "run-new");
}

TEST_F(MigrateIndexTest, RefusesANonEmptyTargetAndChangesNothing) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<StateIndex> source, OpenStateIndex(sqlite_url_));
  ASSERT_OK(source->Migrate());
  ASSERT_OK(source->CreateAdminToken("initial-admin", "admin", "tok-1", kT0).status());
  ASSERT_OK(MigrateIndex(sqlite_url_, pg_.url).status());

  // Again: the target holds the first copy.
  absl::StatusOr<MigrateIndexReport> again = MigrateIndex(sqlite_url_, pg_.url);
  EXPECT_TRUE(absl::IsFailedPrecondition(again.status())) << again.status();
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("admin_tokens"));
  ASSERT_OK_AND_ASSIGN(std::string tokens,
                       QueryTestPostgresValue(pg_.name, "SELECT COUNT(*) FROM admin_tokens"));
  EXPECT_EQ(tokens, "1");
}

TEST_F(MigrateIndexTest, RefusesAnOlderSourceSchemaAndBadArguments) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<StateIndex> source, OpenStateIndex(sqlite_url_));
  ASSERT_OK(source->Migrate());
  source.reset();
  {
    SQLite::Database db(sqlite_url_.substr(7), SQLite::OPEN_READWRITE);
    db.exec(
        "DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM "
        "schema_migrations)");
  }
  absl::StatusOr<MigrateIndexReport> older = MigrateIndex(sqlite_url_, pg_.url);
  EXPECT_TRUE(absl::IsFailedPrecondition(older.status())) << older.status();
  EXPECT_THAT(std::string(older.status().message()), HasSubstr("start this version"));

  EXPECT_TRUE(absl::IsNotFound(
      MigrateIndex("sqlite:" + (dir_ / "missing.sqlite").string(), pg_.url).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(MigrateIndex(pg_.url, sqlite_url_).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(MigrateIndex(sqlite_url_, "sqlite:/tmp/x").status()));
}

TEST_F(MigrateIndexTest, UnreachableTargetIsUnavailableWithoutPassword) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<StateIndex> source, OpenStateIndex(sqlite_url_));
  ASSERT_OK(source->Migrate());
  const absl::Status st =
      MigrateIndex(sqlite_url_, "postgresql://ds:pw-s3cret@127.0.0.1:1/datasync").status();
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_THAT(std::string(st.message()), testing::Not(HasSubstr("pw-s3cret")));
}

}  // namespace
}  // namespace ds
