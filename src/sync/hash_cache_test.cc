#include "sync/hash_cache.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "sync/manifest_digest.h"

namespace ds {
namespace {

namespace fs = std::filesystem;

Sha256Digest Sha(uint8_t fill) {
  Sha256Digest d;
  d.fill(fill);
  return d;
}
const Sha256Digest kShaA = Sha(0xaa);
const Sha256Digest kShaB = Sha(0xbb);

struct Row {
  std::string path;
  uint64_t size;
  int64_t mtime_ns;
  Sha256Digest sha;
};

// Runs one scan over `cache` as ScanJob and the agent do: looks up each row in order, stores
// the misses, ends the scan and adopts the result.
void Scan(HashCache* cache, const std::vector<Row>& rows, int* misses = nullptr) {
  Manifest next;
  int n = 0;
  for (const Row& r : rows) {
    if (!cache->Lookup(r.path, r.size, r.mtime_ns)) {
      cache->Store(r.path, r.size, r.mtime_ns, r.sha);
      ++n;
    }
    ASSERT_TRUE(next.Add(r.path, r.size, r.mtime_ns, r.sha));
  }
  ASSERT_TRUE(cache->EndScan().ok());
  std::string digest = ManifestDigest(next);
  cache->Adopt(std::move(next), digest);
  if (misses != nullptr) *misses = n;
}

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

TEST_F(HashCacheTest, HitOnlyWhenPathSizeAndMtimeMatch) {
  std::unique_ptr<HashCache> c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->size(), 0u);
  EXPECT_EQ(c->digest(), "");
  Scan(c.get(), {{"a.dat", 10, 100, kShaA}, {"b.dat", 10, 100, kShaB}});
  EXPECT_EQ(c->size(), 2u);
  EXPECT_EQ(c->Lookup("a.dat", 11, 100), std::nullopt);  // size differs
  EXPECT_EQ(c->Lookup("b.dat", 10, 101), std::nullopt);  // mtime differs
  ASSERT_TRUE(c->EndScan().ok());
  c = Open();  // the stale entries were dropped when the lookups missed
  EXPECT_EQ(c->size(), 0u);
  Scan(c.get(), {{"a.dat", 10, 100, kShaA}, {"b.dat", 10, 100, kShaB}});
  EXPECT_EQ(c->Lookup("a.dat", 10, 100), kShaA);
  EXPECT_EQ(c->Lookup("aa", 10, 100), std::nullopt);  // not in the contents
  EXPECT_EQ(c->Lookup("b.dat", 10, 100), kShaB);
}

TEST_F(HashCacheTest, PersistsPerJobInPathOrderWithTheDigest) {
  const std::vector<Row> rows = {{"dir/ä b.dat", 1ull << 40, 1'700'000'000'123'456'789, kShaA},
                                 {"z", 0, 0, kShaB}};
  std::string digest;
  {
    std::unique_ptr<HashCache> c = Open();
    ASSERT_NE(c, nullptr);
    Scan(c.get(), rows);
    digest = c->digest();
    EXPECT_EQ(digest.size(), 64u);
  }
  std::unique_ptr<HashCache> c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->size(), 2u);
  EXPECT_EQ(c->digest(), digest);  // recomputed from the rows: the same manifest
  EXPECT_EQ(c->Lookup("dir/ä b.dat", 1ull << 40, 1'700'000'000'123'456'789), kShaA);
  EXPECT_EQ(c->Lookup("z", 0, 0), kShaB);
  std::unique_ptr<HashCache> other = Open("job2");
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->size(), 0u);
  EXPECT_EQ(other->Lookup("z", 0, 0), std::nullopt);
}

TEST_F(HashCacheTest, NothingPersistsWithoutEndScan) {
  {
    std::unique_ptr<HashCache> c = Open();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->Lookup("a", 1, 1), std::nullopt);
    c->Store("a", 1, 1, kShaA);
  }  // a failed scan: the object is dropped
  std::unique_ptr<HashCache> c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Lookup("a", 1, 1), std::nullopt);
}

TEST_F(HashCacheTest, ChangedAndVanishedEntriesAreUpdated) {
  std::unique_ptr<HashCache> c = Open();
  ASSERT_NE(c, nullptr);
  int misses = 0;
  Scan(c.get(), {{"a", 1, 1, kShaA}, {"b", 1, 1, kShaA}, {"c", 1, 1, kShaA}, {"d", 1, 1, kShaA}},
       &misses);
  EXPECT_EQ(misses, 4);
  // b changed, c vanished, e is new, a and d unchanged.
  Scan(c.get(), {{"a", 1, 1, kShaA}, {"b", 2, 2, kShaB}, {"d", 1, 1, kShaA}, {"e", 1, 1, kShaB}},
       &misses);
  EXPECT_EQ(misses, 2);
  c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->size(), 4u);
  EXPECT_EQ(c->Lookup("a", 1, 1), kShaA);
  EXPECT_EQ(c->Lookup("b", 2, 2), kShaB);
  EXPECT_EQ(c->Lookup("c", 1, 1), std::nullopt);
  EXPECT_EQ(c->Lookup("d", 1, 1), kShaA);
  EXPECT_EQ(c->Lookup("e", 1, 1), kShaB);
}

TEST_F(HashCacheTest, LargeScansPersistTheirDropsInBatches) {
  std::vector<Row> rows;
  for (int i = 0; i < 25'000; ++i) rows.push_back({"f" + std::to_string(100000 + i), 1, i, kShaA});
  std::unique_ptr<HashCache> c = Open();
  ASSERT_NE(c, nullptr);
  Scan(c.get(), rows);
  // Every other file gone: 12,500 deletes, written in batches during the next scan.
  std::vector<Row> half;
  for (size_t i = 0; i < rows.size(); i += 2) half.push_back(rows[i]);
  int misses = -1;
  Scan(c.get(), half, &misses);
  EXPECT_EQ(misses, 0);
  c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->size(), half.size());
}

TEST_F(HashCacheTest, MemoryCacheHasTheSameSemantics) {
  std::unique_ptr<HashCache> c = NewMemoryHashCache();
  int misses = 0;
  Scan(c.get(), {{"a", 1, 1, kShaA}, {"b", 1, 1, kShaB}}, &misses);
  EXPECT_EQ(misses, 2);
  EXPECT_EQ(c->digest().size(), 64u);
  Scan(c.get(), {{"a", 1, 1, kShaA}, {"b", 1, 2, kShaB}}, &misses);
  EXPECT_EQ(misses, 1);
  Scan(c.get(), {{"b", 1, 2, kShaB}}, &misses);
  EXPECT_EQ(misses, 0);
  EXPECT_EQ(c->Lookup("b", 1, 2), kShaB);
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
