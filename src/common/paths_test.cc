#include "common/paths.h"

#include <string>

#include "gtest/gtest.h"

namespace ds {
namespace {

void ExpectRejected(const std::string& path, const std::string& why) {
  absl::Status st = ValidateRelativePath(path);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << why << ": " << st;
}

TEST(ValidateRelativePathTest, AcceptsNormalisedRelativePaths) {
  for (const char* ok : {"a", "a/b.dat", "Übersicht/μ.dat", "with space/x", "deep/er/still/x.y",
                         ".hidden", "a/.b", "..a", "a..", "emoji/\xf0\x9f\x98\x80.dat"}) {
    EXPECT_TRUE(ValidateRelativePath(ok).ok()) << ok << ": " << ValidateRelativePath(ok);
  }
}

TEST(ValidateIndexPathTest, TakesNfcOnlyWhileStorageTakesEitherSpelling) {
  const std::string nfd = "caf" "e\xCC\x81" ".dat";
  EXPECT_TRUE(ValidateRelativePath(nfd).ok());  // an object another tool wrote stays reachable
  absl::Status st = ValidateIndexPath(nfd);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_NE(std::string(st.message()).find("NFC"), std::string::npos) << st;
  EXPECT_TRUE(ValidateIndexPath("caf\xC3\xA9.dat").ok());
  EXPECT_TRUE(ValidateIndexPath("plain/ascii.dat").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateIndexPath("../x")));
}

TEST(ValidateRelativePathTest, AcceptsLengthLimitsExactly) {
  EXPECT_TRUE(ValidateRelativePath(std::string(kMaxComponentBytes, 'c')).ok());
  std::string path;
  while (path.size() + 201 <= kMaxPathBytes) path += std::string(200, 'p') + "/";
  path += std::string(kMaxPathBytes - path.size(), 'q');
  ASSERT_EQ(path.size(), kMaxPathBytes);
  EXPECT_TRUE(ValidateRelativePath(path).ok());
}

TEST(ValidateRelativePathTest, RejectsUnsafeShapes) {
  ExpectRejected("", "empty");
  ExpectRejected("/abs", "absolute");
  ExpectRejected("../x", "leading ..");
  ExpectRejected("a/../b", "inner ..");
  ExpectRejected("a/..", "trailing ..");
  ExpectRejected("..", "just ..");
  ExpectRejected(".", "just .");
  ExpectRejected("a/./b", "inner .");
  ExpectRejected("a//b", "empty component");
  ExpectRejected("a/", "trailing slash");
  ExpectRejected("a\\b", "backslash");
  ExpectRejected("..\\x", "backslash traversal");
  ExpectRejected("C:x", "drive letter");
  ExpectRejected("c:/x", "drive letter with slash");
}

TEST(ValidateRelativePathTest, RejectsBadBytes) {
  ExpectRejected(std::string("a\0b", 3), "NUL inside");
  ExpectRejected(std::string("ab\0", 3), "NUL at end");
  ExpectRejected(
      "a\x01"
      "b",
      "control char");
  ExpectRejected("a\nb", "newline");
  ExpectRejected("tab\there", "tab");
  ExpectRejected("del\x7f", "DEL");
  ExpectRejected("\xff", "invalid UTF-8 byte");
  ExpectRejected("a/\xc3", "truncated sequence");
  ExpectRejected("\xc0\xaf", "overlong '/'");
  ExpectRejected("\xe0\x80\xaf", "overlong 3-byte");
  ExpectRejected("\xed\xa0\x80", "UTF-16 surrogate");
  ExpectRejected("\xf4\x90\x80\x80", "above U+10FFFF");
  ExpectRejected("\x80x", "lone continuation byte");
}

TEST(ValidateRelativePathTest, RejectsTooLong) {
  std::string path;
  while (path.size() < kMaxPathBytes + 1) path += std::string(200, 'p') + "/";
  path.resize(kMaxPathBytes + 1);
  if (path.back() == '/') path.back() = 'x';
  ASSERT_EQ(path.size(), 4097u);
  absl::Status st = ValidateRelativePath(path);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_NE(st.message().find("4096"), absl::string_view::npos) << st;

  st = ValidateRelativePath("dir/" + std::string(256, 'c'));
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_NE(st.message().find("255"), absl::string_view::npos) << st;
}

TEST(JoinKeyTest, JoinsWithOneSlash) {
  EXPECT_EQ(JoinKey("", "a/b"), "a/b");
  EXPECT_EQ(JoinKey("lab1", ""), "lab1");
  EXPECT_EQ(JoinKey("lab1/raw", "a/b"), "lab1/raw/a/b");
}

}  // namespace
}  // namespace ds
