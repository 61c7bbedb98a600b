// Test helper: a fresh temporary directory removed at the end of the test.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace ds::platform {

class TestDir {
 public:
  TestDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "platform-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TestDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace ds::platform
