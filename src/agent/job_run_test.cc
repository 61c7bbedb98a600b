// The run's parts against a fake server (AgentServer) over real directory storage and a real
// journal: success, the server gone mid-compare and from the start (offline), base moved, a
// batch refused, the journal failing, storage refusing a put, cancellation.
#include "agent/job_run.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "common/crypto.h"
#include "common/paths.h"
#include "http/http_types.h"

namespace ds {
namespace {

namespace fs = std::filesystem;
using protocol::CompareRequest;
using protocol::CompareResponse;
using protocol::FileResult;

// The server's side of a run, shared by every session of it (thread-safe).
class FakeServer {
 public:
  // Knobs, set before the run.
  int unreachable_after_compares = -1;  // compares answered before the server goes away
  bool base_match = false;              // the probe's answer
  bool refuse_delta = false;            // delta batches are refused with delta_refusal:
  absl::Status delta_refusal = http::BaseMovedError("the base moved");
  bool refuse_complete = false;         // every `complete` is refused
  std::atomic<bool>* stop_on_last_compare = nullptr;  // set when the last batch is answered

  absl::StatusOr<CompareResponse> Compare(const CompareRequest& req) {
    std::lock_guard<std::mutex> lock(mu_);
    compares.push_back(req);
    if (unreachable_after_compares >= 0 && answered_ >= unreachable_after_compares) {
      return absl::UnavailableError("connection refused");
    }
    const bool delta_batch = !req.base_digest.empty() && req.manifest_digest.empty();
    if (delta_batch && refuse_delta) return delta_refusal;
    ++answered_;
    CompareResponse resp;
    resp.run_id = req.run_id;
    if (req.files.empty() && req.manifest_digest.empty() && req.base_digest.empty()) {
      resp.index_empty = index.empty();
    }
    if (!req.manifest_digest.empty() && req.files.empty()) resp.base_match = base_match;
    for (const auto& e : req.files) {
      auto it = index.find(e.path);
      if (it != index.end() && it->second == e.sha256) continue;
      protocol::UploadInstruction u;
      u.path = e.path;
      u.key = JoinKey("dest", e.path);
      resp.upload.push_back(std::move(u));
    }
    if (req.last && stop_on_last_compare != nullptr) {
      *stop_on_last_compare = true;
    }
    return resp;
  }

  absl::StatusOr<protocol::CompleteResponse> Complete(const protocol::CompleteRequest& req) {
    std::lock_guard<std::mutex> lock(mu_);
    completes.push_back(req);
    if (refuse_complete) return absl::InvalidArgumentError("batch refused");
    bool failed = false;
    for (const auto& r : req.results) {
      results[r.path] = r;
      if (r.status == "uploaded") index[r.path] = r.sha256;
      failed = failed || r.status != "uploaded";
    }
    partial_ = partial_ || failed;
    return protocol::CompleteResponse{req.results.size(),
                                      req.final ? (partial_ ? "partial" : "succeeded") : "running"};
  }

  std::map<std::string, std::string> index;  // path → sha256
  std::vector<CompareRequest> compares;
  std::vector<protocol::CompleteRequest> completes;
  std::map<std::string, FileResult> results;

 private:
  std::mutex mu_;
  int answered_ = 0;
  bool partial_ = false;
};

class Session final : public AgentServer {
 public:
  explicit Session(FakeServer* s) : s_(s) {}
  absl::StatusOr<CompareResponse> Compare(const std::string&, const CompareRequest& req,
                                          int) override {
    return s_->Compare(req);
  }
  absl::StatusOr<protocol::CompleteResponse> Complete(
      const std::string&, const protocol::CompleteRequest& req) override {
    return s_->Complete(req);
  }
  absl::StatusOr<protocol::GrantResponse> Grant(const std::string&,
                                                const protocol::GrantRequest&) override {
    return absl::UnimplementedError("no grants for a directory");
  }

 private:
  FakeServer* s_;
};

// A journal that fails MarkInFlight on demand and forwards everything else.
class FlakyJournal final : public Journal {
 public:
  explicit FlakyJournal(std::unique_ptr<Journal> j) : j_(std::move(j)) {}
  bool fail_in_flight = false;
  absl::Status BeginRun(const JournalRun& r) override { return j_->BeginRun(r); }
  absl::Status MarkOnline(const std::string& id) override { return j_->MarkOnline(id); }
  absl::StatusOr<int64_t> Record(const std::string& id, const std::vector<FileResult>& r) override {
    return j_->Record(id, r);
  }
  absl::Status MarkInFlight(const std::string& id,
                            const std::vector<std::pair<std::string, std::string>>& f) override {
    if (fail_in_flight) return absl::InternalError("disk I/O error");
    return j_->MarkInFlight(id, f);
  }
  absl::Status MarkReported(const std::string& id, int64_t b) override {
    return j_->MarkReported(id, b);
  }
  absl::Status CloseRun(const std::string& id, bool i, const std::string& e) override {
    return j_->CloseRun(id, i, e);
  }
  absl::Status ForgetRun(const std::string& id) override { return j_->ForgetRun(id); }
  absl::StatusOr<std::vector<JournalRun>> PendingRuns() override { return j_->PendingRuns(); }
  absl::Status ForEachUnreported(
      const std::string& id,
      const std::function<absl::Status(std::vector<FileResult>)>& fn) override {
    return j_->ForEachUnreported(id, fn);
  }
  absl::Status ForEachInFlight(
      const std::string& id,
      const std::function<absl::Status(std::vector<std::pair<std::string, std::string>>)>& fn)
      override {
    return j_->ForEachInFlight(id, fn);
  }
  absl::Status KeepInFlight(const std::string& id, const InFlightMarks& m) override {
    return j_->KeepInFlight(id, m);
  }
  absl::StatusOr<std::vector<std::pair<std::string, InFlightMarks>>> KeptInFlight() override {
    return j_->KeptInFlight();
  }
  absl::Status ForgetKeptInFlight(const std::string& id) override {
    return j_->ForgetKeptInFlight(id);
  }
  absl::Status ForEachIndexed(
      int64_t job,
      const std::function<void(const std::string&, const IndexedContent&)>& fn) override {
    return j_->ForEachIndexed(job, fn);
  }
  absl::Status RememberIndexed(
      int64_t job, const std::vector<std::pair<std::string, IndexedContent>>& rows) override {
    return j_->RememberIndexed(job, rows);
  }
  absl::StatusOr<std::set<std::string>> StagedBlocks(const std::string& k, const std::string& s,
                                                     int64_t t) override {
    return j_->StagedBlocks(k, s, t);
  }
  absl::Status RememberStagedBlock(const std::string& k, const std::string& s, const std::string& b,
                                   int64_t t) override {
    return j_->RememberStagedBlock(k, s, b, t);
  }
  absl::Status ForgetStagedBlocks(const std::string& k, int64_t t) override {
    return j_->ForgetStagedBlocks(k, t);
  }
  absl::Status SaveJobs(int64_t v, const std::string& u,
                        const std::vector<protocol::JobSpec>& j) override {
    return j_->SaveJobs(v, u, j);
  }
  absl::StatusOr<std::pair<std::string, std::vector<protocol::JobSpec>>> LoadJobs(
      int64_t* v) override {
    return j_->LoadJobs(v);
  }

 private:
  std::unique_ptr<Journal> j_;
};

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

// Copying while scanning on (the default) or off: every case must hold both ways.
class JobRunTest : public testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(testing::TempDir()) / "jobrun.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "src");
    fs::create_directories(dir_ / "store");
    fs::create_directories(dir_ / "state");
    auto journal = OpenJournal((dir_ / "state" / "journal.db").string());
    ASSERT_TRUE(journal.ok()) << journal.status();
    journal_ = std::make_unique<FlakyJournal>(std::move(*journal));
    for (int i = 0; i < 5; ++i)
      WriteFile(dir_ / "src" / ("f" + std::to_string(i)), "data " + std::to_string(i));
    WriteFile(dir_ / "src" / "sub" / "x.txt", "in a folder");
    job_.id = ++next_job_id_;  // the hash cache shelf is per process: one job per test
    job_.name = "job";
    job_.source = (dir_ / "src").string();
    job_.dest_prefix = "dest";
    job_.settle_ms = 0;
    sources_ = std::make_unique<SourceRoots>(std::vector<std::string>{dir_.string()});
  }
  void TearDown() override { fs::remove_all(dir_); }

  absl::StatusOr<JobRunOutcome> RunOnce(const std::string& run_id) {
    JobRunOptions o;
    o.state_dir = (dir_ / "state").string();
    o.storage_url = "file://" + (dir_ / "store").string();
    o.run_id = run_id;
    o.trigger = "command";
    o.journal = journal_.get();
    o.stop = &stop_;
    o.sources = sources_.get();
    o.copy_while_scanning = GetParam();
    Session main(&server_);
    AgentServerFactory connect = [this] {
      ++sessions_made_;
      return std::make_unique<Session>(&server_);
    };
    return JobRun(&main, connect, job_, o).Run();
  }

  // The objects under dest/ in storage (reserved area left out), path → content.
  std::map<std::string, std::string> Stored() {
    std::map<std::string, std::string> out;
    const fs::path root = dir_ / "store" / "dest";
    if (!fs::exists(root)) return out;
    for (const auto& e : fs::recursive_directory_iterator(root)) {
      if (e.is_regular_file()) out[fs::relative(e.path(), root).string()] = ReadFile(e.path());
    }
    return out;
  }
  std::vector<JournalRun> Pending() {
    auto runs = journal_->PendingRuns();
    EXPECT_TRUE(runs.ok()) << runs.status();
    return runs.value_or(std::vector<JournalRun>{});
  }

  static inline int64_t next_job_id_ = 0;
  fs::path dir_;
  FakeServer server_;
  std::unique_ptr<FlakyJournal> journal_;
  protocol::JobSpec job_;
  std::unique_ptr<SourceRoots> sources_;
  std::atomic<bool> stop_{false};
  std::atomic<int> sessions_made_{0};  // by the run's AgentServerFactory
};

const std::map<std::string, std::string> kAllFiles = {
    {"f0", "data 0"}, {"f1", "data 1"}, {"f2", "data 2"},
    {"f3", "data 3"}, {"f4", "data 4"}, {"sub/x.txt", "in a folder"}};

TEST_P(JobRunTest, UploadsEveryFileReportsThemAndLeavesTheJournal) {
  auto outcome = RunOnce("run-1");
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->state, "succeeded");
  EXPECT_EQ(outcome->uploaded, 6u);
  EXPECT_FALSE(outcome->offline);
  EXPECT_EQ(Stored(), kAllFiles);
  ASSERT_EQ(server_.results.size(), 6u);
  EXPECT_EQ(server_.results["sub/x.txt"].sha256, Sha256Hex("in a folder"));
  EXPECT_TRUE(server_.completes.back().final);
  EXPECT_TRUE(Pending().empty());
}

TEST_P(JobRunTest, NothingChangedSendsNoFileTheSecondTime) {
  ASSERT_TRUE(RunOnce("run-1").ok());
  server_.base_match = true;
  const size_t before = server_.compares.size();
  auto outcome = RunOnce("run-2");
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->uploaded, 0u);
  for (size_t k = before; k < server_.compares.size(); ++k) {
    EXPECT_TRUE(server_.compares[k].files.empty()) << "compare " << k << " listed files";
  }
}

// A second session is a new connection (a TLS handshake): a cycle with nothing new makes none.
TEST_P(JobRunTest, NothingChangedMakesNoSecondSession) {
  ASSERT_TRUE(RunOnce("run-1").ok());
  server_.base_match = true;
  sessions_made_ = 0;
  auto outcome = RunOnce("run-2");
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(sessions_made_.load(), 0);
}

TEST_P(JobRunTest, ServerGoneMidCompareFailsTheRunAndKeepsItJournaled) {
  server_.unreachable_after_compares = 1;  // the first request (probe or opening) is answered
  auto outcome = RunOnce("run-1");
  ASSERT_FALSE(outcome.ok());
  EXPECT_TRUE(absl::IsUnavailable(outcome.status())) << outcome.status();
  EXPECT_TRUE(Stored().empty());
  std::vector<JournalRun> pending = Pending();
  ASSERT_EQ(pending.size(), 1u);  // the server saw the run: it is closed for the replay
  EXPECT_TRUE(pending[0].closed);
  EXPECT_FALSE(pending[0].offline);
}

TEST_P(JobRunTest, ServerUnreachableFromTheStartSyncsOfflineAndJournals) {
  server_.unreachable_after_compares = 0;
  auto outcome = RunOnce("run-1");
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_TRUE(outcome->offline);
  EXPECT_EQ(outcome->state, "journaled");
  EXPECT_EQ(outcome->uploaded, 6u);
  EXPECT_EQ(Stored(), kAllFiles);
  EXPECT_TRUE(server_.completes.empty());
  std::vector<JournalRun> pending = Pending();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_TRUE(pending[0].offline);
}

TEST_P(JobRunTest, BaseMovedFallsBackToTheWholeManifest) {
  ASSERT_TRUE(RunOnce("run-1").ok());
  WriteFile(dir_ / "src" / "new.txt", "new");
  server_.base_match = true;
  server_.refuse_delta = true;
  const size_t before = server_.compares.size();
  auto outcome = RunOnce("run-2");
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->uploaded, 1u);
  EXPECT_EQ(Stored()["new.txt"], "new");
  // After the refused delta, one request listed the whole manifest without a base.
  bool whole = false;
  for (size_t k = before; k < server_.compares.size(); ++k) {
    const CompareRequest& c = server_.compares[k];
    whole = whole || (c.files.size() == 7 && c.base_digest.empty());
  }
  EXPECT_TRUE(whole);
  EXPECT_EQ(server_.results["new.txt"].status, "uploaded");
}

// Only "base moved" (its own reason) sends the whole manifest: any other conflict refusing a
// delta batch fails the run, and nothing is compared again.
TEST_P(JobRunTest, APlainConflictRefusingADeltaIsNotBaseMoved) {
  ASSERT_TRUE(RunOnce("run-1").ok());
  WriteFile(dir_ / "src" / "new.txt", "new");
  server_.base_match = true;
  server_.refuse_delta = true;
  server_.delta_refusal = absl::FailedPreconditionError("the job is being moved");
  const size_t before = server_.compares.size();
  auto outcome = RunOnce("run-2");
  ASSERT_FALSE(outcome.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(outcome.status())) << outcome.status();
  for (size_t k = before; k < server_.compares.size(); ++k) {
    const CompareRequest& c = server_.compares[k];
    EXPECT_FALSE(c.files.size() == 7 && c.base_digest.empty()) << "whole manifest sent";
  }
}

TEST_P(JobRunTest, RefusedBatchFailsTheRunAndKeepsTheResultsJournaled) {
  server_.refuse_complete = true;
  auto outcome = RunOnce("run-1");
  ASSERT_FALSE(outcome.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(outcome.status())) << outcome.status();
  EXPECT_EQ(Stored(), kAllFiles);  // what landed stays landed
  std::vector<JournalRun> pending = Pending();
  ASSERT_EQ(pending.size(), 1u);
  size_t unreported = 0;
  ASSERT_TRUE(journal_
                  ->ForEachUnreported("run-1",
                                      [&](std::vector<FileResult> b) {
                                        unreported += b.size();
                                        return absl::OkStatus();
                                      })
                  .ok());
  EXPECT_EQ(unreported, 6u);
}

TEST_P(JobRunTest, JournalFailingStopsTheUploadsBeforeAnyIsWritten) {
  server_.base_match = false;
  journal_->fail_in_flight = true;
  auto outcome = RunOnce("run-1");
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  // With copying while scanning a first sync's copies need no mark: only the upload step does.
  if (!GetParam()) {
    EXPECT_TRUE(Stored().empty());
    EXPECT_EQ(outcome->uploaded, 0u);
  }
  for (const auto& [path, r] : server_.results) EXPECT_EQ(r.status, "uploaded") << path;
}

TEST_P(JobRunTest, StorageRefusingAPutFailsThatFileAlone) {
  WriteFile(dir_ / "store" / "dest" / "sub", "a file where a folder must go");
  auto outcome = RunOnce("run-1");
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->uploaded, 5u);
  EXPECT_EQ(outcome->failed + outcome->skipped, 1u);
  EXPECT_NE(server_.results["sub/x.txt"].status, "uploaded");
  EXPECT_FALSE(server_.results["sub/x.txt"].error.empty());
  EXPECT_EQ(outcome->state, "partial");
}

TEST_P(JobRunTest, StopAfterTheCompareUploadsNothingAndReportsInterrupted) {
  server_.stop_on_last_compare = &stop_;
  auto outcome = RunOnce("run-1");
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  ASSERT_FALSE(server_.completes.empty());
  EXPECT_TRUE(server_.completes.back().final);
  EXPECT_TRUE(server_.completes.back().interrupted);
  if (!GetParam()) {
    EXPECT_TRUE(Stored().empty());
  }
}

INSTANTIATE_TEST_SUITE_P(CopyWhileScanning, JobRunTest, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& p) {
                           return p.param ? "Copying" : "NotCopying";
                         });

}  // namespace
}  // namespace ds
