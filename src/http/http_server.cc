// clang-format off
#include <utility>  // before Asio: boost/asio/awaitable.hpp needs std::exchange (PITFALLS.md)
// clang-format on
#include "http/http_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace ds::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

class ServerImpl;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ServerImpl* server) : stream_(std::move(socket)), server_(server) {}
  void Start();

 private:
  void DoRead();
  void OnRead(beast::error_code ec, size_t bytes);
  void Write(Response response, bool force_close);
  void Close();
  // After an error answer: stop sending, then read and discard what the client is still sending
  // (bounded), so it sees our response instead of a connection reset.
  void LingerClose();
  void Drain();

  beast::tcp_stream stream_;
  size_t drained_ = 0;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  ServerImpl* server_;
  bool keep_alive_ = true;
};

class ServerImpl final : public Server {
 public:
  ServerImpl(const ServerOptions& options, Handler handler)
      : options_(options),
        handler_(std::move(handler)),
        acceptor_(ioc_),
        pool_(static_cast<size_t>(std::max(1, options.worker_threads))),
        priority_pool_(static_cast<size_t>(std::max(1, options.priority_threads))) {}
  ~ServerImpl() override { Stop(); }

  absl::Status Listen() {
    beast::error_code ec;
    auto addr = asio::ip::make_address(options_.host, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("bad listen address '", options_.host, "'"));
    tcp::endpoint ep(addr, options_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options_.host, ":", options_.port, ": ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    DoAccept();
    for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
    return absl::OkStatus();
  }

  uint16_t port() const override { return port_; }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    asio::post(ioc_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
    });
    ioc_.stop();
    for (auto& t : threads_) t.join();
    pool_.join();
    priority_pool_.join();
  }

  const ServerOptions& options() const { return options_; }
  const Handler& handler() const { return handler_; }
  // Where `req` is handled: the priority workers when options.is_priority says so.
  asio::thread_pool& PoolFor(const Request& req) {
    return options_.is_priority && options_.is_priority(req) ? priority_pool_ : pool_;
  }

 private:
  void DoAccept() {
    acceptor_.async_accept(asio::make_strand(ioc_), [this](beast::error_code ec, tcp::socket s) {
      if (ec) {
        if (ec == asio::error::operation_aborted) return;
        spdlog::warn("accept failed: {}", ec.message());
      } else {
        std::make_shared<Session>(std::move(s), this)->Start();
      }
      DoAccept();
    });
  }

  // Constant after construction.
  const ServerOptions options_;
  const Handler handler_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  asio::thread_pool pool_;
  asio::thread_pool priority_pool_;  // idle unless options_.is_priority is set
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};
};

void Session::Start() {
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->DoRead(); });
}

void Session::DoRead() {
  parser_.emplace();
  parser_->body_limit(server_->options().max_body_bytes);
  parser_->header_limit(16 * 1024);
  stream_.expires_after(server_->options().idle_timeout);
  bhttp::async_read(stream_, buffer_, *parser_,
                    beast::bind_front_handler(&Session::OnRead, shared_from_this()));
}

void Session::OnRead(beast::error_code ec, size_t) {
  if (ec == bhttp::error::end_of_stream || ec == asio::error::connection_reset ||
      ec == beast::error::timeout || ec == asio::error::operation_aborted) {
    return Close();
  }
  if (ec == bhttp::error::body_limit) {
    return Write(ProblemResponse(413, "Content Too Large",
                                 absl::StrCat("request body exceeds ",
                                              server_->options().max_body_bytes, " bytes")),
                 true);
  }
  if (ec) {
    return Write(ProblemResponse(400, "Bad Request", absl::StrCat("malformed HTTP request: ", ec.message())),
                 true);
  }
  auto msg = parser_->release();
  keep_alive_ = msg.keep_alive();

  Request req;
  req.method = std::string(msg.method_string());
  std::string target(msg.target());
  std::string raw_path = target.substr(0, target.find('?'));
  auto path = PercentDecode(raw_path, false);
  if (!path.ok()) return Write(ProblemResponse(path.status()), true);
  req.path = *path;
  if (size_t q = target.find('?'); q != std::string::npos) {
    std::string qs = target.substr(q + 1);
    size_t start = 0;
    while (start <= qs.size()) {
      size_t end = qs.find('&', start);
      if (end == std::string::npos) end = qs.size();
      std::string part = qs.substr(start, end - start);
      if (!part.empty()) {
        size_t eq = part.find('=');
        auto k = PercentDecode(part.substr(0, eq), true);
        auto v = PercentDecode(eq == std::string::npos ? "" : part.substr(eq + 1), true);
        if (!k.ok() || !v.ok()) {
          return Write(ProblemResponse(400, "Bad Request", "malformed query string"), true);
        }
        req.query[*k] = *v;
      }
      start = end + 1;
    }
  }
  for (const auto& field : msg) {
    req.headers[absl::AsciiStrToLower(std::string(field.name_string()))] = std::string(field.value());
  }
  req.body = std::move(msg.body());
  beast::error_code rec;
  auto ep = stream_.socket().remote_endpoint(rec);
  if (!rec) req.remote_addr = ep.address().to_string();
  // Nothing reads the socket while a handler holds the request: a peek that finds end-of-stream
  // (or an error) means the client is gone. Data waiting (a pipelined request) means it is not.
  req.client_gone = [self = shared_from_this()] {
    char c;
    const ssize_t n = ::recv(self->stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  };

  stream_.expires_never();  // the handler may hold the request (long-poll)
  auto self = shared_from_this();
  asio::thread_pool& pool = server_->PoolFor(req);
  asio::post(pool, [self, req = std::move(req)]() mutable {
    auto respond = [self](Response resp) {
      asio::post(self->stream_.get_executor(),
                 [self, resp = std::move(resp)]() mutable { self->Write(std::move(resp), false); });
    };
    try {
      self->server_->handler()(std::move(req), std::move(respond));
    } catch (const std::exception& e) {
      spdlog::error("handler threw: {}", e.what());
      asio::post(self->stream_.get_executor(), [self] {
        self->Write(ProblemResponse(500, "Internal Server Error", "internal error; see the server log"), true);
      });
    }
  });
}

void Session::Write(Response response, bool force_close) {
  auto res = std::make_shared<bhttp::response<bhttp::string_body>>();
  res->version(11);
  res->result(static_cast<unsigned>(response.status));
  res->set(bhttp::field::server, "datasync");
  if (!response.content_type.empty()) res->set(bhttp::field::content_type, response.content_type);
  res->set(bhttp::field::cache_control, "no-store");
  for (auto& [k, v] : response.headers) res->set(k, v);
  res->body() = std::move(response.body);
  bool close = force_close || !keep_alive_;
  res->keep_alive(!close);
  res->prepare_payload();
  stream_.expires_after(std::chrono::seconds(60));
  bhttp::async_write(stream_, *res, [self = shared_from_this(), res, close, force_close](beast::error_code ec, size_t) {
    if (ec) return self->Close();
    if (force_close) return self->LingerClose();
    if (close) return self->Close();
    self->DoRead();
  });
}

void Session::LingerClose() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.expires_after(std::chrono::seconds(5));
  Drain();
}

void Session::Drain() {
  auto buf = std::make_shared<std::array<char, 65536>>();
  stream_.async_read_some(asio::buffer(*buf), [self = shared_from_this(), buf](beast::error_code ec, size_t n) {
    self->drained_ += n;
    if (ec || self->drained_ > (256u << 20)) return self->Close();
    self->Drain();
  });
}

void Session::Close() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> StartServer(const ServerOptions& options, Handler handler) {
  auto server = std::make_unique<ServerImpl>(options, std::move(handler));
  DS_RETURN_IF_ERROR(server->Listen());
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace ds::http
