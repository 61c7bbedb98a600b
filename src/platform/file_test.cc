#include "platform/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "platform/error.h"
#include "platform/test_dir.h"

namespace ds::platform {
namespace {

namespace fs = std::filesystem;

void WriteText(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

OpenOptions Create(Disposition d = Disposition::kCreateNew) {
  OpenOptions o;
  o.access = Access::kReadWrite;
  o.disposition = d;
  return o;
}

TEST(File, CreateExclusiveWriteReadBack) {
  TestDir dir;
  const fs::path p = dir.path() / "a.txt";
  auto f = File::Open(p, Create());
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(f->WriteAll("hello world").ok());
  EXPECT_EQ(*f->Size(), 11u);
  char buf[5];
  auto n = f->ReadAt(6, absl::MakeSpan(buf, 5));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::string(buf, *n), "world");
  auto again = File::Open(p, Create());
  EXPECT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
  EXPECT_TRUE(f->Flush().ok());
  EXPECT_TRUE(f->FlushData().ok());
  EXPECT_TRUE(f->Close().ok());
  EXPECT_FALSE(f->valid());
  EXPECT_TRUE(f->Close().ok());
}

TEST(File, ReadSequentiallyAndSeek) {
  TestDir dir;
  WriteText(dir.path() / "r", "0123456789");
  auto f = File::Open(dir.path() / "r", OpenOptions{});
  ASSERT_TRUE(f.ok());
  char buf[4];
  EXPECT_EQ(*f->Read(absl::MakeSpan(buf, 4)), 4u);
  EXPECT_EQ(std::string(buf, 4), "0123");
  ASSERT_TRUE(f->Seek(8).ok());
  EXPECT_EQ(*f->Read(absl::MakeSpan(buf, 4)), 2u);
  EXPECT_EQ(std::string(buf, 2), "89");
  EXPECT_EQ(*f->Read(absl::MakeSpan(buf, 4)), 0u);
  EXPECT_EQ(*f->ReadAt(20, absl::MakeSpan(buf, 4)), 0u);
  EXPECT_FALSE(f->WriteAll("x").ok());  // read-only
}

TEST(File, OpenErrorsAreSpecific) {
  TestDir dir;
  auto missing = File::Open(dir.path() / "nope", OpenOptions{});
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_NE(missing.status().message().find("nope"), std::string_view::npos);
}

TEST(File, DoesNotFollowALinkUnlessAsked) {
  TestDir dir;
  WriteText(dir.path() / "target", "t");
  fs::create_symlink("target", dir.path() / "link");
  auto f = File::Open(dir.path() / "link", OpenOptions{});
  EXPECT_EQ(KindOf(f.status()), ErrorKind::kIsLink) << f.status();
  OpenOptions follow;
  follow.follow_links = true;
  EXPECT_TRUE(File::Open(dir.path() / "link", follow).ok());
}

TEST(File, RegularOnlyRefusesAFifoWithoutBlocking) {
  TestDir dir;
  const fs::path fifo = dir.path() / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  OpenOptions o;
  o.regular_only = true;
  auto f = File::Open(fifo, o);
  EXPECT_TRUE(absl::IsFailedPrecondition(f.status())) << f.status();
  EXPECT_EQ(KindOf(f.status()), ErrorKind::kNoDevice);
  auto d = File::Open(dir.path(), o);
  EXPECT_TRUE(absl::IsFailedPrecondition(d.status())) << d.status();
  EXPECT_EQ(KindOf(d.status()), ErrorKind::kIsDirectory);
  WriteText(dir.path() / "reg", "x");
  auto r = File::Open(dir.path() / "reg", o);
  ASSERT_TRUE(r.ok()) << r.status();
  char c;
  EXPECT_EQ(*r->Read(absl::MakeSpan(&c, 1)), 1u);
}

TEST(File, NonBlockingOpensAFifoWithoutWaiting) {
  TestDir dir;
  const fs::path fifo = dir.path() / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  OpenOptions o;
  o.non_blocking = true;
  auto f = File::Open(fifo, o);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->Info()->type, FileType::kOther);
}

TEST(File, InfoTruncateTimesPermissions) {
  TestDir dir;
  auto f = File::Open(dir.path() / "i", Create());
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->WriteAll("abcdef").ok());
  ASSERT_TRUE(f->Truncate(3).ok());
  ASSERT_TRUE(f->SetModificationTime(1'700'000'000'123'456'789).ok());
  ASSERT_TRUE(f->SetPermissions(0600).ok());
  auto info = f->Info();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->type, FileType::kFile);
  EXPECT_EQ(info->size, 3u);
  EXPECT_EQ(info->mtime_ns, 1'700'000'000'123'456'789);
  EXPECT_EQ(info->permissions, 0600u);
  EXPECT_EQ(info->link_count, 1u);
  struct stat st;
  ASSERT_EQ(::stat((dir.path() / "i").c_str(), &st), 0);
  EXPECT_EQ(info->id.volume, static_cast<uint64_t>(st.st_dev));
  EXPECT_EQ(info->id.file, static_cast<uint64_t>(st.st_ino));
  auto by_path = Stat(dir.path() / "i", false);
  ASSERT_TRUE(by_path.ok());
  EXPECT_EQ(by_path->id, info->id);
}

TEST(File, MoveTransfersOwnership) {
  TestDir dir;
  auto f = File::Open(dir.path() / "m", Create());
  ASSERT_TRUE(f.ok());
  const int fd = f->native();
  File moved = *std::move(f);
  EXPECT_EQ(moved.native(), fd);
  File other;
  other = std::move(moved);
  EXPECT_EQ(other.native(), fd);
  EXPECT_FALSE(moved.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_GE(::fcntl(fd, F_GETFD), 0);
}

TEST(File, MoveAssignOverAnOpenFileClosesItsHandle) {
  TestDir dir;
  auto a = File::Open(dir.path() / "a", Create());
  auto b = File::Open(dir.path() / "b", Create());
  ASSERT_TRUE(a.ok() && b.ok());
  const int old_fd = a->native();
  const int kept_fd = b->native();
  *a = *std::move(b);
  EXPECT_LT(::fcntl(old_fd, F_GETFD), 0);
  EXPECT_EQ(a->native(), kept_fd);
  EXPECT_EQ(a->display_path(), (dir.path() / "b").string());
  EXPECT_TRUE(a->Close().ok());
  EXPECT_FALSE(a->valid());
  EXPECT_LT(::fcntl(kept_fd, F_GETFD), 0);
  EXPECT_TRUE(a->Close().ok());  // closing twice is OK
}

TEST(File, DestructorCloses) {
  TestDir dir;
  int fd;
  {
    auto f = File::Open(dir.path() / "c", Create());
    ASSERT_TRUE(f.ok());
    fd = f->native();
  }
  EXPECT_LT(::fcntl(fd, F_GETFD), 0);
}

TEST(File, DuplicateSharesTheFile) {
  TestDir dir;
  WriteText(dir.path() / "d", "xyz");
  auto f = File::Open(dir.path() / "d", OpenOptions{});
  ASSERT_TRUE(f.ok());
  auto d = f->Duplicate();
  ASSERT_TRUE(d.ok());
  EXPECT_NE(d->native(), f->native());
  EXPECT_EQ(d->Info()->id, f->Info()->id);
  EXPECT_NE(::fcntl(d->native(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(File, Attributes) {
  TestDir dir;
  auto f = File::Open(dir.path() / "x", Create());
  ASSERT_TRUE(f.ok());
  absl::Status set = f->SetAttribute("datasync.test", std::string(1000, 'v'));
  if (absl::IsUnimplemented(set)) GTEST_SKIP() << "no user xattrs on " << dir.path();
  ASSERT_TRUE(set.ok()) << set;
  EXPECT_EQ(*f->GetAttribute("datasync.test"), std::string(1000, 'v'));  // past the first buffer
  ASSERT_TRUE(f->SetAttribute("datasync.small", "1").ok());
  auto names = f->ListAttributes();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), 2u);
  EXPECT_TRUE(absl::IsNotFound(f->GetAttribute("datasync.none").status()));
  EXPECT_TRUE(f->RemoveAttribute("datasync.test").ok());
  EXPECT_TRUE(f->RemoveAttribute("datasync.test").ok());
  EXPECT_TRUE(absl::IsNotFound(f->GetAttribute("datasync.test").status()));
  char v[8];
  EXPECT_EQ(::fgetxattr(f->native(), "user.datasync.small", v, sizeof v), 1);
}

TEST(File, AttributesUnsupportedIsUnimplemented) {
  // /proc files take no user xattrs.
  auto f = File::Open("/proc/self/status", OpenOptions{});
  ASSERT_TRUE(f.ok());
  auto get = f->GetAttribute("datasync.x");
  EXPECT_TRUE(absl::IsUnimplemented(get.status()) || absl::IsNotFound(get.status()))
      << get.status();
}

TEST(ReadFileToString, ReadsAndCaps) {
  TestDir dir;
  WriteText(dir.path() / "s", std::string(100, 'q'));
  EXPECT_EQ(*ReadFileToString(dir.path() / "s", 100), std::string(100, 'q'));
  EXPECT_TRUE(absl::IsResourceExhausted(ReadFileToString(dir.path() / "s", 99).status()));
  EXPECT_TRUE(absl::IsNotFound(ReadFileToString(dir.path() / "t", 99).status()));
}

}  // namespace
}  // namespace ds::platform
