#include "platform/dir_extra.h"

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "platform/error.h"
#include "platform/test_dir.h"

namespace ds::platform {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kTime = 1'600'000'000'123'456'789;  // Unix ns

void WriteText(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

std::string ReadText(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Both times of `p` in Unix ns (access, modification), links not followed.
std::pair<int64_t, int64_t> TimesOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0);
  return {st.st_atim.tv_sec * 1'000'000'000LL + st.st_atim.tv_nsec,
          st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec};
}

TEST(DirExtra, VolumeOfATempDirIsKnownAndHandlesHaveALimit) {
  TestDir t;
  auto dir = Directory::Open(t.path());
  ASSERT_TRUE(dir.ok()) << dir.status();
  const VolumeKind kind = VolumeKindOf(*dir);
  EXPECT_NE(kind.filesystem, "unknown");
  EXPECT_FALSE(kind.filesystem.empty());
  EXPECT_GT(OpenHandleLimit(), 16u);
}

TEST(DirExtra, AnUnnamedFileIsInvisibleUntilLinkedAndALinkNeverReplaces) {
  TestDir t;
  auto dir = Directory::Open(t.path());
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto file = CreateUnnamedFile(*dir);
  if (absl::IsUnimplemented(file.status())) GTEST_SKIP() << "no O_TMPFILE here: " << file.status();
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE(file->WriteAll("staged").ok());
  EXPECT_TRUE(fs::is_empty(t.path()));
  WriteText(t.path() / "taken", "old");
  const absl::Status taken = LinkUnnamedFile(*file, *dir, "taken");
  EXPECT_TRUE(absl::IsAlreadyExists(taken)) << taken;
  EXPECT_EQ(ReadText(t.path() / "taken"), "old");
  ASSERT_TRUE(LinkUnnamedFile(*file, *dir, "final").ok());
  EXPECT_EQ(ReadText(t.path() / "final"), "staged");
}

TEST(DirExtra, BothTimesAreSetByHandleAndByName) {
  TestDir t;
  WriteText(t.path() / "a", "x");
  WriteText(t.path() / "b", "x");
  auto dir = Directory::Open(t.path());
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto a = dir->OpenFile("a", OpenOptions{});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(SetFileTimes(*a, kTime).ok());
  EXPECT_EQ(TimesOf(t.path() / "a"), std::make_pair(kTime, kTime));
  ASSERT_TRUE(SetFileTimesAt(*dir, "b", -1'500'000'000).ok());  // before 1970: floored
  EXPECT_EQ(TimesOf(t.path() / "b"),
            std::make_pair(int64_t{-1'500'000'000}, int64_t{-1'500'000'000}));
  EXPECT_TRUE(absl::IsNotFound(SetFileTimesAt(*dir, "missing", kTime)));
}

TEST(DirExtra, AttributesByPathMatchTheFilesOwn) {
  TestDir t;
  const fs::path p = t.path() / "obj";
  WriteText(p, "x");
  const absl::Status set = SetAttributeAt(p, "datasync.test", std::string(300, 'v'));
  if (absl::IsUnimplemented(set)) GTEST_SKIP() << "no user xattrs here: " << set;
  ASSERT_TRUE(set.ok()) << set;
  auto got = GetAttributeAt(p, "datasync.test");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::string(300, 'v'));  // longer than the first buffer
  auto file = File::Open(p, OpenOptions{});
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(*file->GetAttribute("datasync.test"), std::string(300, 'v'));
  ASSERT_TRUE(RemoveAttributeAt(p, "datasync.test").ok());
  EXPECT_TRUE(RemoveAttributeAt(p, "datasync.test").ok());  // already gone
  EXPECT_TRUE(absl::IsNotFound(GetAttributeAt(p, "datasync.test").status()));
  EXPECT_TRUE(absl::IsNotFound(GetAttributeAt(t.path() / "missing", "datasync.test").status()));
}

TEST(DirExtra, UnreachableAndBusyAreToldFromOtherErrors) {
  for (int err : {ESTALE, EIO, ENOTCONN, ETIMEDOUT, EHOSTDOWN, ECONNRESET, ENODEV, ENXIO}) {
    EXPECT_TRUE(IsUnreachable(ErrnoToStatus(err, "open /share/x"))) << err;
  }
  for (int err : {ENOENT, EACCES, EBUSY, ENOSPC, EEXIST}) {
    EXPECT_FALSE(IsUnreachable(ErrnoToStatus(err, "open /share/x"))) << err;
  }
  EXPECT_FALSE(IsUnreachable(absl::OkStatus()));
  EXPECT_FALSE(
      IsUnreachable(absl::InternalError("open /share/x: Stale file handle")));  // not the OS's
  EXPECT_TRUE(IsUnreachable(WithContext(ErrnoToStatus(ESTALE, "open /share/x"), "put x")));
  EXPECT_TRUE(IsBusy(ErrnoToStatus(EBUSY, "remove /share/x")));
  EXPECT_FALSE(IsBusy(ErrnoToStatus(EIO, "remove /share/x")));
  EXPECT_FALSE(IsBusy(ErrnoToStatus(EAGAIN, "remove /share/x")));
  EXPECT_TRUE(IsNotSupported(ErrnoToStatus(ENOSYS, "link /share/x")));
  EXPECT_TRUE(IsNotSupported(ErrnoToStatus(EOPNOTSUPP, "link /share/x")));
  EXPECT_FALSE(IsNotSupported(ErrnoToStatus(EACCES, "link /share/x")));
  EXPECT_TRUE(IsBusy(WithKind(absl::UnavailableError("in use"), ErrorKind::kSharingViolation)));
}

}  // namespace
}  // namespace ds::platform
