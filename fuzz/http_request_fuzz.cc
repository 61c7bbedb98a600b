// A request as the server reads it off the wire: Beast's parser with the server's header limit
// and the anonymous body limit, then ds::http::ParseRequestTarget on the target. No bytes crash
// either; a decoded path or query never holds NUL; a query that decodes reads the same once its
// keys and values are re-encoded.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/http_types.h"
#include "server/server.h"

namespace bhttp = boost::beast::http;

namespace {

void CheckTarget(std::string_view target) {
  auto decoded = ds::http::ParseRequestTarget(target);
  if (!decoded.ok()) return;
  if (decoded->path.find('\0') != std::string::npos) __builtin_trap();
  std::string again = "/p";  // the path's round trip is fuzz_http_target's
  char sep = '?';
  for (const auto& [key, value] : decoded->query) {
    if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos) __builtin_trap();
    again += sep + ds::http::PercentEncode(key) + '=' + ds::http::PercentEncode(value);
    sep = '&';
  }
  auto back = ds::http::ParseRequestTarget(again);
  if (!back.ok() || back->query != decoded->query) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  CheckTarget(std::string_view(reinterpret_cast<const char*>(data), size));
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(ds::http::kMaxRequestHeaderBytes);
  parser.body_limit(ds::ServerConfig().anonymous_max_body_bytes);  // the default for strangers
  parser.eager(true);
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (!parser.is_header_done()) return 0;
  const auto& target = parser.get().target();
  CheckTarget(std::string_view(target.data(), target.size()));
  return 0;
}
