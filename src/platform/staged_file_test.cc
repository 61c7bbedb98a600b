#include "platform/staged_file.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "platform/test_dir.h"

namespace ds::platform {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t CountEntries(const fs::path& p) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(p)) ++n;
  return n;
}

class StagedFileTest : public ::testing::TestWithParam<StagingMode> {};

TEST_P(StagedFileTest, CommitGivesTheFinalName) {
  TestDir t;
  auto d = Directory::Open(t.path());
  ASSERT_TRUE(d.ok());
  auto s = StagedFile::Create(*d, "final", 0640, GetParam());
  ASSERT_TRUE(s.ok()) << s.status();
  if (GetParam() == StagingMode::kNamed) {
    EXPECT_FALSE(s->unnamed());
  }
  ASSERT_TRUE(s->WriteAll("content").ok());
  EXPECT_FALSE(fs::exists(t.path() / "final"));
  ASSERT_TRUE(s->Commit("final", CommitOptions{}).ok());
  EXPECT_TRUE(s->committed());
  EXPECT_EQ(Slurp(t.path() / "final"), "content");
  EXPECT_EQ(CountEntries(t.path()), 1u);
  EXPECT_EQ(d->StatAt("final")->permissions & 0777, 0640u & ~0022u & 0777u);
}

TEST_P(StagedFileTest, NoReplaceRefusesAndStaysUsable) {
  TestDir t;
  std::ofstream(t.path() / "taken") << "old";
  auto d = Directory::Open(t.path());
  auto s = StagedFile::Create(*d, "taken", 0644, GetParam());
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->WriteAll("new").ok());
  EXPECT_TRUE(absl::IsAlreadyExists(s->Commit("taken", CommitOptions{})));
  EXPECT_EQ(Slurp(t.path() / "taken"), "old");
  EXPECT_FALSE(s->committed());
  ASSERT_TRUE(s->Commit("other", CommitOptions{}).ok());
  EXPECT_EQ(Slurp(t.path() / "other"), "new");
  EXPECT_EQ(CountEntries(t.path()), 2u);
}

TEST_P(StagedFileTest, ReplaceOverwrites) {
  TestDir t;
  std::ofstream(t.path() / "taken") << "old";
  auto d = Directory::Open(t.path());
  auto s = StagedFile::Create(*d, "taken", 0644, GetParam());
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->WriteAll("new").ok());
  CommitOptions replace;
  replace.replace = Replace::kYes;
  replace.flush = false;
  ASSERT_TRUE(s->Commit("taken", replace).ok());
  EXPECT_EQ(Slurp(t.path() / "taken"), "new");
  EXPECT_EQ(CountEntries(t.path()), 1u);
}

TEST_P(StagedFileTest, DestroyingUncommittedLeavesNothing) {
  TestDir t;
  auto d = Directory::Open(t.path());
  {
    auto s = StagedFile::Create(*d, "x", 0644, GetParam());
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->WriteAll("partial").ok());
    StagedFile moved = *std::move(s);
  }
  EXPECT_EQ(CountEntries(t.path()), 0u);
}

TEST_P(StagedFileTest, FileStaysReadableAfterCommit) {
  TestDir t;
  auto d = Directory::Open(t.path());
  auto s = StagedFile::Create(*d, "r", 0644, GetParam());
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->WriteAll("abc").ok());
  ASSERT_TRUE(s->Commit("r", CommitOptions{}).ok());
  char buf[3];
  EXPECT_EQ(*s->file().ReadAt(0, absl::MakeSpan(buf, 3)), 3u);
  EXPECT_EQ(s->file().Info()->id, d->StatAt("r")->id);
}

INSTANTIATE_TEST_SUITE_P(Modes, StagedFileTest,
                         ::testing::Values(StagingMode::kAuto, StagingMode::kNamed));

TEST(StagedFile, NamedTempIsHiddenBesideTheTarget) {
  TestDir t;
  auto d = Directory::Open(t.path());
  auto s = StagedFile::Create(*d, "name", 0644, StagingMode::kNamed);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->temp_name().rfind(".name.tmp-", 0), 0u) << s->temp_name();
  EXPECT_TRUE(fs::exists(t.path() / s->temp_name()));
}

}  // namespace
}  // namespace ds::platform
