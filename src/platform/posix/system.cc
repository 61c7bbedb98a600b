#include "platform/system.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/ascii.h"
#include "platform/directory.h"
#include "platform/file.h"
#include "platform/posix/internal.h"

namespace ds::platform {

absl::StatusOr<SpaceInfo> FreeSpace(const std::filesystem::path& path) {
  struct statvfs v {};
  if (::statvfs(path.c_str(), &v) != 0) return internal::Errno("statvfs", path.native());
  return internal::SpaceOfStatvfs(v);
}

absl::StatusOr<SpaceInfo> Directory::Space() const {
  struct statvfs v {};
  if (::fstatvfs(handle_, &v) != 0) return internal::Errno("statvfs", display_);
  return internal::SpaceOfStatvfs(v);
}

HostInfo GetHostInfo() {
  HostInfo info;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) info.hostname = host;
  struct utsname u {};
  if (::uname(&u) == 0) {
    info.os_name = u.sysname;
    info.os_version = u.release;
    info.arch = u.machine;
  }
  return info;
}

void SetCurrentThreadName(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

bool IsTerminal(StdStream stream) {
  const int fd = stream == StdStream::kIn    ? STDIN_FILENO
                 : stream == StdStream::kOut ? STDOUT_FILENO
                                             : STDERR_FILENO;
  return ::isatty(fd) != 0;
}

struct HiddenInput::Saved {
  termios mode;
};

HiddenInput::HiddenInput() {
  termios mode{};
  if (::isatty(STDIN_FILENO) == 0 || ::tcgetattr(STDIN_FILENO, &mode) != 0) return;
  saved_ = std::make_unique<Saved>(Saved{mode});
  mode.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  ::tcsetattr(STDIN_FILENO, TCSANOW, &mode);
}

HiddenInput::~HiddenInput() {
  if (saved_ != nullptr) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_->mode);
}

void SetMallocMmapThreshold(size_t bytes) {
  ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(std::min<size_t>(bytes, INT32_MAX)));
}

void RaiseOpenFileLimit(uint64_t cap) {
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, static_cast<rlim_t>(cap));
  ::setrlimit(RLIMIT_NOFILE, &rl);
}

std::string MachineSecret() {
  for (const char* f : {"/etc/machine-id", "/var/lib/dbus/machine-id"}) {
    auto s = ReadFileToString(f, 4096);
    if (s.ok()) {
      std::string id(absl::StripAsciiWhitespace(*s));
      if (!id.empty()) return id;
    }
  }
  return absl::StrCat("host:", GetHostInfo().hostname);
}

}  // namespace ds::platform
