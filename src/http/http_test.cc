#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "http/http_types.h"

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

// ---- TLS ---------------------------------------------------------------------------------------

// A private CA and server certificates it signs (P-256, SAN localhost and 127.0.0.1), written as
// PEM files into a temp dir.
class TestPki {
 public:
  explicit TestPki(const std::string& name)
      : dir_(std::filesystem::temp_directory_path() /
             absl::StrCat("ds-http-tls-", name, "-", ::getpid())) {
    std::filesystem::create_directories(dir_);
    ca_key_ = NewKey();
    ca_ = MakeCert(ca_key_, nullptr, nullptr, "DataSync test CA " + name, /*ca=*/true);
    WritePem(ca_file(), ca_, nullptr);
  }
  ~TestPki() {
    X509_free(ca_);
    EVP_PKEY_free(ca_key_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string ca_file() const { return (dir_ / "ca.pem").string(); }
  // A new server key and certificate signed by this CA, written to cert_file/key_file. Returns
  // the libcurl pin (sha256//BASE64 of the SubjectPublicKeyInfo) of the new key.
  std::string IssueServer(const std::string& cert_file, const std::string& key_file) {
    EVP_PKEY* key = NewKey();
    X509* cert = MakeCert(key, ca_, ca_key_, "localhost", /*ca=*/false);
    WritePem(cert_file, cert, nullptr);
    WritePem(key_file, nullptr, key);
    unsigned char* der = nullptr;
    const int n = i2d_PUBKEY(key, &der);
    unsigned char digest[32];
    EVP_Digest(der, static_cast<size_t>(n), digest, nullptr, EVP_sha256(), nullptr);
    OPENSSL_free(der);
    X509_free(cert);
    EVP_PKEY_free(key);
    return "sha256//" + absl::Base64Escape(std::string(reinterpret_cast<char*>(digest), 32));
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  static EVP_PKEY* NewKey() { return EVP_EC_gen("P-256"); }
  static X509* MakeCert(EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, const std::string& cn,
                        bool ca) {
    static int serial = 1;
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer) : name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer != nullptr ? issuer : x, x, nullptr, nullptr, 0);
    auto add = [&](int nid, const char* value) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
      X509_add_ext(x, ext, -1);
      X509_EXTENSION_free(ext);
    };
    if (ca) {
      add(NID_basic_constraints, "critical,CA:TRUE");
      add(NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
      add(NID_basic_constraints, "critical,CA:FALSE");
      add(NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
      add(NID_ext_key_usage, "serverAuth");
    }
    X509_sign(x, issuer_key != nullptr ? issuer_key : key, EVP_sha256());
    return x;
  }
  static void WritePem(const std::string& file, X509* cert, EVP_PKEY* key) {
    FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr) << file;
    if (cert != nullptr) PEM_write_X509(f, cert);
    if (key != nullptr) PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
  }

  std::filesystem::path dir_;
  EVP_PKEY* ca_key_ = nullptr;
  X509* ca_ = nullptr;
};

class HttpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pin_ = pki_.IssueServer(cert_, key_);
    ServerOptions opts;
    opts.tls_cert_file = cert_;
    opts.tls_key_file = key_;
    auto s = StartServer(opts, [](Request req, Responder respond) {
      respond(JsonResponse(200, absl::StrCat(req.path, " tls=", req.tls ? "yes" : "no")));
    });
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    base_ = "https://127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override { server_->Stop(); }
  ClientOptions Trusting(const TestPki& pki) {
    ClientOptions o;
    o.ca_file = pki.ca_file();
    o.require_https = true;
    return o;
  }

  TestPki pki_{"a"};
  std::string cert_ = pki_.Path("server.pem"), key_ = pki_.Path("server.key");
  std::string pin_;
  std::unique_ptr<Server> server_;
  std::string base_;
};

TEST_F(HttpsTest, ServedAndVerifiedWithThePinnedCa) {
  EXPECT_TRUE(server_->tls());
  Client c(base_, Trusting(pki_));
  auto r = c.Do("GET", "/x");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "/x tls=yes");
  EXPECT_EQ(r->headers["strict-transport-security"], "max-age=31536000");
  // The name in the URL is checked too: localhost is in the certificate's SAN.
  Client by_name("https://localhost:" + std::to_string(server_->port()), Trusting(pki_));
  auto r2 = by_name.Do("GET", "/y");
  ASSERT_TRUE(r2.ok()) << r2.status();
}

TEST_F(HttpsTest, UnknownCaIsRefused) {
  TestPki other("other");
  Client c(base_, Trusting(other));
  auto r = c.Do("GET", "/x");
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("certificate"), std::string::npos) << r.status();
  // The system CAs do not know the private CA either.
  ClientOptions system;
  Client s(base_, system);
  EXPECT_TRUE(absl::IsUnavailable(s.Do("GET", "/x").status()));
}

TEST_F(HttpsTest, PublicKeyPinIsChecked) {
  ClientOptions right = Trusting(pki_);
  right.pinned_public_key = pin_;
  auto ok = Client(base_, right).Do("GET", "/x");
  ASSERT_TRUE(ok.ok()) << ok.status();
  TestPki other("pin");
  ClientOptions wrong = Trusting(pki_);  // the chain verifies; only the key differs
  wrong.pinned_public_key = other.IssueServer(other.Path("s.pem"), other.Path("s.key"));
  auto r = Client(base_, wrong).Do("GET", "/x");
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("public key"), std::string::npos) << r.status();
}

TEST(HttpClientTest, PlainHttpIsRefusedUnlessAllowed) {
  ServerOptions opts;
  std::atomic<int> calls{0};
  auto s = StartServer(opts, [&](Request, Responder respond) {
    calls.fetch_add(1);
    respond(JsonResponse(200, "{}"));
  });
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string url = "http://127.0.0.1:" + std::to_string((*s)->port());
  ClientOptions strict;
  strict.require_https = true;
  auto r = Client(url, strict).Do("POST", "/api/v1/agent/register", "{}");
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_EQ(calls.load(), 0);  // refused before connecting
  auto allowed = Client(url, {}).Do("GET", "/");
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(CheckServerUrl(url, false, "pass --allow-http")));
  EXPECT_NE(CheckServerUrl(url, false, "pass --allow-http").message().find("--allow-http"),
            std::string::npos);
  EXPECT_TRUE(CheckServerUrl(url, true, "").ok());
  EXPECT_TRUE(CheckServerUrl("HTTPS://lab:8443", false, "").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(CheckServerUrl("ftp://lab", true, "")));
  (*s)->Stop();
}

TEST(HttpClientTest, NormalizePinAcceptsCurlFormAndHex) {
  const std::string hex(64, 'a');
  auto p = NormalizePin(hex);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, "sha256//qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqo=");
  EXPECT_EQ(*NormalizePin(*p + ";" + *p), *p + ";" + *p);
  EXPECT_TRUE(absl::IsInvalidArgument(NormalizePin("sha1//abc").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(NormalizePin("").status()));
}

// A reload (SIGHUP) gives new connections the new certificate; a keep-alive connection made
// before keeps working with the old one.
TEST_F(HttpsTest, ReloadSwapsTheCertificateForNewConnectionsOnly) {
  Client old_conn(base_, Trusting(pki_));
  ASSERT_TRUE(old_conn.Do("GET", "/before").ok());
  TestPki next("b");
  next.IssueServer(cert_, key_);  // overwrites the files the server was started with
  ASSERT_TRUE(server_->ReloadTls().ok());
  // Only pki_ is trusted: this can only succeed on the connection made before the reload.
  auto kept = old_conn.Do("GET", "/after");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->body, "/after tls=yes");
  EXPECT_FALSE(Client(base_, Trusting(pki_)).Do("GET", "/new").ok());
  auto fresh = Client(base_, Trusting(next)).Do("GET", "/new");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  // Broken files: the reload fails and the current certificate stays.
  { std::ofstream(key_) << "not a key"; }
  EXPECT_TRUE(absl::IsInvalidArgument(server_->ReloadTls()));
  EXPECT_TRUE(Client(base_, Trusting(next)).Do("GET", "/still").ok());
}

TEST(HttpsStartTest, UnreadableCertificateFailsTheStart) {
  ServerOptions opts;
  opts.tls_cert_file = "/nonexistent/cert.pem";
  opts.tls_key_file = "/nonexistent/key.pem";
  auto s = StartServer(opts, [](Request, Responder respond) { respond(JsonResponse(200, "{}")); });
  EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << s.status();
  ServerOptions plain;
  auto p = StartServer(plain, [](Request, Responder respond) { respond(JsonResponse(200, "{}")); });
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE((*p)->tls());
  EXPECT_TRUE(absl::IsFailedPrecondition((*p)->ReloadTls()));
  (*p)->Stop();
}

// ---- per-request body limit --------------------------------------------------------------------

// Connects to 127.0.0.1:port, sends `text`, returns what comes back until the peer closes (or 5 s).
std::string RawExchange(uint16_t port, const std::string& text) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "connect failed";
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)!::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST(HttpBodyLimitTest, AnonymousOversizedBodyGets413WhileAuthenticatedPasses) {
  std::atomic<int> handled{0};
  ServerOptions opts;
  opts.max_body_bytes = 1 << 20;
  opts.body_limit_for = [](const RequestHead& head) -> size_t {
    return head.Header("authorization").empty() ? 1024 : SIZE_MAX;
  };
  auto s = StartServer(opts, [&](Request req, Responder respond) {
    handled.fetch_add(1);
    respond(JsonResponse(200, std::to_string(req.body.size())));
  });
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string base = "http://127.0.0.1:" + std::to_string((*s)->port());
  const std::string body(4096, 'x');
  auto anonymous = Client(base, {}).Do("POST", "/api/v1/agent/register", body);
  ASSERT_TRUE(anonymous.ok()) << anonymous.status();
  EXPECT_EQ(anonymous->status, 413);
  EXPECT_NE(anonymous->body.find("exceeds 1024 bytes"), std::string::npos) << anonymous->body;
  EXPECT_EQ(handled.load(), 0);
  Client authed(base, {});
  authed.SetDefaultHeader("Authorization", "Bearer k");
  auto ok = authed.Do("POST", "/api/v1/agent/logs", body);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "4096");
  // The result is capped at max_body_bytes.
  auto huge = authed.Do("POST", "/x", std::string((1 << 20) + 1, 'x'));
  ASSERT_TRUE(huge.ok()) << huge.status();
  EXPECT_EQ(huge->status, 413);
  // A declared oversized body is answered from its header: the client never sends the body.
  const std::string answer =
      RawExchange((*s)->port(), "POST /r HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
  // Chunked bodies are counted as they arrive.
  const std::string chunked =
      RawExchange((*s)->port(),
                  absl::StrCat("POST /r HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                               "800\r\n", std::string(0x800, 'y'), "\r\n0\r\n\r\n"));
  EXPECT_EQ(chunked.rfind("HTTP/1.1 413", 0), 0u) << chunked;
  EXPECT_EQ(handled.load(), 1);
  (*s)->Stop();
}

// ---- accept errors -----------------------------------------------------------------------------

TEST(AcceptBackoffTest, PausesDoubleToOneSecondAndLogsOncePerInterval) {
  using std::chrono::milliseconds;
  AcceptBackoff b;
  auto t = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  std::vector<int64_t> pauses;
  int lines = 0;
  for (int i = 0; i < 7; ++i) {
    auto d = b.Failed("Too many open files", t);
    pauses.push_back(d.pause.count());
    lines += d.log ? 1 : 0;
    t += d.pause;
  }
  EXPECT_EQ(pauses, (std::vector<int64_t>{50, 100, 200, 400, 800, 1000, 1000}));
  // 50+100+200+400 < 1 s after the first line, +800 passes it: lines at the 1st and 6th failure.
  EXPECT_EQ(lines, 3);  // 1st (t0), 6th (t0+1550ms), 7th (t0+2550ms)
  auto d = b.Failed("Too many open files", t + milliseconds(1000));
  ASSERT_TRUE(d.log.has_value());
  EXPECT_NE(d.log->find("(1 failure since the last report"), std::string::npos) << *d.log;
  b.Succeeded();
  EXPECT_EQ(b.Failed("x", t + milliseconds(1100)).pause, milliseconds(50));
  // A burst within one interval: one line, then a count.
  AcceptBackoff burst;
  int burst_lines = 0;
  for (int i = 0; i < 100; ++i) burst_lines += burst.Failed("x", t + milliseconds(i)).log ? 1 : 0;
  EXPECT_EQ(burst_lines, 1);
  auto later = burst.Failed("x", t + milliseconds(1000));
  ASSERT_TRUE(later.log.has_value());
  EXPECT_NE(later.log->find("(100 failures"), std::string::npos) << *later.log;
}

double CpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// With no descriptor left (EMFILE), pending connections make accept() fail at once over and
// over: the loop must pause, not spin, and serve the connections once descriptors are free.
TEST(HttpAcceptTest, DescriptorExhaustionDoesNotSpin) {
  ServerOptions opts;
  opts.io_threads = 1;
  auto s = StartServer(opts, [](Request, Responder respond) { respond(JsonResponse(200, "ok")); });
  ASSERT_TRUE(s.ok()) << s.status();
  std::vector<int> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(::socket(AF_INET, SOCK_STREAM, 0));
  rlimit old_limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old_limit), 0);
  rlimit low = old_limit;
  low.rlim_cur = 256;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> filler;
  for (int fd; (fd = ::dup(0)) >= 0;) filler.push_back(fd);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((*s)->port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int fd : clients)
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const double cpu0 = CpuSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  const double cpu = CpuSeconds() - cpu0;
  for (int fd : filler) ::close(fd);
  ::setrlimit(RLIMIT_NOFILE, &old_limit);
  EXPECT_LT(cpu, 0.2) << "the accept loop spun for " << cpu << " s of CPU in 0.8 s";
  // Descriptors are back: the waiting connections are served (within the 1 s pause at most).
  const std::string req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  (void)!::send(clients[0], req.data(), req.size(), MSG_NOSIGNAL);
  timeval tv{5, 0};
  ::setsockopt(clients[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[256] = {};
  const ssize_t n = ::recv(clients[0], buf, sizeof buf - 1, 0);
  EXPECT_GT(n, 0);
  EXPECT_EQ(std::string(buf).rfind("HTTP/1.1 200", 0), 0u) << buf;
  for (int fd : clients) ::close(fd);
  (*s)->Stop();
}

// "Base moved" keeps its meaning across HTTP: the server's BaseMovedError becomes a 409 whose
// problem+json says reason "base_moved", and the client's status for it is IsBaseMoved again;
// a plain 409 (FailedPrecondition or AlreadyExists) is not.
TEST(HttpReasonTest, BaseMovedSurvivesTheRoundTripAndAPlain409DoesNot) {
  auto s = StartServer(ServerOptions{}, [](Request req, Responder respond) {
    if (req.path == "/moved") return respond(ProblemResponse(BaseMovedError("the base moved")));
    if (req.path == "/exists") return respond(ProblemResponse(absl::AlreadyExistsError("taken")));
    respond(ProblemResponse(absl::FailedPreconditionError("not now")));
  });
  ASSERT_TRUE(s.ok()) << s.status();
  Client c("http://127.0.0.1:" + std::to_string((*s)->port()), {});

  auto moved = c.Do("POST", "/moved", "{}");
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->status, 409);
  EXPECT_NE(moved->body.find(R"("reason":"base_moved")"), std::string::npos) << moved->body;
  const absl::Status st = StatusFromResponse(*moved);
  EXPECT_TRUE(IsBaseMoved(st)) << st;
  EXPECT_TRUE(absl::IsAborted(st)) << st;
  EXPECT_EQ(st.message(), "the base moved");

  for (const char* plain : {"/exists", "/other"}) {
    auto r = c.Do("POST", plain, "{}");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 409) << plain;
    EXPECT_EQ(r->body.find(R"("reason")"), std::string::npos) << r->body;
    const absl::Status other = StatusFromResponse(*r);
    EXPECT_FALSE(IsBaseMoved(other)) << other;
    EXPECT_TRUE(absl::IsFailedPrecondition(other)) << other;
  }
  (*s)->Stop();
}

TEST(HttpReasonTest, ReasonsRideOnTheStatusAndOnlyAbortedBaseMovedIsBaseMoved) {
  EXPECT_EQ(ReasonOf(WithReason(absl::NotFoundError("x"), "some_reason")), "some_reason");
  EXPECT_EQ(ReasonOf(absl::NotFoundError("x")), "");
  EXPECT_TRUE(WithReason(absl::OkStatus(), "some_reason").ok());
  EXPECT_TRUE(IsBaseMoved(BaseMovedError("m")));
  EXPECT_FALSE(IsBaseMoved(absl::AbortedError("m")));  // no reason: e.g. a source that changed
  EXPECT_FALSE(IsBaseMoved(WithReason(absl::FailedPreconditionError("m"), kReasonBaseMoved)));
  EXPECT_FALSE(IsBaseMoved(absl::AlreadyExistsError("m")));
  // An unknown reason keeps the HTTP status's code and travels along.
  const absl::Status unknown = StatusForHttp(409, "d", "future_reason");
  EXPECT_TRUE(absl::IsFailedPrecondition(unknown));
  EXPECT_EQ(ReasonOf(unknown), "future_reason");
  EXPECT_TRUE(IsBaseMoved(StatusForHttp(409, "d", kReasonBaseMoved)));
}

TEST(HttpTypesTest, PercentDecodeRejectsBadEscapes) {
  EXPECT_FALSE(PercentDecode("%", false).ok());
  EXPECT_FALSE(PercentDecode("%4", false).ok());
  EXPECT_FALSE(PercentDecode("%zz", false).ok());
  EXPECT_FALSE(PercentDecode("a%00b", false).ok());
  EXPECT_FALSE(PercentDecode(std::string("a\0b", 3), false).ok());  // found by fuzz_http_target
  EXPECT_EQ(*PercentDecode("a%2Fb", false), "a/b");
}

TEST(HttpTypesTest, ParseRequestTargetDecodesPathAndQuery) {
  auto t = ParseRequestTarget("/runners/a%2Fb/files?limit=10&&prefix=x+y%26z&flag&limit=20");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->path, "/runners/a/b/files");
  EXPECT_EQ(t->query, (std::map<std::string, std::string>{{"flag", ""}, {"limit", "20"}, {"prefix", "x y&z"}}));
  EXPECT_EQ(ParseRequestTarget("/a+b")->path, "/a+b");  // '+' is a space only in the query
  EXPECT_TRUE(ParseRequestTarget("/x")->query.empty());
}

TEST(HttpTypesTest, ParseRequestTargetRefusesBadEscapes) {
  for (const char* bad : {"/a%zz", "/a%00", "/a?k=%4", "/a?%00=v", "/a?k=v%"}) {
    auto t = ParseRequestTarget(bad);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace ds::http
