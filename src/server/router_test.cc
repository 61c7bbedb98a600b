#include "server/router.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

http::Request Req(std::string method, std::string path) {
  http::Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  return r;
}

TEST(RouterTest, MatchesPlaceholdersAndMethods) {
  Router router;
  std::string seen;
  router.Add("GET", "/api/v1/runs/{run}", [&](const http::Request&, const PathParams& p, http::Responder r) {
    seen = p.at("run");
    r(http::JsonResponse(200, "{}"));
  });
  int status = 0;
  auto capture = [&](http::Response resp) { status = resp.status; };
  EXPECT_TRUE(router.Dispatch(Req("GET", "/api/v1/runs/abc"), capture));
  EXPECT_EQ(seen, "abc");
  EXPECT_EQ(status, 200);
  EXPECT_TRUE(router.Dispatch(Req("POST", "/api/v1/runs/abc"), capture));
  EXPECT_EQ(status, 405);
  EXPECT_FALSE(router.Dispatch(Req("GET", "/api/v1/runs"), capture));
  EXPECT_EQ(status, 404);
  EXPECT_FALSE(router.Dispatch(Req("GET", "/api/v1/runs/abc/extra"), capture));
  EXPECT_EQ(status, 404);
}

TEST(RouterTest, SplitPathIgnoresEmptySegments) {
  EXPECT_EQ(SplitPath("/a//b/"), (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace ds
