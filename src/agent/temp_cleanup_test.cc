#include "agent/temp_cleanup.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"

namespace ds {
namespace {

namespace fs = std::filesystem;

constexpr char kRun[] = "abcdef01-2345-4678-9abc-def012345678";  // temp tag "abcdef01"

// The temp name a directory storage gives an upload of `name` by run kRun (storage.md).
std::string OurTemp(const std::string& name) {
  return absl::StrCat(".dstmp-abcdef01-", Sha256Hex(name).substr(0, 16));
}

class TempCleanupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("ds_temp_cleanup_", ::getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "share" / "lab" / "raw");
    auto j = OpenJournal((dir_ / "agent.db").string());
    ASSERT_TRUE(j.ok()) << j.status();
    journal_ = std::move(*j);
    JournalRun run;
    run.run_id = kRun;
    run.job = "raw";
    run.job_id = 1;
    ASSERT_TRUE(journal_->BeginRun(run).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Plant(const fs::path& rel) {
    std::ofstream(dir_ / "share" / rel) << "partial";
  }
  bool Exists(const fs::path& rel) const { return fs::exists(dir_ / "share" / rel); }
  std::string Url() const { return "file://" + (dir_ / "share").string(); }

  fs::path dir_;
  std::unique_ptr<Journal> journal_;
};

TEST_F(TempCleanupTest, RemovesOnlyThisAgentsTempFilesOfInFlightUploads) {
  const fs::path ours = fs::path("lab/raw") / OurTemp("a.dat");
  const fs::path other_agent = fs::path("lab/raw") / absl::StrCat(".dstmp-99999999-", Sha256Hex("a.dat").substr(0, 16));
  const fs::path not_in_flight = fs::path("lab/raw") / OurTemp("b.dat");
  Plant(ours);
  Plant(other_agent);
  Plant(not_in_flight);
  Plant("lab/raw/a.dat.keep");
  ASSERT_TRUE(journal_->MarkInFlight(kRun, {{"a.dat", "lab/raw/a.dat"}, {"c.dat", "lab/raw/c.dat"}}).ok());

  ASSERT_TRUE(RemoveInterruptedTemps(journal_.get(), Url()).ok());
  EXPECT_FALSE(Exists(ours));
  EXPECT_TRUE(Exists(other_agent));
  EXPECT_TRUE(Exists(not_in_flight));  // no upload of b.dat was in flight
  EXPECT_TRUE(Exists("lab/raw/a.dat.keep"));

  auto storage = OpenStorage(*ParseStorageUrl(Url()));
  ASSERT_TRUE(storage.ok());
  Plant(ours);
  auto removed = RemoveUploadTemps(**storage, kRun, {{"a.dat", "lab/raw/a.dat"}});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 1u);
  removed = RemoveUploadTemps(**storage, kRun, {{"a.dat", "lab/raw/a.dat"}});
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 0u);
}

TEST_F(TempCleanupTest, UnreachableStorageKeepsTheMarksUntilACleanupSucceeds) {
  const fs::path ours = fs::path("lab/raw") / OurTemp("a.dat");
  Plant(ours);
  ASSERT_TRUE(journal_->MarkInFlight(kRun, {{"a.dat", "lab/raw/a.dat"}}).ok());
  std::ofstream(dir_ / "not-a-dir") << "x";
  const std::string unreachable = "file://" + (dir_ / "not-a-dir").string();

  // A replay that cannot open storage keeps the marks; the run may leave the journal.
  LazyStorage storage(unreachable);
  bool kept = false;
  ASSERT_TRUE(RemoveReplayedRunTemps(journal_.get(), storage, kRun, &kept).ok());
  EXPECT_TRUE(kept);
  ASSERT_TRUE(journal_->ForgetRun(kRun).ok());
  EXPECT_TRUE(Exists(ours));

  EXPECT_TRUE(absl::IsUnavailable(RemoveInterruptedTemps(journal_.get(), unreachable)));
  auto marks = journal_->KeptInFlight();
  ASSERT_TRUE(marks.ok());
  ASSERT_EQ(marks->size(), 1u);

  ASSERT_TRUE(RemoveInterruptedTemps(journal_.get(), Url()).ok());
  EXPECT_FALSE(Exists(ours));
  marks = journal_->KeptInFlight();
  ASSERT_TRUE(marks.ok());
  EXPECT_TRUE(marks->empty());
}

TEST_F(TempCleanupTest, AReplayWithStorageRemovesTheRunsTempFiles) {
  const fs::path ours = fs::path("lab/raw") / OurTemp("a.dat");
  Plant(ours);
  ASSERT_TRUE(journal_->MarkInFlight(kRun, {{"a.dat", "lab/raw/a.dat"}}).ok());
  LazyStorage storage(Url());
  bool kept = false;
  ASSERT_TRUE(RemoveReplayedRunTemps(journal_.get(), storage, kRun, &kept).ok());
  EXPECT_FALSE(kept);
  EXPECT_FALSE(Exists(ours));
}

TEST_F(TempCleanupTest, ObjectStorageHasNoTempFilesToWaitFor) {
  const std::string azblob = "azblob://account/container";
  ASSERT_TRUE(journal_->MarkInFlight(kRun, {{"a.dat", "lab/raw/a.dat"}}).ok());
  LazyStorage storage(azblob);
  bool kept = false;
  ASSERT_TRUE(RemoveReplayedRunTemps(journal_.get(), storage, kRun, &kept).ok());
  EXPECT_FALSE(kept);
  ASSERT_TRUE(journal_->KeepInFlight("old-run", {{"b.dat", "lab/raw/b.dat"}}).ok());
  ASSERT_TRUE(RemoveInterruptedTemps(journal_.get(), azblob).ok());
  auto marks = journal_->KeptInFlight();
  ASSERT_TRUE(marks.ok());
  EXPECT_TRUE(marks->empty());
}

}  // namespace
}  // namespace ds
