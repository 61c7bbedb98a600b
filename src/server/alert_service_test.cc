// AlertService over a real (SQLite) index with an injected clock: an alert fires once, stays
// active while its condition holds, resolves when it stops, queues one delivery per transition,
// and only the holder of the "alerts" lease evaluates.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>

#include "server/alerts.h"
#include "server/context.h"

namespace ds {
namespace {

constexpr int64_t kT0 = 1'800'000'000'000;  // Unix ms

class ManualClock final : public Clock {
 public:
  int64_t NowUnixMs() const override { return now_.load(); }
  void Set(int64_t ms) { now_ = ms; }

 private:
  std::atomic<int64_t> now_{kT0};
};

class AlertServiceTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::path(testing::TempDir()) / "alerts.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ctx_.clock = &clock_;
    ctx_.config.alert_interval = std::chrono::hours(1);  // passes run only when the test says
    ctx_.config.heartbeat_interval = std::chrono::milliseconds(10'000);
    auto index = OpenStateIndex("sqlite:" + (dir_ / "state.db").string());
    ASSERT_TRUE(index.ok()) << index.status();
    ctx_.index = std::move(*index);
    ASSERT_TRUE(ctx_.index->Migrate().ok());
    auto url = ParseStorageUrl((dir_ / "share").string());
    ASSERT_TRUE(url.ok());
    std::filesystem::create_directories(dir_ / "share");
    auto storage = OpenStorage(*url);
    ASSERT_TRUE(storage.ok()) << storage.status();
    ctx_.storage = std::move(*storage);
    DeclareServerMetrics(&ctx_.metrics);

    // One approved runner, heartbeating at kT0; the offline threshold at 60 s.
    auto r = ctx_.index->RegisterRunner({"pc1", "h", "linux", "m", "1"}, "enr-1", "s", kT0);
    ASSERT_TRUE(r.ok());
    runner_id_ = r->id;
    ASSERT_TRUE(ctx_.index->TransitionRunner(runner_id_, "pending", "approved", kT0).ok());
    ASSERT_TRUE(ctx_.index->RecordHeartbeat(runner_id_, "1", "idle", "", "", kT0).ok());
    auto rules = ctx_.index->ListAlertRules();
    ASSERT_TRUE(rules.ok());
    for (AlertRule rule : *rules) {
      if (rule.name != "runner-offline") continue;
      rule.params_json = R"({"seconds":60})";
      ASSERT_TRUE(ctx_.index->PutAlertRule(rule, kT0).ok());
    }
    NotificationChannel hook;
    hook.name = "hook";
    hook.kind = "webhook";
    hook.config_json = R"({"url":"http://127.0.0.1:1/unreachable"})";
    ASSERT_TRUE(ctx_.index->PutNotificationChannel(hook, kT0).ok());
  }
  void TearDown() override {
    ctx_.index.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::vector<Alert> Offline() {
    AlertFilter f;
    auto list = ctx_.index->ListAlerts(f);
    EXPECT_TRUE(list.ok());
    std::vector<Alert> out;
    for (auto& a : *list) {
      if (a.kind == "runner_offline") out.push_back(a);
    }
    return out;
  }

  std::filesystem::path dir_;
  ManualClock clock_;
  ServerContext ctx_;
  int64_t runner_id_ = 0;
};

TEST_F(AlertServiceTest, FiresOnceHoldsResolvesAndQueuesOneDeliveryPerTransition) {
  AlertService service(&ctx_, "instance-a");
  clock_.Set(kT0 + 30'000);
  service.RunOnce();
  EXPECT_TRUE(Offline().empty());

  clock_.Set(kT0 + 61'000);
  service.RunOnce();
  auto fired = Offline();
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].subject, "pc1");
  EXPECT_EQ(fired[0].resolved_at_ms, 0);
  EXPECT_EQ(fired[0].fired_at_ms, kT0 + 61'000);

  clock_.Set(kT0 + 90'000);
  service.RunOnce();  // still holds: the same alert, no second one
  auto still = Offline();
  ASSERT_EQ(still.size(), 1u);
  EXPECT_EQ(still[0].id, fired[0].id);

  ASSERT_TRUE(ctx_.index->RecordHeartbeat(runner_id_, "1", "idle", "", "", kT0 + 95'000).ok());
  clock_.Set(kT0 + 96'000);
  service.RunOnce();
  auto resolved = Offline();
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].resolved_at_ms, kT0 + 96'000);

  // One delivery per transition (the receiver is unreachable): `fired` tried at 61 s and again
  // at 90 s (its retry was due after 15 s), `resolved` once at 96 s; both wait for another try.
  // The channel shows the error.
  auto due = ctx_.index->DueDeliveries(kT0 + 100'000'000, 100, 100);
  ASSERT_TRUE(due.ok());
  std::vector<std::string> transitions;
  for (const auto& d : *due) {
    if (d.alert.id == fired[0].id)
      transitions.push_back(d.transition + ":" + std::to_string(d.attempts));
  }
  EXPECT_EQ(transitions, (std::vector<std::string>{"fired:2", "resolved:1"}));
  auto channels = ctx_.index->ListNotificationChannels();
  ASSERT_TRUE(channels.ok());
  EXPECT_FALSE(channels->at(0).last_error.empty());
  // Those three attempts, and one for the channel-failing alert the first failure raised.
  EXPECT_EQ(ctx_.metrics.Value("datasync_notifications_total",
                               {{"channel", "hook"}, {"result", "failed"}}),
            4);
  AlertFilter active;
  active.active_only = true;
  auto open = ctx_.index->ListAlerts(active);
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ(open->at(0).subject, "channel:hook");
}

TEST_F(AlertServiceTest, OnlyTheLeaseHolderEvaluates) {
  AlertService a(&ctx_, "instance-a");
  AlertService b(&ctx_, "instance-b");
  clock_.Set(kT0 + 61'000);
  std::string did_a = a.RunOnce();
  std::string did_b = b.RunOnce();
  EXPECT_NE(did_a.find("1 fired"), std::string::npos) << did_a;
  EXPECT_EQ(did_b, "");
  EXPECT_EQ(Offline().size(), 1u);
}

}  // namespace
}  // namespace ds
