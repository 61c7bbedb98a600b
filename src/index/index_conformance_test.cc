// The StateIndex conformance suite: every implementation must pass it. It uses the interface only;
// an implementation joins by adding an IndexFactory to INSTANTIATE_TEST_SUITE_P at the bottom.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "index/state_index.h"
#include "index/testing/index_testing.h"
#include "index/testing/postgres_fixture.h"

namespace ds {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kT0 = 1'700'000'000'000;  // Unix ms

// Opens an empty, unmigrated index whose files (if any) live under `dir`, a fresh temp dir.
struct IndexFactory {
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<StateIndex>>(const std::filesystem::path& dir)> open;
};
// Test names and CTest show the backend's name instead of the factory's bytes.
void PrintTo(const IndexFactory& factory, std::ostream* os) { *os << factory.name; }

RegisterInfo Info(const std::string& name, const std::string& hostname = "host") {
  return RegisterInfo{name, hostname, "linux", "machine-" + name, "1.0.0"};
}

protocol::JobSpec Spec(const std::string& name) {
  protocol::JobSpec spec;
  spec.name = name;
  spec.source = "/data/" + name;
  spec.dest_prefix = name + "/";
  spec.includes = {"*.txt", "docs/**"};
  spec.excludes = {"tmp/**"};
  spec.interval_ms = 600'000;
  spec.settle_ms = 30'000;
  return spec;
}

RunFile Planned(const std::string& path, uint64_t size = 100) {
  RunFile f;
  f.path = path;
  f.planned_reason = "new";
  f.size = size;
  f.sha256 = "sha-" + path;
  return f;
}

protocol::FileResult Result(const std::string& path, const std::string& status,
                            uint64_t size = 100) {
  protocol::FileResult r;
  r.path = path;
  r.status = status;
  r.size = size;
  r.mtime_ns = 1'600'000'000'000'000'000;
  r.sha256 = "sha-" + path;
  if (status == "failed") r.error = "disk on fire";
  return r;
}

class StateIndexConformance : public testing::TestWithParam<IndexFactory> {
 protected:
  void SetUp() override {
    dir_ = MakeTestTempDir("index_test");
    ASSERT_FALSE(dir_.empty());
    ASSERT_OK_AND_ASSIGN(index_, GetParam().open(dir_));
    ASSERT_OK(index_->Migrate());
  }
  void TearDown() override {
    index_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A runner through the whole enrollment: approved, key "key-NAME" delivered.
  absl::StatusOr<Runner> ApprovedRunner(const std::string& name) {
    DS_ASSIGN_OR_RETURN(Runner r,
                        index_->RegisterRunner(Info(name), "enr-" + name, "secret-" + name, kT0));
    DS_RETURN_IF_ERROR(index_->TransitionRunner(r.id, "pending", "approved", kT0 + 1));
    DS_RETURN_IF_ERROR(index_->DeliverKey("enr-" + name, "key-" + name));
    return index_->GetRunnerById(r.id);
  }

  // An approved runner NAME with one job NAME-job and a running run `run_id` of it.
  absl::StatusOr<ds::Run> RunningRun(const std::string& name, const std::string& run_id,
                                     int64_t started_ms = kT0) {
    DS_ASSIGN_OR_RETURN(Runner r, ApprovedRunner(name));
    DS_ASSIGN_OR_RETURN(Job job, index_->PutJob(r.id, Spec(name + "-job"), false, kT0));
    return index_->BeginRun(run_id, r.id, job.spec.id, "schedule", started_ms);
  }

  std::filesystem::path dir_;
  std::unique_ptr<StateIndex> index_;
};

// ---- schema -------------------------------------------------------------------------------------

TEST_P(StateIndexConformance, MigrateIsIdempotent) {
  ASSERT_OK_AND_ASSIGN(int version, index_->SchemaVersion());
  EXPECT_EQ(version, index_->LatestKnownSchemaVersion());
  EXPECT_GE(version, 1);
  ASSERT_OK(index_->Migrate());
  ASSERT_OK_AND_ASSIGN(int again, index_->SchemaVersion());
  EXPECT_EQ(again, version);
  EXPECT_TRUE(index_->Ping().ok());
}

// ---- runners and enrollment ---------------------------------------------------------------------

TEST_P(StateIndexConformance, EnrollmentFlowDeliversKeyOnce) {
  ASSERT_OK_AND_ASSIGN(Runner r,
                       index_->RegisterRunner(Info("pc1", "host1"), "enr-1", "secret-1", kT0));
  EXPECT_GT(r.id, 0);
  EXPECT_EQ(r.name, "pc1");
  EXPECT_EQ(r.status, "pending");
  EXPECT_EQ(r.hostname, "host1");
  EXPECT_EQ(r.os, "linux");
  EXPECT_EQ(r.machine_id, "machine-pc1");
  EXPECT_EQ(r.agent_version, "1.0.0");
  EXPECT_FALSE(r.has_key);
  EXPECT_EQ(r.created_at_ms, kT0);
  EXPECT_EQ(r.approved_at_ms, 0);

  ASSERT_OK_AND_ASSIGN(Enrollment e, index_->GetEnrollment("enr-1"));
  EXPECT_EQ(e.id, "enr-1");
  EXPECT_EQ(e.runner_id, r.id);
  EXPECT_EQ(e.secret_hash, "secret-1");
  EXPECT_EQ(e.status, "pending");
  EXPECT_EQ(e.created_at_ms, kT0);

  EXPECT_TRUE(absl::IsFailedPrecondition(index_->DeliverKey("enr-1", "key-1")));

  ASSERT_OK(index_->TransitionRunner(r.id, "pending", "approved", kT0 + 5));
  ASSERT_OK_AND_ASSIGN(e, index_->GetEnrollment("enr-1"));
  EXPECT_EQ(e.status, "approved");
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(r.id));
  EXPECT_EQ(r.status, "approved");
  EXPECT_EQ(r.approved_at_ms, kT0 + 5);
  EXPECT_FALSE(r.has_key);

  ASSERT_OK(index_->DeliverKey("enr-1", "key-1"));
  ASSERT_OK_AND_ASSIGN(e, index_->GetEnrollment("enr-1"));
  EXPECT_EQ(e.status, "delivered");
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->DeliverKey("enr-1", "key-2")));

  ASSERT_OK_AND_ASSIGN(Runner found, index_->FindRunnerByKeyHash("key-1"));
  EXPECT_EQ(found.id, r.id);
  EXPECT_TRUE(found.has_key);
  EXPECT_TRUE(absl::IsNotFound(index_->FindRunnerByKeyHash("key-2").status()));

  EXPECT_TRUE(absl::IsNotFound(index_->GetEnrollment("no-such").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->DeliverKey("no-such", "key-3")));
}

TEST_P(StateIndexConformance, RunnerGroupsAreCreatedOnUseAndShownOnRunnerRows) {
  ASSERT_OK_AND_ASSIGN(Runner a, ApprovedRunner("pc-a"));
  ASSERT_OK_AND_ASSIGN(Runner b, ApprovedRunner("pc-b"));
  EXPECT_EQ(a.group, "");
  ASSERT_OK(index_->SetRunnerGroup(a.id, "lab2", kT0));
  ASSERT_OK(index_->SetRunnerGroup(b.id, "lab2", kT0));  // the existing group, not a second one
  EXPECT_EQ(index_->GetRunnerById(a.id)->group, "lab2");
  EXPECT_EQ(index_->GetRunnerByName("pc-b")->group, "lab2");
  ASSERT_OK(index_->SetRunnerGroup(b.id, "lab3", kT0));
  ASSERT_OK(index_->SetRunnerGroup(a.id, "", kT0));
  ASSERT_OK_AND_ASSIGN(std::vector<Runner> all, index_->ListRunners());
  std::map<std::string, std::string> groups;
  for (const Runner& r : all) groups[r.name] = r.group;
  EXPECT_EQ(groups["pc-a"], "");
  EXPECT_EQ(groups["pc-b"], "lab3");
  EXPECT_TRUE(absl::IsNotFound(index_->SetRunnerGroup(987654, "lab2", kT0)));
}

TEST_P(StateIndexConformance, SecondRegistrationOfPendingNameDisplacesNothing) {
  RegisterInfo first_info = Info("pc1", "lab-pc");
  first_info.address = "10.0.0.5";
  ASSERT_OK_AND_ASSIGN(Runner first, index_->RegisterRunner(first_info, "enr-a", "sa", kT0));
  RegisterInfo second_info = Info("pc1", "intruder");
  second_info.address = "203.0.113.9";
  ASSERT_OK_AND_ASSIGN(Runner second, index_->RegisterRunner(second_info, "enr-b", "sb", kT0 + 1));
  EXPECT_EQ(second.id, first.id);
  EXPECT_EQ(second.status, "pending");
  EXPECT_EQ(second.hostname, "lab-pc");  // the newcomer does not rewrite the runner row
  ASSERT_OK_AND_ASSIGN(std::vector<Runner> runners, index_->ListRunners());
  EXPECT_EQ(runners.size(), 1u);

  // Both wait, oldest first, each with where it came from.
  ASSERT_OK_AND_ASSIGN(std::vector<Enrollment> pending, index_->ListPendingEnrollments(first.id));
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].id, "enr-a");
  EXPECT_EQ(pending[0].hostname, "lab-pc");
  EXPECT_EQ(pending[0].address, "10.0.0.5");
  EXPECT_EQ(pending[0].created_at_ms, kT0);
  EXPECT_EQ(pending[1].id, "enr-b");
  EXPECT_EQ(pending[1].address, "203.0.113.9");
  EXPECT_EQ(pending[1].machine_id, "machine-pc1");
  ASSERT_OK_AND_ASSIGN(Enrollment b, index_->GetEnrollment("enr-b"));
  EXPECT_EQ(b.address, "203.0.113.9");

  // The operator must choose: no blanket approval with two candidates.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      index_->TransitionRunner(first.id, "pending", "approved", kT0 + 2)));
  EXPECT_TRUE(absl::IsNotFound(index_->DecideEnrollment(first.id, "enr-zz", true, kT0 + 2)));
  ASSERT_OK(index_->DecideEnrollment(first.id, "enr-a", true, kT0 + 2));
  ASSERT_OK_AND_ASSIGN(Runner approved, index_->GetRunnerById(first.id));
  EXPECT_EQ(approved.status, "approved");
  EXPECT_EQ(approved.hostname, "lab-pc");
  EXPECT_FALSE(approved.pending_enrollment);
  ASSERT_OK_AND_ASSIGN(b, index_->GetEnrollment("enr-b"));
  EXPECT_EQ(b.status, "rejected");
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->DeliverKey("enr-b", "key-b")));
  ASSERT_OK(index_->DeliverKey("enr-a", "key-a"));
  EXPECT_TRUE(
      absl::IsFailedPrecondition(index_->DecideEnrollment(first.id, "enr-b", true, kT0 + 3)));
}

TEST_P(StateIndexConformance, RejectingOneEnrollmentLeavesTheOthersPending) {
  ASSERT_OK_AND_ASSIGN(Runner r, index_->RegisterRunner(Info("pc1", "a"), "enr-a", "sa", kT0));
  ASSERT_OK(index_->RegisterRunner(Info("pc1", "b"), "enr-b", "sb", kT0 + 1).status());
  ASSERT_OK(index_->DecideEnrollment(r.id, "enr-b", false, kT0 + 2));
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(r.id));
  EXPECT_EQ(r.status, "pending");
  ASSERT_OK_AND_ASSIGN(std::vector<Enrollment> pending, index_->ListPendingEnrollments(r.id));
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].id, "enr-a");
  // Rejecting the last one rejects the runner.
  ASSERT_OK(index_->DecideEnrollment(r.id, "enr-a", false, kT0 + 3));
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(r.id));
  EXPECT_EQ(r.status, "rejected");
}

TEST_P(StateIndexConformance, DeleteRunnerFreesARejectedName) {
  ASSERT_OK_AND_ASSIGN(Runner r, index_->RegisterRunner(Info("pc1"), "enr-1", "s", kT0));
  ASSERT_OK(index_->DecideEnrollment(r.id, "enr-1", false, kT0 + 1));
  EXPECT_TRUE(
      absl::IsAlreadyExists(index_->RegisterRunner(Info("pc1"), "enr-2", "s", kT0 + 2).status()));
  ASSERT_OK(index_->DeleteRunner(r.id));
  EXPECT_TRUE(absl::IsNotFound(index_->GetEnrollment("enr-1").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->DeleteRunner(r.id)));
  ASSERT_OK_AND_ASSIGN(Runner again, index_->RegisterRunner(Info("pc1"), "enr-2", "s", kT0 + 3));
  EXPECT_EQ(again.status, "pending");

  // Approved: revoke first. With jobs: delete them first (the message names them).
  ASSERT_OK_AND_ASSIGN(Runner approved, ApprovedRunner("pc2"));
  absl::Status st = index_->DeleteRunner(approved.id);
  EXPECT_TRUE(absl::IsFailedPrecondition(st));
  EXPECT_THAT(std::string(st.message()), HasSubstr("revoke it first"));
  ASSERT_OK(index_->PutJob(approved.id, Spec("daq"), false, kT0).status());
  ASSERT_OK(index_->TransitionRunner(approved.id, "approved", "revoked", kT0 + 4));
  st = index_->DeleteRunner(approved.id);
  EXPECT_TRUE(absl::IsFailedPrecondition(st));
  EXPECT_THAT(std::string(st.message()), HasSubstr("daq"));
  ASSERT_OK_AND_ASSIGN(auto jobs, index_->ListJobs(approved.id));
  ASSERT_OK(index_->DeleteJob(jobs[0].spec.id));
  ASSERT_OK(index_->DeleteRunner(approved.id));

  // A job import's runner has no enrollment until its agent registers.
  ASSERT_OK_AND_ASSIGN(Runner imported, index_->CreatePendingRunner("pc3", kT0));
  EXPECT_EQ(imported.status, "pending");
  EXPECT_FALSE(imported.pending_enrollment);
  EXPECT_TRUE(absl::IsAlreadyExists(index_->CreatePendingRunner("pc3", kT0).status()));
  // Its agent's registration shows on the row; a later one does not rewrite it.
  ASSERT_OK_AND_ASSIGN(imported,
                       index_->RegisterRunner(Info("pc3", "lab-pc"), "enr-3a", "s", kT0 + 1));
  EXPECT_EQ(imported.hostname, "lab-pc");
  ASSERT_OK_AND_ASSIGN(imported,
                       index_->RegisterRunner(Info("pc3", "other"), "enr-3b", "s", kT0 + 2));
  EXPECT_EQ(imported.hostname, "lab-pc");
}

TEST_P(StateIndexConformance, RegisterOnEnrolledNameIsAReplacementRequest) {
  ASSERT_OK_AND_ASSIGN(Runner approved, ApprovedRunner("pc1"));
  // A replaced PC registers under the same name: only a pending enrollment is added.
  ASSERT_OK_AND_ASSIGN(Runner same,
                       index_->RegisterRunner(Info("pc1"), "enr-again", "s", kT0 + 10));
  EXPECT_EQ(same.id, approved.id);
  EXPECT_EQ(same.status, "approved");
  EXPECT_TRUE(same.has_key);
  EXPECT_FALSE(approved.pending_enrollment);
  EXPECT_TRUE(same.pending_enrollment);  // the replacement request shows on the runner
  ASSERT_OK_AND_ASSIGN(Enrollment e, index_->GetEnrollment("enr-again"));
  EXPECT_EQ(e.status, "pending");
  EXPECT_EQ(e.runner_id, approved.id);
  ASSERT_OK_AND_ASSIGN(Enrollment pending, index_->PendingEnrollmentByName("pc1"));
  EXPECT_EQ(pending.id, "enr-again");
  // The old key keeps working until an operator replaces the machine.
  ASSERT_OK_AND_ASSIGN(Runner by_key, index_->FindRunnerByKeyHash("key-pc1"));
  EXPECT_EQ(by_key.id, approved.id);

  ASSERT_OK_AND_ASSIGN(Runner r, index_->RegisterRunner(Info("pc2"), "enr-2", "s", kT0));
  ASSERT_OK(index_->TransitionRunner(r.id, "pending", "rejected", kT0 + 1));
  EXPECT_TRUE(
      absl::IsAlreadyExists(index_->RegisterRunner(Info("pc2"), "enr-3", "s", kT0).status()));

  // An enrollment id is unique across runners.
  EXPECT_TRUE(
      absl::IsAlreadyExists(index_->RegisterRunner(Info("pc3"), "enr-2", "s", kT0).status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetRunnerByName("pc3").status()));
}

TEST_P(StateIndexConformance, ReplaceRunnerMachineKeepsJobsAndRowsAndSwapsTheKey) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a.dat")}, 1, 10));
  ASSERT_OK(index_->RecordResults("run-1", {Result("a.dat", "uploaded")}, kT0 + 5).status());
  RegisterInfo fresh = Info("pc1");
  fresh.hostname = "new-host";
  ASSERT_OK(index_->RegisterRunner(fresh, "enr-new", "s2", kT0 + 10).status());
  ASSERT_OK(index_->ReplaceRunnerMachine(run.runner_id, "enr-new", kT0 + 20));
  EXPECT_TRUE(absl::IsNotFound(index_->FindRunnerByKeyHash("key-pc1").status()));
  ASSERT_OK(index_->DeliverKey("enr-new", "key-new"));
  ASSERT_OK_AND_ASSIGN(Runner r, index_->FindRunnerByKeyHash("key-new"));
  EXPECT_EQ(r.id, run.runner_id);
  EXPECT_EQ(r.hostname, "new-host");
  EXPECT_FALSE(r.pending_enrollment);
  ASSERT_OK_AND_ASSIGN(auto jobs, index_->ListJobs(r.id));
  ASSERT_EQ(jobs.size(), 1u);
  ASSERT_OK_AND_ASSIGN(int64_t rows, index_->CountSyncedFiles(jobs[0].spec.id));
  EXPECT_EQ(rows, 1);
  // A second replacement with the same (now approved) enrollment is refused.
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->ReplaceRunnerMachine(r.id, "enr-new", kT0 + 30)));
  // Binding another runner's pending registration removes that pending runner.
  ASSERT_OK_AND_ASSIGN(Runner other, index_->RegisterRunner(Info("pc9"), "enr-9", "s", kT0));
  ASSERT_OK(index_->ReplaceRunnerMachine(r.id, "enr-9", kT0 + 40));
  EXPECT_TRUE(absl::IsNotFound(index_->GetRunnerById(other.id).status()));
  EXPECT_TRUE(absl::IsNotFound(index_->FindRunnerByKeyHash("key-new").status()));
}

TEST_P(StateIndexConformance, PruneStalePendingRemovesOnlyRegistrationsNobodyActedOn) {
  const int64_t day = 86'400'000;
  ASSERT_OK(index_->RegisterRunner(Info("stale"), "enr-stale", "s", kT0).status());
  ASSERT_OK_AND_ASSIGN(Runner again, index_->RegisterRunner(Info("again"), "enr-a1", "s", kT0));
  ASSERT_OK(index_->RegisterRunner(Info("again"), "enr-a2", "s", kT0 + 9 * day).status());
  ASSERT_OK_AND_ASSIGN(Runner imported, index_->RegisterRunner(Info("imported"), "enr-i", "s", kT0));
  ASSERT_OK(index_->PutJob(imported.id, Spec("job"), false, kT0).status());
  ASSERT_OK_AND_ASSIGN(Runner enrolled, ApprovedRunner("enrolled"));
  ASSERT_OK(index_->RegisterRunner(Info("enrolled"), "enr-replace", "s", kT0 + 1).status());
  ASSERT_OK(index_->RegisterRunner(Info("stale"), "enr-stale-2", "s", kT0 + 1).status());
  ASSERT_OK_AND_ASSIGN(int64_t n, index_->PruneStalePending(kT0 + 7 * day));
  // The runner "stale" (with both its enrollments), the older registration of "again", the
  // registration on "imported" (the runner stays: it has a job) and the replacement request of
  // "enrolled".
  EXPECT_EQ(n, 4);
  EXPECT_TRUE(absl::IsNotFound(index_->GetEnrollment("enr-i").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetRunnerByName("stale").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetEnrollment("enr-stale").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetEnrollment("enr-stale-2").status()));
  EXPECT_TRUE(index_->GetRunnerById(again.id).ok());  // registered again since
  EXPECT_TRUE(absl::IsNotFound(index_->GetEnrollment("enr-a1").status()));
  ASSERT_OK_AND_ASSIGN(std::vector<Enrollment> again_pending,
                       index_->ListPendingEnrollments(again.id));
  ASSERT_EQ(again_pending.size(), 1u);
  EXPECT_EQ(again_pending[0].id, "enr-a2");
  EXPECT_TRUE(index_->GetRunnerById(imported.id).ok());  // has a job
  ASSERT_OK_AND_ASSIGN(Runner kept, index_->GetRunnerById(enrolled.id));
  EXPECT_EQ(kept.status, "approved");
  EXPECT_FALSE(kept.pending_enrollment);
  EXPECT_TRUE(index_->FindRunnerByKeyHash("key-enrolled").ok());
  ASSERT_OK_AND_ASSIGN(n, index_->PruneStalePending(kT0 + 7 * day));
  EXPECT_EQ(n, 0);
}

TEST_P(StateIndexConformance, TransitionRunnerIsCompareAndSet) {
  ASSERT_OK_AND_ASSIGN(Runner r, index_->RegisterRunner(Info("pc1"), "enr-1", "s", kT0));
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->TransitionRunner(r.id, "approved", "revoked", 1)));
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(r.id));
  EXPECT_EQ(r.status, "pending");
  EXPECT_TRUE(absl::IsNotFound(index_->TransitionRunner(r.id + 100, "pending", "approved", 1)));
  EXPECT_TRUE(absl::IsInvalidArgument(index_->TransitionRunner(r.id, "pending", "bogus", 1)));

  ASSERT_OK(index_->TransitionRunner(r.id, "pending", "rejected", kT0 + 1));
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(r.id));
  EXPECT_EQ(r.status, "rejected");
  EXPECT_EQ(r.approved_at_ms, 0);
  ASSERT_OK_AND_ASSIGN(Enrollment e, index_->GetEnrollment("enr-1"));
  EXPECT_EQ(e.status, "rejected");
  // A second operator acting on the stale view loses.
  EXPECT_TRUE(
      absl::IsFailedPrecondition(index_->TransitionRunner(r.id, "pending", "approved", kT0 + 2)));
}

TEST_P(StateIndexConformance, RevokeClearsKey) {
  ASSERT_OK_AND_ASSIGN(Runner r, ApprovedRunner("pc1"));
  ASSERT_TRUE(r.has_key);
  ASSERT_OK(index_->TransitionRunner(r.id, "approved", "revoked", kT0 + 10));
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(r.id));
  EXPECT_EQ(r.status, "revoked");
  EXPECT_FALSE(r.has_key);
  EXPECT_TRUE(absl::IsNotFound(index_->FindRunnerByKeyHash("key-pc1").status()));
}

TEST_P(StateIndexConformance, RevokedBeforeDeliveryGetsNoKey) {
  ASSERT_OK_AND_ASSIGN(Runner r, index_->RegisterRunner(Info("pc1"), "enr-1", "s", kT0));
  ASSERT_OK(index_->TransitionRunner(r.id, "pending", "approved", kT0 + 1));
  ASSERT_OK(index_->TransitionRunner(r.id, "approved", "revoked", kT0 + 2));
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->DeliverKey("enr-1", "key-1")));
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(r.id));
  EXPECT_FALSE(r.has_key);
  EXPECT_TRUE(absl::IsNotFound(index_->FindRunnerByKeyHash("key-1").status()));
}

TEST_P(StateIndexConformance, LooksUpRunners) {
  ASSERT_OK_AND_ASSIGN(Runner b, index_->RegisterRunner(Info("bravo"), "enr-b", "s", kT0));
  ASSERT_OK_AND_ASSIGN(Runner a, index_->RegisterRunner(Info("alpha"), "enr-a", "s", kT0));
  ASSERT_OK_AND_ASSIGN(std::vector<Runner> runners, index_->ListRunners());
  ASSERT_EQ(runners.size(), 2u);
  EXPECT_EQ(runners[0].name, "alpha");
  EXPECT_EQ(runners[1].name, "bravo");
  ASSERT_OK_AND_ASSIGN(Runner by_name, index_->GetRunnerByName("bravo"));
  EXPECT_EQ(by_name.id, b.id);
  ASSERT_OK_AND_ASSIGN(Runner by_id, index_->GetRunnerById(a.id));
  EXPECT_EQ(by_id.name, "alpha");
  EXPECT_TRUE(absl::IsNotFound(index_->GetRunnerByName("charlie").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetRunnerById(a.id + b.id + 1).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(index_->RegisterRunner(Info(""), "e", "s", kT0).status()));
}

TEST_P(StateIndexConformance, RecordsHeartbeat) {
  ASSERT_OK_AND_ASSIGN(Runner r, ApprovedRunner("pc1"));
  ASSERT_OK(index_->RecordHeartbeat(r.id, "1.1.0", "syncing", "run-7", "", kT0 + 60'000));
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(r.id));
  EXPECT_EQ(r.agent_version, "1.1.0");
  EXPECT_EQ(r.runtime_state, "syncing");
  EXPECT_EQ(r.current_run, "run-7");
  EXPECT_EQ(r.last_heartbeat_at_ms, kT0 + 60'000);
  EXPECT_TRUE(absl::IsNotFound(index_->RecordHeartbeat(r.id + 1, "1.1.0", "idle", "", "", kT0)));
}

// ---- jobs ---------------------------------------------------------------------------------------

TEST_P(StateIndexConformance, PutJobCreatesAndRefusesDuplicate) {
  ASSERT_OK_AND_ASSIGN(Runner r, ApprovedRunner("pc1"));
  EXPECT_EQ(r.jobs_version, 0);
  ASSERT_OK_AND_ASSIGN(Job job, index_->PutJob(r.id, Spec("photos"), false, kT0 + 3));
  EXPECT_GT(job.spec.id, 0);
  EXPECT_EQ(job.runner_id, r.id);
  EXPECT_EQ(job.runner_name, "pc1");
  EXPECT_EQ(job.spec.name, "photos");
  EXPECT_EQ(job.spec.source, "/data/photos");
  EXPECT_EQ(job.spec.dest_prefix, "photos/");
  EXPECT_THAT(job.spec.includes, ElementsAre("*.txt", "docs/**"));
  EXPECT_THAT(job.spec.excludes, ElementsAre("tmp/**"));
  EXPECT_EQ(job.spec.interval_ms, 600'000);
  EXPECT_EQ(job.spec.settle_ms, 30'000);
  EXPECT_TRUE(job.spec.enabled);
  EXPECT_EQ(job.created_at_ms, kT0 + 3);
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(r.id));
  EXPECT_EQ(r.jobs_version, 1);

  protocol::JobSpec other = Spec("photos");
  other.source = "/elsewhere";
  EXPECT_TRUE(absl::IsAlreadyExists(index_->PutJob(r.id, other, false, kT0).status()));
  ASSERT_OK_AND_ASSIGN(Job unchanged, index_->GetJob(r.id, "photos"));
  EXPECT_EQ(unchanged.spec.source, "/data/photos");
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(r.id));
  EXPECT_EQ(r.jobs_version, 1);

  EXPECT_TRUE(absl::IsNotFound(index_->PutJob(r.id + 1, Spec("x"), false, kT0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(index_->PutJob(r.id, Spec(""), false, kT0).status()));
}

TEST_P(StateIndexConformance, PutJobReplaceKeepsIdAndIndexRows) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a.txt")}, 1, 100));
  ASSERT_OK(index_->RecordResults("run-1", {Result("a.txt", "uploaded")}, kT0).status());

  protocol::JobSpec spec = Spec("pc1-job");
  spec.source = "/new/source";
  spec.includes = {};
  spec.excludes = {"*.bak", "cache/**"};
  spec.enabled = false;
  ASSERT_OK_AND_ASSIGN(Job replaced, index_->PutJob(run.runner_id, spec, true, kT0 + 50));
  EXPECT_EQ(replaced.spec.id, run.job_id);
  EXPECT_EQ(replaced.spec.source, "/new/source");
  EXPECT_THAT(replaced.spec.includes, IsEmpty());
  EXPECT_THAT(replaced.spec.excludes, ElementsAre("*.bak", "cache/**"));
  EXPECT_FALSE(replaced.spec.enabled);
  EXPECT_EQ(replaced.created_at_ms, kT0);
  ASSERT_OK_AND_ASSIGN(Job fetched, index_->GetJobById(run.job_id));
  EXPECT_EQ(fetched.spec.source, "/new/source");
  ASSERT_OK_AND_ASSIGN(Runner r, index_->GetRunnerById(run.runner_id));
  EXPECT_EQ(r.jobs_version, 2);
  ASSERT_OK_AND_ASSIGN(int64_t synced, index_->CountSyncedFiles(run.job_id));
  EXPECT_EQ(synced, 1);

  // replace=true on a new name creates it.
  ASSERT_OK_AND_ASSIGN(Job created, index_->PutJob(run.runner_id, Spec("fresh"), true, kT0));
  EXPECT_NE(created.spec.id, run.job_id);
}

TEST_P(StateIndexConformance, ListsAndGetsJobs) {
  ASSERT_OK_AND_ASSIGN(Runner b, ApprovedRunner("bravo"));
  ASSERT_OK_AND_ASSIGN(Runner a, ApprovedRunner("alpha"));
  ASSERT_OK(index_->PutJob(b.id, Spec("zeta"), false, kT0).status());
  ASSERT_OK(index_->PutJob(b.id, Spec("eta"), false, kT0).status());
  ASSERT_OK_AND_ASSIGN(Job a_job, index_->PutJob(a.id, Spec("zeta"), false, kT0));

  ASSERT_OK_AND_ASSIGN(std::vector<Job> all, index_->ListJobs(std::nullopt));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].runner_name + "/" + all[0].spec.name, "alpha/zeta");
  EXPECT_EQ(all[1].runner_name + "/" + all[1].spec.name, "bravo/eta");
  EXPECT_EQ(all[2].runner_name + "/" + all[2].spec.name, "bravo/zeta");

  ASSERT_OK_AND_ASSIGN(std::vector<Job> of_b, index_->ListJobs(b.id));
  ASSERT_EQ(of_b.size(), 2u);
  EXPECT_EQ(of_b[0].spec.name, "eta");

  ASSERT_OK_AND_ASSIGN(Job got, index_->GetJob(a.id, "zeta"));
  EXPECT_EQ(got.spec.id, a_job.spec.id);
  EXPECT_EQ(got.runner_name, "alpha");
  EXPECT_TRUE(absl::IsNotFound(index_->GetJob(a.id, "eta").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetJobById(a_job.spec.id + 100).status()));
}

TEST_P(StateIndexConformance, DeleteJobKeepsRunHistory) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a.txt"), Planned("b.txt")}, 2, 200));
  ASSERT_OK(index_->RecordResults("run-1", {Result("a.txt", "uploaded")}, kT0).status());
  ASSERT_OK(index_->FinishRun("run-1", "partial", "", kT0 + 1).status());

  ASSERT_OK(index_->DeleteJob(run.job_id));
  EXPECT_TRUE(absl::IsNotFound(index_->GetJobById(run.job_id).status()));
  ASSERT_OK_AND_ASSIGN(std::vector<SyncedFile> left,
                       index_->LookupSyncedFiles(run.job_id, {"a.txt"}));
  EXPECT_THAT(left, IsEmpty());
  ASSERT_OK_AND_ASSIGN(ds::Run kept, index_->GetRun("run-1"));
  EXPECT_EQ(kept.summary.job, "pc1-job");
  EXPECT_EQ(kept.job_id, 0);
  EXPECT_EQ(kept.summary.files_uploaded, 1u);
  ASSERT_OK_AND_ASSIGN(std::vector<RunFile> files, index_->ListRunFiles("run-1", "", 100));
  EXPECT_THAT(files, IsEmpty());
  ASSERT_OK_AND_ASSIGN(Runner r, index_->GetRunnerById(run.runner_id));
  EXPECT_EQ(r.jobs_version, 2);
  EXPECT_TRUE(absl::IsNotFound(index_->DeleteJob(run.job_id)));
}

// ---- runs ---------------------------------------------------------------------------------------

TEST_P(StateIndexConformance, BeginRunIsIdempotent) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1", kT0 + 7));
  EXPECT_EQ(run.summary.run_id, "run-1");
  EXPECT_EQ(run.summary.runner, "pc1");
  EXPECT_EQ(run.summary.job, "pc1-job");
  EXPECT_EQ(run.summary.state, "running");
  EXPECT_EQ(run.summary.trigger, "schedule");
  EXPECT_EQ(run.summary.started_at_ms, kT0 + 7);
  EXPECT_EQ(run.summary.finished_at_ms, 0);

  ASSERT_OK_AND_ASSIGN(ds::Run again,
                       index_->BeginRun("run-1", run.runner_id, run.job_id, "schedule", kT0 + 99));
  EXPECT_EQ(again.summary.started_at_ms, kT0 + 7);
  EXPECT_EQ(again.job_id, run.job_id);

  ASSERT_OK_AND_ASSIGN(Job other, index_->PutJob(run.runner_id, Spec("other"), false, kT0));
  EXPECT_TRUE(absl::IsFailedPrecondition(
      index_->BeginRun("run-1", run.runner_id, other.spec.id, "schedule", kT0).status()));

  ASSERT_OK(index_->FinishRun("run-1", "succeeded", "", kT0 + 8).status());
  EXPECT_TRUE(absl::IsFailedPrecondition(
      index_->BeginRun("run-1", run.runner_id, run.job_id, "schedule", kT0).status()));

  ASSERT_OK_AND_ASSIGN(Runner stranger, ApprovedRunner("pc2"));
  EXPECT_TRUE(absl::IsInvalidArgument(
      index_->BeginRun("run-2", stranger.id, run.job_id, "schedule", kT0).status()));
  EXPECT_TRUE(absl::IsNotFound(
      index_->BeginRun("run-3", run.runner_id, other.spec.id + 100, "schedule", kT0).status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetRun("run-2").status()));
}

TEST_P(StateIndexConformance, RecordPlannedKeepsPlannedCount) {
  ASSERT_OK(RunningRun("pc1", "run-1").status());
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a"), Planned("b"), Planned("c")}, 10, 1000));
  ASSERT_OK_AND_ASSIGN(ds::Run run, index_->GetRun("run-1"));
  EXPECT_EQ(run.summary.files_planned, 3u);
  EXPECT_EQ(run.summary.files_seen, 10u);
  EXPECT_EQ(run.summary.bytes_seen, 1000u);

  RunFile changed = Planned("b", 555);
  changed.planned_reason = "changed";
  ASSERT_OK(index_->RecordPlanned("run-1", {changed, Planned("c"), Planned("d")}, -1, -1));
  ASSERT_OK_AND_ASSIGN(run, index_->GetRun("run-1"));
  EXPECT_EQ(run.summary.files_planned, 4u);
  EXPECT_EQ(run.summary.files_seen, 10u);
  EXPECT_EQ(run.summary.bytes_seen, 1000u);

  ASSERT_OK_AND_ASSIGN(std::vector<RunFile> files, index_->ListRunFiles("run-1", "", 100));
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files[1].path, "b");
  EXPECT_EQ(files[1].planned_reason, "changed");
  EXPECT_EQ(files[1].size, 555u);
  EXPECT_EQ(files[1].sha256, "sha-b");
  EXPECT_EQ(files[1].result, "");

  // Counted per path: twice in one batch counts once; a row a skipped result left (not planned)
  // counts when it is planned.
  ASSERT_OK(index_->RecordResults("run-1", {Result("f", "skipped", 0)}, 1000).status());
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("e"), Planned("e"), Planned("f")}, -1, -1));
  ASSERT_OK_AND_ASSIGN(run, index_->GetRun("run-1"));
  EXPECT_EQ(run.summary.files_planned, 6u);

  RunFile unplanned = Planned("e");
  unplanned.planned_reason = "";
  EXPECT_TRUE(absl::IsInvalidArgument(index_->RecordPlanned("run-1", {unplanned}, -1, -1)));
  EXPECT_TRUE(absl::IsNotFound(index_->RecordPlanned("run-x", {Planned("a")}, 1, 1)));
}

TEST_P(StateIndexConformance, RecordResultsIsIdempotent) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a"), Planned("b"), Planned("c")}, 4, 400));
  protocol::FileResult a = Result("a", "uploaded", 120);
  a.kept_version = "versions/a.1";
  const std::vector<protocol::FileResult> batch = {a, Result("b", "failed"), Result("c", "skipped"),
                                                   Result("unplanned", "skipped")};
  ASSERT_OK_AND_ASSIGN(uint64_t applied, index_->RecordResults("run-1", batch, kT0 + 100));
  EXPECT_EQ(applied, 4u);
  ASSERT_OK_AND_ASSIGN(applied, index_->RecordResults("run-1", batch, kT0 + 200));
  EXPECT_EQ(applied, 0u);

  ASSERT_OK_AND_ASSIGN(ds::Run after, index_->GetRun("run-1"));
  EXPECT_EQ(after.summary.files_planned, 3u);
  EXPECT_EQ(after.summary.files_uploaded, 1u);
  EXPECT_EQ(after.summary.files_failed, 1u);
  EXPECT_EQ(after.summary.files_skipped, 2u);
  EXPECT_EQ(after.summary.bytes_uploaded, 120u);

  ASSERT_OK_AND_ASSIGN(std::vector<SyncedFile> synced,
                       index_->LookupSyncedFiles(run.job_id, {"a", "b", "nope"}));
  ASSERT_EQ(synced.size(), 1u);
  EXPECT_EQ(synced[0].job_id, run.job_id);
  EXPECT_EQ(synced[0].path, "a");
  EXPECT_EQ(synced[0].size, 120u);
  EXPECT_EQ(synced[0].mtime_ns, a.mtime_ns);
  EXPECT_EQ(synced[0].sha256, "sha-a");
  EXPECT_EQ(synced[0].synced_at_ms, kT0 + 100);
  EXPECT_EQ(synced[0].run_id, "run-1");

  ASSERT_OK_AND_ASSIGN(Runner r, index_->GetRunnerById(run.runner_id));
  EXPECT_EQ(r.last_activity_at_ms, kT0 + 100);

  ASSERT_OK_AND_ASSIGN(std::vector<RunFile> files, index_->ListRunFiles("run-1", "", 100));
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files[0].path, "a");
  EXPECT_EQ(files[0].result, "uploaded");
  EXPECT_EQ(files[0].kept_version, "versions/a.1");
  EXPECT_EQ(files[1].result, "failed");
  EXPECT_EQ(files[1].error, "disk on fire");
  EXPECT_EQ(files[3].path, "unplanned");
  EXPECT_EQ(files[3].planned_reason, "");
  EXPECT_EQ(files[3].result, "skipped");
}

TEST_P(StateIndexConformance, RecordResultsMovesCountersWhenResultChanges) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a"), Planned("b")}, 2, 200));
  const std::vector<protocol::FileResult> first = {Result("a", "uploaded", 70),
                                                   Result("b", "failed")};
  ASSERT_OK(index_->RecordResults("run-1", first, kT0).status());
  ASSERT_OK_AND_ASSIGN(
      uint64_t applied,
      index_->RecordResults("run-1", {Result("b", "uploaded", 30), Result("a", "uploaded", 70)},
                            kT0 + 1));
  EXPECT_EQ(applied, 1u);
  ASSERT_OK_AND_ASSIGN(ds::Run after, index_->GetRun("run-1"));
  EXPECT_EQ(after.summary.files_uploaded, 2u);
  EXPECT_EQ(after.summary.files_failed, 0u);
  EXPECT_EQ(after.summary.bytes_uploaded, 100u);

  ASSERT_OK(index_->RecordResults("run-1", {Result("a", "failed")}, kT0 + 2).status());
  ASSERT_OK_AND_ASSIGN(after, index_->GetRun("run-1"));
  EXPECT_EQ(after.summary.files_uploaded, 1u);
  EXPECT_EQ(after.summary.files_failed, 1u);
  EXPECT_EQ(after.summary.bytes_uploaded, 30u);
  ASSERT_OK_AND_ASSIGN(int64_t synced, index_->CountSyncedFiles(run.job_id));
  EXPECT_EQ(synced, 2);
}

TEST_P(StateIndexConformance, RecordResultsRejectsUnplannedUploadAtomically) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a"), Planned("b")}, 2, 200));
  ASSERT_OK(index_->RecordResults("run-1", {Result("b", "skipped")}, kT0).status());

  const std::vector<protocol::FileResult> batch = {Result("a", "uploaded"), Result("s", "skipped"),
                                                   Result("sneaky", "uploaded")};
  const absl::Status bad = index_->RecordResults("run-1", batch, kT0 + 1).status();
  EXPECT_TRUE(absl::IsInvalidArgument(bad)) << bad;
  EXPECT_THAT(bad.message(), HasSubstr("sneaky"));
  EXPECT_TRUE(absl::IsInvalidArgument(
      index_->RecordResults("run-1", {Result("ghost", "failed")}, kT0).status()));
  // A skipped-only (unplanned) row is not a plan either.
  EXPECT_TRUE(absl::IsInvalidArgument(
      index_->RecordResults("run-1", {Result("s2", "skipped"), Result("s2", "uploaded")}, kT0)
          .status()));

  ASSERT_OK_AND_ASSIGN(int64_t synced, index_->CountSyncedFiles(run.job_id));
  EXPECT_EQ(synced, 0);
  ASSERT_OK_AND_ASSIGN(ds::Run after, index_->GetRun("run-1"));
  EXPECT_EQ(after.summary.files_uploaded, 0u);
  EXPECT_EQ(after.summary.files_skipped, 1u);
  EXPECT_EQ(after.summary.bytes_uploaded, 0u);
  ASSERT_OK_AND_ASSIGN(std::vector<RunFile> files, index_->ListRunFiles("run-1", "", 100));
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].result, "");
  ASSERT_OK_AND_ASSIGN(Runner r, index_->GetRunnerById(run.runner_id));
  EXPECT_EQ(r.last_activity_at_ms, 0);
}

TEST_P(StateIndexConformance, RecordResultsNeedsRunningRun) {
  ASSERT_OK(RunningRun("pc1", "run-1").status());
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a")}, 1, 100));
  EXPECT_TRUE(absl::IsInvalidArgument(
      index_->RecordResults("run-1", {Result("a", "exploded")}, kT0).status()));
  EXPECT_TRUE(
      absl::IsNotFound(index_->RecordResults("run-x", {Result("a", "skipped")}, kT0).status()));
  ASSERT_OK(index_->FinishRun("run-1", "failed", "network down", kT0 + 1).status());
  EXPECT_TRUE(absl::IsFailedPrecondition(
      index_->RecordResults("run-1", {Result("a", "uploaded")}, kT0 + 2).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->RecordPlanned("run-1", {Planned("b")}, 1, 1)));
}

TEST_P(StateIndexConformance, FinishRunIsIdempotentForSameState) {
  ASSERT_OK(RunningRun("pc1", "run-1").status());
  ASSERT_OK_AND_ASSIGN(ds::Run done,
                       index_->FinishRun("run-1", "partial", "2 files failed", kT0 + 9));
  EXPECT_EQ(done.summary.state, "partial");
  EXPECT_EQ(done.summary.error, "2 files failed");
  EXPECT_EQ(done.summary.finished_at_ms, kT0 + 9);

  ASSERT_OK_AND_ASSIGN(ds::Run again, index_->FinishRun("run-1", "partial", "other", kT0 + 20));
  EXPECT_EQ(again.summary.finished_at_ms, kT0 + 9);
  EXPECT_EQ(again.summary.error, "2 files failed");
  EXPECT_TRUE(
      absl::IsFailedPrecondition(index_->FinishRun("run-1", "succeeded", "", kT0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(index_->FinishRun("run-1", "running", "", kT0).status()));
  EXPECT_TRUE(absl::IsNotFound(index_->FinishRun("run-x", "failed", "", kT0).status()));
}

TEST_P(StateIndexConformance, ListRunsNewestFirstWithFilters) {
  ASSERT_OK_AND_ASSIGN(ds::Run r1, RunningRun("pc1", "run-1", kT0 + 1));
  ASSERT_OK_AND_ASSIGN(ds::Run r2, RunningRun("pc2", "run-2", kT0 + 2));
  ASSERT_OK(index_->BeginRun("run-3", r1.runner_id, r1.job_id, "command", kT0 + 3).status());
  ASSERT_OK_AND_ASSIGN(Job other, index_->PutJob(r1.runner_id, Spec("other"), false, kT0));
  ASSERT_OK(index_->BeginRun("run-4", r1.runner_id, other.spec.id, "startup", kT0 + 4).status());
  ASSERT_OK(index_->FinishRun("run-1", "succeeded", "", kT0 + 5).status());

  auto ids = [](const std::vector<ds::Run>& runs) {
    std::vector<std::string> out;
    for (const ds::Run& r : runs) out.push_back(r.summary.run_id);
    return out;
  };
  ASSERT_OK_AND_ASSIGN(std::vector<ds::Run> all, index_->ListRuns(RunFilter{}));
  EXPECT_THAT(ids(all), ElementsAre("run-4", "run-3", "run-2", "run-1"));
  EXPECT_EQ(all[0].summary.runner, "pc1");
  EXPECT_EQ(all[0].summary.job, "other");
  EXPECT_EQ(all[0].summary.trigger, "startup");

  RunFilter by_runner;
  by_runner.runner_id = r1.runner_id;
  ASSERT_OK_AND_ASSIGN(std::vector<ds::Run> runs, index_->ListRuns(by_runner));
  EXPECT_THAT(ids(runs), ElementsAre("run-4", "run-3", "run-1"));

  RunFilter by_job;
  by_job.job_id = r1.job_id;
  ASSERT_OK_AND_ASSIGN(runs, index_->ListRuns(by_job));
  EXPECT_THAT(ids(runs), ElementsAre("run-3", "run-1"));

  RunFilter by_state;
  by_state.state = "running";
  by_state.runner_id = r1.runner_id;
  ASSERT_OK_AND_ASSIGN(runs, index_->ListRuns(by_state));
  EXPECT_THAT(ids(runs), ElementsAre("run-4", "run-3"));

  RunFilter by_job2;
  by_job2.job_id = r2.job_id;
  by_job2.state = "succeeded";
  ASSERT_OK_AND_ASSIGN(runs, index_->ListRuns(by_job2));
  EXPECT_THAT(runs, IsEmpty());

  RunFilter limited;
  limited.limit = 2;
  ASSERT_OK_AND_ASSIGN(runs, index_->ListRuns(limited));
  EXPECT_THAT(ids(runs), ElementsAre("run-4", "run-3"));
  limited.limit = 1'000'000;
  ASSERT_OK_AND_ASSIGN(runs, index_->ListRuns(limited));
  EXPECT_EQ(runs.size(), 4u);
  limited.limit = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(index_->ListRuns(limited).status()));
}

TEST_P(StateIndexConformance, ListRunsCapsLimitAtOneThousand) {
  ASSERT_OK_AND_ASSIGN(ds::Run first, RunningRun("pc1", "run-0"));
  for (int i = 1; i <= 1000; ++i) {
    const std::string id = absl::StrCat("run-", i);
    ASSERT_OK(index_->BeginRun(id, first.runner_id, first.job_id, "schedule", kT0 + i).status());
  }
  RunFilter filter;
  filter.limit = 5000;
  ASSERT_OK_AND_ASSIGN(std::vector<ds::Run> runs, index_->ListRuns(filter));
  EXPECT_EQ(runs.size(), 1000u);
  EXPECT_EQ(runs.front().summary.run_id, "run-1000");
}

TEST_P(StateIndexConformance, ListRunsPagesWithOffset) {
  ASSERT_OK_AND_ASSIGN(ds::Run first, RunningRun("pc1", "run-0"));
  for (int i = 1; i <= 6; ++i) {
    ASSERT_OK(index_->BeginRun(absl::StrCat("run-", i), first.runner_id, first.job_id, "schedule",
                               kT0 + (i / 2))  // ties in started_at keep insertion order
                  .status());
  }
  RunFilter filter;
  filter.limit = 3;
  std::vector<std::string> seen;
  for (filter.offset = 0; filter.offset < 9; filter.offset += 3) {
    ASSERT_OK_AND_ASSIGN(std::vector<ds::Run> page, index_->ListRuns(filter));
    for (const auto& r : page) seen.push_back(r.summary.run_id);
  }
  EXPECT_THAT(seen, ElementsAre("run-6", "run-5", "run-4", "run-3", "run-2", "run-1", "run-0"));
  filter.offset = -1;
  EXPECT_TRUE(absl::IsInvalidArgument(index_->ListRuns(filter).status()));
}

TEST_P(StateIndexConformance, ListRunFilesPagesByPath) {
  ASSERT_OK(RunningRun("pc1", "run-1").status());
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("c"), Planned("a"), Planned("b/x")}, 3, 3));
  ASSERT_OK_AND_ASSIGN(std::vector<RunFile> page, index_->ListRunFiles("run-1", "", 2));
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].path, "a");
  EXPECT_EQ(page[1].path, "b/x");
  ASSERT_OK_AND_ASSIGN(page, index_->ListRunFiles("run-1", "b/x", 2));
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].path, "c");
  EXPECT_TRUE(absl::IsNotFound(index_->ListRunFiles("run-x", "", 2).status()));
}

TEST_P(StateIndexConformance, GetRunFileReadsOneRow) {
  ASSERT_OK(RunningRun("pc1", "run-1").status());
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a"), Planned("a/b"), Planned("a.txt")}, 3, 3));
  ASSERT_OK_AND_ASSIGN(RunFile f, index_->GetRunFile("run-1", "a/b"));
  EXPECT_EQ(f.path, "a/b");
  EXPECT_EQ(f.planned_reason, "new");
  EXPECT_EQ(f.result, "");
  // Exact match only: neither a prefix nor a neighbour in path order answers.
  EXPECT_TRUE(absl::IsNotFound(index_->GetRunFile("run-1", "a/").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetRunFile("run-1", "a/bb").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetRunFile("run-1", "A/B").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetRunFile("run-x", "a/b").status()));
  ASSERT_OK(index_->RecordResults("run-1", {Result("a/b", "failed")}, 5).status());
  ASSERT_OK_AND_ASSIGN(f, index_->GetRunFile("run-1", "a/b"));
  EXPECT_EQ(f.result, "failed");
}

// ---- synced files -------------------------------------------------------------------------------

TEST_P(StateIndexConformance, ListSyncedFilesKeysetPaging) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  std::vector<RunFile> planned;
  std::vector<protocol::FileResult> results;
  for (int i = 24; i >= 0; --i) {  // out of order on purpose
    const std::string path = absl::StrCat("dir/f", i < 10 ? "0" : "", i);
    planned.push_back(Planned(path));
    results.push_back(Result(path, "uploaded", static_cast<uint64_t>(i)));
  }
  ASSERT_OK(index_->RecordPlanned("run-1", planned, 25, 300));
  ASSERT_OK(index_->RecordResults("run-1", results, kT0).status());
  ASSERT_OK_AND_ASSIGN(int64_t count, index_->CountSyncedFiles(run.job_id));
  EXPECT_EQ(count, 25);

  std::vector<std::string> seen;
  std::string after;
  std::vector<size_t> page_sizes;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(std::vector<SyncedFile> page,
                         index_->ListSyncedFiles(run.job_id, after, 10));
    page_sizes.push_back(page.size());
    if (page.empty()) break;
    for (const SyncedFile& f : page) seen.push_back(f.path);
    after = page.back().path;
  }
  EXPECT_THAT(page_sizes, ElementsAre(10, 10, 5, 0));
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.front(), "dir/f00");
  EXPECT_EQ(seen.back(), "dir/f24");

  EXPECT_TRUE(absl::IsNotFound(index_->ListSyncedFiles(run.job_id + 1, "", 10).status()));
  EXPECT_TRUE(absl::IsNotFound(index_->CountSyncedFiles(run.job_id + 1).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(index_->ListSyncedFiles(run.job_id, "", 0).status()));
}

// ---- commands -----------------------------------------------------------------------------------

TEST_P(StateIndexConformance, TakeCommandsDeliversOnce) {
  ASSERT_OK_AND_ASSIGN(Runner r, ApprovedRunner("pc1"));
  ASSERT_OK_AND_ASSIGN(Runner other, ApprovedRunner("pc2"));
  ASSERT_OK_AND_ASSIGN(protocol::Command c1,
                       index_->EnqueueCommand(r.id, "sync", "photos", "run-a", kT0));
  ASSERT_OK_AND_ASSIGN(protocol::Command c2,
                       index_->EnqueueCommand(r.id, "sync", "docs", "run-b", kT0 + 1));
  ASSERT_OK(index_->EnqueueCommand(other.id, "sync", "x", "run-c", kT0).status());
  EXPECT_GT(c2.id, c1.id);
  EXPECT_EQ(c1.type, "sync");
  EXPECT_EQ(c1.job, "photos");
  EXPECT_EQ(c1.run_id, "run-a");

  ASSERT_OK_AND_ASSIGN(std::vector<protocol::Command> taken, index_->TakeCommands(r.id));
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].id, c1.id);
  EXPECT_EQ(taken[0].job, "photos");
  EXPECT_EQ(taken[0].run_id, "run-a");
  EXPECT_EQ(taken[1].id, c2.id);
  ASSERT_OK_AND_ASSIGN(taken, index_->TakeCommands(r.id));
  EXPECT_THAT(taken, IsEmpty());
  ASSERT_OK_AND_ASSIGN(taken, index_->TakeCommands(other.id));
  EXPECT_EQ(taken.size(), 1u);

  EXPECT_TRUE(absl::IsNotFound(
      index_->EnqueueCommand(r.id + other.id, "sync", "x", "run-d", kT0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(index_->EnqueueCommand(r.id, "", "x", "", kT0).status()));
}

TEST_P(StateIndexConformance, HeartbeatRecordsAbandonsOrphansAndTakesCommands) {
  ASSERT_OK_AND_ASSIGN(ds::Run orphan, RunningRun("pc1", "run-old", kT0));
  const int64_t runner = orphan.runner_id;
  ASSERT_OK(index_->BeginRun("run-now", runner, orphan.job_id, "command", kT0 + 5).status());
  ASSERT_OK(index_->BeginRun("run-new", runner, orphan.job_id, "command", kT0 + 50).status());
  ASSERT_OK_AND_ASSIGN(ds::Run elsewhere, RunningRun("pc2", "run-other", kT0));
  ASSERT_OK_AND_ASSIGN(protocol::Command c1, index_->EnqueueCommand(runner, "sync", "a", "", kT0));
  ASSERT_OK_AND_ASSIGN(protocol::Command c2, index_->EnqueueCommand(runner, "sync", "b", "", kT0));
  ASSERT_OK(index_->EnqueueCommand(elsewhere.runner_id, "sync", "x", "", kT0).status());

  StateIndex::HeartbeatRecord hb;
  hb.runner_id = runner;
  hb.agent_version = "2.0.0";
  hb.runtime_state = "syncing";
  hb.current_run = "run-now";
  hb.health_json = R"({"backlog_files":7})";
  hb.orphans_started_before_ms = kT0 + 10;
  hb.orphan_reason = "agent restarted";
  ASSERT_OK_AND_ASSIGN(StateIndex::HeartbeatOutcome out, index_->Heartbeat(hb, kT0 + 100));
  // Only the stale run of this runner that is not the current one; commands oldest first.
  EXPECT_EQ(out.abandoned_runs, std::vector<std::string>{"run-old"});
  ASSERT_EQ(out.commands.size(), 2u);
  EXPECT_EQ(out.commands[0].id, c1.id);
  EXPECT_EQ(out.commands[0].job, "a");
  EXPECT_EQ(out.commands[1].id, c2.id);
  ASSERT_OK_AND_ASSIGN(Runner r, index_->GetRunnerById(runner));
  EXPECT_EQ(r.agent_version, "2.0.0");
  EXPECT_EQ(r.runtime_state, "syncing");
  EXPECT_EQ(r.current_run, "run-now");
  EXPECT_EQ(r.last_heartbeat_at_ms, kT0 + 100);
  EXPECT_THAT(r.health_json, HasSubstr("backlog_files"));
  ASSERT_OK_AND_ASSIGN(ds::Run old_run, index_->GetRun("run-old"));
  EXPECT_EQ(old_run.summary.state, "abandoned");
  EXPECT_EQ(old_run.summary.error, "agent restarted");
  for (const char* id : {"run-now", "run-new", "run-other"}) {
    ASSERT_OK_AND_ASSIGN(ds::Run run, index_->GetRun(id));
    EXPECT_EQ(run.summary.state, "running") << id;
  }

  // Again: nothing left to abandon or take; empty version and health keep the last ones.
  hb.agent_version = "";
  hb.health_json = "";
  hb.runtime_state = "idle";
  ASSERT_OK_AND_ASSIGN(out, index_->Heartbeat(hb, kT0 + 200));
  EXPECT_THAT(out.abandoned_runs, IsEmpty());
  EXPECT_THAT(out.commands, IsEmpty());
  ASSERT_OK_AND_ASSIGN(r, index_->GetRunnerById(runner));
  EXPECT_EQ(r.agent_version, "2.0.0");
  EXPECT_EQ(r.runtime_state, "idle");
  EXPECT_THAT(r.health_json, HasSubstr("backlog_files"));
  ASSERT_OK_AND_ASSIGN(std::vector<protocol::Command> left,
                       index_->TakeCommands(elsewhere.runner_id));
  EXPECT_EQ(left.size(), 1u);  // another runner's commands stay

  hb.runner_id = runner + elsewhere.runner_id + 100;
  EXPECT_TRUE(absl::IsNotFound(index_->Heartbeat(hb, kT0 + 300).status()));
}

// ---- several server instances -------------------------------------------------------------------

TEST_P(StateIndexConformance, LeaseHasOneHolderUntilItExpiresOrIsReleased) {
  constexpr int64_t kTtl = 10'000;
  ASSERT_OK_AND_ASSIGN(bool got, index_->TryAcquireLease("janitor", "a", kTtl, kT0));
  EXPECT_TRUE(got);
  // Held by a: b is refused until the expiry, a renews.
  ASSERT_OK_AND_ASSIGN(got, index_->TryAcquireLease("janitor", "b", kTtl, kT0 + 1));
  EXPECT_FALSE(got);
  ASSERT_OK_AND_ASSIGN(got, index_->TryAcquireLease("janitor", "a", kTtl, kT0 + 5'000));
  EXPECT_TRUE(got);
  ASSERT_OK_AND_ASSIGN(got, index_->TryAcquireLease("janitor", "b", kTtl, kT0 + kTtl + 1));
  EXPECT_FALSE(got) << "the renewal moved the expiry on";
  // Another lease name is independent.
  ASSERT_OK_AND_ASSIGN(got, index_->TryAcquireLease("retention", "b", kTtl, kT0 + 1));
  EXPECT_TRUE(got);
  // a stops renewing (died): b takes over once the lease has expired, and a cannot take it back.
  ASSERT_OK_AND_ASSIGN(got, index_->TryAcquireLease("janitor", "b", kTtl, kT0 + 5'000 + kTtl));
  EXPECT_TRUE(got);
  ASSERT_OK_AND_ASSIGN(got, index_->TryAcquireLease("janitor", "a", kTtl, kT0 + 5'000 + kTtl + 1));
  EXPECT_FALSE(got);
  // Release by a non-holder changes nothing; by the holder frees the lease at once.
  ASSERT_OK(index_->ReleaseLease("janitor", "a"));
  ASSERT_OK_AND_ASSIGN(got, index_->TryAcquireLease("janitor", "a", kTtl, kT0 + 5'000 + kTtl + 2));
  EXPECT_FALSE(got);
  ASSERT_OK(index_->ReleaseLease("janitor", "b"));
  ASSERT_OK_AND_ASSIGN(got, index_->TryAcquireLease("janitor", "a", kTtl, kT0 + 5'000 + kTtl + 3));
  EXPECT_TRUE(got);
  ASSERT_OK(index_->ReleaseLease("no-such-lease", "a"));

  EXPECT_TRUE(absl::IsInvalidArgument(index_->TryAcquireLease("", "a", kTtl, kT0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(index_->TryAcquireLease("x", "", kTtl, kT0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(index_->TryAcquireLease("x", "a", 0, kT0).status()));
}

TEST_P(StateIndexConformance, ConcurrentLeaseAttemptsHaveOneWinner) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    // Every round starts after the previous holder's lease expired.
    const int64_t now = kT0 + int64_t{round} * 1'000'000;
    std::atomic<int> winners{0}, errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        auto got = index_->TryAcquireLease("janitor", absl::StrCat("instance-", t), 1'000, now);
        if (!got.ok()) ++errors;
        if (got.ok() && *got) ++winners;
      });
    }
    for (std::thread& th : threads) th.join();
    EXPECT_EQ(errors.load(), 0) << "round " << round;
    EXPECT_EQ(winners.load(), 1) << "round " << round;
  }
}

TEST_P(StateIndexConformance, CheckWaitingRunnersSeesPendingCommandsAndNewestLongPoll) {
  ASSERT_OK_AND_ASSIGN(Runner a, ApprovedRunner("pc1"));
  ASSERT_OK_AND_ASSIGN(Runner b, ApprovedRunner("pc2"));
  ASSERT_OK_AND_ASSIGN(Runner c, ApprovedRunner("pc3"));
  ASSERT_OK_AND_ASSIGN(std::vector<StateIndex::WaitingRunner> none,
                       index_->CheckWaitingRunners({}));
  EXPECT_THAT(none, IsEmpty());

  ASSERT_OK(index_->EnqueueCommand(b.id, "sync", "x", "run-1", kT0).status());
  ASSERT_OK(index_->RecordLongPoll(a.id, "i1:1", kT0));
  ASSERT_OK(index_->RecordLongPoll(a.id, "i2:7", kT0 + 1));  // the agent moved to instance 2
  ASSERT_OK(index_->RecordLongPoll(b.id, "i1:2", kT0));
  const int64_t unknown = a.id + b.id + c.id;
  ASSERT_OK_AND_ASSIGN(std::vector<StateIndex::WaitingRunner> w,
                       index_->CheckWaitingRunners({c.id, b.id, a.id, unknown}));
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].runner_id, a.id);
  EXPECT_FALSE(w[0].pending_commands);
  EXPECT_EQ(w[0].newest_poll_id, "i2:7");
  EXPECT_EQ(w[1].runner_id, b.id);
  EXPECT_TRUE(w[1].pending_commands);
  EXPECT_EQ(w[1].newest_poll_id, "i1:2");
  EXPECT_EQ(w[2].runner_id, c.id);
  EXPECT_FALSE(w[2].pending_commands);
  EXPECT_EQ(w[2].newest_poll_id, "");

  // Delivered commands are no longer pending.
  ASSERT_OK(index_->TakeCommands(b.id).status());
  ASSERT_OK_AND_ASSIGN(w, index_->CheckWaitingRunners({b.id}));
  ASSERT_EQ(w.size(), 1u);
  EXPECT_FALSE(w[0].pending_commands);

  // Many ids in one call.
  std::vector<int64_t> many;
  for (int64_t i = 1; i <= 5'000; ++i) many.push_back(i);
  ASSERT_OK_AND_ASSIGN(w, index_->CheckWaitingRunners(many));
  EXPECT_EQ(w.size(), 3u);

  EXPECT_TRUE(absl::IsNotFound(index_->RecordLongPoll(unknown, "i1:3", kT0)));
  EXPECT_TRUE(absl::IsInvalidArgument(index_->RecordLongPoll(a.id, "", kT0)));
}

// ---- admin tokens -------------------------------------------------------------------------------

TEST_P(StateIndexConformance, AdminTokens) {
  ASSERT_OK_AND_ASSIGN(int64_t count, index_->CountAdminTokens());
  EXPECT_EQ(count, 0);
  ASSERT_OK_AND_ASSIGN(AdminToken created,
                       index_->CreateAdminToken("bootstrap", "admin", "hash-1", kT0));
  EXPECT_GT(created.id, 0);
  EXPECT_EQ(created.revoked_at_ms, 0);
  ASSERT_OK(index_->CreateAdminToken("dashboard", "viewer", "hash-2", kT0 + 1).status());

  ASSERT_OK_AND_ASSIGN(AdminToken found, index_->FindAdminToken("hash-1"));
  EXPECT_EQ(found.id, created.id);
  EXPECT_EQ(found.name, "bootstrap");
  EXPECT_EQ(found.role, "admin");
  EXPECT_EQ(found.created_at_ms, kT0);
  EXPECT_EQ(found.revoked_at_ms, 0);
  EXPECT_TRUE(absl::IsNotFound(index_->FindAdminToken("hash-3").status()));

  EXPECT_TRUE(
      absl::IsAlreadyExists(index_->CreateAdminToken("dup", "admin", "hash-1", kT0).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(index_->CreateAdminToken("x", "root", "hash-4", kT0).status()));
  ASSERT_OK_AND_ASSIGN(count, index_->CountAdminTokens());
  EXPECT_EQ(count, 2);
}

TEST_P(StateIndexConformance, AdminTokensListAndRevoke) {
  ASSERT_OK_AND_ASSIGN(AdminToken a, index_->CreateAdminToken("cli", "admin", "h-a", kT0, "user:ann"));
  ASSERT_OK_AND_ASSIGN(AdminToken b, index_->CreateAdminToken("ro", "viewer", "h-b", kT0 + 1));
  EXPECT_EQ(a.created_by, "user:ann");
  ASSERT_OK_AND_ASSIGN(std::vector<AdminToken> all, index_->ListAdminTokens());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, b.id);  // newest first
  EXPECT_EQ(all[1].created_by, "user:ann");
  EXPECT_EQ(all[0].created_by, "");

  ASSERT_OK_AND_ASSIGN(AdminToken revoked, index_->RevokeAdminToken(a.id, kT0 + 5));
  EXPECT_EQ(revoked.revoked_at_ms, kT0 + 5);
  EXPECT_TRUE(absl::IsNotFound(index_->FindAdminToken("h-a").status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->RevokeAdminToken(a.id, kT0 + 6).status()));
  EXPECT_TRUE(absl::IsNotFound(index_->RevokeAdminToken(b.id + 100, kT0).status()));
  ASSERT_OK_AND_ASSIGN(int64_t count, index_->CountAdminTokens());
  EXPECT_EQ(count, 1);
  ASSERT_OK_AND_ASSIGN(all, index_->ListAdminTokens());
  EXPECT_EQ(all[1].revoked_at_ms, kT0 + 5);
}

// ---- operator accounts --------------------------------------------------------------------------

TEST_P(StateIndexConformance, UsersCreateListPasswordDelete) {
  ASSERT_OK_AND_ASSIGN(User ann, index_->CreateUser("ann", "admin", "$argon2id$h1", kT0));
  EXPECT_GT(ann.id, 0);
  ASSERT_OK(index_->CreateUser("bob", "viewer", "$argon2id$h2", kT0).status());
  EXPECT_TRUE(absl::IsAlreadyExists(index_->CreateUser("ann", "viewer", "x", kT0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(index_->CreateUser("cy", "root", "x", kT0).status()));
  ASSERT_OK_AND_ASSIGN(std::vector<User> users, index_->ListUsers());
  ASSERT_EQ(users.size(), 2u);
  EXPECT_EQ(users[0].name, "ann");
  EXPECT_EQ(users[1].role, "viewer");

  Session s;
  s.id_hash = "sess-1";
  s.user_id = ann.id;
  s.csrf_token = "csrf-1";
  s.source_ip = "10.0.0.1";
  s.created_at_ms = kT0 + 10;
  s.expires_at_ms = kT0 + 1000;
  s.last_seen_at_ms = kT0 + 10;
  ASSERT_OK(index_->CreateSession(s));
  ASSERT_OK_AND_ASSIGN(User again, index_->GetUserByName("ann"));
  EXPECT_EQ(again.last_login_at_ms, kT0 + 10);
  ASSERT_OK_AND_ASSIGN(Session found, index_->FindSession("sess-1"));
  EXPECT_EQ(found.user_name, "ann");
  EXPECT_EQ(found.role, "admin");
  EXPECT_EQ(found.csrf_token, "csrf-1");
  EXPECT_EQ(found.expires_at_ms, kT0 + 1000);
  ASSERT_OK(index_->TouchSession("sess-1", kT0 + 50));
  ASSERT_OK_AND_ASSIGN(found, index_->FindSession("sess-1"));
  EXPECT_EQ(found.last_seen_at_ms, kT0 + 50);

  // A new password ends the user's sessions.
  ASSERT_OK(index_->SetUserPassword("ann", "$argon2id$h3", kT0 + 60));
  EXPECT_TRUE(absl::IsNotFound(index_->FindSession("sess-1").status()));
  ASSERT_OK_AND_ASSIGN(again, index_->GetUserByName("ann"));
  EXPECT_EQ(again.password_hash, "$argon2id$h3");
  EXPECT_TRUE(absl::IsNotFound(index_->SetUserPassword("zed", "x", kT0)));

  ASSERT_OK(index_->CreateSession(s));
  ASSERT_OK(index_->DeleteUser("ann"));
  EXPECT_TRUE(absl::IsNotFound(index_->FindSession("sess-1").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->GetUserByName("ann").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->DeleteUser("ann")));
  s.user_id = ann.id + 100;
  EXPECT_FALSE(index_->CreateSession(s).ok());
}

TEST_P(StateIndexConformance, SessionsDeleteAndPrune) {
  ASSERT_OK_AND_ASSIGN(User u, index_->CreateUser("ann", "admin", "h", kT0));
  auto make = [&](const std::string& id, int64_t expires, int64_t seen) {
    Session s;
    s.id_hash = id;
    s.user_id = u.id;
    s.csrf_token = "c";
    s.created_at_ms = kT0;
    s.expires_at_ms = expires;
    s.last_seen_at_ms = seen;
    return index_->CreateSession(s);
  };
  ASSERT_OK(make("expired", kT0 + 100, kT0 + 90));
  ASSERT_OK(make("idle", kT0 + 10'000, kT0 + 10));
  ASSERT_OK(make("live", kT0 + 10'000, kT0 + 190));
  EXPECT_TRUE(absl::IsAlreadyExists(make("live", kT0, kT0)));
  ASSERT_OK_AND_ASSIGN(int64_t pruned, index_->PruneSessions(kT0 + 200, kT0 + 50));
  EXPECT_EQ(pruned, 2);
  EXPECT_TRUE(index_->FindSession("live").ok());
  ASSERT_OK(index_->DeleteSession("live"));
  ASSERT_OK(index_->DeleteSession("live"));
  EXPECT_TRUE(absl::IsNotFound(index_->FindSession("live").status()));
}

TEST_P(StateIndexConformance, LoginFailuresLockWithBackOff) {
  LockoutPolicy p;
  p.free_failures = 2;
  p.base_lock_ms = 1000;
  p.max_lock_ms = 3000;
  p.reset_after_ms = 60'000;
  ASSERT_OK_AND_ASSIGN(LoginThrottle t, index_->GetLoginThrottle("user:ann"));
  EXPECT_EQ(t.failures, 0);
  ASSERT_OK_AND_ASSIGN(t, index_->RecordLoginFailure("user:ann", kT0, p));
  EXPECT_EQ(t.failures, 1);
  EXPECT_EQ(t.locked_until_ms, 0);
  ASSERT_OK_AND_ASSIGN(t, index_->RecordLoginFailure("user:ann", kT0 + 1, p));
  EXPECT_EQ(t.locked_until_ms, 0);
  ASSERT_OK_AND_ASSIGN(t, index_->RecordLoginFailure("user:ann", kT0 + 2, p));
  EXPECT_EQ(t.locked_until_ms, kT0 + 2 + 1000);
  ASSERT_OK_AND_ASSIGN(t, index_->RecordLoginFailure("user:ann", kT0 + 3, p));
  EXPECT_EQ(t.locked_until_ms, kT0 + 3 + 2000);
  ASSERT_OK_AND_ASSIGN(t, index_->RecordLoginFailure("user:ann", kT0 + 4, p));
  EXPECT_EQ(t.locked_until_ms, kT0 + 4 + 3000);  // capped
  ASSERT_OK_AND_ASSIGN(t, index_->GetLoginThrottle("user:ann"));
  EXPECT_EQ(t.failures, 5);
  ASSERT_OK_AND_ASSIGN(LoginThrottle other, index_->GetLoginThrottle("ip:10.0.0.1"));
  EXPECT_EQ(other.failures, 0);
  // Old failures are forgotten.
  ASSERT_OK_AND_ASSIGN(t, index_->RecordLoginFailure("user:ann", kT0 + 100'000, p));
  EXPECT_EQ(t.failures, 1);
  EXPECT_EQ(t.locked_until_ms, 0);
  ASSERT_OK(index_->ClearLoginFailures("user:ann"));
  ASSERT_OK_AND_ASSIGN(t, index_->GetLoginThrottle("user:ann"));
  EXPECT_EQ(t.failures, 0);
}

TEST_P(StateIndexConformance, AuditLogPagesNewestFirstWithFilters) {
  for (int i = 0; i < 7; ++i) {
    AuditEntry e;
    e.at_ms = kT0 + i;
    e.actor = i % 2 == 0 ? "user:ann" : "token:cli";
    e.action = i == 3 ? "POST /api/v1/admin/runners/{runner}/approve" : "PUT /api/v1/admin/jobs";
    e.target = absl::StrCat("/t/", i);
    e.result = "200";
    e.details_json = R"({"k":1})";
    e.source_ip = "127.0.0.1";
    ASSERT_OK_AND_ASSIGN(int64_t id, index_->AppendAudit(e));
    EXPECT_GT(id, 0);
  }
  AuditFilter f;
  f.limit = 3;
  ASSERT_OK_AND_ASSIGN(std::vector<AuditEntry> page, index_->ListAudit(f));
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0].at_ms, kT0 + 6);
  EXPECT_EQ(page[0].details_json, R"({"k":1})");
  f.before_id = page.back().id;
  ASSERT_OK_AND_ASSIGN(page, index_->ListAudit(f));
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0].at_ms, kT0 + 3);
  f = AuditFilter{};
  f.actor = "token:cli";
  ASSERT_OK_AND_ASSIGN(page, index_->ListAudit(f));
  EXPECT_EQ(page.size(), 3u);
  f.actor = "";
  f.action_contains = "approve";
  ASSERT_OK_AND_ASSIGN(page, index_->ListAudit(f));
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].target, "/t/3");
}

TEST_P(StateIndexConformance, HourlyStatsGroupRunsByHour) {
  constexpr int64_t kHour = 3'600'000;
  const int64_t h0 = (kT0 / kHour) * kHour;
  ASSERT_OK_AND_ASSIGN(ds::Run r1, RunningRun("pc1", "run-1", h0 + 10));
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a", 100), Planned("b", 50)}, 2, 150));
  ASSERT_OK(index_
                ->RecordResults("run-1", {Result("a", "uploaded", 100), Result("b", "failed", 50)},
                                h0 + 20)
                .status());
  ASSERT_OK(index_->BeginRun("run-2", r1.runner_id, r1.job_id, "schedule", h0 + kHour + 5).status());
  ASSERT_OK(index_->RecordPlanned("run-2", {Planned("c", 7)}, 1, 7));
  ASSERT_OK(index_->RecordResults("run-2", {Result("c", "uploaded", 7)}, h0 + kHour + 6).status());
  ASSERT_OK_AND_ASSIGN(std::vector<HourlyStat> stats, index_->HourlyStats(h0));
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].hour_start_ms, h0);
  EXPECT_EQ(stats[0].files_uploaded, 1u);
  EXPECT_EQ(stats[0].bytes_uploaded, 100u);
  EXPECT_EQ(stats[0].files_failed, 1u);
  EXPECT_EQ(stats[1].hour_start_ms, h0 + kHour);
  EXPECT_EQ(stats[1].runs, 1u);
  EXPECT_EQ(stats[1].bytes_uploaded, 7u);
  ASSERT_OK_AND_ASSIGN(stats, index_->HourlyStats(h0 + kHour));
  EXPECT_EQ(stats.size(), 1u);
}

TEST_P(StateIndexConformance, SearchSyncedFilesByPrefixAndSubstring) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  std::vector<RunFile> planned;
  std::vector<protocol::FileResult> results;
  for (const char* p : {"a/x1.txt", "a/x2.csv", "a_b/x3.txt", "ab/x4.txt", "b/a%x.txt", "b/zz.txt"}) {
    planned.push_back(Planned(p));
    results.push_back(Result(p, "uploaded"));
  }
  ASSERT_OK(index_->RecordPlanned("run-1", planned, 6, 600));
  ASSERT_OK(index_->RecordResults("run-1", results, kT0).status());
  auto paths = [](const std::vector<SyncedFile>& files) {
    std::vector<std::string> out;
    for (const auto& f : files) out.push_back(f.path);
    return out;
  };
  ASSERT_OK_AND_ASSIGN(auto files, index_->SearchSyncedFiles(run.job_id, "a/", true, "", 100));
  EXPECT_THAT(paths(files), ElementsAre("a/x1.txt", "a/x2.csv"));
  ASSERT_OK_AND_ASSIGN(files, index_->SearchSyncedFiles(run.job_id, "a_", true, "", 100));
  EXPECT_THAT(paths(files), ElementsAre("a_b/x3.txt"));  // '_' is no wildcard
  ASSERT_OK_AND_ASSIGN(files, index_->SearchSyncedFiles(run.job_id, ".txt", false, "", 100));
  EXPECT_THAT(paths(files), ElementsAre("a/x1.txt", "a_b/x3.txt", "ab/x4.txt", "b/a%x.txt", "b/zz.txt"));
  ASSERT_OK_AND_ASSIGN(files, index_->SearchSyncedFiles(run.job_id, ".txt", false, "a_b/x3.txt", 2));
  EXPECT_THAT(paths(files), ElementsAre("ab/x4.txt", "b/a%x.txt"));
  ASSERT_OK_AND_ASSIGN(files, index_->SearchSyncedFiles(run.job_id, "%", false, "", 100));
  EXPECT_THAT(paths(files), ElementsAre("b/a%x.txt"));
  ASSERT_OK_AND_ASSIGN(files, index_->SearchSyncedFiles(run.job_id, "a", true, "a/x2.csv", 100));
  EXPECT_THAT(paths(files), ElementsAre("a_b/x3.txt", "ab/x4.txt"));
  ASSERT_OK_AND_ASSIGN(files, index_->SearchSyncedFiles(run.job_id, "", false, "", 2));
  EXPECT_THAT(paths(files), ElementsAre("a/x1.txt", "a/x2.csv"));
  EXPECT_TRUE(absl::IsNotFound(index_->SearchSyncedFiles(run.job_id + 1, "a", true, "", 10).status()));
}

TEST_P(StateIndexConformance, KeyRotationPromotesTheNextKeyOnFirstUse) {
  ASSERT_OK_AND_ASSIGN(Runner r, ApprovedRunner("pc1"));
  ASSERT_OK_AND_ASSIGN(bool offered, index_->OfferNextKey(r.id, "next-1"));
  EXPECT_FALSE(offered);  // nothing requested
  EXPECT_FALSE(r.key_rotation_pending);
  ASSERT_OK(index_->RequestKeyRotation(r.id, kT0 + 5));
  EXPECT_TRUE(index_->FindRunnerByKeyHash("key-pc1")->key_rotation_pending);  // heartbeats see it
  ASSERT_OK_AND_ASSIGN(offered, index_->OfferNextKey(r.id, "next-0"));
  EXPECT_TRUE(offered);
  // Handed out once: a second heartbeat with the old key (perhaps a thief's) gets none.
  ASSERT_OK_AND_ASSIGN(offered, index_->OfferNextKey(r.id, "next-x"));
  EXPECT_FALSE(offered);
  // The answer was lost: the operator asks again, which discards the unused key.
  ASSERT_OK(index_->RequestKeyRotation(r.id, kT0 + 6));
  EXPECT_TRUE(absl::IsNotFound(index_->PromoteNextKey("next-0", kT0 + 6).status()));
  ASSERT_OK_AND_ASSIGN(offered, index_->OfferNextKey(r.id, "next-2"));
  EXPECT_TRUE(offered);
  EXPECT_TRUE(index_->FindRunnerByKeyHash("key-pc1").ok());  // old key works until the new is used
  EXPECT_TRUE(absl::IsNotFound(index_->PromoteNextKey("next-x", kT0 + 7).status()));
  ASSERT_OK_AND_ASSIGN(Runner promoted, index_->PromoteNextKey("next-2", kT0 + 7));
  EXPECT_EQ(promoted.id, r.id);
  EXPECT_FALSE(promoted.key_rotation_pending);
  EXPECT_TRUE(absl::IsNotFound(index_->FindRunnerByKeyHash("key-pc1").status()));
  ASSERT_OK_AND_ASSIGN(Runner by_new, index_->FindRunnerByKeyHash("next-2"));
  EXPECT_EQ(by_new.id, r.id);
  ASSERT_OK_AND_ASSIGN(offered, index_->OfferNextKey(r.id, "next-3"));
  EXPECT_FALSE(offered);  // request cleared
  ASSERT_OK_AND_ASSIGN(Runner pending, index_->RegisterRunner(Info("pc2"), "enr-pc2", "s", kT0));
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->RequestKeyRotation(pending.id, kT0)));
}

TEST_P(StateIndexConformance, RetiredKeyUsedAfterRotationQuarantinesTheRunner) {
  ASSERT_OK_AND_ASSIGN(Runner r, ApprovedRunner("pc1"));
  EXPECT_TRUE(
      absl::IsNotFound(index_->UseRetiredKey("key-pc1", kT0, kT0).status()));  // not retired
  ASSERT_OK(index_->RequestKeyRotation(r.id, kT0 + 5));
  ASSERT_OK_AND_ASSIGN(bool offered, index_->OfferNextKey(r.id, "next-1"));
  ASSERT_TRUE(offered);
  ASSERT_OK(index_->PromoteNextKey("next-1", kT0 + 10).status());
  // Within the grace (retired at or after retired_before_ms): a request in flight, no change.
  ASSERT_OK_AND_ASSIGN(StateIndex::RetiredKeyUse use,
                       index_->UseRetiredKey("key-pc1", kT0 + 10, kT0 + 11));
  EXPECT_FALSE(use.quarantined_now);
  EXPECT_EQ(use.runner.status, "approved");
  // Later: two parties held the key.
  ASSERT_OK_AND_ASSIGN(use, index_->UseRetiredKey("key-pc1", kT0 + 11, kT0 + 70));
  EXPECT_TRUE(use.quarantined_now);
  EXPECT_EQ(use.runner.id, r.id);
  EXPECT_EQ(use.runner.status, "quarantined");
  ASSERT_OK_AND_ASSIGN(use, index_->UseRetiredKey("key-pc1", kT0 + 11, kT0 + 80));
  EXPECT_FALSE(use.quarantined_now);  // already
  ASSERT_OK_AND_ASSIGN(Runner by_new, index_->FindRunnerByKeyHash("next-1"));
  EXPECT_EQ(by_new.status, "quarantined");  // the new key is refused too (by the caller)
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->RequestKeyRotation(r.id, kT0 + 90)));
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->DeleteRunner(r.id)));
  // The operator binds the re-enrolled PC: the quarantine ends, every old key is gone.
  ASSERT_OK(index_->RegisterRunner(Info("pc1", "lab-pc"), "enr-again", "s", kT0 + 100).status());
  ASSERT_OK(index_->ReplaceRunnerMachine(r.id, "enr-again", kT0 + 110));
  ASSERT_OK(index_->DeliverKey("enr-again", "key-fresh"));
  ASSERT_OK_AND_ASSIGN(Runner fresh, index_->FindRunnerByKeyHash("key-fresh"));
  EXPECT_EQ(fresh.status, "approved");
  EXPECT_TRUE(absl::IsNotFound(index_->FindRunnerByKeyHash("next-1").status()));
  EXPECT_TRUE(absl::IsNotFound(index_->UseRetiredKey("key-pc1", kT0 + 200, kT0 + 200).status()));

  // Or revokes it: a quarantined runner can be revoked (and then deleted).
  ASSERT_OK_AND_ASSIGN(Runner other, ApprovedRunner("pc2"));
  ASSERT_OK(index_->RequestKeyRotation(other.id, kT0));
  ASSERT_OK(index_->OfferNextKey(other.id, "next-2").status());
  ASSERT_OK(index_->PromoteNextKey("next-2", kT0).status());
  ASSERT_OK(index_->UseRetiredKey("key-pc2", kT0 + 1, kT0 + 100).status());
  ASSERT_OK(index_->TransitionRunner(other.id, "quarantined", "revoked", kT0 + 101));
  ASSERT_OK_AND_ASSIGN(other, index_->GetRunnerById(other.id));
  EXPECT_EQ(other.status, "revoked");
  EXPECT_FALSE(other.has_key);
  ASSERT_OK(index_->DeleteRunner(other.id));
}

// ---- concurrency --------------------------------------------------------------------------------

TEST_P(StateIndexConformance, ConcurrentWritersAreAllCounted) {
  constexpr int kThreads = 4;
  constexpr int kBatches = 200;
  std::vector<ds::Run> runs;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun(absl::StrCat("pc", t), absl::StrCat("run-", t)));
    std::vector<RunFile> planned;
    for (int i = 0; i < kBatches; ++i) planned.push_back(Planned(absl::StrCat("f", i)));
    ASSERT_OK(
        index_->RecordPlanned(run.summary.run_id, planned, kBatches, int64_t{kBatches} * 100));
    runs.push_back(run);
  }

  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBatches; ++i) {
        auto applied = index_->RecordResults(
            runs[t].summary.run_id, {Result(absl::StrCat("f", i), "uploaded", 10)}, kT0 + i);
        if (!applied.ok() || *applied != 1) ++failures;
        if (i % 50 != 0) continue;
        const absl::Status beat = index_->RecordHeartbeat(runs[t].runner_id, "", "syncing",
                                                          runs[t].summary.run_id, "", kT0 + i);
        if (!beat.ok()) ++failures;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);

  for (const ds::Run& run : runs) {
    ASSERT_OK_AND_ASSIGN(ds::Run after, index_->GetRun(run.summary.run_id));
    EXPECT_EQ(after.summary.files_uploaded, static_cast<uint64_t>(kBatches));
    EXPECT_EQ(after.summary.bytes_uploaded, static_cast<uint64_t>(kBatches) * 10);
    ASSERT_OK_AND_ASSIGN(int64_t synced, index_->CountSyncedFiles(run.job_id));
    EXPECT_EQ(synced, kBatches);
  }
}

// ---- disaster recovery --------------------------------------------------------------------------

TEST_P(StateIndexConformance, ReconcileLifecycleOneActivePerJob) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  ASSERT_OK_AND_ASSIGN(Reconcile c, index_->CreateReconcile("rec-1", run.job_id, true, kT0));
  EXPECT_EQ(c.state, "queued");
  EXPECT_TRUE(c.verify);
  EXPECT_EQ(c.runner_name, "pc1");
  EXPECT_TRUE(absl::IsAlreadyExists(index_->CreateReconcile("rec-2", run.job_id, false, kT0).status()));
  ASSERT_OK_AND_ASSIGN(Reconcile claimed, index_->ClaimReconcile("w1", kT0 + 1, 0));
  EXPECT_EQ(claimed.id, "rec-1");
  EXPECT_EQ(claimed.state, "running");
  EXPECT_EQ(claimed.claimed_by, "w1");
  EXPECT_TRUE(absl::IsNotFound(index_->ClaimReconcile("w2", kT0 + 2, 0).status()));
  // Another worker may not write it; a stale one may be taken over.
  Reconcile foreign = claimed;
  foreign.claimed_by = "w2";
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->UpdateReconcile(foreign, kT0 + 3)));
  ASSERT_OK_AND_ASSIGN(Reconcile taken, index_->ClaimReconcile("w2", kT0 + 100, kT0 + 50));
  EXPECT_EQ(taken.claimed_by, "w2");
  taken.files_seen = 7;
  taken.rows_added = 5;
  taken.mismatches = 1;
  taken.report_json = R"({"mismatches":[{"path":"x"}]})";
  taken.state = "succeeded";
  taken.finished_at_ms = kT0 + 200;
  ASSERT_OK(index_->UpdateReconcile(taken, kT0 + 200));
  ASSERT_OK_AND_ASSIGN(Reconcile done, index_->GetReconcile("rec-1"));
  EXPECT_EQ(done.state, "succeeded");
  EXPECT_EQ(done.files_seen, 7u);
  EXPECT_EQ(done.rows_added, 5u);
  EXPECT_EQ(done.report_json, taken.report_json);
  ASSERT_OK_AND_ASSIGN(auto active, index_->ListReconciles(run.job_id, true, 10));
  EXPECT_TRUE(active.empty());
  ASSERT_OK(index_->CreateReconcile("rec-3", run.job_id, false, kT0 + 300).status());
  ASSERT_OK_AND_ASSIGN(auto all, index_->ListReconciles(std::nullopt, false, 10));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, "rec-3");
}

TEST_P(StateIndexConformance, ApplySyncedFilesKeepsARunInFlightFromSettingTheDigest) {
  // A scrub removes rows while a run that compared before is still open: when that run succeeds
  // its manifest no longer describes the rows, so the job must not take its digest.
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  const std::string digest(64, 'a');
  ASSERT_OK(index_->SetRunManifestDigest("run-1", digest));
  ASSERT_OK(index_->ApplySyncedFiles(run.job_id, {}, {"lost.dat"}));
  ASSERT_OK(index_->FinishRun("run-1", "succeeded", "", kT0 + 10).status());
  ASSERT_OK_AND_ASSIGN(std::string known, index_->GetJobManifestDigest(run.job_id));
  EXPECT_EQ(known, "");
  // A run begun after the change sets it as before.
  ASSERT_OK(index_->BeginRun("run-2", run.runner_id, run.job_id, "schedule", kT0 + 20).status());
  ASSERT_OK(index_->SetRunManifestDigest("run-2", digest));
  ASSERT_OK(index_->FinishRun("run-2", "succeeded", "", kT0 + 30).status());
  ASSERT_OK_AND_ASSIGN(known, index_->GetJobManifestDigest(run.job_id));
  EXPECT_EQ(known, digest);
}

TEST_P(StateIndexConformance, ScrubLifecycleOneActivePerJobWithStaleTakeover) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  EXPECT_TRUE(absl::IsInvalidArgument(
      index_->CreateScrub("s-bad", run.job_id, "operator", 1.5, kT0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      index_->CreateScrub("s-bad", run.job_id, "cron", 0, kT0).status()));
  EXPECT_TRUE(absl::IsNotFound(index_->CreateScrub("s-bad", 999'999, "operator", 0, kT0).status()));
  ASSERT_OK_AND_ASSIGN(Scrub c, index_->CreateScrub("s-1", run.job_id, "operator", 0.25, kT0));
  EXPECT_EQ(c.state, "queued");
  EXPECT_EQ(c.trigger, "operator");
  EXPECT_DOUBLE_EQ(c.rehash_fraction, 0.25);
  EXPECT_EQ(c.runner_name, "pc1");
  EXPECT_EQ(c.job_name, "pc1-job");
  EXPECT_TRUE(absl::IsAlreadyExists(
      index_->CreateScrub("s-2", run.job_id, "schedule", 0, kT0).status()));
  ASSERT_OK_AND_ASSIGN(Scrub claimed, index_->ClaimScrub("w1", kT0 + 1, 0));
  EXPECT_EQ(claimed.id, "s-1");
  EXPECT_EQ(claimed.state, "running");
  EXPECT_EQ(claimed.claimed_by, "w1");
  EXPECT_EQ(claimed.started_at_ms, kT0 + 1);
  EXPECT_TRUE(absl::IsNotFound(index_->ClaimScrub("w2", kT0 + 2, 0).status()));
  claimed.objects_listed = 3;
  ASSERT_OK(index_->UpdateScrub(claimed, kT0 + 10));  // progress
  // Another worker may not write it; a stale one (silent since before kT0 + 50) is taken over.
  Scrub foreign = claimed;
  foreign.claimed_by = "w2";
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->UpdateScrub(foreign, kT0 + 11)));
  EXPECT_TRUE(absl::IsNotFound(index_->ClaimScrub("w2", kT0 + 20, kT0 + 5).status()));
  ASSERT_OK_AND_ASSIGN(Scrub taken, index_->ClaimScrub("w2", kT0 + 100, kT0 + 50));
  EXPECT_EQ(taken.claimed_by, "w2");
  EXPECT_EQ(taken.objects_listed, 0u);  // counters start again
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->UpdateScrub(claimed, kT0 + 101)));
  taken.objects_listed = 7;
  taken.bytes_listed = 700;
  taken.objects_rehashed = 2;
  taken.missing = 1;
  taken.extra = 2;
  taken.size_mismatches = 3;
  taken.hash_mismatches = 4;
  taken.temp_files = 5;
  taken.healed = 9;
  taken.unhealed = 1;
  taken.report_json = R"({"missing":[{"path":"x"}]})";
  taken.state = "succeeded";
  taken.finished_at_ms = kT0 + 200;
  ASSERT_OK(index_->UpdateScrub(taken, kT0 + 200));
  ASSERT_OK_AND_ASSIGN(Scrub done, index_->GetScrub("s-1"));
  EXPECT_EQ(done.state, "succeeded");
  EXPECT_EQ(done.finished_at_ms, kT0 + 200);
  EXPECT_EQ(done.updated_at_ms, kT0 + 200);
  EXPECT_EQ((std::vector<uint64_t>{done.objects_listed, done.bytes_listed, done.objects_rehashed,
                                   done.missing, done.extra, done.size_mismatches,
                                   done.hash_mismatches, done.temp_files, done.healed,
                                   done.unhealed}),
            (std::vector<uint64_t>{7, 700, 2, 1, 2, 3, 4, 5, 9, 1}));
  EXPECT_EQ(done.report_json, taken.report_json);
  EXPECT_TRUE(absl::IsFailedPrecondition(index_->UpdateScrub(done, kT0 + 201)));  // closed
  EXPECT_TRUE(absl::IsNotFound(index_->GetScrub("nope").status()));
}

TEST_P(StateIndexConformance, ScrubListsAndLatestPerJob) {
  ASSERT_OK_AND_ASSIGN(ds::Run run1, RunningRun("pc1", "run-1"));
  ASSERT_OK_AND_ASSIGN(ds::Run run2, RunningRun("pc2", "run-2"));
  ASSERT_OK_AND_ASSIGN(Scrub a, index_->CreateScrub("s-a", run1.job_id, "schedule", 0, kT0));
  ASSERT_OK_AND_ASSIGN(Scrub claimed, index_->ClaimScrub("w", kT0 + 1, 0));
  ASSERT_EQ(claimed.id, "s-a");
  claimed.state = "failed";
  claimed.error = "storage unreachable";
  claimed.finished_at_ms = kT0 + 2;
  ASSERT_OK(index_->UpdateScrub(claimed, kT0 + 2));
  ASSERT_OK(index_->CreateScrub("s-b", run1.job_id, "operator", 0, kT0 + 10).status());
  ASSERT_OK(index_->CreateScrub("s-c", run2.job_id, "operator", 1, kT0 + 20).status());

  ASSERT_OK_AND_ASSIGN(auto all, index_->ListScrubs(ScrubFilter{}));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, "s-c");  // newest first
  EXPECT_EQ(all[2].id, "s-a");
  ScrubFilter f;
  f.job_id = run1.job_id;
  f.state = "queued";
  ASSERT_OK_AND_ASSIGN(auto queued, index_->ListScrubs(f));
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].id, "s-b");
  f = ScrubFilter{};
  f.limit = 1;
  ASSERT_OK_AND_ASSIGN(auto one, index_->ListScrubs(f));
  EXPECT_EQ(one.size(), 1u);
  f.limit = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(index_->ListScrubs(f).status()));

  ASSERT_OK_AND_ASSIGN(auto latest, index_->LatestScrubs({}));
  ASSERT_EQ(latest.size(), 2u);
  EXPECT_EQ(latest[0].id, run1.job_id < run2.job_id ? "s-b" : "s-c");
  ASSERT_OK_AND_ASSIGN(auto finished, index_->LatestScrubs({"succeeded", "failed"}));
  ASSERT_EQ(finished.size(), 1u);  // pc2's only scrub is still queued
  EXPECT_EQ(finished[0].id, "s-a");
  EXPECT_EQ(finished[0].error, "storage unreachable");
  ASSERT_OK_AND_ASSIGN(auto succeeded, index_->LatestScrubs({"succeeded"}));
  EXPECT_TRUE(succeeded.empty());
  (void)a;
}

TEST_P(StateIndexConformance, ScrubLostEntriesAreRecordedReplacedAndCleared) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  const int64_t job = run.job_id;
  ASSERT_OK(index_->RecordScrubLost({{job, "b/x.dat", 10, "sha-x", "missing", kT0, "s-1"},
                                     {job, "a.dat", 20, "sha-a", "hash", kT0, "s-1"}}));
  ASSERT_OK(index_->RecordScrubLost({{job, "a.dat", 21, "sha-a2", "size", kT0 + 5, "s-2"}}));
  ASSERT_OK_AND_ASSIGN(auto lost, index_->ListScrubLost(job));
  ASSERT_EQ(lost.size(), 2u);
  EXPECT_EQ(lost[0].path, "a.dat");
  EXPECT_EQ(lost[0].size, 21u);
  EXPECT_EQ(lost[0].sha256, "sha-a2");
  EXPECT_EQ(lost[0].kind, "size");
  EXPECT_EQ(lost[0].detected_at_ms, kT0 + 5);
  EXPECT_EQ(lost[0].scrub_id, "s-2");
  EXPECT_EQ(lost[1].path, "b/x.dat");
  ASSERT_OK_AND_ASSIGN(int64_t cleared, index_->ClearScrubLost(job, {"a.dat", "never-there"}));
  EXPECT_EQ(cleared, 1);
  ASSERT_OK_AND_ASSIGN(cleared, index_->ClearScrubLost(job, {}));
  EXPECT_EQ(cleared, 0);
  ASSERT_OK_AND_ASSIGN(lost, index_->ListScrubLost(job));
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].path, "b/x.dat");
  // Deleting the job forgets its entries and its scrubs.
  ASSERT_OK(index_->CreateScrub("s-3", job, "operator", 0, kT0).status());
  ASSERT_OK(index_->DeleteJob(job));
  ASSERT_OK_AND_ASSIGN(lost, index_->ListScrubLost(job));
  EXPECT_TRUE(lost.empty());
  EXPECT_TRUE(absl::IsNotFound(index_->GetScrub("s-3").status()));
}

TEST_P(StateIndexConformance, ApplySyncedFilesUpsertsAndDeletesInOneGo) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  SyncedFile a{run.job_id, "a", 1, 11, "sha-a", kT0, "rec"};
  SyncedFile b{run.job_id, "b", 2, 22, "sha-b", kT0, "rec"};
  ASSERT_OK(index_->ApplySyncedFiles(run.job_id, {a, b}, {}));
  a.sha256 = "sha-a2";
  ASSERT_OK(index_->ApplySyncedFiles(run.job_id, {a}, {"b", "never-there"}));
  ASSERT_OK_AND_ASSIGN(auto rows, index_->ListSyncedFiles(run.job_id, "", 10));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].sha256, "sha-a2");
  EXPECT_TRUE(absl::IsNotFound(index_->ApplySyncedFiles(run.job_id + 99, {a}, {})));
}

// The no-op cycle: a succeeded run's manifest digest becomes the job's; anything that changes
// the job's synced files (results of any run, reconcile, redefining the job) or a run that does
// not succeed forgets it.
TEST_P(StateIndexConformance, JobManifestDigestFollowsSucceededRunsOnly) {
  const std::string d1(64, 'a'), d2(64, 'b');
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1"));
  const int64_t job_id = run.job_id;
  ASSERT_OK_AND_ASSIGN(std::string none, index_->GetJobManifestDigest(job_id));
  EXPECT_EQ(none, "");
  EXPECT_TRUE(absl::IsNotFound(index_->SetRunManifestDigest("run-x", d1)));

  ASSERT_OK(index_->SetRunManifestDigest("run-1", d1));
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a")}, 1, 100));
  ASSERT_OK(index_->RecordResults("run-1", {Result("a", "uploaded", 100)}, kT0 + 1).status());
  ASSERT_OK_AND_ASSIGN(std::string during, index_->GetJobManifestDigest(job_id));
  EXPECT_EQ(during, "");  // not before the run closed
  ASSERT_OK(index_->FinishRun("run-1", "succeeded", "", kT0 + 2).status());
  ASSERT_OK_AND_ASSIGN(std::string after, index_->GetJobManifestDigest(job_id));
  EXPECT_EQ(after, d1);

  // A later run without results keeps it until it closes; a partial close forgets it.
  ASSERT_OK(index_->BeginRun("run-2", run.runner_id, job_id, "schedule", kT0 + 3).status());
  ASSERT_OK(index_->SetRunManifestDigest("run-2", d2));
  ASSERT_OK_AND_ASSIGN(std::string kept, index_->GetJobManifestDigest(job_id));
  EXPECT_EQ(kept, d1);
  ASSERT_OK(index_->FinishRun("run-2", "partial", "", kT0 + 4).status());
  ASSERT_OK_AND_ASSIGN(std::string partial, index_->GetJobManifestDigest(job_id));
  EXPECT_EQ(partial, "");

  // Results of any run of the job forget it.
  ASSERT_OK(index_->BeginRun("run-3", run.runner_id, job_id, "schedule", kT0 + 5).status());
  ASSERT_OK(index_->SetRunManifestDigest("run-3", d2));
  ASSERT_OK(index_->FinishRun("run-3", "succeeded", "", kT0 + 6).status());
  ASSERT_OK_AND_ASSIGN(std::string d2_set, index_->GetJobManifestDigest(job_id));
  EXPECT_EQ(d2_set, d2);
  ASSERT_OK(index_->BeginRun("run-4", run.runner_id, job_id, "schedule", kT0 + 7).status());
  ASSERT_OK(index_->RecordResults("run-4", {Result("z", "skipped")}, kT0 + 8).status());
  ASSERT_OK_AND_ASSIGN(std::string by_results, index_->GetJobManifestDigest(job_id));
  EXPECT_EQ(by_results, "");
  ASSERT_OK(index_->FinishRun("run-4", "partial", "", kT0 + 9).status());

  // Reconcile (ApplySyncedFiles) and redefining the job forget it too.
  for (int i = 0; i < 2; ++i) {
    const std::string id = absl::StrCat("run-", 5 + i);
    ASSERT_OK(index_->BeginRun(id, run.runner_id, job_id, "schedule", kT0 + 10 + i).status());
    ASSERT_OK(index_->SetRunManifestDigest(id, d1));
    ASSERT_OK(index_->FinishRun(id, "succeeded", "", kT0 + 10 + i).status());
    ASSERT_OK_AND_ASSIGN(std::string set, index_->GetJobManifestDigest(job_id));
    ASSERT_EQ(set, d1);
    if (i == 0) {
      ASSERT_OK(index_->ApplySyncedFiles(job_id, {SyncedFile{job_id, "r", 1, 1, "sha-r", kT0, "rec"}}, {}));
    } else {
      ASSERT_OK(index_->PutJob(run.runner_id, Spec("pc1-job"), /*replace=*/true, kT0).status());
    }
    ASSERT_OK_AND_ASSIGN(std::string gone, index_->GetJobManifestDigest(job_id));
    EXPECT_EQ(gone, "") << i;
  }
}

TEST_P(StateIndexConformance, AbandonStaleRunsKeepsTheCurrentOneAndAcceptsLateResults) {
  ASSERT_OK_AND_ASSIGN(ds::Run old_run, RunningRun("pc1", "run-old", kT0));
  ASSERT_OK(index_->BeginRun("run-now", old_run.runner_id, old_run.job_id, "command", kT0 + 5).status());
  ASSERT_OK(index_->RecordPlanned("run-old", {Planned("late.dat")}, 1, 100));
  ASSERT_OK_AND_ASSIGN(auto ids, index_->AbandonStaleRuns(old_run.runner_id, "run-now", kT0 + 10,
                                                          "agent restarted", kT0 + 20));
  EXPECT_EQ(ids, std::vector<std::string>{"run-old"});
  ASSERT_OK_AND_ASSIGN(ds::Run abandoned, index_->GetRun("run-old"));
  EXPECT_EQ(abandoned.summary.state, "abandoned");
  EXPECT_EQ(abandoned.summary.error, "agent restarted");
  ASSERT_OK_AND_ASSIGN(ds::Run current, index_->GetRun("run-now"));
  EXPECT_EQ(current.summary.state, "running");
  // The agent comes back and reports what it did: the row lands (no drift).
  ASSERT_OK(index_->RecordResults("run-old", {Result("late.dat", "uploaded")}, kT0 + 30).status());
  ASSERT_OK_AND_ASSIGN(auto rows, index_->LookupSyncedFiles(old_run.job_id, {"late.dat"}));
  EXPECT_EQ(rows.size(), 1u);
  ASSERT_OK(index_->FinishRun("run-old", "abandoned", "", kT0 + 40).status());
  // Nothing else of any runner is stale before kT0.
  ASSERT_OK_AND_ASSIGN(ids, index_->AbandonStaleRuns(std::nullopt, "", kT0, "x", kT0 + 50));
  EXPECT_TRUE(ids.empty());
}

TEST_P(StateIndexConformance, PruneHistoryDropsOldClosedRunsOnly) {
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("pc1", "run-1", kT0));
  ASSERT_OK(index_->RecordPlanned("run-1", {Planned("a.dat")}, 1, 100));
  ASSERT_OK(index_->RecordResults("run-1", {Result("a.dat", "uploaded")}, kT0 + 1).status());
  ASSERT_OK(index_->FinishRun("run-1", "succeeded", "", kT0 + 2).status());
  ASSERT_OK(index_->BeginRun("run-2", run.runner_id, run.job_id, "schedule", kT0 + 3).status());
  ASSERT_OK_AND_ASSIGN(int64_t n, index_->PruneHistory(kT0 + 1000));
  EXPECT_EQ(n, 1);
  EXPECT_TRUE(absl::IsNotFound(index_->GetRun("run-1").status()));
  EXPECT_TRUE(index_->GetRun("run-2").ok());
  // The index rows themselves are never pruned.
  ASSERT_OK_AND_ASSIGN(int64_t rows, index_->CountSyncedFiles(run.job_id));
  EXPECT_EQ(rows, 1);
  ASSERT_OK_AND_ASSIGN(int64_t size, index_->SizeBytes());
  EXPECT_GT(size, 0);
}

// ---- observability --------------------------------------------------------------------------------

AgentLogRecord LogRec(int64_t seq, const std::string& level, const std::string& message,
                      int64_t time_ms = kT0) {
  AgentLogRecord r;
  r.seq = seq;
  r.time_ms = time_ms;
  r.level = level;
  r.message = message;
  r.fields_json = R"({"k":"v"})";
  return r;
}

TEST_P(StateIndexConformance, AgentLogsAreDeduplicatedBySeqAndFiltered) {
  ASSERT_OK_AND_ASSIGN(Runner r, ApprovedRunner("pc1"));
  ASSERT_OK_AND_ASSIGN(Runner other, ApprovedRunner("pc2"));
  ASSERT_OK_AND_ASSIGN(int64_t n, index_->AppendAgentLogs(
                                      r.id, {LogRec(1, "debug", "scan started", kT0), LogRec(2, "info", "uploaded a.dat", kT0 + 1),
                                             LogRec(3, "error", "disk full", kT0 + 2)},
                                      kT0 + 10));
  EXPECT_EQ(n, 3);
  // A retried batch overlapping the first inserts only what is new.
  ASSERT_OK_AND_ASSIGN(n, index_->AppendAgentLogs(r.id, {LogRec(3, "error", "disk full", kT0 + 2),
                                                         LogRec(4, "warn", "slow upload", kT0 + 3)},
                                                  kT0 + 11));
  EXPECT_EQ(n, 1);
  // A seq repeated within one batch is stored once; an empty batch stores nothing.
  ASSERT_OK_AND_ASSIGN(Runner third, ApprovedRunner("pc3"));
  ASSERT_OK_AND_ASSIGN(n, index_->AppendAgentLogs(third.id, {LogRec(5, "info", "x \"q\" \\ {a,b}", kT0 + 4),
                                                             LogRec(5, "info", "again", kT0 + 4)},
                                                  kT0 + 12));
  EXPECT_EQ(n, 1);
  ASSERT_OK_AND_ASSIGN(n, index_->AppendAgentLogs(third.id, {}, kT0 + 12));
  EXPECT_EQ(n, 0);
  AgentLogFilter third_only;
  third_only.runner_id = third.id;
  ASSERT_OK_AND_ASSIGN(auto third_logs, index_->ListAgentLogs(third_only));
  ASSERT_EQ(third_logs.size(), 1u);
  EXPECT_EQ(third_logs[0].message, "x \"q\" \\ {a,b}");
  ASSERT_OK(index_->AppendAgentLogs(other.id, {LogRec(1, "info", "other runner", kT0)}, kT0).status());
  EXPECT_TRUE(absl::IsNotFound(index_->AppendAgentLogs(9999, {LogRec(1, "info", "x")}, kT0).status()));

  AgentLogFilter f;
  f.runner_id = r.id;
  ASSERT_OK_AND_ASSIGN(auto all, index_->ListAgentLogs(f));
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].seq, 4);
  EXPECT_EQ(all[3].seq, 1);
  EXPECT_EQ(all[0].runner_name, "pc1");
  EXPECT_EQ(all[3].fields_json, R"({"k":"v"})");
  f.levels = {"warn", "error"};
  ASSERT_OK_AND_ASSIGN(auto severe, index_->ListAgentLogs(f));
  ASSERT_EQ(severe.size(), 2u);
  f.levels.clear();
  f.grep = "a.dat";
  ASSERT_OK_AND_ASSIGN(auto grep, index_->ListAgentLogs(f));
  ASSERT_EQ(grep.size(), 1u);
  EXPECT_EQ(grep[0].message, "uploaded a.dat");
  f.grep.clear();
  f.since_ms = kT0 + 1;
  f.until_ms = kT0 + 3;
  ASSERT_OK_AND_ASSIGN(auto window, index_->ListAgentLogs(f));
  EXPECT_EQ(window.size(), 2u);
  f.since_ms = f.until_ms = 0;
  f.limit = 2;
  ASSERT_OK_AND_ASSIGN(auto page1, index_->ListAgentLogs(f));
  ASSERT_EQ(page1.size(), 2u);
  f.before_id = page1.back().id;
  ASSERT_OK_AND_ASSIGN(auto page2, index_->ListAgentLogs(f));
  ASSERT_EQ(page2.size(), 2u);
  EXPECT_EQ(page2[0].seq, 2);
  f.before_id = 0;
  f.after_id = page2[0].id;  // following: oldest first after an id
  ASSERT_OK_AND_ASSIGN(auto after, index_->ListAgentLogs(f));
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].seq, 3);

  ASSERT_OK_AND_ASSIGN(int64_t pruned, index_->PruneAgentLogs(kT0 + 2));
  EXPECT_EQ(pruned, 3);  // pc1's seq 1 and 2, pc2's one record (pc3's is at kT0 + 4)
}

TEST_P(StateIndexConformance, RunnerHealthIsStored) {
  ASSERT_OK_AND_ASSIGN(Runner r, ApprovedRunner("pc1"));
  EXPECT_EQ(r.health_json, "{}");
  ASSERT_OK(index_->RecordHeartbeat(r.id, "1", "idle", "", R"({"backlog_files":3})", kT0 + 5));
  ASSERT_OK_AND_ASSIGN(Runner again, index_->GetRunnerByName("pc1"));
  EXPECT_EQ(again.health_json, R"({"backlog_files":3})");
  // A heartbeat without health keeps the last one.
  ASSERT_OK(index_->RecordHeartbeat(r.id, "1", "idle", "", "", kT0 + 6));
  EXPECT_EQ(index_->GetRunnerByName("pc1")->health_json, R"({"backlog_files":3})");
  EXPECT_TRUE(absl::IsNotFound(index_->RecordHeartbeat(9999, "1", "idle", "", "{}", kT0)));
}

TEST_P(StateIndexConformance, DefaultAlertRulesExistAndRulesAreEditable) {
  ASSERT_OK_AND_ASSIGN(auto rules, index_->ListAlertRules());
  EXPECT_GE(rules.size(), 9u);
  EXPECT_TRUE(std::any_of(rules.begin(), rules.end(), [](const AlertRule& r) {
    return r.kind == "runner_offline" && r.enabled && r.severity == "warning";
  }));
  AlertRule rule;
  rule.name = "my-rule";
  rule.kind = "runner_offline";
  rule.severity = "critical";
  rule.scope_kind = "runner";
  rule.scope = "pc1";
  rule.params_json = R"({"minutes":1})";
  ASSERT_OK_AND_ASSIGN(AlertRule created, index_->PutAlertRule(rule, kT0));
  EXPECT_GT(created.id, 0);
  EXPECT_EQ(created.scope, "pc1");
  EXPECT_TRUE(absl::IsAlreadyExists(index_->PutAlertRule(rule, kT0).status()));
  created.enabled = false;
  created.params_json = R"({"minutes":2})";
  ASSERT_OK_AND_ASSIGN(AlertRule updated, index_->PutAlertRule(created, kT0 + 5));
  EXPECT_FALSE(updated.enabled);
  EXPECT_EQ(updated.params_json, R"({"minutes":2})");
  EXPECT_EQ(updated.created_at_ms, kT0);
  EXPECT_EQ(updated.updated_at_ms, kT0 + 5);
  rule.id = 9999;
  EXPECT_TRUE(absl::IsNotFound(index_->PutAlertRule(rule, kT0).status()));
  ASSERT_OK(index_->DeleteAlertRule(created.id));
  EXPECT_TRUE(absl::IsNotFound(index_->DeleteAlertRule(created.id)));
}

TEST_P(StateIndexConformance, AlertsFireOnceResolveAndQueueOneDeliveryPerTransition) {
  AlertRule rule;
  rule.name = "offline";
  rule.kind = "runner_offline";
  rule.severity = "warning";
  ASSERT_OK_AND_ASSIGN(rule, index_->PutAlertRule(rule, kT0));
  NotificationChannel hook;
  hook.name = "hook";
  hook.kind = "webhook";
  hook.config_json = R"({"url":"http://127.0.0.1:1/x"})";
  ASSERT_OK_AND_ASSIGN(hook, index_->PutNotificationChannel(hook, kT0));
  NotificationChannel critical_only = hook;
  critical_only.id = 0;
  critical_only.name = "pager";
  critical_only.min_severity = "critical";
  ASSERT_OK(index_->PutNotificationChannel(critical_only, kT0).status());
  EXPECT_TRUE(absl::IsAlreadyExists(index_->PutNotificationChannel(critical_only, kT0).status()));

  ASSERT_OK_AND_ASSIGN(auto fired, index_->FireAlert(rule.id, "pc1", "pc1 is offline", R"({"m":1})", kT0));
  EXPECT_TRUE(fired.fired);
  EXPECT_EQ(fired.alert.rule_name, "offline");
  EXPECT_EQ(fired.alert.severity, "warning");
  ASSERT_OK_AND_ASSIGN(auto again, index_->FireAlert(rule.id, "pc1", "still offline", "{}", kT0 + 1));
  EXPECT_FALSE(again.fired);
  EXPECT_EQ(again.alert.id, fired.alert.id);
  EXPECT_EQ(again.alert.message, "pc1 is offline");
  ASSERT_OK_AND_ASSIGN(auto other, index_->FireAlert(rule.id, "pc2", "pc2 is offline", "{}", kT0 + 1));
  EXPECT_TRUE(other.fired);

  AlertFilter active;
  active.active_only = true;
  ASSERT_OK_AND_ASSIGN(auto list, index_->ListAlerts(active));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].subject, "pc2");  // newest first

  // Only the channel whose min_severity the warning reaches gets deliveries.
  ASSERT_OK_AND_ASSIGN(auto due, index_->DueDeliveries(kT0 + 2, 5, 100));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].channel.name, "hook");
  EXPECT_EQ(due[0].transition, "fired");
  EXPECT_EQ(due[0].alert.subject, "pc1");
  ASSERT_OK(index_->RecordDeliveryAttempt(due[0].id, "", 0, kT0 + 3));
  ASSERT_OK(index_->RecordDeliveryAttempt(due[1].id, "connection refused", kT0 + 100, kT0 + 3));
  EXPECT_TRUE(absl::IsNotFound(index_->RecordDeliveryAttempt(due[0].id, "", 0, kT0 + 4)));
  ASSERT_OK_AND_ASSIGN(due, index_->DueDeliveries(kT0 + 4, 5, 100));
  EXPECT_TRUE(due.empty());  // the failed one waits for its next attempt
  ASSERT_OK_AND_ASSIGN(due, index_->DueDeliveries(kT0 + 100, 5, 100));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].attempts, 1);
  ASSERT_OK_AND_ASSIGN(due, index_->DueDeliveries(kT0 + 100, 1, 100));
  EXPECT_TRUE(due.empty());  // attempts exhausted
  ASSERT_OK_AND_ASSIGN(auto channels, index_->ListNotificationChannels());
  ASSERT_EQ(channels.size(), 2u);
  EXPECT_EQ(channels[0].last_error, "connection refused");
  EXPECT_EQ(channels[0].last_success_at_ms, kT0 + 3);

  ASSERT_OK_AND_ASSIGN(bool resolved, index_->ResolveAlert(fired.alert.id, kT0 + 10));
  EXPECT_TRUE(resolved);
  ASSERT_OK_AND_ASSIGN(resolved, index_->ResolveAlert(fired.alert.id, kT0 + 11));
  EXPECT_FALSE(resolved);
  EXPECT_TRUE(absl::IsNotFound(index_->ResolveAlert(9999, kT0).status()));
  ASSERT_OK_AND_ASSIGN(due, index_->DueDeliveries(kT0 + 10, 5, 100));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].transition, "resolved");
  // After resolution the same subject can fire anew.
  ASSERT_OK_AND_ASSIGN(auto refired, index_->FireAlert(rule.id, "pc1", "offline again", "{}", kT0 + 20));
  EXPECT_TRUE(refired.fired);
  EXPECT_NE(refired.alert.id, fired.alert.id);

  ASSERT_OK_AND_ASSIGN(Alert acked, index_->AckAlert(other.alert.id, "alice", kT0 + 30));
  EXPECT_EQ(acked.acknowledged_by, "alice");
  ASSERT_OK_AND_ASSIGN(acked, index_->AckAlert(other.alert.id, "bob", kT0 + 31));
  EXPECT_EQ(acked.acknowledged_by, "alice");
  EXPECT_EQ(acked.acknowledged_at_ms, kT0 + 30);
  EXPECT_TRUE(absl::IsNotFound(index_->AckAlert(9999, "x", kT0).status()));
  ASSERT_OK_AND_ASSIGN(Alert got, index_->GetAlert(fired.alert.id));
  EXPECT_EQ(got.resolved_at_ms, kT0 + 10);

  AlertFilter all;
  ASSERT_OK_AND_ASSIGN(list, index_->ListAlerts(all));
  EXPECT_EQ(list.size(), 3u);
  all.before_id = list[0].id;
  all.limit = 1;
  ASSERT_OK_AND_ASSIGN(list, index_->ListAlerts(all));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].subject, "pc2");

  ASSERT_OK(index_->DeleteNotificationChannel(hook.id));
  EXPECT_TRUE(absl::IsNotFound(index_->DeleteNotificationChannel(hook.id)));
}

// ---- ordering and concurrent compare-and-set ----------------------------------------------------

TEST_P(StateIndexConformance, NamesAndPathsOrderByBytes) {
  // Byte order ('B' < 'Z' < 'a' < 'a-b' < 'a/b' < 'a_b' < 'ab'), not a locale's, even where
  // the database's default collation is one (the PostgreSQL fixture's is ICU en-US).
  const std::vector<std::string> sorted = {"B", "Z", "a", "a-b", "a/b", "a_b", "ab", "\xc3\xa9"};
  ASSERT_OK_AND_ASSIGN(ds::Run run, RunningRun("host", "run-1"));
  std::vector<RunFile> planned;
  std::vector<protocol::FileResult> results;
  for (auto it = sorted.rbegin(); it != sorted.rend(); ++it) {
    planned.push_back(Planned(*it));
    results.push_back(Result(*it, "uploaded"));
  }
  ASSERT_OK(index_->RecordPlanned("run-1", planned, -1, -1));
  ASSERT_OK(index_->RecordResults("run-1", results, kT0).status());
  std::vector<std::string> paths;
  for (std::string after;;) {
    ASSERT_OK_AND_ASSIGN(std::vector<SyncedFile> page,
                         index_->ListSyncedFiles(run.job_id, after, 3));
    if (page.empty()) break;
    for (const SyncedFile& f : page) paths.push_back(f.path);
    after = page.back().path;
  }
  EXPECT_EQ(paths, sorted);
  ASSERT_OK_AND_ASSIGN(std::vector<RunFile> files, index_->ListRunFiles("run-1", "a", 100));
  ASSERT_EQ(files.size(), 5u);
  EXPECT_EQ(files[0].path, "a-b");

  for (const char* name : {"alpha", "Zulu", "bravo"}) {
    ASSERT_OK(index_->RegisterRunner(Info(name), absl::StrCat("enr-", name), "s", kT0).status());
  }
  ASSERT_OK_AND_ASSIGN(std::vector<Runner> runners, index_->ListRunners());
  std::vector<std::string> names;
  for (const Runner& r : runners) names.push_back(r.name);
  EXPECT_THAT(names, ElementsAre("Zulu", "alpha", "bravo", "host"));
}

TEST_P(StateIndexConformance, ConcurrentCompareAndSetsHaveOneWinner) {
  constexpr int kThreads = 6;
  auto race = [&](const std::function<absl::Status(int)>& op) {
    std::vector<absl::Status> results(kThreads);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        ++ready;
        while (ready.load() < kThreads) std::this_thread::yield();
        results[t] = op(t);
      });
    }
    for (std::thread& th : threads) th.join();
    return results;
  };
  auto count_ok = [](const std::vector<absl::Status>& results) {
    return std::count_if(results.begin(), results.end(),
                         [](const absl::Status& s) { return s.ok(); });
  };

  // Registrations of one new name share one pending runner; every enrollment stays pending.
  std::vector<absl::Status> registered = race([&](int t) {
    return index_->RegisterRunner(Info("pc1"), absl::StrCat("enr-", t), "s", kT0 + t).status();
  });
  EXPECT_EQ(count_ok(registered), kThreads);
  ASSERT_OK_AND_ASSIGN(std::vector<Runner> runners, index_->ListRunners());
  ASSERT_EQ(runners.size(), 1u);
  int pending = 0;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(Enrollment e, index_->GetEnrollment(absl::StrCat("enr-", t)));
    EXPECT_EQ(e.runner_id, runners[0].id);
    if (e.status == "pending") ++pending;
  }
  EXPECT_EQ(pending, kThreads);

  // Approvals by several operators, each of another enrollment: one wins, the others see it was
  // already done.
  std::vector<absl::Status> approved = race([&](int t) {
    return index_->DecideEnrollment(runners[0].id, absl::StrCat("enr-", t), true, kT0 + 10 + t);
  });
  EXPECT_EQ(count_ok(approved), 1);
  for (const absl::Status& s : approved) EXPECT_TRUE(s.ok() || absl::IsFailedPrecondition(s)) << s;

  // The key is delivered exactly once.
  std::string live_id;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(Enrollment e, index_->GetEnrollment(absl::StrCat("enr-", t)));
    if (e.status == "approved") live_id = e.id;
  }
  ASSERT_FALSE(live_id.empty());
  std::vector<absl::Status> delivered =
      race([&](int t) { return index_->DeliverKey(live_id, absl::StrCat("key-", t)); });
  EXPECT_EQ(count_ok(delivered), 1);

  // Commands are taken once, whoever polls.
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK(
        index_->EnqueueCommand(runners[0].id, "sync", "j", absl::StrCat("run-", i), kT0).status());
  }
  std::atomic<int> taken{0};
  std::vector<absl::Status> polled = race([&](int) -> absl::Status {
    DS_ASSIGN_OR_RETURN(std::vector<protocol::Command> commands,
                        index_->TakeCommands(runners[0].id));
    taken += static_cast<int>(commands.size());
    return absl::OkStatus();
  });
  EXPECT_EQ(count_ok(polled), kThreads);
  EXPECT_EQ(taken.load(), 20);

  // Retries of one BeginRun return the same run.
  ASSERT_OK_AND_ASSIGN(Job job, index_->PutJob(runners[0].id, Spec("job"), false, kT0));
  std::vector<absl::Status> begun = race([&](int t) {
    return index_->BeginRun("run-x", runners[0].id, job.spec.id, "schedule", kT0 + t).status();
  });
  EXPECT_EQ(count_ok(begun), kThreads);
  RunFilter filter;
  ASSERT_OK_AND_ASSIGN(std::vector<ds::Run> runs, index_->ListRuns(filter));
  EXPECT_EQ(runs.size(), 1u);
}

IndexFactory Sqlite() {
  return {"Sqlite", [](const std::filesystem::path& dir) {
            return OpenStateIndex("sqlite:" + (dir / "db" / "index.sqlite").string());
          }};
}

// A fresh database per test on the fixture's throwaway server (started once per binary).
IndexFactory Postgres() {
  return {"Postgres",
          [](const std::filesystem::path&) -> absl::StatusOr<std::unique_ptr<StateIndex>> {
            DS_ASSIGN_OR_RETURN(TestPostgresDatabase db, CreateTestPostgresDatabase());
            return OpenStateIndex(db.socket_url);
          }};
}

INSTANTIATE_TEST_SUITE_P(Backends, StateIndexConformance, testing::Values(Sqlite(), Postgres()),
                         [](const testing::TestParamInfo<IndexFactory>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace ds
