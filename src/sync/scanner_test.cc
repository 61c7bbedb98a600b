#include "sync/scanner.h"
#include "sync/manifest_digest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sync/hash_cache.h"

namespace ds {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr int64_t kSecondNs = 1'000'000'000;

// A fresh directory under the test temp dir, removed afterwards.
class ScannerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "scanner_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    base_ = tmpl;
    root_ = base_ / "root";
    fs::create_directory(root_);
  }

  void TearDown() override {
    // Restore permissions that a test took away so the tree can be removed.
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(base_, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_symlink())
        fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    fs::remove_all(base_, ec);
  }

  // Writes `content` to root/rel, creating parent directories.
  fs::path Write(const std::string& rel, const std::string& content, const fs::path& under = {}) {
    fs::path p = (under.empty() ? root_ : under) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    return p;
  }

  static void SetMtime(const fs::path& p, int64_t mtime_ns) {
    struct timespec ts[2];
    ts[0].tv_sec = mtime_ns / kSecondNs;
    ts[0].tv_nsec = mtime_ns % kSecondNs;
    ts[1] = ts[0];
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << p;
  }

  ScanOptions Options() const {
    ScanOptions o;
    o.root = root_;
    return o;
  }

  static std::vector<std::string> Paths(const ScanResult& r) {
    std::vector<std::string> out;
    for (const auto& f : r.files) out.push_back(f.path);
    return out;
  }

  static std::string SkipReason(const ScanResult& r, const std::string& path) {
    for (const auto& s : r.skipped) {
      if (s.path == path) return s.error;
    }
    return "<not skipped>";
  }

  fs::path base_;
  fs::path root_;
};

TEST_F(ScannerTest, NestedDirsUnusualNamesAndEmptyFile) {
  Write("top.txt", "top");
  Write("sub/deep/er/x.dat", std::string(3 << 20, 'x'));  // several read chunks
  Write("with space/name with space.dat", "spaces");
  Write("Übersicht/μ-Messung ß.dat", "utf8");
  Write("empty.bin", "");

  absl::StatusOr<ScanResult> r = ScanJob(Options(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r),
              ElementsAre("empty.bin", "sub/deep/er/x.dat", "top.txt",
                          "with space/name with space.dat", "Übersicht/μ-Messung ß.dat"));
  EXPECT_THAT(r->skipped, IsEmpty());
  EXPECT_EQ(r->files_hashed, 5u);
  EXPECT_EQ(r->files_unsettled, 0u);
  uint64_t total = 0;
  for (const auto& f : r->files) {
    absl::StatusOr<FileDigest> d = Sha256File(root_ / f.path);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(f.sha256, d->sha256) << f.path;
    EXPECT_EQ(f.size, d->size) << f.path;
    struct stat st;
    ASSERT_EQ(::stat((root_ / f.path).c_str(), &st), 0);
    EXPECT_EQ(f.mtime_ns, st.st_mtim.tv_sec * kSecondNs + st.st_mtim.tv_nsec);
    total += f.size;
  }
  EXPECT_EQ(r->files.Wire(0).sha256, kEmptySha256);
  EXPECT_EQ(r->files.Wire(0).size, 0u);
  EXPECT_EQ(r->total_bytes, total);
  EXPECT_EQ(r->bytes_hashed, total);
}

// Files are hashed in groups across threads: every entry gets its own file's hash, whatever the
// thread count, with groups cut by count (many small files) and by bytes (a few large ones).
TEST_F(ScannerTest, ParallelHashingGivesEachFileItsOwnHash) {
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 300; ++i) {
    const std::string rel = absl::StrCat("d", i % 7, "/f", i, ".dat");
    const std::string content(static_cast<size_t>(i) * 37 + (i % 5 == 0 ? 0 : 1), static_cast<char>('a' + i % 26));
    Write(rel, content);
    expected[rel] = Sha256Hex(content);
  }
  const std::string big(40 << 20, 'B');  // two of these exceed a group's byte budget
  Write("big/1.bin", big);
  Write("big/2.bin", big + "2");
  expected["big/1.bin"] = Sha256Hex(big);
  expected["big/2.bin"] = Sha256Hex(big + "2");
  for (int threads : {1, 2, 4}) {
    ScanOptions o = Options();
    o.hash_threads = threads;
    auto r = ScanJob(o, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->files.size(), expected.size()) << threads;
    EXPECT_EQ(r->files_hashed, expected.size());
    for (const auto& f : r->files) EXPECT_EQ(f.sha256, expected.at(f.path)) << f.path << " threads=" << threads;
    EXPECT_TRUE(std::is_sorted(r->files.begin(), r->files.end(),
                               [](const auto& a, const auto& b) { return a.path < b.path; }));
  }
}

// ScanOptions::read_new: files the hook reads and hashes keep its hash and are listed in
// read_by_hook; a file it declines, even after reading part of it, is hashed by the scan from
// its first byte; cache hits never reach the hook.
TEST_F(ScannerTest, ReadNewHookTakesOrDeclinesEachNewFile) {
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 200; ++i) {
    const std::string rel = absl::StrCat("d", i % 5, "/f", i, ".dat");
    const std::string content(static_cast<size_t>(i) * 101 + 1, static_cast<char>('a' + i % 26));
    Write(rel, content);
    expected[rel] = Sha256Hex(content);
  }
  std::unique_ptr<HashCache> cache = NewMemoryHashCache();
  std::mutex mu;
  std::set<std::string> offered;
  ScanOptions o = Options();
  o.hash_threads = 3;
  o.read_new = [&](const std::string& path, platform::File& file, uint64_t size,
                   int64_t) -> std::optional<Sha256Digest> {
    {
      std::lock_guard<std::mutex> lock(mu);
      EXPECT_TRUE(offered.insert(path).second) << path << " offered twice";
    }
    std::string data(size, '\0');
    // Every third file: read half of it, then decline (the scan must start over).
    const bool decline = std::hash<std::string>{}(path) % 3 == 0;
    const size_t want = decline ? size / 2 : size;
    EXPECT_EQ(*file.Read(absl::MakeSpan(data.data(), want)), want) << path;
    if (decline) return std::nullopt;
    Sha256Digest d;
    EXPECT_TRUE(ParseSha256Hex(Sha256Hex(data), &d));
    return d;
  };
  auto r = ScanJob(o, cache.get());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->files.size(), expected.size());
  EXPECT_EQ(offered.size(), expected.size());
  std::set<std::string> by_hook;
  for (uint32_t i : r->read_by_hook) by_hook.insert(std::string(r->files[i].path));
  EXPECT_GT(by_hook.size(), 0u);
  EXPECT_LT(by_hook.size(), expected.size());
  EXPECT_TRUE(std::is_sorted(r->read_by_hook.begin(), r->read_by_hook.end()));
  EXPECT_TRUE(std::includes(r->hashed.begin(), r->hashed.end(), r->read_by_hook.begin(),
                            r->read_by_hook.end()));
  for (const auto& f : r->files) {
    EXPECT_EQ(f.sha256, expected.at(f.path)) << f.path;
    EXPECT_EQ(by_hook.count(f.path) == 1, std::hash<std::string>{}(f.path) % 3 != 0) << f.path;
  }
  // Second scan: everything is a cache hit, nothing is offered.
  ASSERT_TRUE(cache->EndScan().ok());
  cache->Adopt(std::move(r->files), "");
  offered.clear();
  auto again = ScanJob(o, cache.get());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(offered.empty());
  EXPECT_TRUE(again->read_by_hook.empty());
  EXPECT_EQ(again->files.size(), expected.size());
}

TEST_F(ScannerTest, OutputSortedBytewiseAcrossDirectories) {
  Write("a-b", "1");
  Write("a/x", "2");
  Write("a0", "3");
  absl::StatusOr<ScanResult> r = ScanJob(Options(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r), ElementsAre("a-b", "a/x", "a0"));
}

TEST_F(ScannerTest, IncludeAndExcludeFilters) {
  Write("a.dat", "a");
  Write("b.log", "b");
  Write("sub/c.dat", "c");
  Write("sub/tmp/d.dat", "d");
  Write("sub/e.DAT", "e");

  ScanOptions o = Options();
  o.includes = {"*.dat"};
  o.excludes = {"sub/tmp/*"};
  absl::StatusOr<ScanResult> r = ScanJob(o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r), ElementsAre("a.dat", "sub/c.dat"));
  EXPECT_THAT(r->skipped, IsEmpty());

  o.includes = {"c.dat", "b.*"};  // no '/': also matched against the basename
  o.excludes = {};
  r = ScanJob(o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r), ElementsAre("b.log", "sub/c.dat"));

  o.includes = {};
  o.excludes = {"*.dat"};  // exclude only
  r = ScanJob(o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r), ElementsAre("b.log", "sub/e.DAT"));
}

TEST(PassesFiltersTest, GlobSemantics) {
  EXPECT_TRUE(PassesFilters("x.dat", {}, {}));
  EXPECT_TRUE(PassesFilters("a/b/x.dat", {"*.dat"}, {}));     // '*' matches '/'
  EXPECT_TRUE(PassesFilters("a/b/x.dat", {"a/*.dat"}, {}));   // ... in path patterns too
  EXPECT_TRUE(PassesFilters("a/b/x.dat", {"x.dat"}, {}));     // basename match
  EXPECT_FALSE(PassesFilters("a/b/x.dat", {"b/x.dat"}, {}));  // has '/': whole path only
  EXPECT_FALSE(PassesFilters("a/b/x.dat", {"*.log"}, {}));
  EXPECT_FALSE(PassesFilters("a/b/x.dat", {"*.dat"}, {"x.*"}));  // exclude wins
  EXPECT_FALSE(PassesFilters("a/b/x.dat", {}, {"a/*"}));
  EXPECT_TRUE(PassesFilters("a/b/x.dat", {}, {"b/*"}));
  EXPECT_TRUE(PassesFilters("run_7.dat", {"run_[0-9].dat"}, {}));
  EXPECT_TRUE(PassesFilters(".hidden", {"*"}, {}));  // flags 0: no FNM_PERIOD
}

TEST_F(ScannerTest, SettleSkipsYoungFiles) {
  const int64_t now = 1'700'000'000 * kSecondNs;
  SetMtime(Write("old.dat", "old"), now - 2 * 3600 * kSecondNs);
  SetMtime(Write("edge.dat", "edge"), now - 3600 * kSecondNs);  // exactly settle old: settled
  SetMtime(Write("young.dat", "young"), now - 60 * kSecondNs);
  SetMtime(Write("future.dat", "future"), now + 3600 * kSecondNs);

  ScanOptions o = Options();
  o.now_ns = now;
  o.settle = std::chrono::hours(1);
  absl::StatusOr<ScanResult> r = ScanJob(o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r), ElementsAre("edge.dat", "old.dat"));
  EXPECT_EQ(r->files_unsettled, 2u);
  EXPECT_THAT(r->skipped, IsEmpty());
  EXPECT_EQ(r->files_hashed, 2u);

  o.settle = std::chrono::milliseconds(0);  // no settle time: everything, even the future
  r = ScanJob(o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->files.size(), 4u);
  EXPECT_EQ(r->files_unsettled, 0u);
}

TEST_F(ScannerTest, SymlinkRules) {
  Write("data.dat", "inside");
  Write("sub/other.dat", "other");
  fs::path outside = Write("outside.dat", "outside", base_);
  Write("outdir/o.dat", "o", base_);
  fs::create_symlink("data.dat", root_ / "link_rel");
  fs::create_symlink(root_ / "sub/other.dat", root_ / "sub/link_abs");
  fs::create_symlink("../data.dat", root_ / "sub/link_up");
  fs::create_symlink(outside, root_ / "link_out");
  fs::create_symlink("../../outside.dat", root_ / "sub/link_out_rel");
  fs::create_symlink("nowhere.dat", root_ / "dangling");
  fs::create_symlink(root_ / "sub", root_ / "dirlink");
  fs::create_symlink(base_ / "outdir", root_ / "outdirlink");
  fs::create_symlink("loop", root_ / "loop");

  absl::StatusOr<ScanResult> r = ScanJob(Options(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r),
              ElementsAre("data.dat", "link_rel", "sub/link_abs", "sub/link_up", "sub/other.dat"));
  const std::string inside_sha = Sha256Hex("inside");
  EXPECT_EQ(r->files.Wire(1).sha256, inside_sha);
  EXPECT_EQ(r->files.Wire(1).size, 6u);
  EXPECT_EQ(r->files.Wire(3).sha256, inside_sha);
  EXPECT_EQ(r->files.Wire(2).sha256, Sha256Hex("other"));
  // Directory links are neither descended nor reported.
  EXPECT_THAT(r->skipped,
              ElementsAre(Field(&ScanProblem::path, "dangling"),
                          Field(&ScanProblem::path, "link_out"), Field(&ScanProblem::path, "loop"),
                          Field(&ScanProblem::path, "sub/link_out_rel")));
  EXPECT_EQ(SkipReason(*r, "dangling"), "dangling symlink");
  EXPECT_EQ(SkipReason(*r, "loop"), "dangling symlink");
  EXPECT_EQ(SkipReason(*r, "link_out"), "symlink points outside the job folder");
  EXPECT_EQ(SkipReason(*r, "sub/link_out_rel"), "symlink points outside the job folder");
}

TEST_F(ScannerTest, RootReachedThroughSymlink) {
  Write("data.dat", "inside");
  fs::create_symlink("data.dat", root_ / "link");
  fs::create_symlink(root_, base_ / "root_link");
  ScanOptions o = Options();
  o.root = base_ / "root_link";
  absl::StatusOr<ScanResult> r = ScanJob(o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r), ElementsAre("data.dat", "link"));
  EXPECT_THAT(r->skipped, IsEmpty());
}

TEST_F(ScannerTest, UnreadableFileAndDirectoryAreSkipped) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  Write("ok.dat", "ok");
  fs::path locked = Write("locked.dat", "secret");
  fs::path locked_dir = root_ / "locked_dir";
  Write("locked_dir/x.dat", "x");
  ASSERT_EQ(::chmod(locked.c_str(), 0), 0);
  ASSERT_EQ(::chmod(locked_dir.c_str(), 0), 0);

  absl::StatusOr<ScanResult> r = ScanJob(Options(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r), ElementsAre("ok.dat"));
  EXPECT_EQ(SkipReason(*r, "locked.dat"), "permission denied");
  EXPECT_EQ(SkipReason(*r, "locked_dir"), "permission denied");
  EXPECT_EQ(r->skipped.size(), 2u);
}

TEST_F(ScannerTest, UnsafeNamesAreSkipped) {
  Write("good.dat", "g");
  Write("back\\slash.dat", "b");
  Write(std::string("bad\xff") + ".dat", "u");
  Write("ctl\x01.dat", "c");
  Write("bad\\dir/a.dat", "a");
  Write("bad\\dir/b.dat", "b");

  absl::StatusOr<ScanResult> r = ScanJob(Options(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r), ElementsAre("good.dat"));
  ASSERT_EQ(r->skipped.size(), 4u);  // the directory is reported once, not per file
  for (const auto& s : r->skipped) EXPECT_THAT(s.error, HasSubstr("invalid name")) << s.path;
  EXPECT_THAT(SkipReason(*r, "back\\slash.dat"), HasSubstr("backslash"));
  EXPECT_THAT(SkipReason(*r, "bad\\dir"), HasSubstr("backslash"));
  EXPECT_THAT(SkipReason(*r, "bad\xff.dat"), HasSubstr("UTF-8"));
  EXPECT_THAT(SkipReason(*r, "ctl\x01.dat"), HasSubstr("control"));
}

// "é" written as e + U+0301 (NFD: macOS, some SMB clients) and as U+00E9 (NFC).
constexpr char kNfdE[] = "e\xCC\x81";
constexpr char kNfcE[] = "\xC3\xA9";

TEST_F(ScannerTest, NamesAreNormalizedToNfcAndReadUnderTheirDiskSpelling) {
  Write(std::string("caf") + kNfdE + ".dat", "coffee");
  Write(std::string("r") + kNfdE + "sum" + kNfdE + "/cv.txt", "cv");
  Write("f.dat", "f");  // sorts before "é…" in NFC, after "e…" in NFD
  Write(std::string(kNfdE) + "x.dat", "ex");
  fs::create_symlink(root_ / (std::string("caf") + kNfdE + ".dat"), root_ / (std::string("link-") + kNfdE));
  absl::StatusOr<ScanResult> r = ScanJob(Options(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string cafe = std::string("caf") + kNfcE + ".dat";
  const std::string cv = std::string("r") + kNfcE + "sum" + kNfcE + "/cv.txt";
  const std::string ex = std::string(kNfcE) + "x.dat";
  const std::string link = std::string("link-") + kNfcE;
  EXPECT_THAT(Paths(*r), ElementsAre(cafe, "f.dat", link, cv, ex));
  EXPECT_THAT(r->skipped, IsEmpty());
  EXPECT_EQ(DiskPathOf(*r, cafe), std::string("caf") + kNfdE + ".dat");
  EXPECT_EQ(DiskPathOf(*r, cv), std::string("r") + kNfdE + "sum" + kNfdE + "/cv.txt");
  EXPECT_EQ(DiskPathOf(*r, "f.dat"), "f.dat");
  EXPECT_EQ(r->files.Wire(0).sha256, Sha256Hex("coffee"));
  for (size_t i = 0; i < r->files.size(); ++i) {  // each is opened where the upload opens it
    const std::string path(r->files[i].path);
    EXPECT_TRUE(OpenScannedFile(root_ / DiskPathOf(*r, path), r->identities[i]).ok()) << path;
  }
}

TEST_F(ScannerTest, TwoSpellingsOfOneNameInAFolderAreBothSkipped) {
  Write(std::string("caf") + kNfdE + ".dat", "nfd");
  Write(std::string("caf") + kNfcE + ".dat", "nfc");
  Write("other.dat", "o");
  absl::StatusOr<ScanResult> r = ScanJob(Options(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r), ElementsAre("other.dat"));
  ASSERT_EQ(r->skipped.size(), 2u);
  for (const auto& s : r->skipped) EXPECT_THAT(s.error, HasSubstr("NFC")) << s.path;
}

TEST_F(ScannerTest, ExcludedUnsafeNameIsNotReported) {
  Write("back\\slash.tmp", "b");
  ScanOptions o = Options();
  o.excludes = {"*.tmp"};
  absl::StatusOr<ScanResult> r = ScanJob(o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->files, IsEmpty());
  EXPECT_THAT(r->skipped, IsEmpty());
}

TEST_F(ScannerTest, SpecialFileIsSkippedWithoutBlocking) {
  Write("ok.dat", "ok");
  ASSERT_EQ(::mkfifo((root_ / "pipe").c_str(), 0644), 0);
  absl::StatusOr<ScanResult> r = ScanJob(Options(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Paths(*r), ElementsAre("ok.dat"));
  EXPECT_EQ(SkipReason(*r, "pipe"), "not a regular file");
}

TEST_F(ScannerTest, RootErrors) {
  ScanOptions o = Options();
  o.root = base_ / "missing";
  EXPECT_TRUE(absl::IsNotFound(ScanJob(o, nullptr).status()));
  o.root = Write("plain.dat", "x", base_);
  EXPECT_TRUE(absl::IsNotFound(ScanJob(o, nullptr).status()));
  if (::geteuid() != 0) {
    fs::create_directory(base_ / "locked");
    ASSERT_EQ(::chmod((base_ / "locked").c_str(), 0), 0);
    o.root = base_ / "locked";
    EXPECT_TRUE(absl::IsPermissionDenied(ScanJob(o, nullptr).status()));
  }
}

TEST_F(ScannerTest, CancelStopsTheScan) {
  Write("a.dat", "a");
  std::atomic<bool> cancel{true};
  ScanOptions o = Options();
  o.cancel = &cancel;
  EXPECT_TRUE(absl::IsCancelled(ScanJob(o, nullptr).status()));
  cancel = false;
  EXPECT_TRUE(ScanJob(o, nullptr).ok());
}

// A scan as the agent runs it: the cache's scan ended and the new manifest adopted.
absl::StatusOr<ScanResult> ScanCached(const ScanOptions& o, HashCache* cache) {
  absl::StatusOr<ScanResult> r = ScanJob(o, cache);
  if (!r.ok()) return r;
  DS_RETURN_IF_ERROR(cache->EndScan());
  Manifest copy;
  for (const auto& e : r->files) copy.Add(e);
  cache->Adopt(std::move(copy), ManifestDigest(r->files));
  return r;
}

TEST_F(ScannerTest, WalksInByteOrderOfThePaths) {
  // A directory sorts as if its name ended in '/': after "a-b" and "a.txt", before "a0".
  for (const char* p : {"a0", "a/x", "a.txt", "a-b", "a/b/c", "a/b-", "B", "é"}) Write(p, p);
  absl::StatusOr<ScanResult> r = ScanJob(Options(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> got;
  for (const auto& f : r->files) got.push_back(f.path);
  EXPECT_THAT(got, ElementsAre("B", "a-b", "a.txt", "a/b-", "a/b/c", "a/x", "a0", "é"));
}

TEST_F(ScannerTest, CacheIsReusedAndOnlyChangedFilesAreRehashed) {
  for (int i = 0; i < 10; ++i) Write("d/f" + std::to_string(i) + ".dat", std::string(i * 100, 'a'));
  std::unique_ptr<HashCache> cache = NewMemoryHashCache();

  absl::StatusOr<ScanResult> first = ScanCached(Options(), cache.get());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->files_hashed, 10u);

  absl::StatusOr<ScanResult> second = ScanCached(Options(), cache.get());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->files_hashed, 0u);
  EXPECT_EQ(second->bytes_hashed, 0u);
  ASSERT_EQ(second->files.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(second->files.Wire(i).sha256, first->files.Wire(i).sha256);
    EXPECT_EQ(second->files.Wire(i).mtime_ns, first->files.Wire(i).mtime_ns);
  }
  EXPECT_EQ(second->total_bytes, first->total_bytes);

  fs::path changed = Write("d/f3.dat", "new content");
  SetMtime(changed, first->files.Wire(3).mtime_ns + kSecondNs);
  absl::StatusOr<ScanResult> third = ScanCached(Options(), cache.get());
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->files_hashed, 1u);
  EXPECT_EQ(third->bytes_hashed, 11u);
  EXPECT_THAT(third->hashed, ElementsAre(3u));  // the delta against the cache's manifest
  EXPECT_THAT(second->hashed, IsEmpty());
  EXPECT_EQ(first->hashed.size(), 10u);
  EXPECT_EQ(third->files.Wire(3).sha256, Sha256Hex("new content"));

  // Same size, only mtime changes: still re-hashed (the cache trusts size + mtime only).
  SetMtime(changed, first->files.Wire(3).mtime_ns + 2 * kSecondNs);
  absl::StatusOr<ScanResult> fourth = ScanCached(Options(), cache.get());
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  EXPECT_EQ(fourth->files_hashed, 1u);
}

TEST_F(ScannerTest, PersistentCacheSurvivesReopen) {
  for (int i = 0; i < 5; ++i) Write("f" + std::to_string(i), std::to_string(i));
  const std::string db = (base_ / "cache.db").string();
  {
    absl::StatusOr<std::unique_ptr<HashCache>> cache = OpenHashCache(db, "7");
    ASSERT_TRUE(cache.ok()) << cache.status();
    absl::StatusOr<ScanResult> r = ScanCached(Options(), cache->get());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->files_hashed, 5u);
  }
  absl::StatusOr<std::unique_ptr<HashCache>> cache = OpenHashCache(db, "7");
  ASSERT_TRUE(cache.ok()) << cache.status();
  absl::StatusOr<ScanResult> r = ScanCached(Options(), cache->get());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->files_hashed, 0u);
  EXPECT_EQ(r->files.size(), 5u);
}

TEST_F(ScannerTest, ScanDoesNotModifyTheTree) {
  fs::path f = Write("sub/a.dat", "a");
  SetMtime(f, 1'600'000'000 * kSecondNs);
  SetMtime(root_ / "sub", 1'600'000'000 * kSecondNs);
  std::unique_ptr<HashCache> cache = NewMemoryHashCache();
  ASSERT_TRUE(ScanJob(Options(), cache.get()).ok());
  struct stat st;
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1'600'000'000);
  ASSERT_EQ(::stat((root_ / "sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1'600'000'000);
  EXPECT_EQ(std::distance(fs::recursive_directory_iterator(root_), {}), 2);
}

}  // namespace
}  // namespace ds
