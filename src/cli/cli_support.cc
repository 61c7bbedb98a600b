#include "cli/cli_support.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/escape.h"
#include "common/files.h"
#include "common/json.h"
#include "http/http_types.h"

namespace ds::cli {

using nlohmann::json;

std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

http::ClientOptions ServerTrust(const Globals& g) {
  http::ClientOptions o;
  const bool allow_http = g.allow_http || Env("DATASYNC_ALLOW_HTTP") == "1";
  if (absl::Status st = http::CheckServerUrl(g.server, allow_http,
                                             "pass --allow-http (or DATASYNC_ALLOW_HTTP=1)");
      !st.ok()) {
    throw CliError{std::string(st.message()), 2};
  }
  o.require_https = !allow_http;
  o.ca_file = g.ca_file.empty() ? Env("DATASYNC_CA_FILE") : g.ca_file;
  const std::string pin = g.pinned_key.empty() ? Env("DATASYNC_PINNED_KEY") : g.pinned_key;
  if (!pin.empty()) {
    auto normalized = http::NormalizePin(pin);
    if (!normalized.ok()) throw CliError{std::string(normalized.status().message()), 2};
    o.pinned_public_key = *normalized;
  }
  return o;
}

Api::Api(const Globals& g) : client_(g.server, ServerTrust(g)) {
  std::string token = g.token.empty() ? Env("DATASYNC_TOKEN") : g.token;
  if (token.empty()) {
    std::string file =
        g.token_file.empty() ? Env("DATASYNC_TOKEN_FILE", "./var/admin.token") : g.token_file;
    auto t = ReadFileToString(file, 4096);
    if (!t.ok()) {
      throw CliError{
          absl::StrCat("no admin token: pass --token, set DATASYNC_TOKEN, or point --token-file at "
                       "the server's admin.token (",
                       t.status().message(), ")")};
    }
    token = std::string(absl::StripAsciiWhitespace(*t));
  }
  client_.SetDefaultHeader("Authorization", "Bearer " + token);
}

json Api::Call(const std::string& method, const std::string& target, const std::string& body,
               const std::vector<std::pair<std::string, std::string>>& headers) {
  auto resp = client_.Do(method, "/api/v1/admin" + target, body, headers);
  if (!resp.ok()) {
    throw CliError{
        absl::StrCat("cannot reach ", client_.base_url(), ": ", resp.status().message())};
  }
  absl::Status st = http::StatusFromResponse(*resp);
  if (!st.ok()) throw CliError{std::string(st.message())};
  if (resp->body.empty()) return json::object();
  absl::StatusOr<json> j = ParseJson(resp->body);
  if (!j.ok()) throw CliError{absl::StrCat("the server sent an invalid JSON answer: ", j.status().message())};
  return *std::move(j);
}

std::optional<json> Api::Find(const std::string& target) {
  auto resp = client_.Do("GET", "/api/v1/admin" + target);
  if (resp.ok() && resp->status == 404) return std::nullopt;
  return Call("GET", target);
}

std::string Seg(const std::string& s) { return http::PercentEncode(s); }

std::string Raw(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::string Str(const json& j, const char* key) { return EscapeForTerminal(Raw(j, key)); }

void PrintJson(const json& j, int indent) {
  const std::string text = j.dump(indent, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    if (c == 0x7F) {
      out += "\\u007f";
    } else if (c == 0xC2 && next >= 0x80 && next <= 0x9F) {  // U+0080..U+009F in UTF-8
      absl::StrAppendFormat(&out, "\\u%04x", next);
      ++i;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  std::cout << out << "\n";
}

void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::vector<std::string>> shown;
  shown.reserve(rows.size());
  for (const auto& r : rows) {
    std::vector<std::string>& cells = shown.emplace_back();
    for (const auto& c : r) cells.push_back(EscapeForTerminal(c));
  }
  std::vector<size_t> w(header.size());
  for (size_t i = 0; i < header.size(); ++i) w[i] = header[i].size();
  for (const auto& r : shown) {
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size()) out += std::string(w[i] - r[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& r : shown) line(r);
}

std::string HumanBytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace ds::cli
