#include "platform/directory.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "platform/error.h"
#include "platform/test_dir.h"

namespace ds::platform {
namespace {

namespace fs = std::filesystem;

void WriteText(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

absl::StatusOr<std::string> ReadAll(const Directory& d, std::string_view name) {
  auto f = d.OpenFile(name, OpenOptions{});
  if (!f.ok()) return f.status();
  std::string out(4096, '\0');
  auto n = f->ReadAt(0, absl::MakeSpan(out));
  if (!n.ok()) return n.status();
  out.resize(*n);
  return out;
}

TEST(Directory, OpenRefusesLinksWhenAskedAndFiles) {
  TestDir t;
  fs::create_directory(t.path() / "real");
  fs::create_directory_symlink("real", t.path() / "link");
  WriteText(t.path() / "file", "x");
  EXPECT_TRUE(Directory::Open(t.path() / "link").ok());
  EXPECT_EQ(KindOf(Directory::Open(t.path() / "link", false).status()), ErrorKind::kIsLink);
  auto on_file = Directory::Open(t.path() / "file");
  EXPECT_TRUE(absl::IsNotFound(on_file.status()));
  EXPECT_EQ(KindOf(on_file.status()), ErrorKind::kNotDirectory);
  auto root = Directory::Open(t.path());
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(KindOf(root->OpenDirectory("link").status()), ErrorKind::kIsLink);
  EXPECT_TRUE(root->OpenDirectory("real").ok());
}

TEST(Directory, MovesOwnershipAndClosesOnDestruction) {
  TestDir dir;
  int fd;
  {
    auto d = Directory::Open(dir.path());
    ASSERT_TRUE(d.ok());
    fd = d->native();
    Directory moved = *std::move(d);
    EXPECT_EQ(moved.native(), fd);
    EXPECT_FALSE(d->valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
    EXPECT_GE(::fcntl(fd, F_GETFD), 0);
  }
  EXPECT_LT(::fcntl(fd, F_GETFD), 0);
}

TEST(Directory, OpenFileRelativeNoFollow) {
  TestDir t;
  WriteText(t.path() / "target", "data");
  fs::create_symlink("target", t.path() / "link");
  auto d = Directory::Open(t.path());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*ReadAll(*d, "target"), "data");
  EXPECT_EQ(KindOf(d->OpenFile("link", OpenOptions{}).status()), ErrorKind::kIsLink);
  OpenOptions create;
  create.access = Access::kWrite;
  create.disposition = Disposition::kCreateNew;
  auto f = d->OpenFile("new", create);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->display_path(), (t.path() / "new").string());
  EXPECT_TRUE(absl::IsAlreadyExists(d->OpenFile("new", create).status()));
}

TEST(Directory, ListGivesTypesAndInfo) {
  TestDir t;
  WriteText(t.path() / "f", "12345");
  fs::create_directory(t.path() / "sub");
  fs::create_symlink("f", t.path() / "ln");
  ASSERT_EQ(::mkfifo((t.path() / "p").c_str(), 0644), 0);
  auto d = Directory::Open(t.path());
  ASSERT_TRUE(d.ok());
  for (ListDetail detail : {ListDetail::kTypeOnly, ListDetail::kInfo}) {
    std::map<std::string, DirEntry> seen;
    ASSERT_TRUE(d->List(
                     [&](const DirEntry& e) {
                       seen[e.name] = e;
                       return absl::OkStatus();
                     },
                     detail)
                    .ok());
    ASSERT_EQ(seen.size(), 4u);
    EXPECT_EQ(seen["f"].type, FileType::kFile);
    EXPECT_EQ(seen["sub"].type, FileType::kDirectory);
    EXPECT_EQ(seen["ln"].type, FileType::kLink);
    EXPECT_EQ(seen["p"].type, FileType::kOther);
    if (detail == ListDetail::kInfo) {
      ASSERT_TRUE(seen["f"].info.has_value());
      EXPECT_EQ(seen["f"].info->size, 5u);
      EXPECT_EQ(seen["f"].info->id, d->StatAt("f")->id);
      EXPECT_EQ(seen["f"].info->mtime_ns, d->StatAt("f")->mtime_ns);
      EXPECT_EQ(seen["ln"].info->type, FileType::kLink);
    }
  }
}

TEST(Directory, ListStopsAtTheCallbacksError) {
  TestDir t;
  WriteText(t.path() / "a", "");
  WriteText(t.path() / "b", "");
  auto d = Directory::Open(t.path());
  int calls = 0;
  absl::Status s = d->List([&](const DirEntry&) {
    ++calls;
    return absl::CancelledError("enough");
  });
  EXPECT_TRUE(absl::IsCancelled(s));
  EXPECT_EQ(calls, 1);
}

TEST(Directory, StatAtFollowsOnlyWhenAsked) {
  TestDir t;
  WriteText(t.path() / "f", "abc");
  fs::create_symlink("f", t.path() / "ln");
  auto d = Directory::Open(t.path());
  EXPECT_EQ(d->StatAt("ln")->type, FileType::kLink);
  EXPECT_EQ(d->StatAt("ln", true)->type, FileType::kFile);
  EXPECT_EQ(d->StatAt("ln", true)->size, 3u);
  EXPECT_TRUE(absl::IsNotFound(d->StatAt("none").status()));
  EXPECT_EQ(d->Info()->type, FileType::kDirectory);
}

TEST(Directory, MakeAndRemove) {
  TestDir t;
  auto d = Directory::Open(t.path());
  ASSERT_TRUE(d->MakeDirAt("sub").ok());
  EXPECT_TRUE(absl::IsAlreadyExists(d->MakeDirAt("sub")));
  EXPECT_TRUE(absl::IsNotFound(d->MakeDirAt("no/such")));
  WriteText(t.path() / "sub" / "f", "x");
  absl::Status not_empty = d->RemoveAt("sub", RemoveKind::kDirectory);
  EXPECT_EQ(KindOf(not_empty), ErrorKind::kNotEmpty) << not_empty;
  EXPECT_EQ(KindOf(d->RemoveAt("sub")), ErrorKind::kIsDirectory);
  ASSERT_TRUE(d->RemoveAt("sub/f").ok());
  ASSERT_TRUE(d->RemoveAt("sub", RemoveKind::kDirectory).ok());
  EXPECT_TRUE(absl::IsNotFound(d->RemoveAt("sub")));
  EXPECT_FALSE(fs::exists(t.path() / "sub"));
}

TEST(Directory, RenameWithAndWithoutReplace) {
  TestDir t;
  WriteText(t.path() / "a", "A");
  WriteText(t.path() / "b", "B");
  fs::create_directory(t.path() / "other");
  auto d = Directory::Open(t.path());
  auto other = d->OpenDirectory("other");
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(absl::IsAlreadyExists(d->RenameAt("a", *d, "b", Replace::kNo)));
  EXPECT_EQ(*ReadAll(*d, "b"), "B");
  ASSERT_TRUE(d->RenameAt("a", *d, "b", Replace::kYes).ok());
  EXPECT_EQ(*ReadAll(*d, "b"), "A");
  EXPECT_FALSE(fs::exists(t.path() / "a"));
  ASSERT_TRUE(d->RenameAt("b", *other, "c", Replace::kNo).ok());
  EXPECT_EQ(*ReadAll(*other, "c"), "A");
  EXPECT_TRUE(absl::IsNotFound(d->RenameAt("gone", *d, "x", Replace::kNo)));
}

TEST(Directory, HardLink) {
  TestDir t;
  WriteText(t.path() / "a", "A");
  auto d = Directory::Open(t.path());
  ASSERT_TRUE(d->HardLinkAt("a", *d, "b").ok());
  EXPECT_EQ(d->StatAt("a")->id, d->StatAt("b")->id);
  EXPECT_EQ(d->StatAt("a")->link_count, 2u);
  EXPECT_TRUE(absl::IsAlreadyExists(d->HardLinkAt("a", *d, "b")));
  EXPECT_TRUE(absl::IsNotFound(d->HardLinkAt("none", *d, "c")));
}

TEST(Directory, SetModificationTimeAtAndFlushes) {
  TestDir t;
  WriteText(t.path() / "a", "A");
  auto d = Directory::Open(t.path());
  ASSERT_TRUE(d->SetModificationTimeAt("a", 1'600'000'000'000'000'001).ok());
  EXPECT_EQ(d->StatAt("a")->mtime_ns, 1'600'000'000'000'000'001);
  EXPECT_TRUE(d->Flush().ok());
  EXPECT_TRUE(d->SyncFilesystem().ok());
}

}  // namespace
}  // namespace ds::platform
