// The shared walk over a real (SQLite) index and a scripted storage: rows matched by folded key
// on case-insensitive storage and by exact path elsewhere, mtimes compared at the storage's
// precision, the four findings, the rows storage lacks, and the refusal of an empty listing.
#include "server/storage_walk.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>

namespace ds {
namespace {

constexpr int64_t kT0 = 1'800'000'000'000;             // Unix ms
constexpr int64_t kMtime = 1'700'000'000'123'456'789;  // Unix ns

// Lists what the test put in `objects`; nothing else is called by the walk.
class ScriptedStorage final : public Storage {
 public:
  explicit ScriptedStorage(StorageFeatures f) : features_(f) {}
  absl::StatusOr<PutResult> PutFile(const std::string&, const std::filesystem::path&,
                                    const PutOptions&) override {
    return absl::UnimplementedError("scripted");
  }
  absl::StatusOr<ObjectInfo> Stat(const std::string&) override {
    return absl::UnimplementedError("scripted");
  }
  absl::Status List(const std::string& prefix,
                    const std::function<void(const ObjectInfo&)>& fn) override {
    for (const ObjectInfo& o : objects) {
      if (o.key.rfind(prefix + "/", 0) == 0) fn(o);
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ReadAll(const std::string&, size_t) override {
    return absl::UnimplementedError("scripted");
  }
  std::string Describe() const override { return "scripted"; }
  const StorageFeatures& Features() const override { return features_; }

  std::vector<ObjectInfo> objects;

 private:
  StorageFeatures features_;
};

class StorageWalkTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::path(testing::TempDir()) / "walk.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto index = OpenStateIndex("sqlite:" + (dir_ / "state.db").string());
    ASSERT_TRUE(index.ok()) << index.status();
    index_ = std::move(*index);
    ASSERT_TRUE(index_->Migrate().ok());
    auto r = index_->RegisterRunner({"pc1", "h", "linux", "m", "1"}, "enr-1", "s", kT0);
    ASSERT_TRUE(r.ok()) << r.status();
    protocol::JobSpec spec;
    spec.name = "raw";
    spec.source = "/data";
    spec.dest_prefix = "lab/raw";
    auto job = index_->PutJob(r->id, spec, false, kT0);
    ASSERT_TRUE(job.ok()) << job.status();
    job_id_ = job->spec.id;
    std::vector<SyncedFile> rows;
    for (const char* p : {"Same.dat", "moved-mtime.dat", "grown.dat", "rotted.dat", "gone.dat"}) {
      rows.push_back(SyncedFile{job_id_, p, 10, kMtime, std::string(64, 'a'), kT0, "run"});
    }
    ASSERT_TRUE(index_->ApplySyncedFiles(job_id_, rows, {}).ok());
  }
  void TearDown() override {
    index_.reset();
    std::filesystem::remove_all(dir_);
  }

  // path -> finding (and same_mtime) of one walk over `storage`.
  std::map<std::string, std::pair<WalkFinding, bool>> Walk(ScriptedStorage* storage,
                                                           StorageWalk* walk) {
    std::map<std::string, std::pair<WalkFinding, bool>> out;
    EXPECT_TRUE(walk->LoadRows().ok());
    EXPECT_TRUE(walk->Run([&](const WalkItem& item) {
                      out[item.path] = {item.finding, item.same_mtime};
                      return true;
                    })
                    .ok());
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<StateIndex> index_;
  int64_t job_id_ = 0;
};

ObjectInfo Obj(const std::string& path, uint64_t size, int64_t mtime, const std::string& sha = "") {
  return ObjectInfo{"lab/raw/" + path, size, mtime, sha};
}

TEST_F(StorageWalkTest, CaseInsensitiveStorageMatchesByFoldedKeyAtItsMtimePrecision) {
  ScriptedStorage storage({.case_insensitive = true, .mtime_precision_ns = 1'000'000'000});
  storage.objects = {Obj("SAME.DAT", 10, kMtime - 123'456'789),  // whole seconds kept
                     Obj("moved-mtime.dat", 10, kMtime + 5'000'000'000),
                     Obj("grown.dat", 11, kMtime),
                     Obj("rotted.dat", 10, kMtime, std::string(64, 'b')),
                     Obj("stray.dat", 3, kMtime),
                     Obj("../escape", 1, kMtime)};
  StorageWalk walk(index_.get(), &storage, job_id_, "lab/raw");
  auto seen = Walk(&storage, &walk);
  using F = WalkFinding;
  EXPECT_EQ(seen,
            (std::map<std::string, std::pair<F, bool>>{{"SAME.DAT", {F::kMatched, true}},
                                                       {"moved-mtime.dat", {F::kMatched, false}},
                                                       {"grown.dat", {F::kSizeMismatch, true}},
                                                       {"rotted.dat", {F::kHashMismatch, true}},
                                                       {"stray.dat", {F::kExtra, false}}}));
  EXPECT_EQ(walk.objects_seen(), 5u);
  std::vector<std::string> missing;
  for (const SyncedFile* f : walk.Missing()) missing.push_back(f->path);
  EXPECT_EQ(missing, std::vector<std::string>{"gone.dat"});
  EXPECT_TRUE(walk.HasRow("same.dat"));
  EXPECT_EQ(walk.EmptyListingRefusal(), "");
}

TEST_F(StorageWalkTest, CaseSensitiveStorageMatchesExactPathsAndAnEmptyListingIsRefused) {
  ScriptedStorage storage({.case_insensitive = false, .mtime_precision_ns = 1});
  storage.objects = {Obj("SAME.DAT", 10, kMtime), Obj("Same.dat", 10, kMtime)};
  StorageWalk walk(index_.get(), &storage, job_id_, "lab/raw");
  auto seen = Walk(&storage, &walk);
  EXPECT_EQ(seen["SAME.DAT"].first, WalkFinding::kExtra);
  EXPECT_EQ(seen["Same.dat"], std::make_pair(WalkFinding::kMatched, true));
  EXPECT_FALSE(walk.HasRow("same.dat"));
  EXPECT_EQ(walk.Missing().size(), 4u);

  ScriptedStorage empty({});
  StorageWalk none(index_.get(), &empty, job_id_, "lab/raw");
  Walk(&empty, &none);
  EXPECT_NE(none.EmptyListingRefusal().find("is the share mounted"), std::string::npos);
}

}  // namespace
}  // namespace ds
