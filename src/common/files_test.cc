#include "common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>

#include "gtest/gtest.h"

namespace ds {
namespace {

namespace fs = std::filesystem;

class OpenScannedFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ds_files_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "tree");
    Write(dir_ / "outside.txt", "secret-outside");
    Write(file(), "scanned-data12");  // same size as outside.txt
    struct stat st;
    ASSERT_EQ(::lstat(file().c_str(), &st), 0);
    scanned_ = IdentityOf(st);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void Write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }
  fs::path file() const { return dir_ / "tree" / "data.bin"; }
  // Gives `p` the scanned mtime, so only the identity tells the files apart.
  void SameMtime(const fs::path& p) const {
    struct timespec ts[2] = {{0, UTIME_OMIT},
                             {static_cast<time_t>(scanned_.mtime_ns / 1'000'000'000),
                              static_cast<long>(scanned_.mtime_ns % 1'000'000'000)}};
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0);
  }

  fs::path dir_;
  FileIdentity scanned_;
};

TEST_F(OpenScannedFileTest, TheScannedFileOpensAndReads) {
  auto fd = OpenScannedFile(file(), scanned_);
  ASSERT_TRUE(fd.ok()) << fd.status();
  char buf[32];
  EXPECT_EQ(ReadFully(fd->get(), buf, sizeof buf), 14);
  EXPECT_EQ(::fcntl(fd->get(), F_GETFL) & O_NONBLOCK, 0);
}

TEST_F(OpenScannedFileTest, ASymlinkToAFileOutsideIsNotFollowed) {
  fs::remove(file());
  fs::create_symlink(dir_ / "outside.txt", file());
  auto fd = OpenScannedFile(file(), scanned_);
  EXPECT_TRUE(absl::IsAborted(fd.status())) << fd.status();
  EXPECT_EQ(fd.status().message(), kChangedSinceScan);
}

TEST_F(OpenScannedFileTest, AFifoDoesNotBlockAndIsRefused) {
  fs::remove(file());
  ASSERT_EQ(::mkfifo(file().c_str(), 0644), 0);
  auto opened = std::async(std::launch::async, [&] { return OpenScannedFile(file(), scanned_); });
  ASSERT_EQ(opened.wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "opening a FIFO blocked";
  auto fd = opened.get();
  EXPECT_TRUE(absl::IsAborted(fd.status())) << fd.status();
}

TEST_F(OpenScannedFileTest, AnotherRegularFileOfTheSameSizeAndMtimeIsRefused) {
  // Written beside it, then renamed over it (removing first could reuse the inode number).
  Write(dir_ / "tree" / "other", "other-content!");
  fs::rename(dir_ / "tree" / "other", file());
  SameMtime(file());
  auto fd = OpenScannedFile(file(), scanned_);
  EXPECT_TRUE(absl::IsAborted(fd.status())) << fd.status();
}

TEST_F(OpenScannedFileTest, AHardLinkToAFileOutsideIsRefused) {
  fs::remove(file());
  fs::create_hard_link(dir_ / "outside.txt", file());
  SameMtime(file());
  auto fd = OpenScannedFile(file(), scanned_);
  EXPECT_TRUE(absl::IsAborted(fd.status())) << fd.status();
}

TEST_F(OpenScannedFileTest, AChangedSizeOrMtimeIsRefusedAndAGoneFileIsNotFound) {
  Write(file(), "scanned-data12 and more");
  EXPECT_TRUE(absl::IsAborted(OpenScannedFile(file(), scanned_).status()));
  fs::remove(file());
  EXPECT_TRUE(absl::IsNotFound(OpenScannedFile(file(), scanned_).status()));
}

TEST_F(OpenScannedFileTest, AFileReachedThroughALinkInsideIsCheckedByIdentity) {
  fs::create_symlink(file(), dir_ / "tree" / "link");
  struct stat st;
  ASSERT_EQ(::stat((dir_ / "tree" / "link").c_str(), &st), 0);
  const FileIdentity via_link = IdentityOf(st, /*via_link=*/true);
  EXPECT_TRUE(OpenScannedFile(dir_ / "tree" / "link", via_link).ok());
  fs::remove(dir_ / "tree" / "link");
  fs::create_symlink(dir_ / "outside.txt", dir_ / "tree" / "link");
  EXPECT_TRUE(absl::IsAborted(OpenScannedFile(dir_ / "tree" / "link", via_link).status()));
}

}  // namespace
}  // namespace ds
