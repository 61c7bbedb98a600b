#include "common/config.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ds {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::UnorderedElementsAre;

class ExpandConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "config_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string WriteConfig(const std::string& toml) {
    std::string path = (dir_ / "agent.toml").string();
    std::ofstream(path) << toml;
    return path;
  }

  // Runs ExpandConfigFile on `args` as a real argv would be passed.
  static absl::StatusOr<std::vector<std::string>> Expand(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    return ExpandConfigFile(static_cast<int>(args.size()), argv.data());
  }

  fs::path dir_;
};

TEST_F(ExpandConfigFileTest, WithoutConfigArgvIsUnchanged) {
  absl::StatusOr<std::vector<std::string>> out = Expand({"prog", "--port=1", "x"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, ElementsAre("prog", "--port=1", "x"));
}

TEST_F(ExpandConfigFileTest, InsertsFlagsAfterProgramName) {
  std::string file = WriteConfig(R"(
    name = "runner 1"
    port = 8080
    verbose = true
    quiet = false
    include = ["*.dat", "*.csv"]
    ratio = 0.125
    big = 1234567.5
  )");
  std::vector<std::string> args = {"prog", "--config", file, "--port=9090"};
  absl::StatusOr<std::vector<std::string>> out = Expand(args);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_GE(out->size(), args.size());
  EXPECT_EQ(out->front(), "prog");
  // The command line follows the file's flags so it wins.
  std::vector<std::string> tail(out->end() - 3, out->end());
  EXPECT_THAT(tail, ElementsAre("--config", file, "--port=9090"));
  std::vector<std::string> inserted(out->begin() + 1, out->end() - 3);
  EXPECT_THAT(inserted,
              UnorderedElementsAre("--name=runner 1", "--port=8080", "--verbose", "--include=*.dat",
                                   "--include=*.csv", "--ratio=0.125", "--big=1234567.5"));
  // Array elements keep their order.
  auto first = std::find(inserted.begin(), inserted.end(), "--include=*.dat");
  auto second = std::find(inserted.begin(), inserted.end(), "--include=*.csv");
  EXPECT_LT(first, second);
}

TEST_F(ExpandConfigFileTest, AcceptsEqualsForm) {
  std::string file = WriteConfig("level = \"debug\"\n");
  absl::StatusOr<std::vector<std::string>> out = Expand({"prog", "--config=" + file});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, ElementsAre("prog", "--level=debug", "--config=" + file));
}

TEST_F(ExpandConfigFileTest, NestedTableIsInvalidArgument) {
  std::string file = WriteConfig("port = 1\n[server]\nhost = \"x\"\n");
  EXPECT_TRUE(absl::IsInvalidArgument(Expand({"prog", "--config", file}).status()));
}

TEST_F(ExpandConfigFileTest, SyntaxErrorIsInvalidArgument) {
  std::string file = WriteConfig("port = = 1\n");
  EXPECT_TRUE(absl::IsInvalidArgument(Expand({"prog", "--config", file}).status()));
}

TEST_F(ExpandConfigFileTest, UnsupportedValueTypeIsInvalidArgument) {
  std::string file = WriteConfig("when = 1979-05-27T07:32:00Z\n");
  EXPECT_TRUE(absl::IsInvalidArgument(Expand({"prog", "--config", file}).status()));
}

// Found by fuzz_config: a float past int64 was asked for as an integer (UB in toml++).
TEST(ConfigFlagsTest, FloatsBeyondInt64StayFloats) {
  auto flags = ConfigFlags("big = 10e111\nhalf = 2.5\nwhole = 2.0\n", "t.toml");
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_THAT(*flags, ElementsAre("--big=1e+112", "--half=2.5", "--whole=2"));
}

TEST_F(ExpandConfigFileTest, MissingFileIsNotFound) {
  absl::StatusOr<std::vector<std::string>> out =
      Expand({"prog", "--config", (dir_ / "missing.toml").string()});
  EXPECT_TRUE(absl::IsNotFound(out.status())) << out.status();
}

}  // namespace
}  // namespace ds
