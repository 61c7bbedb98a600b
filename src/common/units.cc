#include "common/units.h"

#include <cctype>
#include <string>

namespace ds {

absl::StatusOr<int64_t> ParseByteSize(std::string_view text) {
  size_t i = 0;
  int64_t n = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    if (n > 1'000'000'000'000LL) return absl::InvalidArgumentError("size too large");
    n = n * 10 + (text[i++] - '0');
  }
  if (i == 0) return absl::InvalidArgumentError("size must start with a number, e.g. 10GiB");
  std::string unit(text.substr(i));
  int64_t mult;
  if (unit.empty() || unit == "B") {
    mult = 1;
  } else if (unit == "KB") {
    mult = 1000;
  } else if (unit == "MB") {
    mult = 1000'000;
  } else if (unit == "GB") {
    mult = 1000'000'000;
  } else if (unit == "TB") {
    mult = 1000'000'000'000;
  } else if (unit == "KiB") {
    mult = 1LL << 10;
  } else if (unit == "MiB") {
    mult = 1LL << 20;
  } else if (unit == "GiB") {
    mult = 1LL << 30;
  } else if (unit == "TiB") {
    mult = 1LL << 40;
  } else {
    return absl::InvalidArgumentError("unknown size unit '" + unit + "' (use B, MB, GB, MiB, GiB...)");
  }
  if (n > INT64_MAX / mult) return absl::InvalidArgumentError("size too large");
  return n * mult;
}

}  // namespace ds
