#include "http/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/json.h"
#include "http/http_types.h"
#include "platform/net.h"

namespace ds::http {
namespace {

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Bytes of a non-2xx response body kept when the request bounds its response.
constexpr size_t kMaxErrorBodyBytes = 64 << 10;

// Response body sink. A bounded request aborts on a 2xx body over the bound and keeps only the
// start of any other body (error details).
struct BodySink {
  CURL* curl;
  std::string* body;
  size_t max_bytes;  // SIZE_MAX: unbounded
  bool exceeded = false;
};

size_t WriteBody(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* sink = static_cast<BodySink*>(userdata);
  const size_t n = size * nmemb;
  if (sink->max_bytes != SIZE_MAX) {
    long status = 0;
    curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &status);
    const size_t have = sink->body->size();
    if (status < 200 || status >= 300) {
      if (have < kMaxErrorBodyBytes)
        sink->body->append(ptr, std::min(n, kMaxErrorBodyBytes - have));
      return n;
    }
    if (n > sink->max_bytes - std::min(sink->max_bytes, have)) {
      sink->exceeded = true;
      return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
    }
  }
  sink->body->append(ptr, n);
  return n;
}

size_t WriteHeader(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(userdata);
  std::string line(ptr, size * nmemb);
  size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    (*headers)[name] = value;
  }
  return size * nmemb;
}

// The cancel flags of the client and of the request; either may be null.
// The request body handed to libcurl piece by piece, each piece paid for at the rate limiter.
struct PacedBody {
  const char* data;
  size_t size;
  size_t offset = 0;
  RateLimiter* limiter;
  const std::atomic<bool>* cancel_client;
  const std::atomic<bool>* cancel_request;
};

size_t ReadPacedBody(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* body = static_cast<PacedBody*>(userdata);
  const size_t n = std::min({size * nitems, body->size - body->offset,
                             static_cast<size_t>(RateLimiter::kChunkBytes)});
  if (n == 0) return 0;
  const std::atomic<bool>* cancel =
      body->cancel_request != nullptr ? body->cancel_request : body->cancel_client;
  if (!body->limiter->Acquire(n, cancel)) return CURL_READFUNC_ABORT;
  if (body->cancel_client != nullptr && body->cancel_client->load()) return CURL_READFUNC_ABORT;
  std::memcpy(buffer, body->data + body->offset, n);
  body->offset += n;
  return n;
}

int SeekPacedBody(void* userdata, curl_off_t offset, int origin) {
  auto* body = static_cast<PacedBody*>(userdata);
  if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > body->size) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  body->offset = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

struct CancelFlags {
  const std::atomic<bool>* client;
  const std::atomic<bool>* request;
};

int Progress(void* userdata, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* flags = static_cast<const CancelFlags*>(userdata);
  const bool cancelled = (flags->client != nullptr && flags->client->load()) ||
                         (flags->request != nullptr && flags->request->load());
  return cancelled ? 1 : 0;
}

// ClientOptions::address_policy over every socket libcurl opens (CURLOPT_OPENSOCKETFUNCTION,
// called before each connect, for every address of a name): a refused address gets no socket,
// so libcurl tries the next address or fails with CURLE_COULDNT_CONNECT.
struct SocketGuard {
  const AddressPolicy* policy;
  std::string refused;  // the first refusal, for the error message
};

curl_socket_t OpenCheckedSocket(void* userdata, curlsocktype, curl_sockaddr* address) {
  auto* guard = static_cast<SocketGuard*>(userdata);
  // curl_sockaddr's `addr` is backed by storage large enough for a sockaddr_in6 (addrlen).
  if (absl::Status st = guard->policy->CheckAddress(&address->addr); !st.ok()) {
    if (guard->refused.empty()) guard->refused = std::string(st.message());
    return CURL_SOCKET_BAD;
  }
  absl::StatusOr<platform::NativeSocket> socket =
      platform::OpenSocketNoInherit(address->family, address->socktype, address->protocol);
  return socket.ok() ? *socket : CURL_SOCKET_BAD;
}

void ApplyAddressPolicy(CURL* c, SocketGuard* guard) {
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, OpenCheckedSocket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, guard);
  curl_easy_setopt(c, CURLOPT_PROXY, "");  // no proxy from the environment: check the target
}

}  // namespace

struct Client::Impl {
  CURL* curl = nullptr;
  ~Impl() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

Client::Client(std::string base_url, ClientOptions options)
    : base_url_(std::move(base_url)), options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  GlobalInitOnce();
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
  impl_->curl = curl_easy_init();
}

Client::~Client() = default;

void Client::SetDefaultHeader(const std::string& name, const std::string& value) {
  for (auto& [k, v] : default_headers_) {
    if (k == name) {
      v = value;
      return;
    }
  }
  default_headers_.emplace_back(name, value);
}

absl::StatusOr<ClientResponse> Client::Do(
    const std::string& method, const std::string& target, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::milliseconds timeout) {
  ClientRequest request;
  request.method = method;
  request.target = target;
  request.headers = headers;
  request.body = body.data();
  request.body_size = body.size();
  request.timeout = timeout;
  return Perform(request, /*default_json=*/true);
}

absl::StatusOr<ClientResponse> Client::Send(const ClientRequest& request) {
  return Perform(request, /*default_json=*/false);
}

absl::StatusOr<ClientResponse> Client::Perform(const ClientRequest& request, bool default_json) {
  if (impl_->curl == nullptr) return absl::InternalError("curl_easy_init failed");
  if (options_.require_https) {
    DS_RETURN_IF_ERROR(
        CheckServerUrl(base_url_, /*allow_http=*/false, "allow plain HTTP explicitly"));
  }
  const std::string& method = request.method;
  const std::string& target = request.target;
  CURL* c = impl_->curl;
  curl_easy_reset(c);
  ClientResponse out;
  std::string url = base_url_ + target;
  const std::chrono::milliseconds timeout =
      request.timeout.count() > 0 ? request.timeout : options_.timeout;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  const bool paced = request.rate_limiter != nullptr && request.body_size > 0;
  if (paced) {
    // Waiting for the limiter is not the peer's fault: bound stalls, not the whole request.
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(std::max<int64_t>(1, timeout.count() / 1000)));
  } else {
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  }
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, options_.require_https ? "https" : "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);  // a 3xx is the answer, never followed
  SocketGuard guard{options_.address_policy ? &*options_.address_policy : nullptr, {}};
  if (guard.policy != nullptr) ApplyAddressPolicy(c, &guard);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.pinned_public_key.empty()) {
    curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, options_.pinned_public_key.c_str());
  }
  char error_text[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_text);
  if (method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  const bool has_body =
      request.body_size > 0 || method == "POST" || method == "PUT" || method == "PATCH";
  PacedBody paced_body{request.body, request.body_size, 0, request.rate_limiter,
                       options_.cancel, request.cancel};
  if (paced) {
    // UPLOAD + CUSTOMREQUEST keeps the method; INFILESIZE gives the Content-Length.
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(request.body_size));
    curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadPacedBody);
    curl_easy_setopt(c, CURLOPT_READDATA, &paced_body);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, SeekPacedBody);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, &paced_body);
  } else if (has_body) {
    // POSTFIELDS does not copy: the caller keeps the body alive. libcurl sends Content-Length.
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body_size > 0 ? request.body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body_size));
  }
  if (request.max_send_bytes_per_second > 0) {
    curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE,
                     static_cast<curl_off_t>(request.max_send_bytes_per_second));
  }
  curl_slist* list = nullptr;
  list = curl_slist_append(list, "Expect:");
  bool has_ct = false;
  using Headers = std::vector<std::pair<std::string, std::string>>;
  for (const Headers* hs :
       std::initializer_list<const Headers*>{&default_headers_, &request.headers}) {
    for (const auto& [k, v] : *hs) {
      if (absl::AsciiStrToLower(k) == "content-type") has_ct = true;
      list = curl_slist_append(list, absl::StrCat(k, ": ", v).c_str());
    }
  }
  if (options_.bearer) {
    if (std::string credential = options_.bearer(); !credential.empty()) {
      list = curl_slist_append(list, absl::StrCat("Authorization: Bearer ", credential).c_str());
    }
  }
  if (!has_ct && default_json && request.body_size > 0) {
    list = curl_slist_append(list, "Content-Type: application/json");
  } else if (!has_ct && !default_json && has_body) {
    list = curl_slist_append(list, "Content-Type:");  // suppress libcurl's form-urlencoded
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  BodySink sink{c, &out.body, request.max_response_bytes};
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &out.headers);
  CancelFlags cancel{options_.cancel, request.cancel};
  if (cancel.client != nullptr || cancel.request != nullptr) {
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, Progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &cancel);
  }
  CURLcode rc = curl_easy_perform(c);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);  // error_text dies with this call
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    std::string msg = absl::StrCat(method, " ", base_url_, target.substr(0, target.find('?')), ": ",
                                   error_text[0] != '\0' ? error_text : curl_easy_strerror(rc));
    if (rc == CURLE_OPERATION_TIMEDOUT) return absl::DeadlineExceededError(msg);
    if (rc == CURLE_ABORTED_BY_CALLBACK) return absl::CancelledError(msg);
    if (!guard.refused.empty()) {
      return absl::PermissionDeniedError(
          absl::StrCat(msg, " (", guard.refused, ": refused by the address policy)"));
    }
    if (rc == CURLE_WRITE_ERROR && sink.exceeded) {
      return absl::ResourceExhaustedError(
          absl::StrCat(msg, " (response body over ", request.max_response_bytes, " bytes)"));
    }
    return absl::UnavailableError(msg);
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  out.status = static_cast<int>(status);
  return out;
}

absl::Status CheckServerUrl(const std::string& url, bool allow_http,
                            const std::string& allow_hint) {
  const std::string lower = absl::AsciiStrToLower(url.substr(0, 8));
  if (lower.rfind("https://", 0) == 0) return absl::OkStatus();
  if (lower.rfind("http://", 0) == 0) {
    if (allow_http) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing plain http:// server URL ", url,
        " (credentials and data would cross the network unencrypted): use https://, or ",
        allow_hint, " (e.g. on loopback or behind a trusted tunnel)"));
  }
  return absl::InvalidArgumentError(absl::StrCat("server URL ", url, " must start with https://"));
}

absl::StatusOr<std::string> NormalizePin(const std::string& pin) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(pin, ';', absl::SkipWhitespace())) {
    std::string p(absl::StripAsciiWhitespace(part));
    if (p.rfind("sha256//", 0) == 0 && p.size() == 8 + 44 && p.back() == '=') {
      out.push_back(p);
      continue;
    }
    std::string hex = absl::StrReplaceAll(p, {{":", ""}});
    if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad public-key pin '", p,
                       "': want sha256//BASE64 (44 characters) or 64 hex digits of "
                       "the SHA-256 of the server's public key (SubjectPublicKeyInfo)"));
    }
    std::string raw;
    for (size_t i = 0; i < 64; i += 2)
      raw.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    out.push_back(absl::StrCat("sha256//", absl::Base64Escape(raw)));
  }
  if (out.empty()) return absl::InvalidArgumentError("empty public-key pin");
  return absl::StrJoin(out, ";");
}

absl::Status StatusFromResponse(const ClientResponse& response) {
  if (response.status >= 200 && response.status < 300) return absl::OkStatus();
  std::string detail;
  std::string reason;
  if (const nlohmann::json j = ParseJsonOr(response.body); j.is_object()) {
    for (const char* field : {"detail", "title"}) {
      if (auto it = j.find(field); detail.empty() && it != j.end() && it->is_string()) {
        detail = it->get<std::string>();
      }
    }
    if (auto it = j.find("reason"); it != j.end() && it->is_string()) {
      reason = it->get<std::string>();
    }
  }
  if (detail.empty()) detail = response.body.substr(0, 300);
  if (detail.empty()) detail = absl::StrCat("HTTP ", response.status);
  return StatusForHttp(response.status, detail, reason);
}

}  // namespace ds::http
