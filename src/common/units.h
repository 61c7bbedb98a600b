// Byte sizes on the command line: "500MB", "10GiB", "1048576".
#pragma once

#include <cstdint>
#include <string_view>

#include "common/status.h"

namespace ds {

// Accepts a non-negative integer with an optional unit: B, KB/MB/GB/TB (powers of 1000),
// KiB/MiB/GiB/TiB (powers of 1024). InvalidArgument otherwise.
[[nodiscard]] absl::StatusOr<int64_t> ParseByteSize(std::string_view text);

}  // namespace ds
