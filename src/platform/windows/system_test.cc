#include "platform/system.h"

#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "platform/path.h"
#include "platform/windows/internal.h"
#include "platform/windows/test_dir.h"

namespace ds::platform {
namespace {

TEST(WinFreeSpace, ReportsTheVolumeOfTheTempFolder) {
  WinTestDir t;
  ASSERT_FALSE(t.path().empty());
  auto s = FreeSpace(t.path());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->total, 0u);
  EXPECT_LE(s->available, s->total);
  EXPECT_GT(s->max_name_length, 0u);
  // A file: the volume of its folder.
  const std::filesystem::path file = t.path() / L"f";
  HANDLE h = ::CreateFileW(file.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_NEW, 0, nullptr);
  ASSERT_NE(h, INVALID_HANDLE_VALUE);
  ::CloseHandle(h);
  auto of_file = FreeSpace(file);
  ASSERT_TRUE(of_file.ok()) << of_file.status();
  EXPECT_EQ(of_file->total, s->total);
  auto missing = FreeSpace(t.path() / L"none");
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
}

TEST(WinHostInfo, DescribesThisMachine) {
  const HostInfo h = GetHostInfo();
  EXPECT_FALSE(h.hostname.empty());
  EXPECT_EQ(h.os_name, "Windows");
  EXPECT_EQ(h.os_version.substr(0, 3), "10.") << h.os_version;
  EXPECT_EQ(h.arch, "x86_64");
}

TEST(WinSetCurrentThreadName, NamesThisThreadWhereWindowsCan) {
  using GetThreadDescriptionFn = HRESULT(WINAPI*)(HANDLE, PWSTR*);
  const auto get_description = reinterpret_cast<GetThreadDescriptionFn>(reinterpret_cast<void*>(
      ::GetProcAddress(::GetModuleHandleW(L"kernel32.dll"), "GetThreadDescription")));
  std::thread([&] {
    SetCurrentThreadName("a-very-long-thread-name-\xC3\x84");  // not cut to 15 bytes here
    if (get_description == nullptr) return;                    // best effort: nothing to read back
    PWSTR name = nullptr;
    ASSERT_TRUE(SUCCEEDED(get_description(::GetCurrentThread(), &name)));
    EXPECT_EQ(std::wstring(name), L"a-very-long-thread-name-\u00C4");
    ::LocalFree(name);
  }).join();
}

TEST(WinIsTerminal, AgreesWithGetConsoleMode) {
  DWORD mode = 0;
  EXPECT_EQ(IsTerminal(StdStream::kIn),
            ::GetConsoleMode(::GetStdHandle(STD_INPUT_HANDLE), &mode) != 0);
  EXPECT_EQ(IsTerminal(StdStream::kOut),
            ::GetConsoleMode(::GetStdHandle(STD_OUTPUT_HANDLE), &mode) != 0);
  EXPECT_EQ(IsTerminal(StdStream::kErr),
            ::GetConsoleMode(::GetStdHandle(STD_ERROR_HANDLE), &mode) != 0);
}

TEST(WinHiddenInput, TurnsEchoOffOnAConsoleAndBack) {
  HANDLE input = ::GetStdHandle(STD_INPUT_HANDLE);
  DWORD before = 0;
  if (!::GetConsoleMode(input, &before)) {
    // Not a console (the headless Wine run): nothing to change, nothing to fail.
    { HiddenInput hidden; }
    GTEST_SKIP() << "standard input is not a console";
  }
  {
    HiddenInput hidden;
    DWORD during = 0;
    ASSERT_TRUE(::GetConsoleMode(input, &during));
    EXPECT_EQ(during & ENABLE_ECHO_INPUT, 0u);
  }
  DWORD after = 0;
  ASSERT_TRUE(::GetConsoleMode(input, &after));
  EXPECT_EQ(after, before);
}

TEST(WinNoOps, AreHarmless) {
  RaiseOpenFileLimit(1 << 20);
  SetMallocMmapThreshold(1 << 20);
}

TEST(WinMachineSecret, IsTheMachineGuidAndStable) {
  const std::string a = MachineSecret();
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, MachineSecret());
  EXPECT_NE(a.rfind("host:", 0), 0u) << "no MachineGuid read: " << a;
  EXPECT_EQ(a.size(), 36u) << a;  // a GUID without braces
}

}  // namespace
}  // namespace ds::platform
