#include "common/json.h"

#include <gtest/gtest.h>

#include <string>

namespace ds {
namespace {

std::string Nested(size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}

TEST(JsonTest, ParsesOrdinaryDocuments) {
  auto j = ParseJson(R"({"a": [1, 2.5, "x\"]{", true, null], "b": {"c": {}}})");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["a"][2], "x\"]{");
  EXPECT_TRUE((*j)["b"]["c"].is_object());
  EXPECT_EQ(*ParseJson("42"), 42);
  EXPECT_EQ(*ParseJson("  \"s\"  "), "s");
}

TEST(JsonTest, RefusesSyntaxErrorsAsInvalidArgument) {
  for (const char* bad : {"", "{", "[1,]", "{}{}", "not json", "\"\xff\"", "[1] x"}) {
    auto j = ParseJson(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(j.status())) << bad << ": " << j.status();
  }
  EXPECT_NE(ParseJson("{").status().message().find("JSON syntax error"), std::string::npos);
}

TEST(JsonTest, BoundsNestingDepth) {
  EXPECT_TRUE(ParseJson(Nested(32)).ok());
  EXPECT_TRUE(ParseJson("{\"a\":" + Nested(31) + "}").ok());
  auto deep = ParseJson(Nested(33));
  ASSERT_TRUE(absl::IsInvalidArgument(deep.status())) << deep.status();
  EXPECT_NE(deep.status().message().find("nested deeper than 32 levels"), std::string::npos);
  // Objects count like arrays; the one that would overflow the stack of a dump.
  std::string objects;
  for (int i = 0; i < 100'000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(100'000, '}');
  EXPECT_TRUE(absl::IsInvalidArgument(ParseJson(objects).status()));
  // Unbalanced hostile text is refused too, never parsed.
  EXPECT_TRUE(absl::IsInvalidArgument(ParseJson(std::string(1'000'000, '[')).status()));
  JsonLimits shallow;
  shallow.max_depth = 2;
  EXPECT_TRUE(ParseJson("[[1]]", shallow).ok());
  EXPECT_FALSE(ParseJson("[[[1]]]", shallow).ok());
}

TEST(JsonTest, BracketsInsideStringsDoNotCount) {
  std::string s = "[\"" + std::string(100, '[') + "\\\"" + std::string(100, '{') + "\"]";
  auto j = ParseJson(s);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)[0].get<std::string>().size(), 201u);
  // An escaped backslash ends the escape: the quote after it closes the string.
  EXPECT_TRUE(ParseJson(R"(["\\", [[]]])").ok());
}

TEST(JsonTest, BoundsSizeAndValueCount) {
  JsonLimits small;
  small.max_bytes = 10;
  EXPECT_TRUE(ParseJson("[1,2,3]", small).ok());
  auto big = ParseJson("[1,2,3,4,5,6]", small);
  ASSERT_TRUE(absl::IsInvalidArgument(big.status()));
  EXPECT_NE(big.status().message().find("exceeds the limit of 10 bytes"), std::string::npos);

  JsonLimits few;
  few.max_values = 5;  // [1,{"a":2}] is 5: the array, 1, the object, "a", 2
  EXPECT_TRUE(ParseJson(R"([1,{"a":2}])", few).ok());
  auto many = ParseJson(R"([1,{"a":2},3])", few);
  ASSERT_TRUE(absl::IsInvalidArgument(many.status()));
  EXPECT_NE(many.status().message().find("more than 5 values"), std::string::npos);
  EXPECT_FALSE(ParseJson("[true,false,null,-1.5e3,0,7]", few).ok());

  // 30 MiB of `{},` would be a DOM of ~10 million objects: refused by the scan, before parsing.
  std::string flood = "[";
  flood.reserve(30 << 20);
  while (flood.size() < (30u << 20)) flood += "{},";
  flood += "{}]";
  auto refused = ParseJson(flood);
  ASSERT_TRUE(absl::IsInvalidArgument(refused.status()));
  EXPECT_NE(refused.status().message().find("values"), std::string::npos);
}

TEST(JsonTest, ObjectAndFallbackHelpers) {
  EXPECT_TRUE(ParseJsonObject("{}").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ParseJsonObject("[]").status()));
  EXPECT_TRUE(ParseJsonOr(Nested(40)).is_discarded());
  EXPECT_EQ(ParseJsonOr("nope", nlohmann::json::object()), nlohmann::json::object());
  EXPECT_EQ(ParseJsonOr("[1]"), nlohmann::json::array({1}));
}

}  // namespace
}  // namespace ds
