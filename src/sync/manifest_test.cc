#include "sync/manifest.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "sync/manifest_digest.h"

namespace ds {
namespace {

Sha256Digest Digest(uint8_t fill) {
  Sha256Digest d;
  d.fill(fill);
  return d;
}

TEST(ManifestTest, KeepsEntriesInPathOrderAndRefusesAnythingElse) {
  Manifest m;
  EXPECT_TRUE(m.Add("a/b.dat", 10, 100, Digest(1)));
  EXPECT_TRUE(m.Add("a/c.dat", 0, -5, Digest(2)));
  EXPECT_FALSE(m.Add("a/c.dat", 1, 1, Digest(3)));  // duplicate
  EXPECT_FALSE(m.Add("a/a.dat", 1, 1, Digest(3)));  // before the last
  EXPECT_TRUE(m.Add("b", 1ull << 40, 7, Digest(0xab)));
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m.total_bytes(), 10u + (1ull << 40));
  EXPECT_EQ(m[1].path, "a/c.dat");
  EXPECT_EQ(m[1].size, 0u);
  EXPECT_EQ(m[1].mtime_ns, -5);
  EXPECT_EQ(*m[1].sha256, Digest(2));
  protocol::ManifestEntry w = m.Wire(2);
  EXPECT_EQ(w.path, "b");
  std::string ab;
  for (int i = 0; i < 32; ++i) ab += "ab";
  EXPECT_EQ(w.sha256, ab);
}

TEST(ManifestTest, WireFormRoundTripsAndBadHashesAreRefused) {
  Manifest m;
  const std::string sha = Sha256Hex("x");
  EXPECT_TRUE(m.Add(protocol::ManifestEntry{"ä/μ.dat", 3, 4, sha}));
  EXPECT_FALSE(m.Add(protocol::ManifestEntry{"z", 3, 4, "abc"}));
  EXPECT_FALSE(m.Add(protocol::ManifestEntry{"z", 3, 4, std::string(64, 'g')}));
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m.Wire(0).sha256, sha);
  EXPECT_EQ(m.Wire(0).path, "ä/μ.dat");
}

TEST(ManifestTest, FindsAcrossChunksAndReleasesWhatWasPassed) {
  Manifest m;
  constexpr int kCount = 10'000;  // three chunks of 4,096
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(m.Add(absl::StrCat("dir/f", 100000 + i), static_cast<uint64_t>(i), i, Digest(i & 0xff)));
  }
  EXPECT_EQ(m.Find("dir/f100000"), 0u);
  EXPECT_EQ(m.Find("dir/f104096"), 4096u);
  EXPECT_EQ(m.Find("dir/f109999"), 9999u);
  EXPECT_EQ(m.Find("dir/f1099990"), std::nullopt);
  EXPECT_EQ(m.Find("a"), std::nullopt);
  EXPECT_EQ(m.LowerBound("dir/f105000x"), 5001u);
  EXPECT_EQ(m.LowerBound("zzz"), static_cast<size_t>(kCount));
  const size_t whole = m.MemoryBytes();
  m.ReleaseBefore(5000);  // frees the first chunk only
  EXPECT_LT(m.MemoryBytes(), whole);
  EXPECT_EQ(m[4096].path, "dir/f104096");
  EXPECT_EQ(m.Find("dir/f104097"), 4097u);
  EXPECT_EQ(m.Find("dir/f100001"), std::nullopt);  // released: no longer searched
  // Adding after a release still checks the order against the last entry.
  EXPECT_FALSE(m.Add("dir/f100000", 1, 1, Digest(1)));
  EXPECT_TRUE(m.Add("dir/g", 1, 1, Digest(1)));
}

TEST(ManifestTest, DigestEqualsTheWireFormDigest) {
  Manifest m;
  std::vector<protocol::ManifestEntry> wire;
  for (int i = 0; i < 5000; ++i) {
    protocol::ManifestEntry e{absl::StrCat("d/", 100000 + i, ".dat"), static_cast<uint64_t>(i) * 7,
                              -i, Sha256Hex(std::to_string(i))};
    ASSERT_TRUE(m.Add(e));
    wire.push_back(e);
  }
  EXPECT_EQ(ManifestDigest(m), ManifestDigest(wire));
  EXPECT_EQ(ManifestDigest(Manifest()), ManifestDigest(std::vector<protocol::ManifestEntry>{}));
  std::vector<protocol::ManifestEntry> back(m.begin(), m.end());
  ASSERT_EQ(back.size(), wire.size());
  EXPECT_EQ(back[4321].path, wire[4321].path);
  EXPECT_EQ(back[4321].sha256, wire[4321].sha256);
}

}  // namespace
}  // namespace ds
