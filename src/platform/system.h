// What the agent asks of the machine: free space, a description of the host, a machine secret.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "platform/types.h"

namespace ds::platform {

// Free space of the volume holding `path` (statvfs; GetDiskFreeSpaceExW). May block as long as
// the volume does (a hung network share): call it off latency-sensitive threads.
[[nodiscard]] absl::StatusOr<SpaceInfo> FreeSpace(const std::filesystem::path& path);

struct HostInfo {
  std::string hostname;    // "" when unknown
  std::string os_name;     // "Linux", "Windows"
  std::string os_version;  // kernel release / "10.0.19045"
  std::string arch;        // "x86_64", "aarch64"
};
[[nodiscard]] HostInfo GetHostInfo();

// Names the calling thread for debuggers and `top -H` (POSIX: the first 15 bytes;
// Windows: SetThreadDescription). Best effort.
void SetCurrentThreadName(const std::string& name);

enum class StdStream { kIn, kOut, kErr };
// True when the process's standard stream is a terminal (isatty; a console on Windows).
[[nodiscard]] bool IsTerminal(StdStream stream);

// While one lives, what is typed on the terminal of standard input is not echoed (a password
// prompt): POSIX clears termios ECHO; Windows: SetConsoleMode without ENABLE_ECHO_INPUT. The mode
// before is restored on destruction. No effect when standard input is not a terminal.
class HiddenInput {
 public:
  HiddenInput();
  ~HiddenInput();
  HiddenInput(const HiddenInput&) = delete;
  HiddenInput& operator=(const HiddenInput&) = delete;

 private:
  struct Saved;                   // the terminal's mode before
  std::unique_ptr<Saved> saved_;  // null when nothing was changed
};

// Blocks of at least `bytes` are mapped from the OS for each allocation and unmapped when freed,
// and the allocator no longer moves that threshold by itself (glibc mallopt M_MMAP_THRESHOLD).
// Call in main before other threads start. No-op where the allocator has no such setting
// (Windows: its heap maps large blocks by itself).
void SetMallocMmapThreshold(size_t bytes);

// Raises this process's soft limit on open files to its hard limit, at most `cap` (POSIX
// RLIMIT_NOFILE; no-op on Windows, whose handle limit is not a per-process setting). Best effort.
void RaiseOpenFileLimit(uint64_t cap);

// A secret that identifies this machine, to derive the key of the agent's state (POSIX:
// /etc/machine-id, else /var/lib/dbus/machine-id, else "host:<hostname>" — weak; Windows will
// protect the state with DPAPI instead). Never empty.
[[nodiscard]] std::string MachineSecret();

}  // namespace ds::platform
