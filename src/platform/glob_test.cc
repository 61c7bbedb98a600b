#include "platform/glob.h"

#ifndef _WIN32
#include <fnmatch.h>
#endif

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ds::platform {
namespace {

#ifndef _WIN32  // the reference exists on POSIX only; the cases below run everywhere
// The reference GlobMatch replaces: fnmatch(3) with flags 0 (C locale: tests do not setlocale).
bool Fnmatch(const std::string& pattern, const std::string& name) {
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

TEST(GlobMatch, AgreesWithFnmatchOnAscii) {
  const std::vector<std::string> patterns = {
      "",
      "*",
      "**",
      "?",
      "??",
      "a",
      "abc",
      "a*",
      "*a",
      "*.txt",
      "*.TXT",
      "a*b*c",
      "*/*",
      "data/*",
      "data/*.csv",
      "*/raw/*",
      "*~",
      ".*",
      "?.txt",
      "a?c",
      "[abc]",
      "[a-c]x",
      "[a-z]*",
      "[!a-z]*",
      "[^a-z]*",
      "[]]",
      "[]a]*",
      "[!]]",
      "[a-]",
      "[-a]",
      "[z-a]",
      "[[:digit:]]*",
      "[[:alpha:]][[:digit:]]",
      "[![:space:]]",
      "[[:upper:][:digit:]]*",
      "[[:bogus:]]",
      "[",
      "[a",
      "a[",
      "[!",
      "[]",
      "\\*",
      "\\?",
      "a\\*b",
      "\\[a]",
      "[\\]]",
      "[a\\-z]",
      "\\",
      "a\\",
      "\\a",
      "*\\",
      "[a-c-e]",
      "[*]",
      "[?]x",
      "*[0-9]",
      "*.[ch]",
      "tmp/**/x",
      "a/b",
      "/",
      "*/",
      "[/]",
      "a[/]b",
      "*.tmp*",
      "~$*",
      "#*#",
      "[.]*",
  };
  const std::vector<std::string> names = {
      "",        "a",         "b",       "ab",    "abc",        "abbc",
      "a.txt",   "b.TXT",     ".hidden", "x/y",   "data/x.csv", "data/sub/x.csv",
      "a/raw/b", "raw/b",     "file~",   "1.txt", "a1",         "A1",
      "Z",       "]",         "]a",      "-",     "*",          "?",
      "[",       "\\",        "a*b",     "a\\",   "[a]",        "x",
      "?x",      "tmp/a/b/x", "a/b",     "/",     "x/",         "a/b/c",
      "main.c",  "main.h",    "main.cc", "x.tmp", "x.tmp1",     "~$doc.docx",
      "#auto#",  " ",         "\t",      "9",     "c",          "e",
      "d",       "aXbYc",     "acb",
  };
  for (const std::string& p : patterns) {
    for (const std::string& n : names) {
      EXPECT_EQ(GlobMatch(p, n), Fnmatch(p, n)) << "pattern '" << p << "' name '" << n << "'";
    }
  }
}

#endif  // _WIN32

TEST(GlobMatch, StarCrossesSlashesAndDots) {
  EXPECT_TRUE(GlobMatch("*.csv", "deep/dir/x.csv"));
  EXPECT_TRUE(GlobMatch("*", ".hidden"));
  EXPECT_TRUE(GlobMatch("a*", "a/b/c"));
}

TEST(GlobMatch, CharactersAreCodePoints) {
  EXPECT_TRUE(GlobMatch("?", "é"));
  EXPECT_TRUE(GlobMatch("caf?", "café"));
  EXPECT_TRUE(GlobMatch("[é]", "é"));
  EXPECT_TRUE(GlobMatch("[!é]", "e"));
  EXPECT_FALSE(GlobMatch("[!é]", "é"));
  EXPECT_TRUE(GlobMatch("[à-ü]", "é"));
  EXPECT_TRUE(GlobMatch("*ü*", "Grüße"));
  EXPECT_TRUE(GlobMatch("??", "日本"));
  EXPECT_FALSE(GlobMatch("?", "日本"));
}

TEST(GlobMatch, InvalidUtf8BytesAreSingleCharacters) {
  EXPECT_TRUE(GlobMatch("?", "\xff"));
  EXPECT_TRUE(GlobMatch("a?z", "a\xc3z"));  // a truncated sequence is one character
  EXPECT_FALSE(GlobMatch("a?b",
                         "a\xc3"
                         "b"
                         "b"));
  EXPECT_TRUE(GlobMatch("*\xff", "x\xff"));
}

}  // namespace
}  // namespace ds::platform
