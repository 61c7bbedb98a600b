#include "server/redact.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

using nlohmann::json;

TEST(RedactSecrets, SecretKeysAnywhereInTheDocument) {
  json in = {{"smtp_password", "hunter2"},
             {"body", {{"config", {{"Password", "p"}, {"api_key", "k"}, {"host", "smtp.x"}}}}},
             {"list", json::array({json{{"Authorization", "Bearer t"}}})},
             {"token_count", nullptr}};
  json out = RedactSecrets(in);
  EXPECT_EQ(out["smtp_password"], "****");
  EXPECT_EQ(out["body"]["config"]["Password"], "****");
  EXPECT_EQ(out["body"]["config"]["api_key"], "****");
  EXPECT_EQ(out["body"]["config"]["host"], "smtp.x");
  EXPECT_EQ(out["list"][0]["Authorization"], "****");
  EXPECT_TRUE(out["token_count"].is_null());
}

TEST(RedactSecrets, WebhookUrlsKeepOnlySchemeAndHost) {
  EXPECT_EQ(RedactUrl("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/****");
  EXPECT_EQ(RedactUrl("http://user:pass@example.org:8080/hook?token=abc"),
            "http://example.org:8080/****");
  EXPECT_EQ(RedactUrl("https://example.org?sig=abc"), "https://example.org/****");
  EXPECT_EQ(RedactUrl("https://example.org/"), "https://example.org/");
  EXPECT_EQ(RedactUrl("not a url"), "not a url");
  EXPECT_EQ(RedactUrl("/srv/data/file.txt"), "/srv/data/file.txt");
  json out = RedactSecrets(json{{"config", {{"url", "https://u:p@h.example/a/b"}}}});
  EXPECT_EQ(out["config"]["url"], "https://h.example/****");
}

TEST(RedactSecrets, UrlsInsideFreeText) {
  EXPECT_EQ(RedactUrlsIn("POST http://u:pw@hooks.lab:8080/hooks/T0KEN?token=q: Failed to connect"),
            "POST http://hooks.lab:8080/**** Failed to connect");
  EXPECT_EQ(RedactUrlsIn("a https://x.example/s1 and \"smtp://m.lab/s2\" end"),
            "a https://x.example/**** and \"smtp://m.lab/****\" end");
  EXPECT_EQ(RedactUrlsIn("no url :// here, just text"), "no url :// here, just text");
  EXPECT_EQ(RedactUrlsIn(""), "");
}

}  // namespace
}  // namespace ds
