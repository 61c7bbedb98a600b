// The owned OS handle under File and Directory: closed once, moved not copied, with the name
// their error messages show. One place for what each handle-owning type would write again.
#pragma once

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "platform/types.h"

namespace ds::platform {

// The value of a NativeHandle that owns nothing (POSIX -1; Windows INVALID_HANDLE_VALUE is not
// used by our wrappers: nullptr).
#ifdef _WIN32
inline constexpr NativeHandle kNoHandle = nullptr;
#else
inline constexpr NativeHandle kNoHandle = -1;
#endif

// A base of the types that own one handle (File, Directory): they use handle_ and display_ and
// get moves and closing from here. Closing on destruction loses errors: Close() reports them.
class OwnedHandle {
 public:
  OwnedHandle(const OwnedHandle&) = delete;
  OwnedHandle& operator=(const OwnedHandle&) = delete;

  // True while it owns a handle.
  [[nodiscard]] bool valid() const { return handle_ != kNoHandle; }
  // The name error messages use (the path it was opened by).
  const std::string& display_path() const { return display_; }

 protected:
  OwnedHandle() = default;
  OwnedHandle(NativeHandle handle, std::string display)
      : handle_(handle), display_(std::move(display)) {}
  OwnedHandle(OwnedHandle&& other) noexcept
      : handle_(std::exchange(other.handle_, kNoHandle)), display_(std::move(other.display_)) {}
  OwnedHandle& operator=(OwnedHandle&& other) noexcept;
  ~OwnedHandle();

  // Closes the handle now (no-op when there is none); the error of the close, naming display_.
  [[nodiscard]] absl::Status CloseHandle();
  // Gives up ownership: the caller closes what this returns.
  [[nodiscard]] NativeHandle ReleaseHandle() { return std::exchange(handle_, kNoHandle); }

  NativeHandle handle_ = kNoHandle;
  std::string display_;
};

}  // namespace ds::platform
