// clang-format off
#include <utility>  // before Asio: boost/asio/awaitable.hpp needs std::exchange (PITFALLS.md)
// clang-format on
#include "http/http_server.h"

#include <openssl/ssl.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdint>
#include <limits>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/mutex.h"
#include "platform/net.h"

namespace ds::http {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// A server TLS context from PEM files: TLS 1.2 at least, the key checked against the certificate.
absl::StatusOr<std::shared_ptr<ssl::context>> LoadTlsContext(const std::string& cert_file,
                                                             const std::string& key_file) {
  if (cert_file.empty() || key_file.empty()) {
    return absl::InvalidArgumentError("HTTPS needs both a certificate and a key file");
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  beast::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load the TLS certificate ", cert_file, ": ", ec.message()));
  }
  ctx->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load the TLS key ", key_file, ": ", ec.message()));
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TLS key ", key_file, " does not match the certificate ", cert_file));
  }
  return ctx;
}

// The method, decoded path and headers of a request whose header has been read.
// The head of `msg`, whose target `decoded` is (decoded once, for the head and the request).
RequestHead HeadOf(const bhttp::request<bhttp::string_body>& msg,
                   const absl::StatusOr<RequestTarget>& decoded) {
  RequestHead head;
  head.method = std::string(msg.method_string());
  const std::string_view target(msg.target().data(), msg.target().size());
  head.path = decoded.ok() ? decoded->path : std::string(target.substr(0, target.find('?')));
  for (const auto& field : msg) {
    head.headers[absl::AsciiStrToLower(std::string(field.name_string()))] =
        std::string(field.value());
  }
  return head;
}

class ServerImpl;

// One connection. Stream is PlainStream or TlsStream; a TLS session keeps the context it was
// accepted with (a reload does not touch it).
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  Session(tcp::socket socket, std::shared_ptr<ssl::context> tls, ServerImpl* server)
      : tls_(std::move(tls)), stream_(MakeStream(std::move(socket), tls_.get())), server_(server) {}
  void Start();

 private:
  static Stream MakeStream(tcp::socket socket, ssl::context* tls) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *tls);
    } else {
      return Stream(std::move(socket));
    }
  }
  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(stream_); }
  void DoRead();
  void OnHeader(beast::error_code ec, size_t bytes);
  void OnRead(beast::error_code ec, size_t bytes);
  void Write(Response response, bool force_close);
  void Close();
  void CloseSocket();
  // After an error answer: stop sending, then read and discard what the client is still sending
  // (bounded), so it sees our response instead of a connection reset.
  void LingerClose();
  void Drain();

  const std::shared_ptr<ssl::context> tls_;  // null for plain HTTP; outlives stream_
  Stream stream_;
  size_t drained_ = 0;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  RequestHead head_;       // of the request being read, once its header is in
  absl::StatusOr<RequestTarget> target_;  // its decoded target, from the same moment
  size_t body_limit_ = 0;  // bytes, of the request being read
  ServerImpl* server_;
  bool keep_alive_ = true;
};

class ServerImpl final : public Server {
 public:
  ServerImpl(const ServerOptions& options, Handler handler)
      : options_(options),
        handler_(std::move(handler)),
        acceptor_(ioc_),
        accept_timer_(ioc_),
        pool_(static_cast<size_t>(std::max(1, options.worker_threads))),
        priority_pool_(static_cast<size_t>(std::max(1, options.priority_threads))) {}
  ~ServerImpl() override { Stop(); }

  absl::Status Listen() {
    if (!options_.tls_cert_file.empty() || !options_.tls_key_file.empty()) {
      DS_ASSIGN_OR_RETURN(auto tls, LoadTlsContext(options_.tls_cert_file, options_.tls_key_file));
      MutexLock lock(&tls_mu_);
      tls_ = std::move(tls);
    }
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
  bool tls() const override { return TlsContext() != nullptr; }

  absl::Status ReloadTls() override {
    if (!tls())
      return absl::FailedPreconditionError("this server speaks plain HTTP; nothing to reload");
    DS_ASSIGN_OR_RETURN(auto fresh, LoadTlsContext(options_.tls_cert_file, options_.tls_key_file));
    MutexLock lock(&tls_mu_);
    tls_ = std::move(fresh);
    return absl::OkStatus();
  }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    asio::post(ioc_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
      accept_timer_.cancel();
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
  size_t BodyLimitFor(const RequestHead& head) const {
    if (!options_.body_limit_for) return options_.max_body_bytes;
    return std::min(options_.max_body_bytes, options_.body_limit_for(head));
  }

 private:
  std::shared_ptr<ssl::context> TlsContext() const {
    MutexLock lock(&tls_mu_);
    return tls_;
  }

  void DoAccept() {
    acceptor_.async_accept(asio::make_strand(ioc_), [this](beast::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of descriptors (EMFILE/ENFILE) or buffers: the connection waits in the backlog and
        // the socket stays readable, so retrying at once would spin. Pause, then try again.
        AcceptBackoff::Decision d =
            accept_backoff_.Failed(ec.message(), std::chrono::steady_clock::now());
        if (d.log) spdlog::warn("{}", *d.log);
        accept_timer_.expires_after(d.pause);
        accept_timer_.async_wait([this](beast::error_code tec) {
          if (!tec && !stopped_.load()) DoAccept();
        });
        return;
      }
      accept_backoff_.Succeeded();
      if (auto tls = TlsContext()) {
        std::make_shared<Session<TlsStream>>(std::move(s), std::move(tls), this)->Start();
      } else {
        std::make_shared<Session<PlainStream>>(std::move(s), nullptr, this)->Start();
      }
      DoAccept();
    });
  }

  // Constant after construction.
  const ServerOptions options_;
  const Handler handler_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_timer_;  // the pause after a failed accept
  AcceptBackoff accept_backoff_;     // used by the accept loop only (one chain of handlers)
  asio::thread_pool pool_;
  asio::thread_pool priority_pool_;  // idle unless options_.is_priority is set
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};
  mutable Mutex tls_mu_;
  std::shared_ptr<ssl::context> tls_ ABSL_GUARDED_BY(tls_mu_);  // null = plain HTTP
};

template <class Stream>
void Session<Stream>::Start() {
  asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
    if constexpr (kTls) {
      self->Tcp().expires_after(std::chrono::seconds(30));
      self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
        if (ec) {
          spdlog::debug("TLS handshake failed: {}", ec.message());
          return self->CloseSocket();
        }
        self->DoRead();
      });
    } else {
      self->DoRead();
    }
  });
}

template <class Stream>
void Session<Stream>::DoRead() {
  parser_.emplace();
  // The body limit is chosen per request once the header is in (OnHeader); until then none, so
  // the header phase does not refuse a Content-Length the request's own limit would allow.
  // (Not boost::none: Beast 1.74 compares the Content-Length with the optional, and any value
  // is greater than none.)
  parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
  parser_->header_limit(kMaxRequestHeaderBytes);
  Tcp().expires_after(server_->options().idle_timeout);
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           beast::bind_front_handler(&Session::OnHeader, this->shared_from_this()));
}

template <class Stream>
void Session<Stream>::OnHeader(beast::error_code ec, size_t bytes) {
  if (ec) return OnRead(ec, bytes);
  const auto& target = parser_->get().target();
  target_ = ParseRequestTarget(std::string_view(target.data(), target.size()));
  head_ = HeadOf(parser_->get(), target_);
  body_limit_ = server_->BodyLimitFor(head_);
  if (auto declared = parser_->content_length(); declared && *declared > body_limit_) {
    return OnRead(bhttp::error::body_limit, 0);  // answered before any of the body is read
  }
  parser_->body_limit(body_limit_);  // chunked bodies are counted as they come
  bhttp::async_read(stream_, buffer_, *parser_,
                    beast::bind_front_handler(&Session::OnRead, this->shared_from_this()));
}

template <class Stream>
void Session<Stream>::OnRead(beast::error_code ec, size_t) {
  if (ec == bhttp::error::end_of_stream || ec == asio::error::connection_reset ||
      ec == beast::error::timeout || ec == asio::error::operation_aborted ||
      ec == asio::ssl::error::stream_truncated) {
    return Close();
  }
  if (ec == bhttp::error::body_limit) {
    return Write(ProblemResponse(413, "Content Too Large",
                                 absl::StrCat("request body exceeds ", body_limit_, " bytes")),
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
  if (!target_.ok()) return Write(ProblemResponse(target_.status()), true);
  req.path = std::move(target_->path);
  req.query = std::move(target_->query);
  req.headers = std::move(head_.headers);
  req.body = std::move(msg.body());
  req.tls = kTls;
  beast::error_code rec;
  auto ep = Tcp().socket().remote_endpoint(rec);
  if (!rec) req.remote_addr = ep.address().to_string();
  // Nothing reads the socket while a handler holds the request: a peek that finds end-of-stream
  // (or an error) means the client is gone. Data waiting (a pipelined request) means it is not.
  req.client_gone = [self = this->shared_from_this()] {
    return platform::PeerClosed(self->Tcp().socket().native_handle());
  };

  Tcp().expires_never();  // the handler may hold the request (long-poll)
  auto self = this->shared_from_this();
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

template <class Stream>
void Session<Stream>::Write(Response response, bool force_close) {
  auto res = std::make_shared<bhttp::response<bhttp::string_body>>();
  res->version(11);
  res->result(static_cast<unsigned>(response.status));
  res->set(bhttp::field::server, "datasync");
  if (!response.content_type.empty()) res->set(bhttp::field::content_type, response.content_type);
  res->set(bhttp::field::cache_control, "no-store");
  if (kTls && !server_->options().hsts.empty()) {
    res->set(bhttp::field::strict_transport_security, server_->options().hsts);
  }
  for (auto& [k, v] : response.headers) res->set(k, v);
  res->body() = std::move(response.body);
  bool close = force_close || !keep_alive_;
  res->keep_alive(!close);
  res->prepare_payload();
  Tcp().expires_after(std::chrono::seconds(60));
  bhttp::async_write(
      stream_, *res,
      [self = this->shared_from_this(), res, close, force_close](beast::error_code ec, size_t) {
        if (ec) return self->CloseSocket();
        if (force_close) return self->LingerClose();
        if (close) return self->Close();
        self->DoRead();
      });
}

template <class Stream>
void Session<Stream>::LingerClose() {
  beast::error_code ec;
  Tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
  Tcp().expires_after(std::chrono::seconds(5));
  Drain();
}

template <class Stream>
void Session<Stream>::Drain() {
  auto buf = std::make_shared<std::array<char, 65536>>();
  Tcp().async_read_some(asio::buffer(*buf),
                        [self = this->shared_from_this(), buf](beast::error_code ec, size_t n) {
                          self->drained_ += n;
                          if (ec || self->drained_ > (256u << 20)) return self->CloseSocket();
                          self->Drain();
                        });
}

// TLS: says close_notify first (bounded wait for the peer's), then closes the socket.
template <class Stream>
void Session<Stream>::Close() {
  if constexpr (kTls) {
    Tcp().expires_after(std::chrono::seconds(2));
    stream_.async_shutdown(
        [self = this->shared_from_this()](beast::error_code) { self->CloseSocket(); });
  } else {
    CloseSocket();
  }
}

template <class Stream>
void Session<Stream>::CloseSocket() {
  beast::error_code ec;
  Tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
  Tcp().socket().close(ec);
}

}  // namespace

AcceptBackoff::Decision AcceptBackoff::Failed(const std::string& error,
                                              std::chrono::steady_clock::time_point now) {
  Decision d{next_pause_, std::nullopt};
  next_pause_ = std::min(kMaxPause, next_pause_ * 2);
  ++unlogged_;
  if (!last_log_ || now - *last_log_ >= kLogInterval) {
    d.log = absl::StrCat("accept failed: ", error, " (", unlogged_,
                         unlogged_ == 1 ? " failure" : " failures",
                         " since the last report; next try in ", d.pause.count(), " ms)");
    last_log_ = now;
    unlogged_ = 0;
  }
  return d;
}

void AcceptBackoff::Succeeded() { next_pause_ = kFirstPause; }

absl::StatusOr<std::unique_ptr<Server>> StartServer(const ServerOptions& options, Handler handler) {
  auto server = std::make_unique<ServerImpl>(options, std::move(handler));
  DS_RETURN_IF_ERROR(server->Listen());
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace ds::http
