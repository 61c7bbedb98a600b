#include "common/time_util.h"

#include <cctype>
#include <ctime>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ds {
namespace {
class RealClock final : public Clock {
 public:
  int64_t NowUnixMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};
}  // namespace

const Clock* SystemClock() {
  static const RealClock* clock = new RealClock();
  return clock;
}

absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("empty duration");
  int64_t total = 0;
  size_t i = 0;
  bool any = false;
  while (i < text.size()) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
      return absl::InvalidArgumentError(absl::StrCat("invalid duration '", std::string(text), "'"));
    }
    int64_t n = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      n = n * 10 + (text[i] - '0');
      if (n > 1'000'000'000) return absl::InvalidArgumentError("duration too large");
      ++i;
    }
    size_t u = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(u, i - u);
    int64_t ms;
    if (unit.empty() || unit == "s") {
      ms = 1000;
    } else if (unit == "ms") {
      ms = 1;
    } else if (unit == "m") {
      ms = 60'000;
    } else if (unit == "h") {
      ms = 3'600'000;
    } else if (unit == "d") {
      ms = 86'400'000;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown duration unit '", std::string(unit), "'"));
    }
    if (n * ms > std::numeric_limits<int64_t>::max() - total) {
      return absl::InvalidArgumentError("duration too large");
    }
    total += n * ms;
    any = true;
  }
  if (!any) return absl::InvalidArgumentError("invalid duration");
  return std::chrono::milliseconds(total);
}

std::string FormatDuration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms < 1000) return absl::StrCat(ms, "ms");
  int64_t s = ms / 1000;
  std::string out;
  if (s >= 86400) absl::StrAppend(&out, s / 86400, "d"), s %= 86400;
  if (s >= 3600) absl::StrAppend(&out, s / 3600, "h"), s %= 3600;
  if (s >= 60) absl::StrAppend(&out, s / 60, "m"), s %= 60;
  if (s > 0 || out.empty()) absl::StrAppend(&out, s, "s");
  return out;
}

std::string FormatIsoUtc(int64_t unix_ms) {
  if (unix_ms == 0) return "";
  int64_t millis = unix_ms % 1000;
  int64_t whole = unix_ms / 1000;
  if (millis < 0) {  // before 1970: floor, not truncate towards zero
    millis += 1000;
    whole -= 1;
  }
  std::time_t secs = static_cast<std::time_t>(whole);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
}

}  // namespace ds
