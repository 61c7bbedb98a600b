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
    auto info = platform::Stat(file(), /*follow_links=*/false);
    ASSERT_TRUE(info.ok());
    scanned_ = IdentityOf(*info);
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
  EXPECT_EQ(*fd->ReadAt(0, absl::MakeSpan(buf, sizeof buf)), 14u);
  EXPECT_EQ(::fcntl(fd->native(), F_GETFL) & O_NONBLOCK, 0);
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
  auto info = platform::Stat(dir_ / "tree" / "link", /*follow_links=*/true);
  ASSERT_TRUE(info.ok());
  const FileIdentity via_link = IdentityOf(*info, /*via_link=*/true);
  EXPECT_TRUE(OpenScannedFile(dir_ / "tree" / "link", via_link).ok());
  fs::remove(dir_ / "tree" / "link");
  fs::create_symlink(dir_ / "outside.txt", dir_ / "tree" / "link");
  EXPECT_TRUE(absl::IsAborted(OpenScannedFile(dir_ / "tree" / "link", via_link).status()));
}

TEST_F(OpenScannedFileTest, OpensRelativeToADirectory) {
  auto tree = platform::Directory::Open(dir_ / "tree");
  ASSERT_TRUE(tree.ok());
  EXPECT_TRUE(OpenScannedFileAt(&*tree, "data.bin", scanned_).ok());
  EXPECT_TRUE(absl::IsNotFound(OpenScannedFileAt(&*tree, "none", scanned_).status()));
}

class WriteFileAtomicallyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ds_files_atomic_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(WriteFileAtomicallyTest, ReplacesWithTheModeAndLeavesNoTemp) {
  ASSERT_TRUE(WriteFileAtomically(dir_ / "f", "one", 0600).ok());
  ASSERT_TRUE(WriteFileAtomically(dir_ / "f", "two!", 0640).ok());
  EXPECT_EQ(*ReadFileToString(dir_ / "f"), "two!");
  struct stat st;
  ASSERT_EQ(::stat((dir_ / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++n;
  EXPECT_EQ(n, 1u);
  EXPECT_TRUE(absl::IsNotFound(WriteFileAtomically(dir_ / "no" / "f", "x")));
  EXPECT_TRUE(SyncDirectory(dir_).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(ReadFileToString(dir_ / "f", 3).status()));
}

}  // namespace
}  // namespace ds
