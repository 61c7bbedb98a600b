#include "sync/planner.h"

#include <string>

#include "gtest/gtest.h"

namespace ds {
namespace {

const std::string kSha(64, 'a');
const std::string kOtherSha(64, 'b');

protocol::ManifestEntry Entry(std::string path = "a/b.dat", uint64_t size = 10,
                              int64_t mtime_ns = 1'000, std::string sha = kSha) {
  return protocol::ManifestEntry{std::move(path), size, mtime_ns, std::move(sha)};
}

TEST(PlanReasonTest, NewWhenNotIndexed) { EXPECT_EQ(PlanReason(Entry(), nullptr), "new"); }

TEST(PlanReasonTest, ChangedWhenSizeOrHashDiffers) {
  IndexedFile size_differs{11, kSha};
  EXPECT_EQ(PlanReason(Entry(), &size_differs), "changed");
  IndexedFile sha_differs{10, kOtherSha};
  EXPECT_EQ(PlanReason(Entry(), &sha_differs), "changed");
}

TEST(PlanReasonTest, UnchangedAndMtimeOnlyChangesNeedNoUpload) {
  IndexedFile same{10, kSha};
  EXPECT_EQ(PlanReason(Entry(), &same), std::nullopt);
  EXPECT_EQ(PlanReason(Entry("a/b.dat", 10, 999'999'999), &same), std::nullopt);
}

TEST(ValidateManifestEntryTest, AcceptsWellFormed) {
  EXPECT_TRUE(ValidateManifestEntry(Entry()).ok());
  EXPECT_TRUE(ValidateManifestEntry(Entry("Übersicht/μ.dat", 0, 0)).ok());
}

TEST(ValidateManifestEntryTest, RejectsBadSha) {
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateManifestEntry(Entry("a", 1, 1, ""))));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateManifestEntry(Entry("a", 1, 1, kSha + "a"))));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateManifestEntry(Entry("a", 1, 1, kSha.substr(1)))));
  EXPECT_TRUE(
      absl::IsInvalidArgument(ValidateManifestEntry(Entry("a", 1, 1, std::string(64, 'A')))));
  EXPECT_TRUE(
      absl::IsInvalidArgument(ValidateManifestEntry(Entry("a", 1, 1, std::string(64, 'g')))));
}

TEST(ValidateManifestEntryTest, RejectsNegativeMtime) {
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateManifestEntry(Entry("a", 1, -1))));
}

TEST(ValidateManifestEntryTest, RejectsBadPath) {
  for (const char* bad : {"", "/abs", "../x", "a/../b", "a//b", "a\\b"}) {
    absl::Status st = ValidateManifestEntry(Entry(bad));
    EXPECT_TRUE(absl::IsInvalidArgument(st)) << bad;
    EXPECT_NE(st.message().find("invalid path"), absl::string_view::npos) << st;
  }
}

}  // namespace
}  // namespace ds
