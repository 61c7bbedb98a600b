#include "cli/scrub.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace ds::cli {
namespace {

using nlohmann::json;

int RehashExit(const std::string& text) {
  try {
    (void)ParseRehashFraction(text);
    return 0;
  } catch (const CliError& e) {
    EXPECT_EQ(e.message.find('\n'), std::string::npos) << "one line: " << e.message;
    return e.code;
  }
}

TEST(ParseRehashFractionTest, AcceptsZeroToOne) {
  EXPECT_EQ(ParseRehashFraction(""), std::nullopt);
  EXPECT_EQ(ParseRehashFraction("0"), 0.0);
  EXPECT_EQ(ParseRehashFraction("0.05"), 0.05);
  EXPECT_EQ(ParseRehashFraction("1"), 1.0);
  EXPECT_EQ(ParseRehashFraction("1e-3"), 0.001);
}

TEST(ParseRehashFractionTest, RefusesEverythingElseAsUsageError) {
  for (const char* bad : {"-0.1", "1.01", "2", "abc", "0.5x", " 0.5", "nan", "inf", "5%", "0,5"}) {
    EXPECT_EQ(RehashExit(bad), 2) << bad;
  }
}

json Scrub(const std::string& state, int unhealed, bool drift) {
  return {{"id", "s-" + state}, {"state", state}, {"unhealed", unhealed}, {"drift", drift}};
}

TEST(WaitVerdictTest, CleanOrHealedDriftExitsZero) {
  EXPECT_EQ(WaitVerdict(json::array({Scrub("succeeded", 0, false)})), std::nullopt);
  EXPECT_EQ(WaitVerdict(json::array({Scrub("succeeded", 0, true)})), std::nullopt);
  EXPECT_EQ(WaitVerdict(json::array()), std::nullopt);
}

TEST(WaitVerdictTest, UnhealedExitsThreeNamingTheCount) {
  auto v = WaitVerdict(json::array({Scrub("succeeded", 2, true), Scrub("succeeded", 0, false),
                                    Scrub("succeeded", 5, true)}));
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->code, 3);
  EXPECT_NE(v->message.find("7 finding(s)"), std::string::npos) << v->message;
  EXPECT_NE(v->message.find("2 job(s)"), std::string::npos) << v->message;
}

TEST(WaitVerdictTest, FailureWinsOverUnhealed) {
  auto v = WaitVerdict(json::array({Scrub("succeeded", 3, true), Scrub("failed", 0, false)}));
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->code, 1);
  EXPECT_NE(v->message.find("1 scrub(s) failed"), std::string::npos) << v->message;
}

}  // namespace
}  // namespace ds::cli
