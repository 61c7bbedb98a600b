#include "common/unicode.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

constexpr char kNfc[] = "caf\xC3\xA9.dat";       // é as U+00E9
constexpr char kNfd[] = "cafe\xCC\x81.dat";      // e + U+0301 COMBINING ACUTE ACCENT

TEST(UnicodeTest, ComposesDecomposedNames) {
  EXPECT_EQ(ToNfc(kNfd), kNfc);
  EXPECT_EQ(ToNfc(kNfc), kNfc);
  EXPECT_TRUE(IsNfc(kNfc));
  EXPECT_FALSE(IsNfc(kNfd));
}

TEST(UnicodeTest, AsciiAndOtherScriptsStayAsTheyAre) {
  EXPECT_EQ(ToNfc("plain/ascii name.txt"), "plain/ascii name.txt");
  EXPECT_TRUE(IsNfc("\xE6\xB8\xAC\xE5\xAE\x9A.csv"));  // 測定.csv
  // Hangul written as conjoining jamo composes to one syllable.
  EXPECT_EQ(ToNfc("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"), "\xED\x95\x9C");
}

TEST(UnicodeTest, InvalidUtf8IsNeitherNormalizedNorNfc) {
  EXPECT_FALSE(ToNfc("bad\xFF").has_value());
  EXPECT_FALSE(IsNfc("bad\xC3"));
}

}  // namespace
}  // namespace ds
