#include "platform/handle.h"

#include <unistd.h>

#include "platform/posix/internal.h"

namespace ds::platform {

OwnedHandle& OwnedHandle::operator=(OwnedHandle&& other) noexcept {
  if (this != &other) {
    if (valid()) ::close(handle_);
    handle_ = std::exchange(other.handle_, kNoHandle);
    display_ = std::move(other.display_);
  }
  return *this;
}

OwnedHandle::~OwnedHandle() {
  if (valid()) ::close(handle_);
}

absl::Status OwnedHandle::CloseHandle() {
  if (!valid()) return absl::OkStatus();
  if (::close(ReleaseHandle()) != 0) return internal::Errno("close", display_);
  return absl::OkStatus();
}

}  // namespace ds::platform
