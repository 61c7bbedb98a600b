#include "common/time_util.h"

#include <chrono>
#include <string>

#include "gtest/gtest.h"

namespace ds {
namespace {

using std::chrono::milliseconds;

int64_t ParseMs(const std::string& text) {
  absl::StatusOr<milliseconds> d = ParseDuration(text);
  EXPECT_TRUE(d.ok()) << text << ": " << d.status();
  return d.ok() ? d->count() : -1;
}

TEST(ParseDurationTest, AcceptsUnits) {
  EXPECT_EQ(ParseMs("90"), 90'000);  // bare number = seconds
  EXPECT_EQ(ParseMs("90s"), 90'000);
  EXPECT_EQ(ParseMs("15m"), 900'000);
  EXPECT_EQ(ParseMs("2h"), 7'200'000);
  EXPECT_EQ(ParseMs("1d"), 86'400'000);
  EXPECT_EQ(ParseMs("500ms"), 500);
  EXPECT_EQ(ParseMs("0"), 0);
  EXPECT_EQ(ParseMs("1h30m"), 5'400'000);
  EXPECT_EQ(ParseMs("1d2h3m4s5ms"), 93'784'005);
}

TEST(ParseDurationTest, RejectsJunk) {
  for (const char* bad : {"", "-5", "5x", "abc", "5 m", "1.5h", "h", "5m-", "+5", "1h 30m"}) {
    absl::StatusOr<milliseconds> d = ParseDuration(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(d.status())) << "'" << bad << "': " << d.status();
  }
}

TEST(ParseDurationTest, RejectsOverflow) {
  EXPECT_TRUE(absl::IsInvalidArgument(ParseDuration("99999999999999999999").status()));
  std::string many;
  for (int i = 0; i < 200; ++i) many += "1000000000d";  // each term fits; the sum does not
  absl::StatusOr<milliseconds> d = ParseDuration(many);
  EXPECT_TRUE(absl::IsInvalidArgument(d.status())) << (d.ok() ? d->count() : 0);
}

TEST(FormatDurationTest, Formats) {
  EXPECT_EQ(FormatDuration(milliseconds(0)), "0ms");
  EXPECT_EQ(FormatDuration(milliseconds(450)), "450ms");
  EXPECT_EQ(FormatDuration(milliseconds(1'000)), "1s");
  EXPECT_EQ(FormatDuration(milliseconds(90'000)), "1m30s");
  EXPECT_EQ(FormatDuration(milliseconds(3'723'000)), "1h2m3s");
  EXPECT_EQ(FormatDuration(milliseconds(3'600'000)), "1h");
  EXPECT_EQ(FormatDuration(milliseconds(90'061'000)), "1d1h1m1s");
}

TEST(FormatDurationTest, RoundTripsThroughParse) {
  for (int64_t ms : {0, 450, 1'000, 59'000, 3'723'000, 90'061'000}) {
    EXPECT_EQ(ParseMs(FormatDuration(milliseconds(ms))), ms);
  }
}

TEST(FormatIsoUtcTest, Formats) {
  EXPECT_EQ(FormatIsoUtc(0), "");
  EXPECT_EQ(FormatIsoUtc(1'700'000'000'123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(FormatIsoUtc(1'795'835'691'123), "2026-11-28T03:14:51.123Z");
  EXPECT_EQ(FormatIsoUtc(1), "1970-01-01T00:00:00.001Z");
  EXPECT_EQ(FormatIsoUtc(-1), "1969-12-31T23:59:59.999Z");
}

TEST(SystemClockTest, IsCloseToNow) {
  int64_t now =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  EXPECT_NEAR(static_cast<double>(SystemClock()->NowUnixMs()), static_cast<double>(now), 5'000);
  EXPECT_EQ(SystemClock(), SystemClock());
}

}  // namespace
}  // namespace ds

#include "common/units.h"

namespace ds {
namespace {

TEST(UnitsTest, ParseByteSize) {
  EXPECT_EQ(*ParseByteSize("1048576"), 1048576);
  EXPECT_EQ(*ParseByteSize("500MB"), 500'000'000);
  EXPECT_EQ(*ParseByteSize("10GiB"), int64_t{10} << 30);
  for (const char* bad : {"", "GiB", "-1", "5XB", "99999999999999TiB"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ParseByteSize(bad).status())) << bad;
  }
}

}  // namespace
}  // namespace ds
