#include "http/http_types.h"

#include <nlohmann/json.hpp>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ds::http {

namespace {
constexpr char kReasonPayload[] = "type.datasync/reason";

// Debian's abseil has its own string_view, which std::string_view does not convert to.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }
}  // namespace

absl::Status WithReason(absl::Status status, std::string_view reason) {
  if (!status.ok() && !reason.empty()) status.SetPayload(kReasonPayload, absl::Cord(Av(reason)));
  return status;
}

std::string ReasonOf(const absl::Status& status) {
  const auto reason = status.GetPayload(kReasonPayload);  // absl::optional<absl::Cord>
  return reason ? std::string(*reason) : std::string();
}

absl::Status BaseMovedError(std::string_view message) {
  return WithReason(absl::AbortedError(Av(message)), kReasonBaseMoved);
}

bool IsBaseMoved(const absl::Status& status) {
  return absl::IsAborted(status) && ReasonOf(status) == kReasonBaseMoved;
}

std::string Request::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

std::string RequestHead::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

std::string Request::Query(const std::string& name, const std::string& fallback) const {
  auto it = query.find(name);
  return it == query.end() ? fallback : it->second;
}

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 413;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kUnimplemented:
      return 501;
    default:
      return 500;
  }
}

absl::Status StatusForHttp(int http_status, const std::string& detail) {
  if (http_status >= 200 && http_status < 300) return absl::OkStatus();
  switch (http_status) {
    case 400:
    case 422:
      return absl::InvalidArgumentError(detail);
    case 401:
      return absl::UnauthenticatedError(detail);
    case 403:
      return absl::PermissionDeniedError(detail);
    case 404:
      return absl::NotFoundError(detail);
    case 409:
      return absl::FailedPreconditionError(detail);
    case 413:
      return absl::ResourceExhaustedError(detail);
    case 429:
    case 502:
    case 503:
      return absl::UnavailableError(detail);
    case 504:
      return absl::DeadlineExceededError(detail);
    case 501:
      return absl::UnimplementedError(detail);
    default:
      return absl::InternalError(detail);
  }
}

absl::Status StatusForHttp(int http_status, const std::string& detail, std::string_view reason) {
  if (http_status == 409 && reason == kReasonBaseMoved) return BaseMovedError(detail);
  return WithReason(StatusForHttp(http_status, detail), reason);
}

namespace {
const char* TitleFor(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status >= 500 ? "Internal Server Error" : "Error";
  }
}
}  // namespace

namespace {
// problem+json with the optional member "reason" (omitted when empty).
Response Problem(int http_status, const std::string& title, const std::string& detail,
                 const std::string& reason) {
  Response r;
  r.status = http_status;
  r.content_type = "application/problem+json";
  nlohmann::json body{
      {"type", "about:blank"}, {"title", title}, {"status", http_status}, {"detail", detail}};
  if (!reason.empty()) body["reason"] = reason;
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (http_status == 503) r.headers.emplace_back("Retry-After", "5");
  return r;
}
}  // namespace

Response ProblemResponse(int http_status, const std::string& title, const std::string& detail) {
  return Problem(http_status, title, detail, "");
}

Response ProblemResponse(const absl::Status& status, bool expose_detail) {
  int code = HttpStatusFor(status);
  std::string detail(status.message());
  if (code >= 500 && code != 503 && !expose_detail) detail = "internal error; see the server log";
  return Problem(code, TitleFor(code), detail, ReasonOf(status));
}

Response JsonResponse(int http_status, std::string body) {
  Response r;
  r.status = http_status;
  r.body = std::move(body);
  return r;
}

absl::StatusOr<std::string> PercentDecode(const std::string& in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '\0') return absl::InvalidArgumentError("NUL in URL");
    if (c == '%') {
      auto hex = [](char h) -> int {
        if (h >= '0' && h <= '9') return h - '0';
        if (h >= 'a' && h <= 'f') return h - 'a' + 10;
        if (h >= 'A' && h <= 'F') return h - 'A' + 10;
        return -1;
      };
      if (i + 2 >= in.size()) return absl::InvalidArgumentError("truncated percent escape");
      int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return absl::InvalidArgumentError("bad percent escape");
      char d = static_cast<char>(hi * 16 + lo);
      if (d == '\0') return absl::InvalidArgumentError("NUL in URL");
      out.push_back(d);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<RequestTarget> ParseRequestTarget(std::string_view target) {
  const size_t q = target.find('?');
  RequestTarget out;
  auto path = PercentDecode(std::string(target.substr(0, q)), false);
  if (!path.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("malformed path: ", path.status().message()));
  }
  out.path = std::move(*path);
  if (q == std::string_view::npos) return out;
  const std::string_view query = target.substr(q + 1);
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(query.data(), query.size()), '&', absl::SkipEmpty())) {
    const size_t eq = part.find('=');
    auto key = PercentDecode(std::string(part.substr(0, eq)), true);
    auto value = PercentDecode(eq == part.npos ? "" : std::string(part.substr(eq + 1)), true);
    if (!key.ok() || !value.ok()) return absl::InvalidArgumentError("malformed query string");
    out.query[std::move(*key)] = std::move(*value);
  }
  return out;
}

std::string PercentEncode(const std::string& in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : in) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace ds::http
