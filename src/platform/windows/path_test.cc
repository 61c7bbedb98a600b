#include "platform/path.h"

#include <string>

#include "gtest/gtest.h"
#include "platform/windows/internal.h"
#include "platform/windows/test_dir.h"

namespace ds::platform {
namespace {

using internal::LongPathForm;

// ntdll exports wine_get_version under Wine only.
bool UnderWine() {
  return ::GetProcAddress(::GetModuleHandleW(L"ntdll.dll"), "wine_get_version") != nullptr;
}

TEST(WinPaths, Utf8RoundTripsThroughUtf16) {
  const std::string name = "\xC3\x84-\xE6\xB8\xAC-\xF0\x9F\x98\x80";  // "Ä-測-😀"
  const std::filesystem::path p = PathFromUtf8(name);
  EXPECT_EQ(p.native(), std::wstring(L"\u00C4-\u6E2C-\U0001F600"));
  EXPECT_EQ(p.native().size(), 6u);  // the emoji is a surrogate pair
  EXPECT_EQ(PathToUtf8(p), name);
  const std::string nested =
      "Messdaten/Gr\xC3\xBC\xC3\x9F"
      "e/\xE6\x97\xA5\xE6\x9C\xAC.csv";
  EXPECT_EQ(PathToUtf8(PathFromUtf8(nested)), nested);
  EXPECT_EQ(PathFromUtf8(nested) / "x", PathFromUtf8(nested + "/x"));
  EXPECT_EQ(PathToUtf8(PathFromUtf8("")), "");
}

TEST(WinPaths, UnpairedSurrogatesBecomeReplacementCharacters) {
  const std::wstring broken{L'a', static_cast<wchar_t>(0xD800), L'b'};
  EXPECT_EQ(PathToUtf8(std::filesystem::path(broken)),
            "a\xEF\xBF\xBD"
            "b");
}

TEST(WinPaths, LongPathFormOfDrivePaths) {
  EXPECT_EQ(LongPathForm(L"C:\\a\\b"), L"\\\\?\\C:\\a\\b");
  EXPECT_EQ(LongPathForm(L"C:/a/./b/../c"), L"\\\\?\\C:\\a\\c");
  EXPECT_EQ(LongPathForm(L"d:\\"), L"\\\\?\\d:\\");
}

TEST(WinPaths, LongPathFormOfUncPaths) {
  EXPECT_EQ(LongPathForm(L"\\\\server\\share\\x"), L"\\\\?\\UNC\\server\\share\\x");
  EXPECT_EQ(LongPathForm(L"//server/share/dir/../x"), L"\\\\?\\UNC\\server\\share\\x");
  EXPECT_EQ(LongPathForm(L"\\\\server\\share\\..\\..\\x"), L"\\\\?\\UNC\\server\\share\\x");
  EXPECT_EQ(LongPathForm(L"\\\\server\\share"), L"\\\\?\\UNC\\server\\share");
  EXPECT_EQ(LongPathForm(L"\\\\server\\share\\"), L"\\\\?\\UNC\\server\\share\\");
}

TEST(WinPaths, LongPathFormLeavesOtherFormsAlone) {
  for (const wchar_t* p : {L"\\\\?\\C:\\x\\..\\y", L"\\\\?\\UNC\\s\\h\\x", L"\\\\.\\pipe\\x",
                           L"a\\b", L"C:a", L"\\a", L""}) {
    EXPECT_EQ(LongPathForm(p), p);
  }
}

TEST(WinPaths, LongPathFormReachesPastMaxPath) {
  WinTestDir t;
  ASSERT_FALSE(t.path().empty());
  std::filesystem::path deep = t.path();
  for (int i = 0; deep.native().size() < 400; ++i) {
    deep /= std::wstring(40, static_cast<wchar_t>(L'a' + i));
    ASSERT_TRUE(::CreateDirectoryW(LongPathForm(deep).c_str(), nullptr)) << ::GetLastError();
  }
  const DWORD attributes = ::GetFileAttributesW(LongPathForm(deep).c_str());
  ASSERT_NE(attributes, INVALID_FILE_ATTRIBUTES);
  EXPECT_NE(attributes & FILE_ATTRIBUTE_DIRECTORY, 0u);
}

TEST(WinPaths, RealPathPastMaxPath) {
  WinTestDir t;
  ASSERT_FALSE(t.path().empty());
  std::filesystem::path deep = t.path();
  for (int i = 0; deep.native().size() < 400; ++i) {
    deep /= std::wstring(40, static_cast<wchar_t>(L'a' + i));
    ASSERT_TRUE(::CreateDirectoryW(LongPathForm(deep).c_str(), nullptr)) << ::GetLastError();
  }
  auto real = RealPath(deep);
  if (UnderWine() && !real.ok()) {
    // Wine 8's GetFinalPathNameByHandleW reads the name into a MAX_PATH buffer (ERROR_MORE_DATA).
    GTEST_SKIP() << "Wine: " << real.status();
  }
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_EQ(real->filename(), deep.filename());
}

TEST(WinPaths, RealPathOfACreatedDirectory) {
  WinTestDir t;
  ASSERT_FALSE(t.path().empty());
  const std::filesystem::path dir = t.path() / PathFromUtf8("real-\xC3\x84-\xF0\x9F\x98\x80");
  ASSERT_TRUE(::CreateDirectoryW(dir.c_str(), nullptr)) << ::GetLastError();
  auto real = RealPath(dir);
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_TRUE(real->is_absolute());
  EXPECT_EQ(real->filename(), dir.filename());
  EXPECT_NE(real->native().rfind(L"\\\\?\\", 0), 0u) << "verbatim prefix left in " << *real;
  // Another spelling of the same folder: "." and "..", forward slashes.
  auto spelled =
      RealPath(std::filesystem::path(dir.native() + L"/./../" + dir.filename().native()));
  ASSERT_TRUE(spelled.ok()) << spelled.status();
  EXPECT_EQ(*spelled, *real);
  // A file inside it.
  const std::filesystem::path file = dir / L"f.txt";
  HANDLE h = ::CreateFileW(file.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_NEW, 0, nullptr);
  ASSERT_NE(h, INVALID_HANDLE_VALUE);
  ::CloseHandle(h);
  auto real_file = RealPath(file);
  ASSERT_TRUE(real_file.ok()) << real_file.status();
  EXPECT_EQ(*real_file, *real / L"f.txt");
}

TEST(WinPaths, RealPathOfAMissingPathIsNotFound) {
  WinTestDir t;
  ASSERT_FALSE(t.path().empty());
  auto missing = RealPath(t.path() / L"none");
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_TRUE(absl::IsNotFound(RealPath(t.path() / L"none" / L"deeper").status()));
}

}  // namespace
}  // namespace ds::platform
