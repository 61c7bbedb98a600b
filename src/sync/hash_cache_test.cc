#include "sync/hash_cache.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace ds {
namespace {

namespace fs = std::filesystem;

const std::string kShaA(64, 'a');
const std::string kShaB(64, 'b');

class HashCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "hash_cache_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    db_ = (dir_ / "cache.db").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<HashCache> Open(const std::string& job = "job1") {
    absl::StatusOr<std::unique_ptr<HashCache>> c = OpenHashCache(db_, job);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  fs::path dir_;
  std::string db_;
};

TEST_F(HashCacheTest, HitOnlyWhenSizeAndMtimeMatch) {
  std::unique_ptr<HashCache> c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Lookup("a.dat", 10, 100), std::nullopt);
  c->Store("a.dat", 10, 100, kShaA);
  EXPECT_EQ(c->Lookup("a.dat", 10, 100), kShaA);
  EXPECT_EQ(c->Lookup("a.dat", 11, 100), std::nullopt);  // size differs
  EXPECT_EQ(c->Lookup("a.dat", 10, 101), std::nullopt);  // mtime differs
  EXPECT_EQ(c->Lookup("b.dat", 10, 100), std::nullopt);
  c->Store("a.dat", 11, 101, kShaB);  // replaces
  EXPECT_EQ(c->Lookup("a.dat", 11, 101), kShaB);
  EXPECT_EQ(c->Lookup("a.dat", 10, 100), std::nullopt);
}

TEST_F(HashCacheTest, PersistsAcrossReopenPerJob) {
  {
    std::unique_ptr<HashCache> c = Open();
    ASSERT_NE(c, nullptr);
    c->Store("dir/ä b.dat", 1ull << 40, 1'700'000'000'123'456'789, kShaA);
    c->Store("z", 0, 0, kShaB);
    ASSERT_TRUE(c->Flush().ok());
  }
  std::unique_ptr<HashCache> c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Lookup("dir/ä b.dat", 1ull << 40, 1'700'000'000'123'456'789), kShaA);
  EXPECT_EQ(c->Lookup("dir/ä b.dat", 1ull << 40, 1'700'000'000'123'456'788), std::nullopt);
  EXPECT_EQ(c->Lookup("z", 0, 0), kShaB);

  std::unique_ptr<HashCache> other = Open("job2");  // same database, another job
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->Lookup("z", 0, 0), std::nullopt);
}

TEST_F(HashCacheTest, NothingPersistsWithoutFlush) {
  {
    std::unique_ptr<HashCache> c = Open();
    ASSERT_NE(c, nullptr);
    c->Store("a", 1, 1, kShaA);
  }
  std::unique_ptr<HashCache> c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Lookup("a", 1, 1), std::nullopt);
}

TEST_F(HashCacheTest, UpdatedEntryIsPersisted) {
  {
    std::unique_ptr<HashCache> c = Open();
    ASSERT_NE(c, nullptr);
    c->Store("a", 1, 1, kShaA);
    ASSERT_TRUE(c->Flush().ok());
    EXPECT_EQ(c->Lookup("a", 1, 1), kShaA);
    c->Store("a", 2, 2, kShaB);
    ASSERT_TRUE(c->Flush().ok());
  }
  std::unique_ptr<HashCache> c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Lookup("a", 2, 2), kShaB);
}

TEST_F(HashCacheTest, FlushDropsUntouchedEntries) {
  {
    std::unique_ptr<HashCache> c = Open();
    ASSERT_NE(c, nullptr);
    c->Store("keep", 1, 1, kShaA);
    c->Store("stale-lookup", 1, 1, kShaA);
    c->Store("gone", 1, 1, kShaB);
    ASSERT_TRUE(c->Flush().ok());
  }
  {
    std::unique_ptr<HashCache> c = Open();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->Lookup("keep", 1, 1), kShaA);
    // A lookup that misses on size still counts as "seen": the file exists.
    EXPECT_EQ(c->Lookup("stale-lookup", 2, 1), std::nullopt);
    ASSERT_TRUE(c->Flush().ok());
    EXPECT_EQ(c->Lookup("gone", 1, 1), std::nullopt);  // dropped from memory too
  }
  std::unique_ptr<HashCache> c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Lookup("keep", 1, 1), kShaA);
  EXPECT_EQ(c->Lookup("stale-lookup", 1, 1), kShaA);
  EXPECT_EQ(c->Lookup("gone", 1, 1), std::nullopt);

  std::unique_ptr<HashCache> other = Open("job2");  // other jobs' rows are not touched
  ASSERT_NE(other, nullptr);
  other->Store("x", 1, 1, kShaA);
  ASSERT_TRUE(other->Flush().ok());
  std::unique_ptr<HashCache> again = Open("job1");
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(again->Flush().ok());  // drops all of job1
  std::unique_ptr<HashCache> other2 = Open("job2");
  ASSERT_NE(other2, nullptr);
  EXPECT_EQ(other2->Lookup("x", 1, 1), kShaA);
}

TEST_F(HashCacheTest, MemoryCacheHasTheSameSemantics) {
  std::unique_ptr<HashCache> c = NewMemoryHashCache();
  c->Store("a", 1, 1, kShaA);
  c->Store("b", 1, 1, kShaB);
  EXPECT_EQ(c->Lookup("a", 1, 2), std::nullopt);
  ASSERT_TRUE(c->Flush().ok());
  EXPECT_EQ(c->Lookup("a", 1, 1), kShaA);
  ASSERT_TRUE(c->Flush().ok());  // "b" was not touched since the last flush
  EXPECT_EQ(c->Lookup("b", 1, 1), std::nullopt);
  EXPECT_EQ(c->Lookup("a", 1, 1), kShaA);
}

TEST_F(HashCacheTest, OpenErrorsAreStatuses) {
  absl::StatusOr<std::unique_ptr<HashCache>> c =
      OpenHashCache((dir_ / "no/such/dir/cache.db").string(), "j");
  EXPECT_TRUE(absl::IsFailedPrecondition(c.status())) << c.status();

  std::ofstream(db_, std::ios::binary) << std::string(8192, 'x');  // not a database
  c = OpenHashCache(db_, "j");
  EXPECT_TRUE(absl::IsDataLoss(c.status())) << c.status();
}

}  // namespace
}  // namespace ds
