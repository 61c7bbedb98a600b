// Blob service REST pieces shared by the Azure Blob backend and the SAS upload.
#include "storage/azblob/azblob_rest.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <map>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/bounded_queue.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mutex.h"
#include "common/time_util.h"
#include "http/http_types.h"

namespace ds::azblob {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";
constexpr uint64_t kSlowestLinkBytesPerSecond = 32 << 10;
constexpr size_t kMaxIdleClients = 16;

bool IsUnreserved(unsigned char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

std::string Encode(std::string_view raw, bool keep_slash) {
  std::string out;
  out.reserve(raw.size() * 3 / 2);
  for (unsigned char c : raw) {
    if (IsUnreserved(c) || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string DecodePercent(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && HexValue(in[i + 1]) >= 0 && HexValue(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

namespace {

std::string FormatUtc(int64_t unix_s, const char* format) {
  time_t t = static_cast<time_t>(unix_s);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

int64_t NowUnixSeconds() { return SystemClock()->NowUnixMs() / 1000; }

// Appends the UTF-8 encoding of `cp` to `out`.
void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Finds the start tag of `tag` at or after `from`: returns the position just after its '>',
// or npos. `self_closing` tells whether it was <tag/>.
size_t FindStartTag(std::string_view xml, std::string_view tag, size_t from, bool* self_closing,
                    size_t* tag_begin = nullptr) {
  for (size_t pos = from;;) {
    pos = xml.find('<', pos);
    if (pos == std::string_view::npos) return pos;
    if (xml.compare(pos + 1, tag.size(), tag) == 0) {
      const size_t after = pos + 1 + tag.size();
      if (after < xml.size() && (xml[after] == '>' || xml[after] == ' ' || xml[after] == '/')) {
        const size_t close = xml.find('>', after);
        if (close == std::string_view::npos) return close;
        *self_closing = xml[close - 1] == '/';
        if (tag_begin != nullptr) *tag_begin = pos;
        return close + 1;
      }
    }
    pos += 1;
  }
}

// Shared Key: https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
class SharedKeyTransport final : public Transport {
 public:
  SharedKeyTransport(std::string origin, std::string account, std::string key,
                     TransportOptions options)
      : account_(std::move(account)),
        key_(std::move(key)),
        pool_(std::move(origin), std::move(options)) {}

  absl::StatusOr<http::ClientResponse> Send(const BlobRequest& request) override {
    http::ClientRequest out;
    out.method = request.method;
    out.target = request.path;
    if (!request.query.empty()) absl::StrAppend(&out.target, "?", EncodeQuery(request.query));
    out.headers = request.headers;
    out.headers.emplace_back("x-ms-date", HttpDate(NowUnixSeconds()));
    out.headers.emplace_back("x-ms-version", kApiVersion);
    out.headers.emplace_back("Authorization", Authorization(request, out.headers));
    out.body = request.body;
    out.body_size = request.body_size;
    out.max_send_bytes_per_second = request.max_send_bytes_per_second;
    out.rate_limiter = request.rate_limiter;
    out.cancel = request.cancel;
    out.max_response_bytes = request.max_response_bytes;
    out.timeout =
        RequestTimeout(pool_.options(), request.body_size, request.max_send_bytes_per_second);
    return pool_.SendWithRetries(out, request.what);
  }

 private:
  std::string Authorization(const BlobRequest& request,
                            const std::vector<std::pair<std::string, std::string>>& headers) {
    std::map<std::string, std::string> lower;  // sorted: the canonical header order
    for (const auto& [k, v] : headers) {
      lower[absl::AsciiStrToLower(k)] = std::string(absl::StripAsciiWhitespace(v));
    }
    auto get = [&lower](const char* name) {
      auto it = lower.find(name);
      return it == lower.end() ? std::string() : it->second;
    };
    std::string to_sign =
        absl::StrCat(request.method, "\n", get("content-encoding"), "\n", get("content-language"),
                     "\n", request.body_size > 0 ? absl::StrCat(request.body_size) : std::string(),
                     "\n", get("content-md5"), "\n", get("content-type"), "\n", get("date"), "\n",
                     get("if-modified-since"), "\n", get("if-match"), "\n", get("if-none-match"),
                     "\n", get("if-unmodified-since"), "\n", get("range"), "\n");
    for (const auto& [k, v] : lower) {
      if (k.rfind("x-ms-", 0) == 0) absl::StrAppend(&to_sign, k, ":", v, "\n");
    }
    absl::StrAppend(&to_sign, "/", account_, request.path);
    std::map<std::string, std::string> query;
    for (const auto& [k, v] : request.query) query[absl::AsciiStrToLower(k)] = v;
    for (const auto& [k, v] : query) absl::StrAppend(&to_sign, "\n", k, ":", v);
    return absl::StrCat("SharedKey ", account_, ":", Base64Encode(HmacSha256(key_, to_sign)));
  }

  // Constant after construction.
  const std::string account_;
  const std::string key_;  // raw bytes; never logged
  ClientPool pool_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Encoding and time.

std::string EncodePath(std::string_view raw) { return Encode(raw, /*keep_slash=*/true); }
std::string EncodeQueryValue(std::string_view raw) { return Encode(raw, /*keep_slash=*/false); }

std::string HttpDate(int64_t unix_s) { return FormatUtc(unix_s, "%a, %d %b %Y %H:%M:%S GMT"); }
std::string IsoSeconds(int64_t unix_s) { return FormatUtc(unix_s, "%Y-%m-%dT%H:%M:%SZ"); }
std::string CompactUtcStamp(int64_t unix_s) { return FormatUtc(unix_s, "%Y%m%dT%H%M%SZ"); }

std::optional<int64_t> ParseHttpDate(std::string_view text) {
  struct tm tm {};
  const std::string s(text);
  const char* end = ::strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const int64_t seconds = static_cast<int64_t>(::timegm(&tm));
  // Storage is not trusted: a date that Unix nanoseconds cannot hold is no date.
  if (seconds < 0 || seconds > INT64_MAX / 1'000'000'000) return std::nullopt;
  return seconds;
}

absl::StatusOr<ParsedUrl> ParseHttpUrl(std::string_view url) {
  const size_t scheme_end = url.find("://");
  const std::string scheme = scheme_end == std::string_view::npos
                                 ? ""
                                 : absl::AsciiStrToLower(std::string(url.substr(0, scheme_end)));
  const size_t path_start =
      scheme_end == std::string_view::npos ? scheme_end : url.find('/', scheme_end + 3);
  if ((scheme != "http" && scheme != "https") || path_start == std::string_view::npos ||
      path_start == scheme_end + 3) {
    return absl::InvalidArgumentError(absl::StrCat("'", std::string(url.substr(0, url.find('?'))),
                                                   "' is not an http(s)://HOST/PATH URL"));
  }
  ParsedUrl out;
  out.origin = absl::StrCat(scheme, std::string(url.substr(scheme_end, path_start - scheme_end)));
  std::string_view rest = url.substr(path_start);
  if (size_t hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  const size_t q = rest.find('?');
  out.path = std::string(rest.substr(0, q));
  if (q != std::string_view::npos) out.query = std::string(rest.substr(q + 1));
  return out;
}

std::string QueryParam(std::string_view query, std::string_view name) {
  for (absl::string_view p :
       absl::StrSplit(absl::string_view(query.data(), query.size()), '&', absl::SkipEmpty())) {
    const std::string_view param(p.data(), p.size());
    const size_t eq = param.find('=');
    if (param.substr(0, eq) == name) {
      return eq == std::string_view::npos ? "" : DecodePercent(param.substr(eq + 1));
    }
  }
  return "";
}


// ---------------------------------------------------------------------------------------------
// Requests.

std::chrono::milliseconds RequestTimeout(const TransportOptions& options, size_t body_size,
                                         uint64_t max_send_bytes_per_second) {
  if (body_size == 0) return options.request_timeout;
  const uint64_t rate = max_send_bytes_per_second > 0
                            ? std::min(max_send_bytes_per_second, kSlowestLinkBytesPerSecond)
                            : kSlowestLinkBytesPerSecond;
  return options.request_timeout +
         std::chrono::milliseconds(static_cast<int64_t>(body_size * 1000 / rate));
}

struct ClientPool::Idle {
  Mutex mu;
  std::vector<std::unique_ptr<http::Client>> clients ABSL_GUARDED_BY(mu);
};

ClientPool::ClientPool(std::string origin, TransportOptions options)
    : origin_(std::move(origin)), options_(std::move(options)), idle_(std::make_unique<Idle>()) {}

ClientPool::~ClientPool() = default;

std::unique_ptr<http::Client> ClientPool::Acquire() {
  {
    MutexLock lock(&idle_->mu);
    if (!idle_->clients.empty()) {
      std::unique_ptr<http::Client> c = std::move(idle_->clients.back());
      idle_->clients.pop_back();
      return c;
    }
  }
  http::ClientOptions o;
  o.connect_timeout = options_.connect_timeout;
  o.timeout = options_.request_timeout;
  o.ca_file = options_.ca_file;
  o.user_agent = "datasync-azblob";
  return std::make_unique<http::Client>(origin_, std::move(o));
}

void ClientPool::Release(std::unique_ptr<http::Client> client) {
  MutexLock lock(&idle_->mu);
  if (idle_->clients.size() < kMaxIdleClients) idle_->clients.push_back(std::move(client));
}

absl::StatusOr<http::ClientResponse> ClientPool::SendWithRetries(const http::ClientRequest& request,
                                                                 const std::string& what) {
  constexpr int kMaxHttpAttempts = 3;
  constexpr int kMaxTransportAttempts = 2;
  for (int attempt = 1;; ++attempt) {
    std::unique_ptr<http::Client> client = Acquire();
    absl::StatusOr<http::ClientResponse> r = client->Send(request);
    Release(std::move(client));
    bool retry = false;
    if (r.ok()) {
      const int s = r->status;
      retry = (s == 500 || s == 502 || s == 503 || s == 504) && attempt < kMaxHttpAttempts;
      if (retry) spdlog::warn("azblob: {}: HTTP {}, retrying", what, s);
    } else if (absl::IsUnavailable(r.status()) && attempt < kMaxTransportAttempts) {
      retry = true;
      spdlog::warn("azblob: {}: {}, retrying", what, r.status().message());
    }
    if (!retry) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(200 << (2 * (attempt - 1))));
    if (IsCancelled(request.cancel)) return absl::CancelledError(absl::StrCat(what, " cancelled"));
  }
}

std::unique_ptr<Transport> MakeSharedKeyTransport(std::string origin, std::string account,
                                                  std::string key, TransportOptions options) {
  return std::make_unique<SharedKeyTransport>(std::move(origin), std::move(account), std::move(key),
                                              std::move(options));
}

std::string EncodeQuery(const std::vector<std::pair<std::string, std::string>>& query) {
  std::string out;
  for (const auto& [k, v] : query) {
    if (!out.empty()) out.push_back('&');
    absl::StrAppend(&out, EncodeQueryValue(k), "=", EncodeQueryValue(v));
  }
  return out;
}

std::string Header(const http::ClientResponse& response, const std::string& name) {
  auto it = response.headers.find(name);
  return it == response.headers.end() ? "" : it->second;
}

std::string ErrorCode(const http::ClientResponse& response) {
  std::string code = Header(response, "x-ms-error-code");
  if (code.empty()) code = XmlText(response.body, "Code").value_or("");
  return code;
}

// Service errors → canonical codes. 403 is always PermissionDenied (bad key or signature,
// expired SAS, SAS for another blob or without the permission); a missing container is
// Unavailable like the dir backend's vanished root; Md5Mismatch (bytes corrupted in transit)
// is DataLoss.
absl::Status ErrorFromResponse(const http::ClientResponse& response, const std::string& what) {
  const std::string code = ErrorCode(response);
  std::string message = XmlText(response.body, "Message").value_or("");
  message = std::string(absl::StripAsciiWhitespace(message.substr(0, message.find('\n'))));
  std::string text = absl::StrCat(what, ": HTTP ", response.status);
  if (!code.empty()) absl::StrAppend(&text, " ", code);
  if (!message.empty()) absl::StrAppend(&text, ": ", message.substr(0, 300));
  switch (response.status) {
    case 400:
      // Azure says Md5Mismatch; Azurite says InvalidOperation "Provided contentMD5 doesn't match".
      if (code == "Md5Mismatch" || code == "InvalidMd5" ||
          (code == "InvalidOperation" &&
           absl::StrContains(absl::AsciiStrToLower(message), "md5"))) {
        return absl::DataLossError(text);
      }
      return absl::InvalidArgumentError(text);
    case 401:
      return absl::UnauthenticatedError(text);
    case 403:
      return absl::PermissionDeniedError(text);
    case 404:
      if (code == "ContainerNotFound") {
        return absl::UnavailableError(absl::StrCat(text, " (the container does not exist)"));
      }
      return absl::NotFoundError(text);
    case 409:
      if (code == "BlobAlreadyExists" || code == "ContainerAlreadyExists") {
        return absl::AlreadyExistsError(text);
      }
      return absl::FailedPreconditionError(text);
    case 412:
      return absl::FailedPreconditionError(text);
    case 413:
    case 507:
      return absl::ResourceExhaustedError(text);
    case 416:
      return absl::OutOfRangeError(text);
    case 500:
      return absl::UnavailableError(text);
    default:
      return http::StatusForHttp(response.status, text);
  }
}

// ---------------------------------------------------------------------------------------------
// XML.

std::optional<std::string> XmlText(std::string_view xml, std::string_view tag) {
  bool self_closing = false;
  const size_t start = FindStartTag(xml, tag, 0, &self_closing);
  if (start == std::string_view::npos) return std::nullopt;
  if (self_closing) return std::string();
  const std::string close = absl::StrCat("</", std::string(tag), ">");
  const size_t end = xml.find(close, start);
  if (end == std::string_view::npos) return std::nullopt;
  return XmlUnescape(xml.substr(start, end - start));
}

std::vector<std::string_view> XmlElements(std::string_view xml, std::string_view tag) {
  std::vector<std::string_view> out;
  const std::string close = absl::StrCat("</", std::string(tag), ">");
  size_t pos = 0;
  for (;;) {
    bool self_closing = false;
    const size_t start = FindStartTag(xml, tag, pos, &self_closing);
    if (start == std::string_view::npos) return out;
    if (self_closing) {
      out.push_back(xml.substr(start, 0));
      pos = start;
      continue;
    }
    const size_t end = xml.find(close, start);
    if (end == std::string_view::npos) return out;
    out.push_back(xml.substr(start, end - start));
    pos = end + close.size();
  }
}

std::string XmlUnescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '&') {
      out.push_back(text[i]);
      continue;
    }
    const size_t semi = text.find(';', i);
    if (semi == std::string_view::npos || semi - i > 10) {
      out.push_back('&');
      continue;
    }
    const std::string_view entity = text.substr(i + 1, semi - i - 1);
    if (entity == "amp") {
      out.push_back('&');
    } else if (entity == "lt") {
      out.push_back('<');
    } else if (entity == "gt") {
      out.push_back('>');
    } else if (entity == "quot") {
      out.push_back('"');
    } else if (entity == "apos") {
      out.push_back('\'');
    } else if (entity.size() > 1 && entity[0] == '#') {
      uint32_t cp = 0;
      const bool hex = entity[1] == 'x' || entity[1] == 'X';
      const std::string digits(entity.substr(hex ? 2 : 1));
      bool ok = hex ? absl::SimpleHexAtoi(digits, &cp) : absl::SimpleAtoi(digits, &cp);
      if (!ok || cp > 0x10FFFF) {
        out.append(text.substr(i, semi - i + 1));
      } else {
        AppendUtf8(cp, &out);
      }
    } else {
      out.append(text.substr(i, semi - i + 1));
    }
    i = semi;
  }
  return out;
}

std::string XmlEscape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Blob properties and the upload engine.

namespace {

ListedBlob ParseListedBlob(std::string_view blob) {
  ListedBlob b;
  b.name = XmlText(blob, "Name").value_or("");
  b.info.key = b.name;
  const std::vector<std::string_view> props_list = XmlElements(blob, "Properties");
  const std::string_view props = props_list.empty() ? std::string_view() : props_list.front();
  uint64_t size = 0;
  if (absl::SimpleAtoi(XmlText(props, "Content-Length").value_or(""), &size)) b.info.size = size;
  std::vector<std::string_view> meta = XmlElements(blob, "Metadata");
  int64_t mtime = 0;
  if (!meta.empty()) {
    b.info.sha256 = WellFormedSha256(XmlText(meta.front(), kMetaSha256).value_or(""));
    if (!absl::SimpleAtoi(XmlText(meta.front(), kMetaMtimeNs).value_or(""), &mtime)) mtime = 0;
  }
  if (mtime != 0) {
    b.info.mtime_ns = mtime;
  } else if (auto t = ParseHttpDate(XmlText(props, "Last-Modified").value_or("")); t.has_value()) {
    b.info.mtime_ns = *t * 1'000'000'000;
  }
  return b;
}

}  // namespace

BlobListPage ParseBlobList(std::string_view body) {
  BlobListPage page;
  for (std::string_view blob : XmlElements(body, "Blob")) {
    ListedBlob b = ParseListedBlob(blob);
    if (!b.name.empty()) page.blobs.push_back(std::move(b));
  }
  page.next_marker = XmlText(body, "NextMarker").value_or("");
  return page;
}

std::string WellFormedSha256(std::string_view value) {
  if (value.size() != 64) return "";
  for (char c : value) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return "";
  }
  return std::string(value);
}

BlobProps PropsFromHeaders(const http::ClientResponse& response) {
  BlobProps p;
  uint64_t size = 0;
  if (absl::SimpleAtoi(Header(response, "content-length"), &size)) p.size = size;
  p.etag = Header(response, "etag");
  p.sha256 = WellFormedSha256(Header(response, absl::StrCat("x-ms-meta-", kMetaSha256)));
  int64_t mtime = 0;
  if (absl::SimpleAtoi(Header(response, absl::StrCat("x-ms-meta-", kMetaMtimeNs)), &mtime)) {
    p.mtime_ns = mtime;
    p.has_mtime_meta = true;
  } else if (auto t = ParseHttpDate(Header(response, "last-modified")); t.has_value()) {
    p.mtime_ns = *t * 1'000'000'000;
  }
  p.copy_status = Header(response, "x-ms-copy-status");
  return p;
}

absl::StatusOr<BlobProps> HeadBlob(Transport& transport, const std::string& path,
                                   const std::string& what) {
  BlobRequest req;
  req.method = "HEAD";
  req.path = path;
  req.what = absl::StrCat("HEAD ", what);
  DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport.Send(req));
  if (r.status != 200) return ErrorFromResponse(r, req.what);
  return PropsFromHeaders(r);
}

absl::StatusOr<std::set<std::string>> UncommittedBlocks(Transport& transport,
                                                        const std::string& path,
                                                        const std::string& what) {
  BlobRequest req;
  req.method = "GET";
  req.path = path;
  req.query = {{"comp", "blocklist"}, {"blocklisttype", "uncommitted"}};
  req.what = absl::StrCat("GET BLOCK LIST ", what);
  DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport.Send(req));
  std::set<std::string> out;
  if (r.status == 404 && ErrorCode(r) != "ContainerNotFound") return out;
  if (r.status != 200) return ErrorFromResponse(r, req.what);
  for (std::string_view section : XmlElements(r.body, "UncommittedBlocks")) {
    for (std::string_view block : XmlElements(section, "Block")) {
      if (auto name = XmlText(block, "Name"); name.has_value()) out.insert(*name);
    }
  }
  return out;
}

namespace {

// Stages blocks of one blob on up to `block_parallelism` threads (Put Block with Content-MD5).
// Submit() blocks while that many uploads are in flight; the first failure stops new uploads
// and is returned by every later Submit() and by Finish(). Buffers come back through
// TakeBuffer() so a file costs (parallelism + 1) blocks of memory, not its size.
// Used by one reading thread; `transport` must be thread-safe.
class BlockStager {
 public:
  BlockStager(Transport* transport, const std::string& path, const std::string& what,
              const PutOptions& options, StageStats* stats,
              const std::function<void(const std::string&)>& on_staged)
      : transport_(transport),
        path_(path),
        what_(what),
        options_(options),
        stats_(stats),
        on_staged_(on_staged),
        parallelism_(std::clamp(options.block_parallelism, 1, 64)) {}
  ~BlockStager() { (void)Finish(); }

  std::string TakeBuffer(size_t size) {
    std::string buf;
    {
      MutexLock lock(&mu_);
      if (!free_.empty()) {
        buf = std::move(free_.back());
        free_.pop_back();
      }
    }
    buf.resize(size);
    return buf;
  }

  absl::Status Submit(int index, std::string id, std::string block) {
    MutexLock lock(&mu_);
    while (in_flight_ >= parallelism_ && error_.ok()) room_.Wait(&mu_);
    if (!error_.ok()) return error_;
    ++in_flight_;
    stats_->max_blocks_in_flight = std::max(stats_->max_blocks_in_flight, in_flight_);
    if (workers_.size() < static_cast<size_t>(parallelism_) && idle_ == 0) {
      workers_.emplace_back([this] { Work(); });
    }
    // Never full (in_flight_ bounds it), open until Finish.
    [[maybe_unused]] const bool queued = queue_.Push({index, std::move(id), std::move(block)});
    return absl::OkStatus();
  }

  // Waits for every submitted block; the first error, if any.
  absl::Status Finish() {
    {
      MutexLock lock(&mu_);
      while (in_flight_ != 0) room_.Wait(&mu_);
    }
    queue_.Close();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    MutexLock lock(&mu_);
    return error_;
  }

 private:
  struct Item {
    int index;
    std::string id;
    std::string block;
  };

  void Work() {
    {
      MutexLock lock(&mu_);
      ++idle_;
    }
    for (;;) {
      std::optional<Item> item = queue_.Pop();
      bool skip;
      {
        MutexLock lock(&mu_);
        --idle_;
        skip = !error_.ok();
      }
      if (!item) return;  // closed: Finish
      absl::Status status = skip ? absl::OkStatus() : Stage(*item);
      if (status.ok() && !skip && on_staged_) on_staged_(item->id);
      MutexLock lock(&mu_);
      if (error_.ok() && !status.ok()) error_ = status;
      if (status.ok() && !skip) ++stats_->blocks_uploaded;
      free_.push_back(std::move(item->block));
      --in_flight_;
      ++idle_;  // in the same step: Submit starts no worker while this one takes the next item
      room_.SignalAll();
    }
  }

  absl::Status Stage(const Item& item) {
    BlobRequest req;
    req.method = "PUT";
    req.path = path_;
    req.query = {{"comp", "block"}, {"blockid", item.id}};
    req.headers = {{"Content-MD5", Md5Base64(item.block)}};
    req.body = item.block.data();
    req.body_size = item.block.size();
    req.max_send_bytes_per_second = options_.max_bytes_per_second;
    req.rate_limiter = options_.rate_limiter;
    req.cancel = options_.cancel;
    req.what = absl::StrCat("PUT BLOCK ", item.index, " of ", what_);
    DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport_->Send(req));
    if (r.status != 201) return ErrorFromResponse(r, req.what);
    return absl::OkStatus();
  }

  // Constant after construction.
  Transport* const transport_;
  const std::string& path_;
  const std::string& what_;
  const PutOptions& options_;
  StageStats* const stats_ ABSL_PT_GUARDED_BY(mu_);
  const std::function<void(const std::string&)>& on_staged_;  // may be empty; thread-safe
  const int parallelism_;

  BoundedQueue<Item> queue_{static_cast<size_t>(parallelism_)};  // submitted, not yet taken
  Mutex mu_;
  CondVar room_;                                        // in_flight_ dropped, or error_ set
  std::vector<std::string> free_ ABSL_GUARDED_BY(mu_);  // recycled buffers
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;              // submitted, not finished
  int idle_ ABSL_GUARDED_BY(mu_) = 0;                   // workers waiting for work
  absl::Status error_ ABSL_GUARDED_BY(mu_);             // first failure
  std::vector<std::thread> workers_;  // touched by the reading thread only
};

}  // namespace

namespace {

// Reads from `file`'s position until `buffer` is full or the file ends; returns the count.
absl::StatusOr<size_t> ReadUpTo(platform::File& file, absl::Span<char> buffer) {
  size_t have = 0;
  while (have < buffer.size()) {
    DS_ASSIGN_OR_RETURN(const size_t n, file.Read(buffer.subspan(have)));
    if (n == 0) break;
    have += n;
  }
  return have;
}

}  // namespace

absl::StatusOr<StagedContent> ReadAndStage(
    Transport* transport, const std::string& path, const std::string& what,
    const std::filesystem::path& source, const PutOptions& options, size_t block_size,
    const std::function<absl::StatusOr<std::set<std::string>>()>& already_staged,
    StageStats* stats, const std::function<void(const std::string& block_id)>& on_staged) {
  StageStats local_stats;
  if (stats == nullptr) stats = &local_stats;
  const std::string src_desc = source.string();
  if (IsCancelled(options.cancel)) return absl::CancelledError(absl::StrCat(what, " cancelled"));
  DS_ASSIGN_OR_RETURN(platform::File file, OpenPutSourceFile(source, options));
  DS_ASSIGN_OR_RETURN(const platform::FileInfo before, file.Info());
  if (before.type != platform::FileType::kFile) {
    return absl::FailedPreconditionError(
        absl::StrCat("source ", src_desc, " is not a regular file"));
  }
  file.AdviseSequential();
  const uint64_t size = before.size;

  StagedContent out;
  out.source_mtime_ns = before.mtime_ns;
  Sha256 file_sha;
  Md5 file_md5;
  if (size <= block_size) {
    out.single_shot = true;
    out.data.resize(static_cast<size_t>(size) + 1);  // one more byte notices growth
    DS_ASSIGN_OR_RETURN(const size_t n, ReadUpTo(file, absl::MakeSpan(out.data)));
    out.data.resize(n);
    file_sha.Update(out.data);
    file_md5.Update(out.data.data(), out.data.size());
    out.bytes = out.data.size();
  } else {
    const uint64_t effective = std::max<uint64_t>(block_size, (size + kMaxBlocks - 1) / kMaxBlocks);
    std::set<std::string> staged;
    if (already_staged) {
      DS_ASSIGN_OR_RETURN(staged, already_staged());
    }
    // The file is read (and hashed) in order by this thread; blocks go out on up to
    // options.block_parallelism workers, each block's buffer recycled when its upload ends.
    BlockStager stager(transport, path, what, options, stats, on_staged);
    for (int index = 0;; ++index) {
      if (IsCancelled(options.cancel)) {
        return absl::CancelledError(absl::StrCat(what, " cancelled"));
      }
      std::string buf = stager.TakeBuffer(static_cast<size_t>(effective));
      DS_ASSIGN_OR_RETURN(const size_t n, ReadUpTo(file, absl::MakeSpan(buf)));
      if (n == 0) break;
      if (static_cast<uint64_t>(index) >= kMaxBlocks) {
        return absl::AbortedError(
            absl::StrCat("source changed while copying: ", src_desc, " grew while read"));
      }
      buf.resize(static_cast<size_t>(n));
      file_sha.Update(buf);
      file_md5.Update(buf.data(), buf.size());
      out.bytes += buf.size();
      const std::string id =
          Base64Encode(absl::StrFormat("%06d-%s", index, Sha256Hex(buf).substr(0, 32)));
      out.block_ids.push_back(id);
      ++stats->blocks_total;
      if (staged.count(id) != 0) {
        ++stats->blocks_already_staged;
        continue;
      }
      if (transport == nullptr) continue;
      // Stops reading as soon as an upload failed: the error is the upload's.
      DS_RETURN_IF_ERROR(stager.Submit(index, id, std::move(buf)));
    }
    DS_RETURN_IF_ERROR(stager.Finish());
  }

  // The source must not have changed while we read it.
  DS_ASSIGN_OR_RETURN(const platform::FileInfo after, file.Info());
  if (after.size != before.size || after.mtime_ns != before.mtime_ns || out.bytes != size) {
    return absl::AbortedError(absl::StrCat("source changed while copying: ", src_desc, " (size ",
                                           before.size, " → ", after.size, ", read ", out.bytes,
                                           " bytes)"));
  }
  out.sha256 = file_sha.FinishHex();
  out.md5_base64 = file_md5.FinishBase64();
  if (!options.expected_sha256.empty() &&
      absl::AsciiStrToLower(options.expected_sha256) != out.sha256) {
    return absl::AbortedError(absl::StrCat("source changed while copying: ", src_desc,
                                           " has SHA-256 ", out.sha256, ", expected ",
                                           options.expected_sha256));
  }
  return out;
}

absl::StatusOr<http::ClientResponse> Commit(
    Transport& transport, const std::string& path, const std::string& what,
    const StagedContent& content, int64_t mtime_ns,
    const std::vector<std::pair<std::string, std::string>>& conditions, const PutOptions& options) {
  BlobRequest req;
  req.method = "PUT";
  req.path = path;
  req.headers = conditions;
  req.headers.emplace_back(absl::StrCat("x-ms-meta-", kMetaSha256), content.sha256);
  req.headers.emplace_back(absl::StrCat("x-ms-meta-", kMetaMtimeNs), absl::StrCat(mtime_ns));
  req.cancel = options.cancel;
  std::string xml;
  if (content.single_shot) {
    req.headers.emplace_back("x-ms-blob-type", "BlockBlob");
    req.headers.emplace_back("Content-Type", "application/octet-stream");
    req.headers.emplace_back("Content-MD5", content.md5_base64);
    req.body = content.data.data();
    req.body_size = content.data.size();
    req.max_send_bytes_per_second = options.max_bytes_per_second;
    req.rate_limiter = options.rate_limiter;
    req.what = absl::StrCat("PUT BLOB ", what);
  } else {
    xml = R"(<?xml version="1.0" encoding="utf-8"?><BlockList>)";
    for (const std::string& id : content.block_ids)
      absl::StrAppend(&xml, "<Latest>", id, "</Latest>");
    xml += "</BlockList>";
    req.query = {{"comp", "blocklist"}};
    req.headers.emplace_back("Content-Type", "application/xml");
    req.headers.emplace_back("x-ms-blob-content-type", "application/octet-stream");
    req.headers.emplace_back("x-ms-blob-content-md5", content.md5_base64);
    req.body = xml.data();
    req.body_size = xml.size();
    req.what = absl::StrCat("PUT BLOCK LIST ", what);
  }
  return transport.Send(req);
}

}  // namespace ds::azblob
