// Hostile input against the agent and admin APIs, dispatched straight through the Router over a
// real SQLite index with an injected clock (docs/security.md, "Hostile input: size, depth and
// rate"): JSON nested deep enough to overflow a recursive walk, registration floods, wrong keys,
// enrollment polls, stale pending registrations, reserved destination prefixes, webhook targets
// ("Webhook targets").
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/crypto.h"
#include "http/http_server.h"
#include "server/context.h"

namespace ds {
namespace {

using nlohmann::json;

constexpr int64_t kT0 = 1'800'000'000'000;  // Unix ms

class ManualClock final : public Clock {
 public:
  int64_t NowUnixMs() const override { return now.load(); }
  std::atomic<int64_t> now{kT0};
};

class HostileInputTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::path(testing::TempDir()) / "hostile.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ctx_.clock = &clock_;
    auto index = OpenStateIndex("sqlite:" + (dir_ / "state.db").string());
    ASSERT_TRUE(index.ok()) << index.status();
    ctx_.index = std::move(*index);
    ASSERT_TRUE(ctx_.index->Migrate().ok());
    std::filesystem::create_directories(dir_ / "share");
    auto url = ParseStorageUrl((dir_ / "share").string());
    ASSERT_TRUE(url.ok());
    auto storage = OpenStorage(*url);
    ASSERT_TRUE(storage.ok()) << storage.status();
    ctx_.storage = std::move(*storage);
    DeclareServerMetrics(&ctx_.metrics);
    ASSERT_TRUE(ctx_.index->CreateAdminToken("t", "admin", Sha256Hex("dsa_admin"), kT0).ok());
  }
  void TearDown() override {
    ctx_.janitor.reset();
    ctx_.index.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void AddRoutes() {
    AddAgentRoutes(&ctx_, &router_);
    AddAdminRoutes(&ctx_, &router_);
    AddAccountRoutes(&ctx_, &router_);
  }

  http::Response Call(const std::string& method, const std::string& path, const std::string& body = "",
                      const std::string& bearer = "", const std::string& from = "10.0.0.1") {
    http::Request req;
    req.method = method;
    req.path = path;
    req.body = body;
    if (!bearer.empty()) req.headers["authorization"] = "Bearer " + bearer;
    if (!body.empty()) req.headers["content-type"] = "application/json";
    req.remote_addr = from;
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
  // An approved runner whose API key is "dsk_NAME".
  void ApprovedRunner(const std::string& name) {
    auto r = ctx_.index->RegisterRunner({name, "h", "linux", "m", "1"}, "enr-" + name, "s", kT0);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(ctx_.index->TransitionRunner(r->id, "pending", "approved", kT0).ok());
    ASSERT_TRUE(ctx_.index->DeliverKey("enr-" + name, Sha256Hex("dsk_" + name)).ok());
  }
  static std::string LogBatch(const std::string& fields, int64_t seq = 1) {
    return absl::StrCat(R"({"records":[{"seq":)", seq,
                        R"(,"time_ms":1,"level":"info","message":"m","fields":)", fields, "}]}");
  }

  std::filesystem::path dir_;
  ManualClock clock_;
  ServerContext ctx_;
  Router router_;
};

// Class 1: one request used to crash the server (stack overflow dumping the fields).
TEST_F(HostileInputTest, DeeplyNestedJsonIsRefusedAndTheServerStaysUp) {
  AddRoutes();
  ApprovedRunner("pc1");
  std::string deep;
  for (int i = 0; i < 100'000; ++i) deep += R"({"a":)";
  deep += "1" + std::string(100'000, '}');
  http::Response r = Call("POST", "/api/v1/agent/logs", LogBatch(deep), "dsk_pc1");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("nested deeper than 32 levels"), std::string::npos) << r.body;
  EXPECT_EQ(Call("POST", "/api/v1/agent/logs", LogBatch(std::string(100'000, '[') + std::string(100'000, ']')),
                 "dsk_pc1").status, 400);
  // And it still serves.
  r = Call("POST", "/api/v1/agent/logs", LogBatch(R"({"file":"a.dat"})"), "dsk_pc1");
  EXPECT_EQ(r.status, 200) << r.body;

  // The admin routes that store JSON (alert rule params, channel config) bound it the same way.
  std::string deep_params = R"({"name":"r","kind":"runner_offline","params":)" +
                            std::string(100'000, '[') + std::string(100'000, ']') + "}";
  r = Call("POST", "/api/v1/admin/alert-rules", deep_params, "dsa_admin");
  EXPECT_EQ(r.status, 400) << r.body;
  std::string deep_config = R"({"name":"c","kind":"webhook","config":{"url":)" +
                            std::string(100'000, '[') + std::string(100'000, ']') + "}}";
  r = Call("POST", "/api/v1/admin/notification-channels", deep_config, "dsa_admin");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(Call("GET", "/api/v1/admin/runners", "", "dsa_admin").status, 200);
}

// Class 3: anonymous registration is rate limited per source address.
TEST_F(HostileInputTest, RegistrationsAreRateLimitedPerAddress) {
  ctx_.config.register_rate = 3;
  AddRoutes();
  auto reg = [&](int i, const std::string& from) {
    return Call("POST", "/api/v1/agent/register", json{{"name", "pc" + std::to_string(i)}}.dump(), "", from);
  };
  for (int i = 0; i < 3; ++i) EXPECT_EQ(reg(i, "203.0.113.5").status, 202) << i;
  http::Response refused = reg(3, "203.0.113.5");
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(refused.content_type, "application/problem+json");
  EXPECT_EQ(HeaderOf(refused, "Retry-After"), "20");
  EXPECT_TRUE(absl::IsNotFound(ctx_.index->GetRunnerByName("pc3").status()));
  EXPECT_EQ(reg(4, "203.0.113.6").status, 202);  // another address
  // One IPv6 host holds a /64: all of it is one address here.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(reg(10 + i, "2001:db8:1:2::" + std::to_string(i + 1)).status, 202);
  EXPECT_EQ(reg(13, "2001:db8:1:2:ffff::9").status, 429);
  clock_.now += 20'000;
  EXPECT_EQ(reg(3, "203.0.113.5").status, 202);
}

TEST_F(HostileInputTest, WrongAgentKeysAreThrottledPerAddress) {
  AddRoutes();
  ApprovedRunner("pc1");
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(Call("GET", "/api/v1/agent/jobs", "", "dsk_guess" + std::to_string(i), "198.51.100.7").status, 401) << i;
  }
  http::Response r = Call("GET", "/api/v1/agent/jobs", "", "dsk_guess", "198.51.100.7");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(HeaderOf(r, "Retry-After"), "2");
  // Refused before the key is looked at, on every agent route.
  EXPECT_EQ(Call("GET", "/api/v1/agent/jobs", "", "dsk_pc1", "198.51.100.7").status, 429);
  EXPECT_EQ(Call("POST", "/api/v1/agent/heartbeat", "{}", "dsk_pc1", "198.51.100.7").status, 429);
  EXPECT_EQ(Call("GET", "/api/v1/agent/commands", "", "dsk_pc1", "198.51.100.7").status, 429);
  // Other addresses are not affected, and the address recovers.
  EXPECT_EQ(Call("GET", "/api/v1/agent/jobs", "", "dsk_pc1", "198.51.100.8").status, 200);
  clock_.now += 2'000;
  EXPECT_EQ(Call("GET", "/api/v1/agent/jobs", "", "dsk_pc1", "198.51.100.7").status, 200);
  // Wrong admin tokens and enrollment secrets count the same way.
  for (int i = 0; i < 30; ++i) Call("GET", "/api/v1/admin/runners", "", "dsa_guess", "198.51.100.9");
  EXPECT_EQ(Call("GET", "/api/v1/admin/runners", "", "dsa_admin", "198.51.100.9").status, 429);
  EXPECT_EQ(Call("GET", "/api/v1/admin/runners", "", "dsa_admin", "198.51.100.10").status, 200);
}

TEST_F(HostileInputTest, EnrollmentPollsAreRateLimitedAndWrongSecretsCounted) {
  AddRoutes();
  http::Response reg = Call("POST", "/api/v1/agent/register", R"({"name":"pc1"})");
  ASSERT_EQ(reg.status, 202);
  json r = json::parse(reg.body);
  const std::string path = "/api/v1/agent/enrollment/" + r["enrollment_id"].get<std::string>();
  const std::string secret = r["enrollment_secret"];
  for (int i = 0; i < 30; ++i) EXPECT_EQ(Call("GET", path, "", "dse_wrong", "192.0.2.1").status, 401);
  EXPECT_EQ(Call("GET", path, "", secret, "192.0.2.1").status, 429);
  int ok = 0;
  for (int i = 0; i < 200; ++i) ok += Call("GET", path, "", secret, "192.0.2.2").status == 200;
  EXPECT_EQ(ok, 100);  // the burst; then 5 a second
  clock_.now += 1'000;
  EXPECT_EQ(Call("GET", path, "", secret, "192.0.2.2").status, 200);
}

// Every agent route authenticates before it reads its body.
TEST_F(HostileInputTest, AgentRoutesAuthenticateBeforeParsing) {
  AddRoutes();
  const std::string junk = std::string(10'000, '[');
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"POST", "/api/v1/agent/heartbeat"},
           {"POST", "/api/v1/agent/logs"},
           {"POST", "/api/v1/agent/jobs/j/compare"},
           {"POST", "/api/v1/agent/runs/123e4567-e89b-42d3-a456-426614174000/complete"},
           {"POST", "/api/v1/agent/runs/123e4567-e89b-42d3-a456-426614174000/grant"},
           {"GET", "/api/v1/agent/jobs"},
           {"GET", "/api/v1/agent/commands"},
           {"GET", "/api/v1/agent/releases/1.0.0/datasync-agent"}}) {
    EXPECT_EQ(Call(method, path, junk).status, 401) << method << " " << path;
  }
}

// Class 7: a webhook channel may not target loopback, link-local, metadata or (by default)
// private addresses; the check at creation and change.
TEST_F(HostileInputTest, WebhookChannelsRefuseInternalTargets) {
  AddRoutes();
  auto create = [&](const std::string& name, const std::string& url) {
    return Call("POST", "/api/v1/admin/notification-channels",
                json{{"name", name}, {"kind", "webhook"}, {"config", {{"url", url}}}}.dump(),
                "dsa_admin");
  };
  for (const char* url : {"http://127.0.0.1:9200/x", "http://localhost:8080/", "http://[::1]/",
                          "http://[::ffff:127.0.0.1]:22/", "http://2130706433/", "http://0.0.0.0/",
                          "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/",
                          "http://10.1.2.3/hook", "https://192.168.0.10/", "http://224.0.0.1/"}) {
    http::Response r = create("c", url);
    EXPECT_EQ(r.status, 400) << url << ": " << r.body;
    EXPECT_EQ(r.content_type, "application/problem+json") << url;
    EXPECT_NE(r.body.find("webhook target"), std::string::npos) << r.body;
  }
  ASSERT_EQ(create("public", "https://8.8.8.8/hook").status, 201);
  http::Response patched =
      Call("PATCH", "/api/v1/admin/notification-channels/public",
           json{{"config", {{"url", "http://127.0.0.1:6379/"}}}}.dump(), "dsa_admin");
  EXPECT_EQ(patched.status, 400) << patched.body;
  auto stored = ctx_.index->ListNotificationChannels();
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_NE(stored->at(0).config_json.find("8.8.8.8"), std::string::npos);  // unchanged

  // The flags allow private and loopback targets; link-local and metadata never.
  ctx_.config.webhook_targets = {/*allow_private=*/true, /*allow_loopback=*/true};
  EXPECT_EQ(create("lab", "http://10.1.2.3/hook").status, 201);
  EXPECT_EQ(create("relay", "http://127.0.0.1:9000/hook").status, 201);
  EXPECT_EQ(create("meta", "http://169.254.169.254/").status, 400);
  EXPECT_EQ(create("ll", "http://[fe80::1]/").status, 400);
}

// Class 7: what stops a stored target that resolves to a refused address now (DNS rebinding, a
// channel stored before the check): the check of every address a delivery connects to. And
// POST .../test answers every failure alike (no port oracle).
TEST_F(HostileInputTest, WebhookDeliveryChecksEveryAddressAndFailsAlike) {
  AddRoutes();
  std::atomic<int> calls{0};
  auto receiver =
      http::StartServer(http::ServerOptions{}, [&](http::Request req, http::Responder respond) {
        calls.fetch_add(1);
        respond(http::JsonResponse(req.path == "/ok" ? 200 : 500, "{}"));
      });
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  const std::string port = std::to_string((*receiver)->port());
  auto store = [&](const std::string& name, const std::string& url) {
    NotificationChannel c;
    c.name = name;
    c.kind = "webhook";
    c.config_json = json{{"url", url}}.dump();
    ASSERT_TRUE(ctx_.index->PutNotificationChannel(c, kT0).ok());
  };
  auto test = [&](const std::string& name) {
    http::Response r =
        Call("POST", "/api/v1/admin/notification-channels/" + name + "/test", "{}", "dsa_admin");
    EXPECT_EQ(r.status, 200) << r.body;
    json j = json::parse(r.body);
    return j.value("ok", false) ? std::string("ok") : j.value("error", "");
  };
  store("rebound", "http://localhost:" + port + "/ok");
  store("closed", "http://127.0.0.1:1/ok");
  store("answers-500", "http://127.0.0.1:" + port + "/fail");
  store("meta", "http://169.254.169.254/latest/meta-data/");
  EXPECT_EQ(test("rebound"), "webhook delivery failed");
  EXPECT_EQ(calls.load(), 0);  // refused before connecting
  ctx_.config.webhook_targets.allow_loopback = true;
  EXPECT_EQ(test("rebound"), "ok");
  EXPECT_EQ(calls.load(), 1);
  for (const char* name : {"closed", "answers-500", "meta"}) {
    EXPECT_EQ(test(name), "webhook delivery failed") << name;
  }
  (*receiver)->Stop();
}

// Class 3: a registration nobody approves is removed after --pending-ttl.
TEST_F(HostileInputTest, JanitorRemovesStalePendingRegistrations) {
  ctx_.config.pending_ttl = std::chrono::hours(7 * 24);
  ctx_.config.janitor_interval = std::chrono::hours(1);  // passes only when the test says
  AddRoutes();
  ASSERT_EQ(Call("POST", "/api/v1/agent/register", R"({"name":"flood1"})").status, 202);
  ApprovedRunner("kept");
  clock_.now += 6 * 86'400'000LL;
  ASSERT_EQ(Call("POST", "/api/v1/agent/register", R"({"name":"flood2"})", "", "10.0.0.2").status, 202);
  clock_.now += 2 * 86'400'000LL;
  ctx_.janitor = std::make_unique<Janitor>(&ctx_, "test");
  std::string done = ctx_.janitor->RunOnce();
  EXPECT_NE(done.find("removed 1 registration(s) left pending"), std::string::npos) << done;
  EXPECT_TRUE(absl::IsNotFound(ctx_.index->GetRunnerByName("flood1").status()));
  EXPECT_TRUE(ctx_.index->GetRunnerByName("flood2").ok());
  EXPECT_TRUE(ctx_.index->GetRunnerByName("kept").ok());
}

// Class 2: a second anonymous registration under a pending name used to supersede the first,
// so the operator's approval handed the key to the newcomer.
TEST_F(HostileInputTest, PendingEnrollmentCannotBeTakenOver) {
  AddRoutes();
  const std::string reg_body = R"({"name":"pc1","hostname":"lab-pc","os":"linux"})";
  json legit = json::parse(Call("POST", "/api/v1/agent/register", reg_body, "", "10.0.0.5").body);
  clock_.now += 1'000;
  json thief =
      json::parse(Call("POST", "/api/v1/agent/register",
                       R"({"name":"pc1","hostname":"evil","os":"linux"})", "", "203.0.113.9")
                      .body);
  const std::string legit_id = legit["enrollment_id"], thief_id = thief["enrollment_id"];

  // The operator sees both, with host and address, oldest first.
  http::Response r = Call("GET", "/api/v1/admin/runners/pc1", "", "dsa_admin");
  ASSERT_EQ(r.status, 200) << r.body;
  json runner = json::parse(r.body);
  ASSERT_EQ(runner["pending_enrollments"].size(), 2u) << r.body;
  EXPECT_EQ(runner["pending_enrollments"][0]["id"], legit_id);
  EXPECT_EQ(runner["pending_enrollments"][0]["hostname"], "lab-pc");
  EXPECT_EQ(runner["pending_enrollments"][0]["address"], "10.0.0.5");
  EXPECT_EQ(runner["pending_enrollments"][1]["address"], "203.0.113.9");
  json list = json::parse(Call("GET", "/api/v1/admin/runners", "", "dsa_admin").body);
  EXPECT_EQ(list["runners"][0]["pending_enrollments"].size(), 2u);

  // No id with two candidates: 409 naming both; an unknown id: 404; neither changes anything.
  r = Call("POST", "/api/v1/admin/runners/pc1/approve", "", "dsa_admin");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.body.find(legit_id), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(thief_id), std::string::npos) << r.body;
  r = Call("POST", "/api/v1/admin/runners/pc1/approve",
           R"({"enrollment":"123e4567-e89b-42d3-a456-426614174000"})", "dsa_admin");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(
      Call("POST", "/api/v1/admin/runners/pc1/approve", R"({"enrollment":5})", "dsa_admin").status,
      400);
  EXPECT_EQ(ctx_.index->GetRunnerByName("pc1")->status, "pending");

  r = Call("POST", "/api/v1/admin/runners/pc1/approve", json{{"enrollment", legit_id}}.dump(),
           "dsa_admin");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["enrollment"], legit_id);
  r = Call("GET", "/api/v1/agent/enrollment/" + legit_id, "", legit["enrollment_secret"],
           "10.0.0.5");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(json::parse(r.body).value("api_key", "").empty()) << r.body;
  r = Call("GET", "/api/v1/agent/enrollment/" + thief_id, "", thief["enrollment_secret"],
           "203.0.113.9");
  EXPECT_EQ(r.status, 403) << r.body;

  // The audit line names the enrollment the approval chose.
  json audit = json::parse(Call("GET", "/api/v1/admin/audit", "", "dsa_admin").body);
  bool found = false;
  for (const auto& e : audit["items"]) {
    if (e["action"] == "POST /runners/pc1/approve" && e["result"] == "200") {
      found = e["details"].value("enrollment", "") == legit_id;
    }
  }
  EXPECT_TRUE(found) << audit.dump();
}

// Class 2: rejecting one candidate keeps the other; a rejected name is freed by deleting it.
TEST_F(HostileInputTest, RejectOneEnrollmentAndDeleteARejectedRunner) {
  AddRoutes();
  json a =
      json::parse(Call("POST", "/api/v1/agent/register", R"({"name":"pc1","hostname":"a"})").body);
  clock_.now += 1'000;
  json b = json::parse(
      Call("POST", "/api/v1/agent/register", R"({"name":"pc1","hostname":"b"})", "", "10.0.0.2")
          .body);
  http::Response r = Call("POST", "/api/v1/admin/runners/pc1/reject",
                          json{{"enrollment", b["enrollment_id"]}}.dump(), "dsa_admin");
  ASSERT_EQ(r.status, 200) << r.body;
  json runner = json::parse(r.body);
  EXPECT_EQ(runner["status"], "pending");
  ASSERT_EQ(runner["pending_enrollments"].size(), 1u);
  EXPECT_EQ(runner["pending_enrollments"][0]["id"], a["enrollment_id"]);
  // One left: no id needed.
  ASSERT_EQ(Call("POST", "/api/v1/admin/runners/pc1/reject", "", "dsa_admin").status, 200);
  EXPECT_EQ(Call("POST", "/api/v1/agent/register", R"({"name":"pc1"})").status, 409);
  r = Call("DELETE", "/api/v1/admin/runners/pc1", "", "dsa_admin");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Call("POST", "/api/v1/agent/register", R"({"name":"pc1"})").status, 202);

  ApprovedRunner("pc2");
  r = Call("DELETE", "/api/v1/admin/runners/pc2", "", "dsa_admin");
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("revoke it first"), std::string::npos) << r.body;
  json job{{"source", "/data"}, {"dest_prefix", "pc2"}, {"interval_ms", 60'000}};
  ASSERT_EQ(Call("POST", "/api/v1/admin/runners/pc2/jobs/daq", job.dump(), "dsa_admin").status,
            201);
  ASSERT_EQ(Call("POST", "/api/v1/admin/runners/pc2/revoke", "", "dsa_admin").status, 200);
  r = Call("DELETE", "/api/v1/admin/runners/pc2", "", "dsa_admin");
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("daq"), std::string::npos) << r.body;
  EXPECT_EQ(Call("DELETE", "/api/v1/admin/runners/nobody", "", "dsa_admin").status, 404);
}

// Class 7: with key rotation, a thief holding a copy of the key used to keep the runner (or take
// it over, by heartbeating first). Now the retired key used after the grace quarantines it.
TEST_F(HostileInputTest, RetiredKeyUsedAfterRotationQuarantinesTheRunner) {
  ctx_.config.retired_key_grace = std::chrono::seconds(10);
  AddRoutes();
  ApprovedRunner("pc1");
  const std::string hb = R"({"agent_version":"1","state":"idle"})";
  ASSERT_EQ(Call("POST", "/api/v1/admin/runners/pc1/rotate-key", "", "dsa_admin").status, 202);
  http::Response r = Call("POST", "/api/v1/agent/heartbeat", hb, "dsk_pc1");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string next = json::parse(r.body).value("new_api_key", "");
  ASSERT_FALSE(next.empty()) << r.body;
  // Handed out once: the thief's heartbeat with the same old key gets no new key.
  r = Call("POST", "/api/v1/agent/heartbeat", hb, "dsk_pc1", "203.0.113.9");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(json::parse(r.body).contains("new_api_key")) << r.body;
  ASSERT_EQ(Call("POST", "/api/v1/agent/heartbeat", hb, next).status, 200);  // promoted
  // A request the agent had in flight with the old key: within the grace, accepted.
  EXPECT_EQ(Call("POST", "/api/v1/agent/heartbeat", hb, "dsk_pc1").status, 200);
  clock_.now += 11'000;
  r = Call("POST", "/api/v1/agent/heartbeat", hb, "dsk_pc1", "203.0.113.9");
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_NE(r.body.find("quarantined"), std::string::npos) << r.body;
  // Both keys stop working, on every agent route.
  r = Call("GET", "/api/v1/agent/jobs", "", next);
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_NE(r.body.find("quarantined"), std::string::npos) << r.body;
  EXPECT_EQ(ctx_.index->GetRunnerByName("pc1")->status, "quarantined");
  // Audited with the key's fingerprint (as a wrong key is logged), never the key.
  const std::string audit = Call("GET", "/api/v1/admin/audit", "", "dsa_admin").body;
  EXPECT_NE(audit.find("quarantine runner"), std::string::npos) << audit;
  EXPECT_NE(audit.find(CredentialFingerprint("dsk_pc1")), std::string::npos) << audit;
  EXPECT_EQ(audit.find("dsk_pc1"), std::string::npos) << audit;
  // The operator binds the re-enrolled PC (a replacement request under its name).
  json reg = json::parse(
      Call("POST", "/api/v1/agent/register", R"({"name":"pc1","hostname":"lab-pc"})").body);
  ASSERT_EQ(Call("POST", "/api/v1/admin/runners/pc1/replace", "", "dsa_admin").status, 200);
  r = Call("GET", "/api/v1/agent/enrollment/" + reg["enrollment_id"].get<std::string>(), "",
           reg["enrollment_secret"]);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Call("POST", "/api/v1/agent/heartbeat", hb, json::parse(r.body)["api_key"]).status,
            200);
  EXPECT_EQ(Call("POST", "/api/v1/agent/heartbeat", hb, next).status, 401);
}

// Class 7: the reserved releases/ area, in any spelling storage may fold to it.
TEST_F(HostileInputTest, ReservedDestinationPrefixesInAnyCase) {
  AddRoutes();
  ApprovedRunner("pc1");
  int n = 0;
  for (const char* dest : {"releases", "Releases", "RELEASES/x", "releases./x", "Releases /y",
                           ".datasync", ".DataSync/x"}) {
    json job{{"source", "/data"}, {"dest_prefix", dest}, {"interval_ms", 60'000}};
    http::Response r = Call("POST", "/api/v1/admin/runners/pc1/jobs/j" + std::to_string(n++), job.dump(), "dsa_admin");
    EXPECT_EQ(r.status, 400) << dest << ": " << r.body;
  }
  json fine{{"source", "/data"}, {"dest_prefix", "releases-2024/x"}, {"interval_ms", 60'000}};
  EXPECT_EQ(Call("POST", "/api/v1/admin/runners/pc1/jobs/ok", fine.dump(), "dsa_admin").status, 201);
}

// A delta batch against a base the job's index has moved on from is refused as "base moved":
// 409 with the machine-readable reason base_moved, which the agent answers by sending the whole
// manifest.
TEST_F(HostileInputTest, AStaleDeltaBatchIsA409WithReasonBaseMoved) {
  AddRoutes();
  ApprovedRunner("pc1");
  json job{{"source", "/data"}, {"dest_prefix", "lab"}, {"interval_ms", 60'000}};
  ASSERT_EQ(Call("POST", "/api/v1/admin/runners/pc1/jobs/j", job.dump(), "dsa_admin").status, 201);
  const json delta{{"run_id", "0b7e2c4a-8d1f-4e3b-9a6c-5f2d1e0c9b8a"},
                   {"trigger", "schedule"},
                   {"files", json::array()},
                   {"last", false},
                   {"base_digest", Sha256Hex("a manifest the index never held")}};
  http::Response r = Call("POST", "/api/v1/agent/jobs/j/compare", delta.dump(), "dsk_pc1");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.content_type, "application/problem+json");
  const json body = json::parse(r.body);
  EXPECT_EQ(body.value("reason", ""), "base_moved") << r.body;
  EXPECT_NE(body.value("detail", "").find("compare the whole manifest"), std::string::npos)
      << r.body;
}

}  // namespace
}  // namespace ds
