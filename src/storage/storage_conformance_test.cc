// The storage conformance suite: every backend must pass StorageConformanceTest, written only
// against the Storage interface. A backend joins by adding a StorageFactory to the
// INSTANTIATE_TEST_SUITE_P list at the bottom. Backend-specific tests follow the suite.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/dir/dir_storage.h"
#include "storage/storage.h"

// PutOptions{.field = ...} deliberately leaves the other fields at their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace ds {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

// ---------------------------------------------------------------------------------------------
// Helpers

fs::path MakeTempDir(const std::string& stem) {
  std::string tmpl = (fs::temp_directory_path() / (stem + "-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

void WriteFile(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string RandomContent(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t j = 0; j < 8 && i + j < n; ++j) out[i + j] = static_cast<char>(v >> (8 * j));
  }
  return out;
}

// Polls `cond` every 5 ms for up to `timeout`.
bool WaitFor(const std::function<bool()>& cond,
             std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

// ---------------------------------------------------------------------------------------------
// What a backend provides to the suite.

// One fresh, empty backend instance plus the hooks the suite needs beyond the interface.
struct StorageUnderTest {
  std::unique_ptr<Storage> storage;  // null: backend unavailable here, tests are skipped
  std::string skip_reason;
  // Writes `content` under `raw_key`, bypassing the interface and its key checks: plants what a
  // crash or another writer could leave (reserved-area objects, temp files).
  std::function<void(const std::string& raw_key, const std::string& content)> plant_raw;
  // Keys of in-flight/leftover temp objects the backend holds (all of the storage).
  std::function<std::vector<std::string>()> temp_files;
  std::function<void()> cleanup;  // may be empty; called after `storage` is destroyed
  // Whether this instance keeps SHA-256 metadata, so Stat()/List() must report it. When false
  // they may report it or leave it empty, never a wrong one.
  bool stores_sha256 = true;
};

struct StorageFactory {
  std::string name;  // test-name suffix: letters, digits, '_'
  // `scratch` is an empty directory owned by the test, removed afterwards.
  std::function<StorageUnderTest(const fs::path& scratch)> make;
};

void PrintTo(const StorageFactory& f, std::ostream* os) { *os << f.name; }

// Whether files under `dir` can carry user.* xattrs (ext4, xfs, btrfs, tmpfs ≥ 6.6 do; some
// network shares do not).
bool SupportsUserXattrs(const fs::path& dir) {
  const fs::path probe = dir / "xattr-probe";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool ok = ::fsetxattr(fd, "user.probe", "1", 1, 0) == 0;
  ::close(fd);
  ::unlink(probe.c_str());
  return ok;
}

StorageFactory DirFactory() {
  return {"Dir", [](const fs::path& scratch) {
            StorageUnderTest t;
            const fs::path root = scratch / "share";
            auto opened = OpenDirStorage(root.string());
            if (!opened.ok()) {
              t.skip_reason = opened.status().ToString();
              return t;
            }
            t.storage = std::move(*opened);
            t.stores_sha256 = SupportsUserXattrs(root);
            t.plant_raw = [root](const std::string& raw_key, const std::string& content) {
              WriteFile(root / raw_key, content);
            };
            t.temp_files = [root]() {
              auto temps = ListTempFiles(root.string(), "");
              return temps.ok() ? *temps : std::vector<std::string>{"<ListTempFiles failed>"};
            };
            return t;
          }};
}

// ---------------------------------------------------------------------------------------------
// The conformance suite.

class StorageConformanceTest : public ::testing::TestWithParam<StorageFactory> {
 protected:
  void SetUp() override {
    scratch_ = MakeTempDir("ds-storage-test");
    fs::create_directories(scratch_ / "backend");
    backend_ = GetParam().make(scratch_ / "backend");
    if (backend_.storage == nullptr) {
      GTEST_SKIP() << "backend unavailable: " << backend_.skip_reason;
    }
  }

  void TearDown() override {
    backend_.storage.reset();
    if (backend_.cleanup) backend_.cleanup();
    fs::remove_all(scratch_);
  }

  Storage& storage() { return *backend_.storage; }

  // A new local source file holding `content`.
  fs::path WriteSource(const std::string& content) {
    fs::path p = scratch_ / "sources" / absl::StrCat("source-", next_source_++, ".bin");
    WriteFile(p, content);
    return p;
  }

  absl::StatusOr<PutResult> Put(const std::string& key, const std::string& content,
                                const PutOptions& options = {}) {
    return storage().PutFile(key, WriteSource(content), options);
  }

  // Every listed object under `prefix`, by key. Fails the test on a List error or a duplicate.
  std::map<std::string, ObjectInfo> ListAll(const std::string& prefix) {
    std::map<std::string, ObjectInfo> out;
    absl::Status s = storage().List(prefix, [&](const ObjectInfo& info) {
      EXPECT_TRUE(out.emplace(info.key, info).second) << "listed twice: " << info.key;
    });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  std::vector<std::string> Keys(const std::string& prefix) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : ListAll(prefix)) keys.push_back(k);
    return keys;
  }

  // Checks a SHA-256 the backend reports from its stored metadata.
  void ExpectStoredSha(const std::string& reported, const std::string& expected) {
    if (backend_.stores_sha256) {
      EXPECT_EQ(reported, expected);
    } else {
      EXPECT_THAT(reported, ::testing::AnyOf(IsEmpty(), ::testing::Eq(expected)));
    }
  }

  // Asserts a put of `key` left nothing behind: no object, no temp file.
  void ExpectNothingUnder(const std::string& key) {
    EXPECT_TRUE(absl::IsNotFound(storage().Stat(key).status())) << key;
    EXPECT_EQ(ListAll("").count(key), 0u) << key;
    EXPECT_THAT(backend_.temp_files(), IsEmpty());
  }

  fs::path scratch_;
  StorageUnderTest backend_;
  int next_source_ = 0;
};

TEST_P(StorageConformanceTest, PutThenStatAndReadAllAreByteIdentical) {
  const std::string content = RandomContent(300'001, 1);
  const fs::path source = WriteSource(content);
  auto digest = Sha256File(source);
  ASSERT_TRUE(digest.ok()) << digest.status();

  auto put =
      storage().PutFile("job/run1/data.bin", source, PutOptions{.expected_sha256 = digest->sha256});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.key, "job/run1/data.bin");
  EXPECT_EQ(put->info.size, content.size());
  EXPECT_EQ(put->info.sha256, digest->sha256);
  EXPECT_THAT(put->kept_version, IsEmpty());

  auto info = storage().Stat("job/run1/data.bin");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->key, "job/run1/data.bin");
  EXPECT_EQ(info->size, content.size());
  ExpectStoredSha(info->sha256, digest->sha256);

  auto read = storage().ReadAll("job/run1/data.bin", 1 << 20);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(*read == content);
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

TEST_P(StorageConformanceTest, EmptyFile) {
  auto put = Put("empty.dat", "");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.size, 0u);
  EXPECT_EQ(put->info.sha256, Sha256Hex(""));
  auto info = storage().Stat("empty.dat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, 0u);
  ExpectStoredSha(info->sha256, Sha256Hex(""));
  auto read = storage().ReadAll("empty.dat", 0);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_THAT(*read, IsEmpty());
}

TEST_P(StorageConformanceTest, LargeFile) {
  const std::string content = RandomContent(20 << 20, 2);
  auto put = Put("big/20MiB.raw", content, PutOptions{.expected_sha256 = Sha256Hex(content)});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.size, content.size());
  EXPECT_EQ(put->info.sha256, Sha256Hex(content));
  auto read = storage().ReadAll("big/20MiB.raw", 32 << 20);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), content.size());
  EXPECT_TRUE(*read == content);
}

TEST_P(StorageConformanceTest, UnicodeNames) {
  const std::string key = "Messdaten/Übersicht 2026/μ-probe ü.dat";
  ASSERT_TRUE(Put(key, "µ-data").ok());
  auto info = storage().Stat(key);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->key, key);
  EXPECT_EQ(*storage().ReadAll(key, 100), "µ-data");
  EXPECT_THAT(Keys("Messdaten"), ElementsAre(key));
  EXPECT_THAT(Keys("Messdaten/Übersicht 2026"), ElementsAre(key));
}

TEST_P(StorageConformanceTest, KeysWithSpaces) {
  const std::string key = "run 1/ file  with spaces .csv";
  ASSERT_TRUE(Put(key, "a,b\n").ok());
  EXPECT_TRUE(storage().Stat(key).ok());
  EXPECT_EQ(*storage().ReadAll(key, 100), "a,b\n");
  EXPECT_THAT(Keys("run 1"), ElementsAre(key));
}

TEST_P(StorageConformanceTest, ListHonoursPrefixAndHidesReservedAndTempNames) {
  for (const char* key :
       {"a/1.dat", "a/sub/2.dat", "a/sub/deeper/3.dat", "ab/4.dat", "b/5.dat", "top.dat"}) {
    ASSERT_TRUE(Put(key, key).ok()) << key;
  }
  backend_.plant_raw(".datasync/versions/a/1.dat/20260101T000000Z-0123456789ab", "old");
  backend_.plant_raw("a/.dstmp-0123abcd-0123456789abcdef", "partial");
  backend_.plant_raw(".dstmp-0123abcd-fedcba9876543210", "partial");

  EXPECT_THAT(Keys("a"), UnorderedElementsAre("a/1.dat", "a/sub/2.dat", "a/sub/deeper/3.dat"));
  EXPECT_THAT(Keys("a/sub"), UnorderedElementsAre("a/sub/2.dat", "a/sub/deeper/3.dat"));
  EXPECT_THAT(Keys(""), UnorderedElementsAre("a/1.dat", "a/sub/2.dat", "a/sub/deeper/3.dat",
                                             "ab/4.dat", "b/5.dat", "top.dat"));
  EXPECT_THAT(Keys("missing"), IsEmpty());
  EXPECT_THAT(Keys("top.dat"), IsEmpty());  // an object is not a prefix of itself
  EXPECT_THAT(Keys(".datasync"), IsEmpty());

  const auto all = ListAll("");
  const ObjectInfo& info = all.at("a/sub/2.dat");
  EXPECT_EQ(info.size, std::string("a/sub/2.dat").size());
  ExpectStoredSha(info.sha256, Sha256Hex("a/sub/2.dat"));

  EXPECT_TRUE(absl::IsInvalidArgument(storage().List("../a", [](const ObjectInfo&) {})));
  EXPECT_TRUE(absl::IsInvalidArgument(storage().List("/a", [](const ObjectInfo&) {})));
}

TEST_P(StorageConformanceTest, IdenticalContentTwiceKeepsNoVersion) {
  auto first = Put("same.dat", "identical");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Put("same.dat", "identical");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(second->kept_version, IsEmpty());
  EXPECT_EQ(second->info.sha256, Sha256Hex("identical"));
  EXPECT_EQ(second->info.size, 9u);
  EXPECT_EQ(*storage().ReadAll("same.dat", 100), "identical");
  EXPECT_THAT(Keys(""), ElementsAre("same.dat"));
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

TEST_P(StorageConformanceTest, DifferentContentKeepsPreviousVersion) {
  ASSERT_TRUE(Put("m/run.csv", "version 1").ok());
  auto second = Put("m/run.csv", "version 2");
  ASSERT_TRUE(second.ok()) << second.status();
  const std::string kept1 = second->kept_version;
  EXPECT_THAT(kept1, StartsWith(".datasync/versions/m/run.csv/"));
  const std::string name1 = kept1.substr(kept1.rfind('/') + 1);
  EXPECT_TRUE(std::regex_match(name1, std::regex(R"(\d{8}T\d{6}Z-[0-9a-f]{12}(-\d+)?)"))) << name1;
  EXPECT_THAT(name1, ::testing::HasSubstr(Sha256Hex("version 1").substr(0, 12)));

  EXPECT_EQ(*storage().ReadAll("m/run.csv", 100), "version 2");
  EXPECT_EQ(*storage().ReadAll(kept1, 100), "version 1");
  auto kept_info = storage().Stat(kept1);
  ASSERT_TRUE(kept_info.ok()) << kept_info.status();
  EXPECT_EQ(kept_info->size, 9u);

  // A third version keeps the second too, under a different name (same second is fine).
  auto third = Put("m/run.csv", "version 3");
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_NE(third->kept_version, kept1);
  EXPECT_EQ(*storage().ReadAll(third->kept_version, 100), "version 2");
  EXPECT_EQ(*storage().ReadAll(kept1, 100), "version 1");
  EXPECT_EQ(*storage().ReadAll("m/run.csv", 100), "version 3");

  EXPECT_THAT(Keys(""), ElementsAre("m/run.csv"));  // versions are never listed
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

TEST_P(StorageConformanceTest, ExpectedShaMismatchAbortsAndLeavesNothing) {
  auto put = Put("x/mismatch.dat", "actual bytes",
                 PutOptions{.expected_sha256 = Sha256Hex("other bytes")});
  EXPECT_TRUE(absl::IsAborted(put.status())) << put.status();
  ExpectNothingUnder("x/mismatch.dat");
}

TEST_P(StorageConformanceTest, ExpectedShaMismatchLeavesExistingObjectAlone) {
  ASSERT_TRUE(Put("keep.dat", "original").ok());
  auto put = Put("keep.dat", "changed", PutOptions{.expected_sha256 = Sha256Hex("something else")});
  EXPECT_TRUE(absl::IsAborted(put.status())) << put.status();
  EXPECT_EQ(*storage().ReadAll("keep.dat", 100), "original");
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

TEST_P(StorageConformanceTest, ExpectedShaIsCaseInsensitive) {
  std::string upper = Sha256Hex("abc");
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto put = Put("case.dat", "abc", PutOptions{.expected_sha256 = upper});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.sha256, Sha256Hex("abc"));
}

TEST_P(StorageConformanceTest, CancelledBeforeStartLeavesNothing) {
  std::atomic<bool> cancel{true};
  auto put = Put("c/cancelled.dat", "data", PutOptions{.cancel = &cancel});
  EXPECT_TRUE(absl::IsCancelled(put.status())) << put.status();
  ExpectNothingUnder("c/cancelled.dat");
}

TEST_P(StorageConformanceTest, CancelledDuringCopyLeavesNothing) {
  std::atomic<bool> cancel{false};
  const fs::path source = WriteSource(RandomContent(4 << 20, 3));
  absl::StatusOr<PutResult> put;
  std::thread t([&] {
    put = storage().PutFile("c/slow.dat", source,
                            PutOptions{.max_bytes_per_second = 1 << 20, .cancel = &cancel});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto cancelled_at = std::chrono::steady_clock::now();
  cancel = true;
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, std::chrono::seconds(1));
  EXPECT_TRUE(absl::IsCancelled(put.status())) << put.status();
  ExpectNothingUnder("c/slow.dat");
}

TEST_P(StorageConformanceTest, BandwidthLimitIsHonoured) {
  const std::string content = RandomContent(1 << 20, 4);
  const auto start = std::chrono::steady_clock::now();
  auto put = Put("paced.dat", content, PutOptions{.max_bytes_per_second = 4 << 20});
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_GE(took, std::chrono::milliseconds(200));  // 1 MiB at 4 MiB/s ≈ 250 ms
  EXPECT_TRUE(*storage().ReadAll("paced.dat", 2 << 20) == content);
}

TEST_P(StorageConformanceTest, InvalidKeysAreRejected) {
  const fs::path source = WriteSource("x");
  for (const char* key : {"../x", "/abs", "a//b", "a\\b", "", "a/./b", "a/", "a/../b", "C:/x"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(storage().PutFile(key, source, {}).status())) << key;
    EXPECT_TRUE(absl::IsInvalidArgument(storage().Stat(key).status())) << key;
    EXPECT_TRUE(absl::IsInvalidArgument(storage().ReadAll(key, 10).status())) << key;
  }
  EXPECT_THAT(Keys(""), IsEmpty());
}

TEST_P(StorageConformanceTest, ReservedKeysAreRejected) {
  const fs::path source = WriteSource("x");
  for (const char* key : {".datasync/x", ".datasync/versions/a/b",
                          "a/.dstmp-1234abcd-0123456789abcdef", ".dstmp-x"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(storage().PutFile(key, source, {}).status())) << key;
  }
  EXPECT_THAT(Keys(""), IsEmpty());
}

TEST_P(StorageConformanceTest, MissingObjectIsNotFound) {
  EXPECT_TRUE(absl::IsNotFound(storage().Stat("nope.dat").status()));
  EXPECT_TRUE(absl::IsNotFound(storage().Stat("no/such/dir/f.dat").status()));
  EXPECT_TRUE(absl::IsNotFound(storage().ReadAll("nope.dat", 10).status()));
  ASSERT_TRUE(Put("dir/f.dat", "x").ok());
  EXPECT_TRUE(absl::IsNotFound(storage().Stat("dir").status()));  // a prefix is not an object
  EXPECT_TRUE(absl::IsNotFound(storage().Stat("dir/f.dat/g").status()));
}

TEST_P(StorageConformanceTest, MissingSourceIsNotFound) {
  auto put = storage().PutFile("k.dat", scratch_ / "does-not-exist", {});
  EXPECT_TRUE(absl::IsNotFound(put.status())) << put.status();
  ExpectNothingUnder("k.dat");
}

TEST_P(StorageConformanceTest, ReadAllOverLimitIsResourceExhausted) {
  ASSERT_TRUE(Put("ten.dat", "0123456789").ok());
  EXPECT_TRUE(absl::IsResourceExhausted(storage().ReadAll("ten.dat", 9).status()));
  EXPECT_EQ(*storage().ReadAll("ten.dat", 10), "0123456789");
}

TEST_P(StorageConformanceTest, MtimeIsPreserved) {
  constexpr int64_t kMtime = 1'700'000'000'123'456'789;  // 2023-11-14, with nanoseconds
  auto put = Put("t/mtime.dat", "timed", PutOptions{.mtime_ns = kMtime});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.mtime_ns, kMtime);
  auto info = storage().Stat("t/mtime.dat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->mtime_ns, kMtime);
  EXPECT_EQ(ListAll("t").at("t/mtime.dat").mtime_ns, kMtime);
}

TEST_P(StorageConformanceTest, WithoutVerify) {
  auto put = Put("nv.dat", "no verify", PutOptions{.verify = false});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(*storage().ReadAll("nv.dat", 100), "no verify");
}

TEST_P(StorageConformanceTest, ConcurrentPutsOfDifferentKeys) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 10;
  std::vector<fs::path> sources;
  sources.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) sources.push_back(WriteSource(absl::StrCat("content ", t)));
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Same directory for all threads, same run id: temp names must still not collide.
        const std::string key = absl::StrCat("shared/t", t, "-", i, ".dat");
        if (!storage().PutFile(key, sources[t], PutOptions{.run_id = "0badc0de-run"}).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(ListAll("shared").size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(Backends, StorageConformanceTest, ::testing::Values(DirFactory()),
                         [](const ::testing::TestParamInfo<StorageFactory>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------------------------
// Directory backend specifics.

class DirStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    scratch_ = MakeTempDir("ds-dir-storage-test");
    root_ = scratch_ / "share";
    auto opened = OpenDirStorage(root_.string());
    ASSERT_TRUE(opened.ok()) << opened.status();
    storage_ = std::move(*opened);
    xattrs_ = SupportsUserXattrs(root_);
  }
  void TearDown() override {
    storage_.reset();
    fs::remove_all(scratch_);
  }

  fs::path WriteSource(const std::string& content) {
    fs::path p = scratch_ / "sources" / absl::StrCat("source-", next_source_++, ".bin");
    WriteFile(p, content);
    return p;
  }

  std::vector<std::string> Temps(const std::string& prefix = "") {
    auto temps = ListTempFiles(root_.string(), prefix);
    EXPECT_TRUE(temps.ok()) << temps.status();
    return temps.ok() ? *temps : std::vector<std::string>{};
  }

  std::vector<std::string> Keys(const std::string& prefix = "") {
    std::vector<std::string> keys;
    EXPECT_TRUE(storage_->List(prefix, [&](const ObjectInfo& i) { keys.push_back(i.key); }).ok());
    return keys;
  }

  fs::path scratch_;
  fs::path root_;
  std::unique_ptr<Storage> storage_;
  bool xattrs_ = false;  // the test filesystem keeps user xattrs
  int next_source_ = 0;
};

TEST_F(DirStorageTest, OpenCreatesRootAndDescribesIt) {
  auto nested = OpenDirStorage((scratch_ / "x" / "y" / "z").string());
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_TRUE(fs::is_directory(scratch_ / "x" / "y" / "z"));
  EXPECT_EQ((*nested)->Describe(), "file://" + (scratch_ / "x" / "y" / "z").string());
  EXPECT_EQ(storage_->Describe(), "file://" + root_.string());
  EXPECT_THAT(Temps(), IsEmpty());  // the write probe leaves nothing
}

TEST_F(DirStorageTest, OpenOnAFileFails) {
  WriteFile(scratch_ / "file", "x");
  auto opened = OpenDirStorage((scratch_ / "file").string());
  EXPECT_FALSE(opened.ok());
  EXPECT_TRUE(absl::IsNotFound(opened.status()) || absl::IsAlreadyExists(opened.status()))
      << opened.status();
}

TEST_F(DirStorageTest, OpenStorageUrlUsesDirBackend) {
  auto url = ParseStorageUrl("file://" + (scratch_ / "viaurl").string());
  ASSERT_TRUE(url.ok()) << url.status();
  auto opened = OpenStorage(*url);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ((*opened)->Describe(), "file://" + (scratch_ / "viaurl").string());
}

TEST_F(DirStorageTest, LayoutAndXattrsOnDisk) {
  constexpr int64_t kMtime = 1'600'000'000'000'000'001;
  auto put = storage_->PutFile("a/b.dat", WriteSource("hello"), PutOptions{.mtime_ns = kMtime});
  ASSERT_TRUE(put.ok()) << put.status();
  struct stat st;
  ASSERT_EQ(::lstat((root_ / "a" / "b.dat").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mtim.tv_sec, 1'600'000'000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 1);
  if (!xattrs_) GTEST_SKIP() << "no user xattrs on " << root_;
  char buf[100];
  ssize_t n = ::getxattr((root_ / "a" / "b.dat").c_str(), "user.datasync.sha256", buf, sizeof buf);
  ASSERT_EQ(n, 64);
  EXPECT_EQ(std::string(buf, 64), Sha256Hex("hello"));
  n = ::getxattr((root_ / "a" / "b.dat").c_str(), "user.datasync.mtime_ns", buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, n), "1600000000000000001");
}

TEST_F(DirStorageTest, InPlaceEditMakesStoredHashStale) {
  if (!xattrs_) GTEST_SKIP() << "no user xattrs on " << root_;
  ASSERT_TRUE(
      storage_->PutFile("e.dat", WriteSource("before"), PutOptions{.mtime_ns = 1'000'000'000})
          .ok());
  ASSERT_EQ(storage_->Stat("e.dat")->sha256, Sha256Hex("before"));
  WriteFile(root_ / "e.dat", "after!");  // another tool edits it: new mtime, xattrs kept
  auto info = storage_->Stat("e.dat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(info->sha256, IsEmpty());  // unknown rather than wrong
  // A put of the edited content is recognised as identical after hashing.
  auto put = storage_->PutFile("e.dat", WriteSource("after!"), {});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_THAT(put->kept_version, IsEmpty());
  EXPECT_EQ(storage_->Stat("e.dat")->sha256, Sha256Hex("after!"));
}

TEST_F(DirStorageTest, IdenticalPutRefreshesMtime) {
  ASSERT_TRUE(
      storage_->PutFile("m.dat", WriteSource("same"), PutOptions{.mtime_ns = 1'000'000'000}).ok());
  auto second =
      storage_->PutFile("m.dat", WriteSource("same"), PutOptions{.mtime_ns = 2'000'000'000});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(second->kept_version, IsEmpty());
  EXPECT_EQ(second->info.mtime_ns, 2'000'000'000);
  EXPECT_EQ(storage_->Stat("m.dat")->mtime_ns, 2'000'000'000);
  if (xattrs_) {
    EXPECT_EQ(storage_->Stat("m.dat")->sha256, Sha256Hex("same"));
  }
}

TEST_F(DirStorageTest, ZeroMtimeMeansSourceMtime) {
  const fs::path source = WriteSource("src");
  struct timespec times[2] = {{0, UTIME_OMIT}, {1'234'567'890, 42}};
  ASSERT_EQ(::utimensat(AT_FDCWD, source.c_str(), times, 0), 0);
  auto put = storage_->PutFile("z.dat", source, {});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.mtime_ns, 1'234'567'890'000'000'042);
}

TEST_F(DirStorageTest, ListTempFilesReportsLeftovers) {
  ASSERT_TRUE(storage_->PutFile("a/ok.dat", WriteSource("ok"), {}).ok());
  WriteFile(root_ / "a" / ".dstmp-0123abcd-0123456789abcdef", "partial");
  WriteFile(root_ / ".datasync" / "versions" / "a" / "b.dat" / ".dstmp-deadbeef-0123456789abcdef",
            "p");
  WriteFile(root_ / "c" / "d" / ".dstmp-cafecafe-0123456789abcdef", "p");
  WriteFile(root_ / "c" / "d" / ".dstmpnot-a-temp", "p");

  EXPECT_THAT(Temps(),
              UnorderedElementsAre("a/.dstmp-0123abcd-0123456789abcdef",
                                   ".datasync/versions/a/b.dat/.dstmp-deadbeef-0123456789abcdef",
                                   "c/d/.dstmp-cafecafe-0123456789abcdef"));
  EXPECT_THAT(Temps("a"),
              UnorderedElementsAre("a/.dstmp-0123abcd-0123456789abcdef",
                                   ".datasync/versions/a/b.dat/.dstmp-deadbeef-0123456789abcdef"));
  EXPECT_THAT(Temps("c"), ElementsAre("c/d/.dstmp-cafecafe-0123456789abcdef"));
  EXPECT_THAT(Temps("missing"), IsEmpty());
  EXPECT_TRUE(absl::IsInvalidArgument(ListTempFiles(root_.string(), "../a").status()));
  EXPECT_THAT(Keys(), UnorderedElementsAre("a/ok.dat", "c/d/.dstmpnot-a-temp"));
}

TEST_F(DirStorageTest, NamesThatAreNotValidKeysAreNotListed) {
  ASSERT_TRUE(storage_->PutFile("ok/fine.dat", WriteSource("x"), {}).ok());
  WriteFile(root_ / "ok" / "back\\slash.dat", "x");  // made by another tool
  WriteFile(root_ / "ok" / "bad\xff-utf8.dat", "x");
  WriteFile(root_ / "ok" / "ctl\x01" / "inside.dat", "x");
  EXPECT_THAT(Keys(), ElementsAre("ok/fine.dat"));
}

TEST_F(DirStorageTest, CrashLeftoverTempIsNeverAnObjectAndDoesNotBlockPuts) {
  // A crash mid-copy leaves exactly the temp name this run would use for data/x.dat.
  const std::string run_id = "1a2b3c4d-5e6f-4a5b-8c9d-0e1f2a3b4c5d";
  const std::string temp = absl::StrCat(".dstmp-1a2b3c4d-", Sha256Hex("x.dat").substr(0, 16));
  WriteFile(root_ / "data" / temp, "half a fi");
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("data/x.dat").status()));
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("data/" + temp).status()));
  EXPECT_THAT(Keys(), IsEmpty());
  EXPECT_THAT(Temps(), ElementsAre("data/" + temp));

  // The retry of the same run still lands; the leftover stays for reconcile to report.
  auto put =
      storage_->PutFile("data/x.dat", WriteSource("half a file"), PutOptions{.run_id = run_id});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(*storage_->ReadAll("data/x.dat", 100), "half a file");
  EXPECT_THAT(Keys(), ElementsAre("data/x.dat"));
  EXPECT_THAT(Temps(), ElementsAre("data/" + temp));
}

TEST_F(DirStorageTest, InFlightPutIsInvisibleUntilRenamed) {
  ASSERT_TRUE(storage_->PutFile("r/obj.bin", WriteSource("old content"), {}).ok());
  const std::string content = RandomContent(1 << 20, 5);
  const fs::path source = WriteSource(content);
  absl::StatusOr<PutResult> put;
  std::thread t([&] {
    put = storage_->PutFile("r/obj.bin", source,
                            PutOptions{.run_id = "feedface-0000", .max_bytes_per_second = 2 << 20});
  });
  ASSERT_TRUE(WaitFor([&] { return !Temps().empty(); }));
  const std::vector<std::string> temps = Temps();
  ASSERT_EQ(temps.size(), 1u);
  EXPECT_EQ(temps[0], absl::StrCat("r/.dstmp-feedface-", Sha256Hex("obj.bin").substr(0, 16)));
  // Mid-copy: readers see the old object, whole, and nothing else.
  EXPECT_EQ(*storage_->ReadAll("r/obj.bin", 2 << 20), "old content");
  EXPECT_THAT(Keys(), ElementsAre("r/obj.bin"));
  t.join();
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE(*storage_->ReadAll("r/obj.bin", 2 << 20) == content);
  EXPECT_EQ(*storage_->ReadAll(put->kept_version, 100), "old content");
  EXPECT_THAT(Temps(), IsEmpty());
}

TEST_F(DirStorageTest, LongNamesFitTempNames) {
  const std::string name(255, 'n');  // NAME_MAX: "name.tmp" style temps would overflow
  auto put = storage_->PutFile("long/" + name, WriteSource("x"), {});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(*storage_->ReadAll("long/" + name, 10), "x");
  ASSERT_TRUE(storage_->PutFile("long/" + name, WriteSource("y"), {}).ok());  // version path too
}

TEST_F(DirStorageTest, SourceChangedDuringCopyAborts) {
  const fs::path source = WriteSource(RandomContent(1 << 20, 6));
  absl::StatusOr<PutResult> put;
  std::thread t([&] {
    put = storage_->PutFile("s/growing.dat", source, PutOptions{.max_bytes_per_second = 2 << 20});
  });
  ASSERT_TRUE(WaitFor([&] { return !Temps().empty(); }));
  {
    std::ofstream out(source, std::ios::binary | std::ios::app);
    out << "appended while copying";
  }
  t.join();
  EXPECT_TRUE(absl::IsAborted(put.status())) << put.status();
  EXPECT_THAT(std::string(put.status().message()),
              ::testing::HasSubstr("source changed while copying"));
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("s/growing.dat").status()));
  EXPECT_THAT(Temps(), IsEmpty());
}

TEST_F(DirStorageTest, SymlinksAreNeitherFollowedNorWrittenThrough) {
  const fs::path outside = scratch_ / "outside";
  WriteFile(outside / "secret.dat", "secret");
  fs::create_directory_symlink(outside, root_ / "link");
  fs::create_symlink(outside / "secret.dat", root_ / "file-link.dat");

  EXPECT_THAT(Keys(), IsEmpty());
  EXPECT_THAT(Keys("link"), IsEmpty());
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("link/secret.dat").status()));
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("file-link.dat").status()));
  EXPECT_TRUE(absl::IsNotFound(storage_->ReadAll("file-link.dat", 100).status()));
  auto put = storage_->PutFile("link/new.dat", WriteSource("x"), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(put.status())) << put.status();
  EXPECT_FALSE(fs::exists(outside / "new.dat"));
  put = storage_->PutFile("file-link.dat", WriteSource("x"), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(put.status())) << put.status();
  EXPECT_EQ(*ReadFileToString(outside / "secret.dat"), "secret");
}

TEST_F(DirStorageTest, KeyBlockedByFileOrDirectoryIsFailedPrecondition) {
  ASSERT_TRUE(storage_->PutFile("a", WriteSource("file"), {}).ok());
  auto put = storage_->PutFile("a/b", WriteSource("x"), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(put.status())) << put.status();
  ASSERT_TRUE(storage_->PutFile("d/x", WriteSource("x"), {}).ok());
  put = storage_->PutFile("d", WriteSource("x"), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(put.status())) << put.status();
  EXPECT_THAT(Temps(), IsEmpty());
}

TEST_F(DirStorageTest, VanishedRootIsUnavailable) {
  fs::remove_all(root_);
  EXPECT_TRUE(absl::IsUnavailable(storage_->Stat("a").status()));
  EXPECT_TRUE(absl::IsUnavailable(storage_->List("", [](const ObjectInfo&) {})));
  EXPECT_TRUE(absl::IsUnavailable(storage_->PutFile("a", WriteSource("x"), {}).status()));
}

TEST_F(DirStorageTest, ListOf20000FilesIsFast) {
  constexpr int kDirs = 100;
  constexpr int kPerDir = 200;
  const std::string sha = Sha256Hex("x");
  for (int d = 0; d < kDirs; ++d) {
    const fs::path dir = root_ / "job" / absl::StrCat("2026-", d / 10) / absl::StrCat("run-", d);
    fs::create_directories(dir);
    for (int f = 0; f < kPerDir; ++f) {
      const std::string path = (dir / absl::StrCat("sample-", f, ".dat")).string();
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::write(fd, "x", 1), 1);
      struct stat st;
      ASSERT_EQ(::fstat(fd, &st), 0);
      const std::string mtime = absl::StrCat(
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec);
      ::fsetxattr(fd, "user.datasync.mtime_ns", mtime.data(), mtime.size(), 0);
      ::fsetxattr(fd, "user.datasync.sha256", sha.data(), sha.size(), 0);
      ::close(fd);
    }
  }
  size_t count = 0;
  size_t with_sha = 0;
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = storage_->List("", [&](const ObjectInfo& info) {
    ++count;
    if (info.sha256 == sha) ++with_sha;
  });
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(count, static_cast<size_t>(kDirs * kPerDir));
  std::cout << "List() of " << count << " files (" << with_sha << " with stored SHA-256): " << ms
            << " ms\n";
  RecordProperty("list_20000_ms", static_cast<int>(ms));
  EXPECT_LT(ms, 1000);
}

}  // namespace
}  // namespace ds
