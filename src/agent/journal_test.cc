#include "agent/journal.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

namespace ds {
namespace {

using protocol::FileResult;

FileResult Result(std::string path, std::string status, uint64_t size = 5, int64_t mtime_ns = 7) {
  FileResult r;
  r.path = std::move(path);
  r.status = std::move(status);
  r.size = size;
  r.mtime_ns = mtime_ns;
  if (r.status == "uploaded") r.sha256 = std::string(64, 'a');
  if (r.status == "failed") r.error = "disk full";
  return r;
}

std::vector<std::string> Paths(const std::vector<FileResult>& results) {
  std::vector<std::string> out;
  for (const auto& r : results) out.push_back(r.path + ":" + r.status);
  return out;
}

// Everything ForEachUnreported streams, in stream order.
absl::StatusOr<std::vector<FileResult>> Unreported(Journal& j, const std::string& run_id) {
  std::vector<FileResult> out;
  absl::Status st = j.ForEachUnreported(run_id, [&](std::vector<FileResult> batch) {
    for (auto& r : batch) out.push_back(std::move(r));
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> InFlight(
    Journal& j, const std::string& run_id) {
  std::vector<std::pair<std::string, std::string>> out;
  absl::Status st =
      j.ForEachInFlight(run_id, [&](std::vector<std::pair<std::string, std::string>> batch) {
        for (auto& m : batch) out.push_back(std::move(m));
        return absl::OkStatus();
      });
  if (!st.ok()) return st;
  return out;
}

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ds_journal_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    db_path_ = (dir_ / "agent.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Journal> Open() {
    auto j = OpenJournal(db_path_);
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? std::move(*j) : nullptr;
  }
  void Begin(Journal& j, const std::string& run_id) {
    JournalRun r;
    r.run_id = run_id;
    r.job = "raw";
    r.job_id = 1;
    r.started_at_ms = 1000;
    ASSERT_TRUE(j.BeginRun(r).ok());
  }

  std::filesystem::path dir_;
  std::string db_path_;
};

TEST_F(JournalTest, ResultsAreUnreportedUntilTheirBatchIsMarkedAndSurviveAReopen) {
  {
    auto j = Open();
    Begin(*j, "run-1");
    auto first = j->Record("run-1", {Result("b.dat", "uploaded"), Result("a.dat", "failed")});
    auto second = j->Record("run-1", {Result("c.dat", "skipped")});
    ASSERT_TRUE(first.ok() && second.ok());
    EXPECT_NE(*first, *second);
    ASSERT_TRUE(j->MarkReported("run-1", *second).ok());
  }
  auto j = Open();  // what a restarted agent replays, in the order it was recorded
  auto unreported = Unreported(*j, "run-1");
  ASSERT_TRUE(unreported.ok()) << unreported.status();
  EXPECT_EQ(Paths(*unreported), (std::vector<std::string>{"b.dat:uploaded", "a.dat:failed"}));
}

TEST_F(JournalTest, AnEmptyBatchWritesNothing) {
  auto j = Open();
  Begin(*j, "run-1");
  // Every cycle with nothing new ends with an empty batch: it must cost no write (and no fsync).
  auto empty = j->Record("run-1", {});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, Journal::kNoBatch);
  ASSERT_TRUE(j->MarkReported("run-1", *empty).ok());
  SQLite::Database db(db_path_, SQLite::OPEN_READONLY);
  for (const char* table : {"journal_batches", "journal_reported"}) {
    SQLite::Statement q(db, std::string("SELECT count(*) FROM ") + table);
    ASSERT_TRUE(q.executeStep());
    EXPECT_EQ(q.getColumn(0).getInt(), 0) << table;
  }
  auto real = j->Record("run-1", {Result("a", "uploaded")});
  ASSERT_TRUE(real.ok());
  EXPECT_NE(*real, Journal::kNoBatch);
}

TEST_F(JournalTest, EveryFieldRoundTrips) {
  auto j = Open();
  Begin(*j, "run-1");
  FileResult r = Result("dir/mé s\nure.dat", "uploaded", uint64_t{1} << 40, -1'234'567'890'123);
  r.kept_version = ".versions/x/20261128T000000Z";
  FileResult empty = Result("e", "skipped", 0, 0);
  empty.error = "";
  ASSERT_TRUE(j->Record("run-1", {r, empty}).ok());
  auto got = Unreported(*j, "run-1");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 2u);
  const FileResult& g = (*got)[0];
  EXPECT_EQ(g.path, r.path);
  EXPECT_EQ(g.status, r.status);
  EXPECT_EQ(g.size, r.size);
  EXPECT_EQ(g.mtime_ns, r.mtime_ns);
  EXPECT_EQ(g.sha256, r.sha256);
  EXPECT_EQ(g.error, r.error);
  EXPECT_EQ(g.kept_version, r.kept_version);
  EXPECT_EQ((*got)[1].path, "e");
  EXPECT_EQ((*got)[1].size, 0u);
}

TEST_F(JournalTest, AFilesLatestEntryIsItsState) {
  auto j = Open();
  Begin(*j, "run-1");
  // x: failed (never reported), then uploaded and reported: nothing to replay, and above all not
  // the older failure. y: uploaded and reported, then failed: the failure is replayed.
  auto b1 = j->Record("run-1", {Result("x", "failed")});
  ASSERT_TRUE(b1.ok());
  auto b2 = j->Record("run-1", {Result("x", "uploaded"), Result("y", "uploaded")});
  ASSERT_TRUE(b2.ok());
  ASSERT_TRUE(j->MarkReported("run-1", *b2).ok());
  ASSERT_TRUE(j->Record("run-1", {Result("y", "failed")}).ok());
  auto got = Unreported(*j, "run-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Paths(*got), (std::vector<std::string>{"y:failed"}));
}

TEST_F(JournalTest, InFlightMarksAreStreamedAsWrittenAndResultsApart) {
  auto j = Open();
  Begin(*j, "run-1");
  ASSERT_TRUE(j->MarkInFlight("run-1", {{"p", "pre/p"}, {"q", "pre/q"}}).ok());
  ASSERT_TRUE(j->Record("run-1", {Result("p", "uploaded")}).ok());
  ASSERT_TRUE(j->MarkInFlight("run-1", {{"r", "pre/r"}}).ok());
  // p's mark stays listed: a mark says what a crash may have left (here: nothing any more).
  auto in_flight = InFlight(*j, "run-1");
  ASSERT_TRUE(in_flight.ok());
  EXPECT_EQ(*in_flight, (std::vector<std::pair<std::string, std::string>>{
                            {"p", "pre/p"}, {"q", "pre/q"}, {"r", "pre/r"}}));
  auto unreported = Unreported(*j, "run-1");
  ASSERT_TRUE(unreported.ok());
  EXPECT_EQ(Paths(*unreported), (std::vector<std::string>{"p:uploaded"}));
}

TEST_F(JournalTest, TheStreamHoldsNoLockWhileItsCallbackRunsAndStopsAtItsError) {
  auto j = Open();
  Begin(*j, "run-1");
  auto b1 = j->Record("run-1", {Result("a", "uploaded")});
  auto b2 = j->Record("run-1", {Result("b", "uploaded")});
  ASSERT_TRUE(b1.ok() && b2.ok());
  int calls = 0;
  absl::Status st =
      j->ForEachUnreported("run-1", [&](std::vector<FileResult> batch) -> absl::Status {
        ++calls;
        EXPECT_EQ(batch.size(), 1u);
        // What a replay does with each batch: report it, which writes to the journal.
        EXPECT_TRUE(j->MarkReported("run-1", *b1).ok());
        return absl::UnavailableError("server went away");
      });
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_EQ(calls, 1);
  auto rest = Unreported(*j, "run-1");
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(Paths(*rest), (std::vector<std::string>{"b:uploaded"}));
}

TEST_F(JournalTest, RunsAreSeparateAndForgetRunRemovesOnlyItsOwn) {
  auto j = Open();
  Begin(*j, "run-1");
  Begin(*j, "run-2");
  auto b1 = j->Record("run-1", {Result("a", "uploaded")});
  auto b2 = j->Record("run-2", {Result("a", "failed")});
  ASSERT_TRUE(b1.ok() && b2.ok());
  ASSERT_TRUE(j->MarkReported("run-2", *b2).ok());  // run-1's batch of the same number stays
  auto run1 = Unreported(*j, "run-1");
  ASSERT_TRUE(run1.ok());
  EXPECT_EQ(Paths(*run1), (std::vector<std::string>{"a:uploaded"}));
  ASSERT_TRUE(j->ForgetRun("run-1").ok());
  EXPECT_TRUE(Unreported(*j, "run-1")->empty());
  auto runs = j->PendingRuns();
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].run_id, "run-2");
}

TEST_F(JournalTest, RecordWaitsForAnotherWriterOfAgentDb) {
  // agent.db has other writers (the hash cache). One holding the write lock when Record starts,
  // and committing meanwhile, must delay the batch, not fail it.
  auto j = Open();
  Begin(*j, "run-1");
  ASSERT_TRUE(j->Record("run-1", {Result("a", "uploaded")}).ok());
  SQLite::Database other(db_path_, SQLite::OPEN_READWRITE);
  other.exec("CREATE TABLE IF NOT EXISTS other_writer (x INTEGER)");
  auto tx = std::make_unique<SQLite::Transaction>(other, SQLite::TransactionBehavior::IMMEDIATE);
  other.exec("INSERT INTO other_writer VALUES (1)");
  std::thread commit_later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    tx->commit();
  });
  auto b = j->Record("run-1", {Result("b", "uploaded")});
  commit_later.join();
  ASSERT_TRUE(b.ok()) << b.status();
  auto got = Unreported(*j, "run-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Paths(*got), (std::vector<std::string>{"a:uploaded", "b:uploaded"}));
}

TEST_F(JournalTest, ADamagedBatchIsAnErrorNotAShorterList) {
  {
    auto j = Open();
    Begin(*j, "run-1");
    ASSERT_TRUE(j->Record("run-1", {Result("a", "uploaded")}).ok());
  }
  {
    SQLite::Database db(db_path_, SQLite::OPEN_READWRITE);
    db.exec("UPDATE journal_batches SET entries = substr(entries, 1, 10)");
  }
  auto j = Open();
  auto got = Unreported(*j, "run-1");
  EXPECT_TRUE(absl::IsDataLoss(got.status())) << got.status();
}

TEST_F(JournalTest, AJournalWithARowPerFileIsMigratedOnOpen) {
  {
    // The layout agents wrote before results were journaled a batch per row.
    SQLite::Database db(db_path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec(R"sql(
      CREATE TABLE journal_runs (run_id TEXT PRIMARY KEY, job TEXT NOT NULL, job_id INTEGER NOT NULL,
        trigger TEXT NOT NULL DEFAULT '', offline INTEGER NOT NULL DEFAULT 0,
        closed INTEGER NOT NULL DEFAULT 0, interrupted INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '', started_at INTEGER NOT NULL);
      CREATE TABLE journal_results (run_id TEXT NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL,
        key TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL DEFAULT 0,
        mtime_ns INTEGER NOT NULL DEFAULT 0, sha256 TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '', kept_version TEXT NOT NULL DEFAULT '',
        reported INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (run_id, path)) WITHOUT ROWID;
      INSERT INTO journal_runs (run_id, job, job_id, started_at) VALUES ('old', 'raw', 1, 5);
      INSERT INTO journal_results (run_id, path, status, size, mtime_ns, sha256, reported)
        VALUES ('old', 'a', 'uploaded', 3, -4, 'abc', 0), ('old', 'b', 'uploaded', 1, 1, 'def', 1);
      INSERT INTO journal_results (run_id, path, status, key) VALUES ('old', 'c', 'inflight', 'k/c');
    )sql");
  }
  auto j = Open();
  auto got = Unreported(*j, "old");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(Paths(*got), (std::vector<std::string>{"a:uploaded"}));
  EXPECT_EQ((*got)[0].size, 3u);
  EXPECT_EQ((*got)[0].mtime_ns, -4);
  EXPECT_EQ((*got)[0].sha256, "abc");
  auto in_flight = InFlight(*j, "old");
  ASSERT_TRUE(in_flight.ok());
  EXPECT_EQ(*in_flight, (std::vector<std::pair<std::string, std::string>>{{"c", "k/c"}}));
  j.reset();
  SQLite::Database db(db_path_, SQLite::OPEN_READONLY);
  SQLite::Statement q(db, "SELECT count(*) FROM sqlite_master WHERE name = 'journal_results'");
  ASSERT_TRUE(q.executeStep());
  EXPECT_EQ(q.getColumn(0).getInt(), 0);
}

// Marks kept for temp cleanup outlive the run (ForgetRun) and a reopen, until forgotten.
TEST_F(JournalTest, KeptInFlightMarksOutliveTheirRunUntilForgotten) {
  {
    auto j = Open();
    Begin(*j, "run-1");
    ASSERT_TRUE(j->KeepInFlight("run-1", {{"a.dat", "lab/a.dat"}, {"b/c.dat", "lab/b/c.dat"}}).ok());
    ASSERT_TRUE(j->KeepInFlight("run-2", {{"z.dat", "lab/z.dat"}}).ok());
    ASSERT_TRUE(j->KeepInFlight("run-1", {{"a.dat", "lab/a.dat"}}).ok());  // kept twice: once
    ASSERT_TRUE(j->ForgetRun("run-1").ok());
  }
  auto j = Open();
  auto kept = j->KeptInFlight();
  ASSERT_TRUE(kept.ok()) << kept.status();
  ASSERT_EQ(kept->size(), 2u);
  EXPECT_EQ((*kept)[0].first, "run-1");
  EXPECT_EQ((*kept)[0].second, (InFlightMarks{{"a.dat", "lab/a.dat"}, {"b/c.dat", "lab/b/c.dat"}}));
  EXPECT_EQ((*kept)[1].first, "run-2");
  ASSERT_TRUE(j->ForgetKeptInFlight("run-1").ok());
  kept = j->KeptInFlight();
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 1u);
  EXPECT_EQ((*kept)[0].first, "run-2");
}

}  // namespace
}  // namespace ds
