#include "agent/storage_profile.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "spdlog/sinks/ringbuffer_sink.h"

namespace ds {
namespace {

namespace fs = std::filesystem;

// Log lines of the default logger while it lives.
class CapturedLog {
 public:
  CapturedLog() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~CapturedLog() { spdlog::default_logger()->sinks().pop_back(); }
  size_t Count(const std::string& text) const {
    size_t n = 0;
    for (const std::string& line : sink_->last_formatted()) n += line.find(text) != std::string::npos;
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

fs::path Scratch(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / absl::StrCat("ds_profile_", ::getpid(), "_", name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(ProfileStorageTest, ADirectoryIsOpenedOnceAndItsChoiceLoggedOnce) {
  const fs::path dir = Scratch("dir");
  const std::string url = "file://" + dir.string();
  CapturedLog log;
  auto first = ProfileStorage(url);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->agent_writes);
  EXPECT_TRUE(first->features.direct_writes);
  EXPECT_TRUE(first->features.stages_from_fd);
  EXPECT_EQ(first->copies_while_scanning, first->features.unnamed_files);
  auto second = ProfileStorage(url);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->copies_while_scanning, first->copies_while_scanning);
  EXPECT_EQ(log.Count("copying while scanning"), 1u);
  fs::remove_all(dir);
}

// Decided from what the URL advertises: the agent does not try to open it (it holds no key).
TEST(ProfileStorageTest, ObjectStorageIsWrittenWithGrantsNotByTheAgent) {
  auto profile = ProfileStorage("azblob://account/container");
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_FALSE(profile->agent_writes);
  EXPECT_FALSE(profile->copies_while_scanning);
  EXPECT_TRUE(profile->features.write_grants);
  EXPECT_FALSE(profile->features.direct_writes);
}

TEST(ProfileStorageTest, StorageThatCannotBeOpenedIsAskedAgainNextTime) {
  const fs::path dir = Scratch("unreachable");
  std::ofstream(dir / "root") << "a file, not a directory";
  const std::string url = "file://" + (dir / "root").string();
  EXPECT_FALSE(ProfileStorage(url).ok());
  fs::remove(dir / "root");
  fs::create_directories(dir / "root");
  auto now = ProfileStorage(url);
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_TRUE(now->agent_writes);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ds
