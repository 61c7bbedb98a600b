#include "server/redact.h"

#include <algorithm>
#include <cctype>

namespace ds {

bool IsSecretKey(const std::string& key) {
  std::string k = key;
  std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* word : {"password", "passwd", "secret", "token", "key", "authorization",
                           "cookie", "credential"}) {
    if (k.find(word) != std::string::npos) return true;
  }
  return false;
}

std::string RedactUrl(const std::string& s) {
  size_t scheme_end = s.find("://");
  if (scheme_end == std::string::npos || scheme_end == 0) return s;
  for (size_t i = 0; i < scheme_end; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (!std::isalnum(c) && c != '+' && c != '-' && c != '.') return s;
  }
  size_t auth_start = scheme_end + 3;
  size_t auth_end = s.find_first_of("/?#", auth_start);
  std::string authority =
      s.substr(auth_start, auth_end == std::string::npos ? std::string::npos : auth_end - auth_start);
  if (size_t at = authority.rfind('@'); at != std::string::npos) authority.erase(0, at + 1);
  std::string out = s.substr(0, auth_start) + authority;
  if (auth_end == std::string::npos) return out;
  const bool bare_slash = auth_end + 1 == s.size() && s[auth_end] == '/';
  out += bare_slash ? std::string("/") : "/" + std::string(kRedacted);
  return out;
}

std::string RedactUrlsIn(const std::string& text) {
  auto is_scheme = [](unsigned char c) {
    return std::isalnum(c) || c == '+' || c == '-' || c == '.';
  };
  std::string out;
  size_t done = 0;  // text before this is in `out`
  size_t sep = 0;
  for (size_t at = 0; (sep = text.find("://", at)) != std::string::npos;) {
    size_t start = sep;
    while (start > done && is_scheme(static_cast<unsigned char>(text[start - 1]))) --start;
    size_t end = start == sep ? sep + 3 : text.find_first_of(" \t\r\n\"'<>", sep);
    if (end == std::string::npos) end = text.size();
    if (start < sep) {
      out += text.substr(done, start - done) + RedactUrl(text.substr(start, end - start));
      done = end;
    }
    at = end;
  }
  return out + text.substr(done);
}

nlohmann::json RedactSecrets(nlohmann::json j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (IsSecretKey(it.key()) && !it.value().is_null() && !it.value().is_boolean()) {
        it.value() = kRedacted;
      } else {
        it.value() = RedactSecrets(std::move(it.value()));
      }
    }
  } else if (j.is_array()) {
    for (auto& v : j) v = RedactSecrets(std::move(v));
  } else if (j.is_string()) {
    j = RedactUrl(j.get<std::string>());
  }
  return j;
}

}  // namespace ds
