// How the directory backend reads the platform's errors: a share that cannot be reached is the
// storage's problem (Unavailable, retried later), and a file another SMB client holds open is
// retried for a moment. (Messages name what the backend was doing with platform::WithContext.)
#pragma once

#include <functional>
#include <string_view>

#include "common/status.h"

namespace ds {

// `status` with Unavailable as its code when it means the storage (typically a network share)
// cannot be reached right now (platform::IsUnreachable); otherwise `status` itself.
[[nodiscard]] absl::Status StorageError(absl::Status status);

// Runs `op` again while it fails because another SMB client holds the file open
// (platform::IsBusy), with a back-off of 10, 20, 40 ... ms, about 2.5 s in all. Returns the last
// result.
[[nodiscard]] absl::Status RetryWhileBusy(const std::function<absl::Status()>& op);

}  // namespace ds
