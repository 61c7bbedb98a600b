#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

#include <atomic>
#include <future>
#include <thread>

#include "http/http_client.h"
#include "http/http_server.h"

namespace ds::http {
namespace {

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions opts;
    opts.max_body_bytes = 1024;
    auto s = StartServer(opts, [](Request req, Responder respond) {
      if (req.path == "/later") {
        std::thread([respond] {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          respond(JsonResponse(200, R"({"late":true})"));
        }).detach();
        return;
      }
      if (req.path == "/fail") return respond(ProblemResponse(absl::NotFoundError("no such thing")));
      respond(JsonResponse(200, req.method + " " + req.path + " q=" + req.Query("q") +
                                    " auth=" + req.Header("authorization") + " body=" + req.body));
    });
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override { server_->Stop(); }

  std::unique_ptr<Server> server_;
  std::string base_;
};

TEST_F(HttpTest, EchoesDecodedPathQueryHeadersAndBody) {
  Client c(base_, {});
  c.SetDefaultHeader("Authorization", "Bearer x");
  auto r = c.Do("POST", "/a%20b/%C3%BC?q=1%2B2+3", "hello");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "POST /a b/\xC3\xBC q=1+2 3 auth=Bearer x body=hello");
  // Keep-alive: a second call on the same client works.
  auto r2 = c.Do("GET", "/x");
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->body, "GET /x q= auth=Bearer x body=");
}

// A body paced by a shared rate limiter is sent piece by piece, keeps its method and arrives
// whole; every byte went through the limiter.
TEST_F(HttpTest, PacedBodyArrivesWholeThroughTheLimiter) {
  Client c(base_, {});
  RateLimiter limiter(1 << 20);
  const std::string body(1000, 'p');
  for (const char* method : {"PUT", "POST"}) {
    ClientRequest req;
    req.method = method;
    req.target = "/paced";
    req.body = body.data();
    req.body_size = body.size();
    req.rate_limiter = &limiter;
    auto r = c.Send(req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, absl::StrCat(method, " /paced q= auth= body=", body));
  }
  EXPECT_EQ(limiter.reserved_bytes(), 2 * body.size());
}

TEST_F(HttpTest, PacedBodyStopsWhenCancelled) {
  Client c(base_, {});
  RateLimiter limiter(100, /*burst_bytes=*/1);  // 1000 bytes would take 10 s
  std::atomic<bool> cancel{false};
  // Cancelled while the body waits for the limiter, not before the request starts.
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    cancel = true;
  });
  const std::string body(1000, 'p');
  ClientRequest req;
  req.method = "PUT";
  req.target = "/paced";
  req.body = body.data();
  req.body_size = body.size();
  req.rate_limiter = &limiter;
  req.cancel = &cancel;
  auto r = c.Send(req);
  canceller.join();
  EXPECT_TRUE(absl::IsCancelled(r.status())) << r.status();
}

TEST_F(HttpTest, BodyOverLimitGets413) {
  Client c(base_, {});
  auto r = c.Do("POST", "/big", std::string(4096, 'x'));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->headers["content-type"], "application/problem+json");
  EXPECT_TRUE(absl::IsResourceExhausted(StatusFromResponse(*r)));
}

TEST_F(HttpTest, DeferredResponderAnswersLater) {
  Client c(base_, {});
  auto r = c.Do("GET", "/later");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, R"({"late":true})");
}

TEST_F(HttpTest, ProblemMapsBackToStatus) {
  Client c(base_, {});
  auto r = c.Do("GET", "/fail");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  absl::Status st = StatusFromResponse(*r);
  EXPECT_TRUE(absl::IsNotFound(st));
  EXPECT_EQ(st.message(), "no such thing");
}

// With every ordinary worker blocked in a handler, a priority request is still answered: it
// runs on its own workers.
TEST(HttpPriorityTest, PriorityRequestsDoNotQueueBehindBlockedWorkers) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> blocked{0};
  ServerOptions opts;
  opts.worker_threads = 1;
  opts.priority_threads = 1;
  opts.is_priority = [](const Request& req) { return req.path == "/beat"; };
  auto s = StartServer(opts, [&, released](Request req, Responder respond) {
    if (req.path == "/slow") {
      blocked.fetch_add(1);
      released.wait();
    }
    respond(JsonResponse(200, req.path));
  });
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string base = "http://127.0.0.1:" + std::to_string((*s)->port());
  std::thread slow([&] {
    Client c(base, {});
    auto r = c.Do("GET", "/slow");
    EXPECT_TRUE(r.ok() && r->status == 200);
  });
  while (blocked.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  Client c(base, {});
  auto beat = c.Do("POST", "/beat", "{}");  // the only ordinary worker is still blocked
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_EQ(beat->body, "/beat");
  EXPECT_EQ(blocked.load(), 1);
  release.set_value();
  slow.join();
  (*s)->Stop();
}

TEST(HttpClientTest, ConnectionRefusedIsUnavailable) {
  Client c("http://127.0.0.1:1", {});
  auto r = c.Do("GET", "/");
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
}

TEST(HttpTypesTest, PercentDecodeRejectsBadEscapes) {
  EXPECT_FALSE(PercentDecode("%", false).ok());
  EXPECT_FALSE(PercentDecode("%4", false).ok());
  EXPECT_FALSE(PercentDecode("%zz", false).ok());
  EXPECT_FALSE(PercentDecode("a%00b", false).ok());
  EXPECT_FALSE(PercentDecode(std::string("a\0b", 3), false).ok());  // found by fuzz_http_target
  EXPECT_EQ(*PercentDecode("a%2Fb", false), "a/b");
}

}  // namespace
}  // namespace ds::http
