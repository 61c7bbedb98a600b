#include "agent/source_roots.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace ds {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class SourceRootsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("ds_source_roots_", ::getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data" / "raw");
    fs::create_directories(dir_ / "data2");
    fs::create_directories(dir_ / "private");
    dir_ = fs::canonical(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string P(const std::string& rel) const { return (dir_ / rel).string(); }
  fs::path dir_;
};

TEST_F(SourceRootsTest, AdmitsTheRootAndWhatIsBelowIt) {
  SourceRoots roots({P("data")});
  auto root = roots.Admit(P("data"));
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(*root, dir_ / "data");
  auto below = roots.Admit(P("data/raw/"));
  ASSERT_TRUE(below.ok()) << below.status();
  EXPECT_EQ(*below, dir_ / "data" / "raw");
  EXPECT_TRUE(SourceRoots({P("data/")}).Admit(P("data/raw")).ok());  // a root's trailing slash
}

TEST_F(SourceRootsTest, NoRootsAdmitNothing) {
  auto st = SourceRoots({}).Admit(P("data"));
  EXPECT_TRUE(absl::IsPermissionDenied(st.status())) << st.status();
  EXPECT_THAT(st.status().message(), HasSubstr("--allow-source"));
  EXPECT_THAT(st.status().message(), HasSubstr("allows none"));
}

TEST_F(SourceRootsTest, RefusesASiblingThatSharesTheRootsPrefix) {
  EXPECT_TRUE(absl::IsPermissionDenied(SourceRoots({P("data")}).Admit(P("data2")).status()));
}

TEST_F(SourceRootsTest, RefusesDotDotOutOfTheRoot) {
  EXPECT_TRUE(absl::IsPermissionDenied(SourceRoots({P("data")}).Admit(P("data/../private")).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(SourceRoots({P("data")}).Admit("/etc").status()));
}

TEST_F(SourceRootsTest, ResolvesSymlinksInTheSourceBeforeJudgingIt) {
  fs::create_directory_symlink(dir_ / "private", dir_ / "data" / "link-out");
  auto st = SourceRoots({P("data")}).Admit(P("data/link-out"));
  EXPECT_TRUE(absl::IsPermissionDenied(st.status())) << st.status();
  // A root reached through a symlink admits what the link leads to.
  fs::create_directory_symlink(dir_ / "data", dir_ / "alias");
  EXPECT_TRUE(SourceRoots({P("alias")}).Admit(P("data/raw")).ok());
}

TEST_F(SourceRootsTest, AMissingSourceIsNotFoundAndAMissingRootAdmitsNothingElse) {
  EXPECT_TRUE(absl::IsNotFound(SourceRoots({P("data")}).Admit(P("data/none")).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(SourceRoots({P("later")}).Admit(P("data")).status()));
}

}  // namespace
}  // namespace ds
