// Admin authentication without HTTP: routes dispatched straight through the Router against a real
// SQLite index in a temp dir, with an injected clock (session expiry and lock-out are decided by
// time).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/crypto.h"
#include "common/password.h"
#include "server/context.h"

namespace ds {
namespace {

using nlohmann::json;

class FakeClock final : public Clock {
 public:
  int64_t NowUnixMs() const override { return now.load(); }
  std::atomic<int64_t> now{1'700'000'000'000};
};

class AccountsTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::path(testing::TempDir()) / "accounts_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ctx_.clock = &clock_;
    ctx_.config.session_idle = std::chrono::minutes(30);
    ctx_.config.session_max = std::chrono::hours(12);
    auto index = OpenStateIndex("sqlite:" + (dir_ / "state.db").string());
    ASSERT_TRUE(index.ok()) << index.status();
    ctx_.index = std::move(*index);
    ASSERT_TRUE(ctx_.index->Migrate().ok());
    PasswordCost fast{1024, 1, 1};
    ASSERT_TRUE(ctx_.index->CreateUser("ann", "admin", *HashPassword("ann-password", fast), 0).ok());
    ASSERT_TRUE(ctx_.index->CreateUser("vic", "viewer", *HashPassword("vic-password", fast), 0).ok());
    AddAccountRoutes(&ctx_, &router_);
    router_.Add("POST", "/api/v1/admin/thing",
                AdminHandler(&ctx_, [](const http::Request&, const PathParams&, const Principal& who)
                                        -> absl::StatusOr<std::string> {
                  return json{{"actor", who.actor}}.dump();
                }));
    router_.Add("GET", "/api/v1/admin/thing",
                AdminHandler(&ctx_, [](const http::Request&, const PathParams&, const Principal& who)
                                        -> absl::StatusOr<std::string> {
                  return json{{"actor", who.actor}}.dump();
                }));
  }
  void TearDown() override {
    ctx_.index.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  http::Response Call(const std::string& method, const std::string& path, const std::string& body = "",
                      std::map<std::string, std::string> headers = {}) {
    http::Request req;
    req.method = method;
    req.path = path;
    req.body = body;
    req.headers = std::move(headers);
    if (!body.empty() && !req.headers.count("content-type")) req.headers["content-type"] = "application/json";
    req.remote_addr = "10.0.0.1";
    http::Response out;
    out.status = -1;
    router_.Dispatch(req, [&](http::Response r) { out = std::move(r); });
    return out;
  }
  static std::string HeaderOf(const http::Response& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return "";
  }

  struct Signed {
    std::string cookie;  // "ds_session=..."
    std::string csrf;
    std::string set_cookie;
  };
  Signed Login(const std::string& name, const std::string& password, std::map<std::string, std::string> headers = {}) {
    http::Response r = Call("POST", "/api/v1/admin/session", json{{"name", name}, {"password", password}}.dump(),
                            std::move(headers));
    EXPECT_EQ(r.status, 200) << r.body;
    Signed s;
    s.set_cookie = HeaderOf(r, "Set-Cookie");
    s.cookie = s.set_cookie.substr(0, s.set_cookie.find(';'));
    if (r.status == 200) s.csrf = json::parse(r.body).at("csrf_token");
    return s;
  }

  std::filesystem::path dir_;
  FakeClock clock_;
  ServerContext ctx_;
  Router router_;
};

TEST_F(AccountsTest, LoginSetsAHardenedCookieAndRefusesWrongPasswords) {
  Signed s = Login("ann", "ann-password");
  EXPECT_NE(s.set_cookie.find("HttpOnly"), std::string::npos);
  EXPECT_NE(s.set_cookie.find("SameSite=Strict"), std::string::npos);
  EXPECT_NE(s.set_cookie.find("Path=/"), std::string::npos);
  EXPECT_EQ(s.set_cookie.find("Secure"), std::string::npos);
  EXPECT_EQ(s.cookie.rfind("ds_session=", 0), 0u);
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", R"({"name":"ann","password":"nope-nope"})").status, 401);
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", R"({"name":"zed","password":"nope-nope"})").status, 401);
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", "not json").status, 400);
  // The index holds only the session id's hash.
  const std::string id = s.cookie.substr(s.cookie.find('=') + 1);
  EXPECT_TRUE(absl::IsNotFound(ctx_.index->FindSession(id).status()));
}

TEST_F(AccountsTest, SecureCookieWhenForcedOrBehindAnHttpsProxy) {
  ctx_.config.cookie_secure = "always";
  EXPECT_NE(Login("ann", "ann-password").set_cookie.find("; Secure"), std::string::npos);
  ctx_.config.cookie_secure = "auto";
  EXPECT_EQ(Login("ann", "ann-password", {{"x-forwarded-proto", "https"}}).set_cookie.find("Secure"),
            std::string::npos);  // proxy headers are ignored unless trusted
  ctx_.config.trust_proxy = true;
  EXPECT_NE(Login("ann", "ann-password", {{"x-forwarded-proto", "https"}}).set_cookie.find("; Secure"),
            std::string::npos);
}

TEST_F(AccountsTest, ChangesOverACookieNeedTheCsrfToken) {
  Signed s = Login("ann", "ann-password");
  EXPECT_EQ(Call("GET", "/api/v1/admin/thing", "", {{"cookie", "a=b; " + s.cookie}}).status, 200);
  http::Response no_csrf = Call("POST", "/api/v1/admin/thing", "{}", {{"cookie", s.cookie}});
  EXPECT_EQ(no_csrf.status, 403);
  EXPECT_NE(no_csrf.body.find("CSRF"), std::string::npos);
  EXPECT_EQ(Call("POST", "/api/v1/admin/thing", "{}", {{"cookie", s.cookie}, {"x-csrf-token", s.csrf + "x"}}).status,
            403);
  http::Response ok = Call("POST", "/api/v1/admin/thing", "{}", {{"cookie", s.cookie}, {"x-csrf-token", s.csrf}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(json::parse(ok.body)["actor"], "user:ann");
  // Another session's token does not fit this one.
  Signed other = Login("ann", "ann-password");
  EXPECT_EQ(Call("POST", "/api/v1/admin/thing", "{}", {{"cookie", s.cookie}, {"x-csrf-token", other.csrf}}).status,
            403);
  // Both outcomes are audited, with the actor.
  AuditFilter f;
  f.actor = "user:ann";
  auto audit = ctx_.index->ListAudit(f);
  ASSERT_TRUE(audit.ok());
  int refused = 0, allowed = 0;
  for (const auto& e : *audit) {
    if (e.action == "POST /thing") (e.result == "403" ? refused : allowed)++;
  }
  EXPECT_EQ(refused, 3);
  EXPECT_EQ(allowed, 1);
}

TEST_F(AccountsTest, ViewersReadButCannotChange) {
  Signed s = Login("vic", "vic-password");
  EXPECT_EQ(Call("GET", "/api/v1/admin/thing", "", {{"cookie", s.cookie}}).status, 200);
  EXPECT_EQ(Call("POST", "/api/v1/admin/thing", "{}", {{"cookie", s.cookie}, {"x-csrf-token", s.csrf}}).status, 403);
  EXPECT_EQ(Call("GET", "/api/v1/admin/users", "", {{"cookie", s.cookie}}).status, 403);
  EXPECT_EQ(Call("DELETE", "/api/v1/admin/session", "", {{"cookie", s.cookie}, {"x-csrf-token", s.csrf}}).status,
            200);
  EXPECT_EQ(Call("GET", "/api/v1/admin/thing", "", {{"cookie", s.cookie}}).status, 401);
}

TEST_F(AccountsTest, SessionsEndWhenIdleOrTooOld) {
  Signed s = Login("ann", "ann-password");
  clock_.now += 29 * 60'000;
  EXPECT_EQ(Call("GET", "/api/v1/admin/thing", "", {{"cookie", s.cookie}}).status, 200);
  clock_.now += 31 * 60'000;  // idle since the last request
  EXPECT_EQ(Call("GET", "/api/v1/admin/thing", "", {{"cookie", s.cookie}}).status, 401);

  Signed t = Login("ann", "ann-password");
  for (int i = 0; i < 23; ++i) {  // busy for 11.5 h
    clock_.now += 30 * 60'000 - 1;
    ASSERT_EQ(Call("GET", "/api/v1/admin/thing", "", {{"cookie", t.cookie}}).status, 200) << i;
  }
  clock_.now += 29 * 60'000;  // 11 h 59 min
  EXPECT_EQ(Call("GET", "/api/v1/admin/thing", "", {{"cookie", t.cookie}}).status, 200);
  clock_.now += 2 * 60'000;  // past 12 h since sign-in, however busy
  EXPECT_EQ(Call("GET", "/api/v1/admin/thing", "", {{"cookie", t.cookie}}).status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/admin/thing", "", {{"cookie", "ds_session=forged"}}).status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/admin/thing").status, 401);
}

TEST_F(AccountsTest, RepeatedFailuresLockOutWithBackOff) {
  const std::string bad = R"({"name":"ann","password":"wrong-guess"})";
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Call("POST", "/api/v1/admin/session", bad).status, 401);
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", bad).status, 401);  // 6th: locks for 1 s
  http::Response locked = Call("POST", "/api/v1/admin/session", R"({"name":"ann","password":"ann-password"})");
  EXPECT_EQ(locked.status, 429);
  EXPECT_EQ(HeaderOf(locked, "Retry-After"), "1");
  clock_.now += 1'000;
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", bad).status, 401);  // 7th: 2 s
  locked = Call("POST", "/api/v1/admin/session", R"({"name":"ann","password":"ann-password"})");
  EXPECT_EQ(HeaderOf(locked, "Retry-After"), "2");
  clock_.now += 2'000;
  Login("ann", "ann-password");  // and success clears the count
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", bad).status, 401);
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", bad).status, 401);
}

// Failures from one address lock the name there only: an anonymous caller elsewhere cannot lock
// the real admin out.
TEST_F(AccountsTest, AnonymousFailuresDoNotLockTheAdminOutElsewhere) {
  ctx_.config.trust_proxy = true;
  const std::string bad = R"({"name":"ann","password":"wrong-guess"})";
  const std::map<std::string, std::string> attacker{{"x-forwarded-for", "203.0.113.66"}};
  for (int i = 0; i < 10; ++i) Call("POST", "/api/v1/admin/session", bad, attacker);
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", R"({"name":"ann","password":"ann-password"})", attacker).status,
            429);  // locked there, even with the right password
  Login("ann", "ann-password", {{"x-forwarded-for", "10.0.0.1"}});  // the admin, from her own address
}

// Login CSRF: only a JSON body, and only from this server's own origin when a browser says one.
TEST_F(AccountsTest, SignInAcceptsOnlyJsonFromOurOwnOrigin) {
  const std::string body = R"({"name":"ann","password":"ann-password"})";
  for (const char* type : {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}) {
    http::Response r = Call("POST", "/api/v1/admin/session", body, {{"content-type", type}});
    EXPECT_EQ(r.status, 403) << type;
    EXPECT_EQ(r.content_type, "application/problem+json");
  }
  const std::map<std::string, std::string> evil{{"content-type", "application/json"},
                                                {"origin", "https://evil.example"},
                                                {"host", "datasync.lab:8443"}};
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", body, evil).status, 403);
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", body,
                 {{"origin", "null"}, {"host", "datasync.lab:8443"}}).status, 403);
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", body,
                 {{"origin", "https://datasync.lab"}, {"host", "datasync.lab:8443"}}).status, 403);
  Login("ann", "ann-password", {{"origin", "https://DataSync.lab:8443"}, {"host", "datasync.lab:8443"}});
  Login("ann", "ann-password", {{"content-type", "application/json; charset=utf-8"}});
  // Behind a trusted proxy the browser's host may arrive as X-Forwarded-Host.
  const std::map<std::string, std::string> proxied{{"origin", "https://sync.example.org"},
                                                   {"host", "127.0.0.1:8080"},
                                                   {"x-forwarded-host", "sync.example.org"}};
  EXPECT_EQ(Call("POST", "/api/v1/admin/session", body, proxied).status, 403);
  ctx_.config.trust_proxy = true;
  Login("ann", "ann-password", proxied);
}

TEST_F(AccountsTest, SignInsAreRateLimitedPerAddress) {
  ctx_.config.trust_proxy = true;
  const std::map<std::string, std::string> from{{"x-forwarded-for", "198.51.100.20"}};
  for (int i = 0; i < 20; ++i) Login("vic", "vic-password", from);
  http::Response r = Call("POST", "/api/v1/admin/session", R"({"name":"vic","password":"vic-password"})", from);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(HeaderOf(r, "Retry-After"), "3");
  Login("vic", "vic-password", {{"x-forwarded-for", "198.51.100.21"}});
  clock_.now += 3'000;
  Login("vic", "vic-password", from);
}

TEST_F(AccountsTest, BearerTokensNeedNoCsrf) {
  ASSERT_TRUE(ctx_.index->CreateAdminToken("cli", "admin", Sha256Hex("dsa_token"), 0).ok());
  http::Response r = Call("POST", "/api/v1/admin/thing", "{}", {{"authorization", "Bearer dsa_token"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["actor"], "token:cli");
  EXPECT_EQ(Call("POST", "/api/v1/admin/thing", "{}", {{"authorization", "Bearer dsa_other"}}).status, 401);
}

}  // namespace
}  // namespace ds
