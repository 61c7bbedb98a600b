#include "common/escape.h"

#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "common/log.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/ostream_sink.h"

namespace ds {
namespace {

TEST(EscapeForTerminalTest, ControlCharactersAreWrittenOut) {
  EXPECT_EQ(EscapeForTerminal("host\x1b[2J"), "host\\x1b[2J");
  EXPECT_EQ(EscapeForTerminal("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
  EXPECT_EQ(EscapeForTerminal("a\nb\tc\rd"), "a\\x0ab\\x09c\\x0dd");
  EXPECT_EQ(EscapeForTerminal(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(EscapeForTerminal("del\x7f"), "del\\x7f");
  EXPECT_EQ(EscapeForTerminal("csi\xc2\x9b" "2J"), "csi\\u009b2J");  // U+009B, C1
  EXPECT_EQ(EscapeForTerminal("nel\xc2\x85"), "nel\\u0085");
}

TEST(EscapeForTerminalTest, MalformedUtf8BytesAreWrittenOut) {
  EXPECT_EQ(EscapeForTerminal("\x9b" "2J"), "\\x9b2J");          // a raw 8-bit CSI
  EXPECT_EQ(EscapeForTerminal("\xe0\x82\x9b"), "\\xe0\\x82\\x9b");  // overlong U+009B
  EXPECT_EQ(EscapeForTerminal("cut\xc3"), "cut\\xc3");
}

TEST(EscapeForTerminalTest, OrdinaryTextIsKeptAndEscapingIsIdempotent) {
  for (std::string s : {"plain", "Ünïcødé/名前/😀", "C:\\path\\x1b", "a b-c_d.e"}) {
    EXPECT_FALSE(NeedsTerminalEscape(s)) << s;
    EXPECT_EQ(EscapeForTerminal(s), s);
  }
  const std::string once = EscapeForTerminal("\x1b[31mred\xc2\x9b");
  EXPECT_FALSE(NeedsTerminalEscape(once));
  EXPECT_EQ(EscapeForTerminal(once), once);
}

TEST(LogEscapingTest, NoSinkOfTheLoggerSeesARawControlByte) {
  std::ostringstream first, later;
  auto logger = MakeLogger("t", std::make_shared<spdlog::sinks::ostream_sink_mt>(first));
  logger->set_pattern("%v");
  // A sink added after the logger was made (as the agent adds its file and shipping sinks).
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(later);
  sink->set_pattern("%v");
  logger->sinks().push_back(sink);
  logger->info("runner {} says {}", "evil\x1b[2J", "\x1b]0;pwned\x07 line\nforged");
  for (const std::string& out : {first.str(), later.str()}) {
    EXPECT_EQ(out, "runner evil\\x1b[2J says \\x1b]0;pwned\\x07 line\\x0aforged\n");
  }
}

}  // namespace
}  // namespace ds
