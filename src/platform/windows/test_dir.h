// Windows test helper: a fresh folder under the temp folder (GetTempPathW), removed at the end of
// the test. The twin of platform/test_dir.h (mkdtemp).
#pragma once

#include <atomic>
#include <filesystem>
#include <string>

#include "platform/windows/internal.h"

namespace ds::platform {

class WinTestDir {
 public:
  WinTestDir() {
    static std::atomic<int> counter{0};
    wchar_t temp[MAX_PATH + 1] = {};
    ::GetTempPathW(MAX_PATH + 1, temp);
    for (int attempt = 0; attempt < 100 && path_.empty(); ++attempt) {
      const std::filesystem::path p =
          std::filesystem::path(temp) /
          (L"platform-test-" + std::to_wstring(::GetCurrentProcessId()) + L"-" +
           std::to_wstring(counter++) + L"-" + std::to_wstring(::GetTickCount64()));
      if (::CreateDirectoryW(p.c_str(), nullptr)) path_ = p;
    }
  }
  ~WinTestDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  WinTestDir(const WinTestDir&) = delete;
  WinTestDir& operator=(const WinTestDir&) = delete;
  const std::filesystem::path& path() const { return path_; }  // empty if none could be made

 private:
  std::filesystem::path path_;
};

}  // namespace ds::platform
