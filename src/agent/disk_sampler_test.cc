#include "agent/disk_sampler.h"

#include <chrono>
#include <filesystem>
#include <thread>

#include "gtest/gtest.h"
#include "platform/test_dir.h"

namespace ds {
namespace {

using std::chrono::milliseconds;

// Last() once it holds `n` entries (the sampler's thread samples a change at once).
std::vector<protocol::DiskFree> WaitForEntries(DiskSampler& sampler, size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<protocol::DiskFree> last = sampler.Last();
  while (last.size() != n && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
    last = sampler.Last();
  }
  return last;
}

TEST(DiskSamplerTest, SamplesNewFoldersAtOnceAndSkipsOnesThatCannotBeRead) {
  platform::TestDir dir;
  auto sampler = DiskSampler::Start(std::chrono::hours(1));
  EXPECT_TRUE(sampler->Last().empty());
  sampler->SetFolders({{"raw", dir.path().string()}, {"gone", (dir.path() / "missing").string()}});
  const std::vector<protocol::DiskFree> last = WaitForEntries(*sampler, 1);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].job, "raw");
  EXPECT_EQ(last[0].path, dir.path().string());
  EXPECT_GT(last[0].total_bytes, 0u);
  EXPECT_LE(last[0].free_bytes, last[0].total_bytes);
  sampler->Stop();
}

TEST(DiskSamplerTest, AFolderNoLongerConfiguredLeavesTheSampleAtOnce) {
  platform::TestDir dir;
  std::filesystem::create_directories(dir.path() / "a");
  std::filesystem::create_directories(dir.path() / "b");
  auto sampler = DiskSampler::Start(std::chrono::hours(1));
  sampler->SetFolders({{"a", (dir.path() / "a").string()}, {"b", (dir.path() / "b").string()}});
  ASSERT_EQ(WaitForEntries(*sampler, 2).size(), 2u);
  sampler->SetFolders({{"b", (dir.path() / "b").string()}});
  const std::vector<protocol::DiskFree> last = sampler->Last();  // before any new sample
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].job, "b");
  sampler->Stop();
}

TEST(DiskSamplerTest, ASampleOlderThanThreeIntervalsIsNotSent) {
  platform::TestDir dir;
  auto sampler = DiskSampler::Start(milliseconds(20));
  sampler->SetFolders({{"raw", dir.path().string()}});
  ASSERT_EQ(WaitForEntries(*sampler, 1).size(), 1u);
  sampler->Stop();  // no more samples: the last one ages out (without the rule: never)
  EXPECT_TRUE(WaitForEntries(*sampler, 0).empty());
}

}  // namespace
}  // namespace ds
