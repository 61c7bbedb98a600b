#include "sync/manifest_digest.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"

namespace ds {
namespace {

using protocol::ManifestEntry;

std::vector<ManifestEntry> Sample() {
  return {{"2026-11-01/a.dat", 10, 1'700'000'000'000'000'001, std::string(64, 'a')},
          {"2026-11-01/b.dat", 0, -5, std::string(64, 'b')},
          {"z", 1ull << 40, 7, std::string(64, 'c')}};
}

TEST(ManifestDigestTest, IsTheDocumentedSha256) {
  std::string text = "datasync-manifest-v1\n";
  for (const auto& e : Sample()) {
    absl::StrAppend(&text, e.path, std::string(1, '\0'), e.size, std::string(1, '\0'), e.mtime_ns,
                    std::string(1, '\0'), e.sha256, "\n");
  }
  EXPECT_EQ(ManifestDigest(Sample()), Sha256Hex(text));
  EXPECT_EQ(ManifestDigest(std::vector<ManifestEntry>{}), Sha256Hex("datasync-manifest-v1\n"));
}

TEST(ManifestDigestTest, EveryFieldAndTheOrderCount) {
  const std::string base = ManifestDigest(Sample());
  EXPECT_EQ(ManifestDigest(Sample()), base);  // deterministic
  auto changed = [&](auto mutate) {
    auto files = Sample();
    mutate(files);
    return ManifestDigest(files);
  };
  EXPECT_NE(changed([](auto& f) { f[1].path = "2026-11-01/B.dat"; }), base);
  EXPECT_NE(changed([](auto& f) { f[1].size = 1; }), base);
  EXPECT_NE(changed([](auto& f) { f[1].mtime_ns = -4; }), base);
  EXPECT_NE(changed([](auto& f) { f[1].sha256[63] = 'd'; }), base);
  EXPECT_NE(changed([](auto& f) { f.pop_back(); }), base);
  EXPECT_NE(changed([](auto& f) { std::swap(f[0], f[1]); }), base);
  // Field boundaries are unambiguous: moving a digit from size into the path changes it.
  std::vector<ManifestEntry> a = {{"x1", 0, 0, "s"}}, b = {{"x", 10, 0, "s"}};
  EXPECT_NE(ManifestDigest(a), ManifestDigest(b));
}

TEST(ManifestDigestTest, LargeManifestsAreHashedInPieces) {
  std::vector<ManifestEntry> files;
  std::string text = "datasync-manifest-v1\n";
  for (int i = 0; i < 5000; ++i) {  // ~600 KB of text: several 64 KiB pieces
    files.push_back({absl::StrCat("dir/file-", 100000 + i, ".dat"), static_cast<uint64_t>(i), i, std::string(64, 'f')});
    const auto& e = files.back();
    absl::StrAppend(&text, e.path, std::string(1, '\0'), e.size, std::string(1, '\0'), e.mtime_ns,
                    std::string(1, '\0'), e.sha256, "\n");
  }
  EXPECT_EQ(ManifestDigest(files), Sha256Hex(text));
}

}  // namespace
}  // namespace ds
