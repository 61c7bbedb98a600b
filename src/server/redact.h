#pragma once
// One redaction for everything the server shows or records about configuration and requests
// (audit details, notification channel listings): secrets never reach a reader.
#include <string>

#include <nlohmann/json.hpp>

namespace ds {

inline constexpr const char* kRedacted = "****";

// True for a key that names a secret: password, passwd, secret, token, key, authorization,
// cookie, credential (case-insensitive, anywhere in the key: "smtp_password", "api_key").
bool IsSecretKey(const std::string& key);

// A URL with its secrets removed: userinfo dropped, and everything after scheme://host[:port]
// (path, query, fragment) replaced by "/****" — webhook URLs carry their tokens there.
// A string that is not a URL is returned unchanged.
std::string RedactUrl(const std::string& s);

// Free text (an error message) with every URL in it through RedactUrl: a URL runs from its
// scheme to the next whitespace or quote.
std::string RedactUrlsIn(const std::string& text);

// Walks the document: values under secret keys become "****", URL strings go through
// RedactUrl, arrays and objects are walked recursively.
nlohmann::json RedactSecrets(nlohmann::json j);

}  // namespace ds
