#include "cli/cli_support.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace ds::cli {
namespace {

using nlohmann::json;

std::string Printed(const json& j, int indent = 2) {
  ::testing::internal::CaptureStdout();
  PrintJson(j, indent);
  return ::testing::internal::GetCapturedStdout();
}

TEST(PrintJsonTest, NoControlCharacterReachesTheTerminalRaw) {
  const json j = {{"hostname", "lab\x1b[2J\x07\r\n\x7f" "csi\xC2\x9B" "31m"}, {"name", "Übersicht μ"}};
  const std::string out = Printed(j);
  for (unsigned char c : out) {
    EXPECT_TRUE(c == '\n' || (c >= 0x20 && c != 0x7f)) << static_cast<int>(c) << " in " << out;
  }
  EXPECT_EQ(out.find("\xC2\x9B"), std::string::npos) << out;
  EXPECT_NE(out.find("Übersicht μ"), std::string::npos) << out;  // other UTF-8 stays readable
  EXPECT_EQ(json::parse(out), j);                               // and it is the same JSON
}

TEST(PrintJsonTest, NegativeIndentPrintsOneLine) {
  EXPECT_EQ(Printed(json{{"a", 1}}, -1), "{\"a\":1}\n");
}

}  // namespace
}  // namespace ds::cli
