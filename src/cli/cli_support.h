// What every `datasync` subcommand shares: the global options, the admin API client, the error
// that ends a command, and the helpers that print tables, sizes and JSON fields.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "http/http_client.h"

namespace ds::cli {

// Options given before or with any subcommand.
struct Globals {
  std::string server;
  std::string token;
  std::string token_file;
  // Trust in the server (empty/false: the environment's DATASYNC_CA_FILE, DATASYNC_PINNED_KEY,
  // DATASYNC_ALLOW_HTTP=1, else the system CAs, no pin, https:// only).
  std::string ca_file;
  std::string pinned_key;
  bool allow_http = false;
  bool json = false;
};

// A failure that ends the command: printed as one line on stderr, exit `code` (1 failure,
// 2 usage error, 3 a finding the operator must look at).
struct CliError {
  std::string message;
  int code = 1;
};

// The environment variable `name`, or `fallback` when unset or empty.
std::string Env(const char* name, const std::string& fallback = "");

// How the CLI trusts the server (see Globals). Throws CliError (exit 2) for an http:// server
// not explicitly allowed or a malformed pin.
http::ClientOptions ServerTrust(const Globals& g);

// The admin API (`/api/v1/admin`) with the operator's token (--token, DATASYNC_TOKEN, or the
// token file). Throws CliError when no token can be found or the server is not trusted.
class Api {
 public:
  explicit Api(const Globals& g);

  // Calls the admin API; throws CliError with the server's problem detail on failure.
  nlohmann::json Call(const std::string& method, const std::string& target,
                      const std::string& body = "",
                      const std::vector<std::pair<std::string, std::string>>& headers = {});
  // Like Call("GET", ...) but returns nullopt on 404.
  std::optional<nlohmann::json> Find(const std::string& target);

 private:
  http::Client client_;
};

// One percent-encoded path segment.
std::string Seg(const std::string& s);

// `j[key]` as text to show an operator: strings, other values as JSON, "" when absent or null,
// with control characters written out (EscapeForTerminal): whatever the server relays (names,
// host names, log lines, errors) cannot drive the operator's terminal. Human output only.
std::string Str(const nlohmann::json& j, const char* key);

// `j[key]` as it is (strings unescaped), for values the CLI sends back or compares.
std::string Raw(const nlohmann::json& j, const char* key);

// Prints `j` as JSON on stdout (indented by `indent`, or on one line when negative), then a
// newline. JSON escapes C0 controls itself; DEL and C1 controls (U+0080..U+009F, which some
// terminals take as CSI and friends) are written as \u escapes too, so JSON output is safe on a
// terminal and still the same JSON.
void PrintJson(const nlohmann::json& j, int indent = 2);

// Prints rows as aligned columns with a header, on stdout; every cell EscapeForTerminal'ed.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);

// "512 B", "1.5 MiB".
std::string HumanBytes(uint64_t b);

}  // namespace ds::cli
