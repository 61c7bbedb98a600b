// Internal to the Azure Blob backend: the REST protocol pieces shared by the account-key backend
// (azblob_storage.cc) and the SAS-only upload (sas.cc) — URL encoding, Shared Key signing,
// error mapping, a minimal reader for the service's XML, and the block upload engine.
// Nothing here is used outside src/storage/azblob/.
//
// Blob service REST API, x-ms-version kApiVersion (2021-08-06; Azurite 3.35 supports it).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "http/http_client.h"
#include "storage/storage.h"

namespace ds::azblob {

inline constexpr char kApiVersion[] = "2021-08-06";
// Blob metadata we write (x-ms-meta-NAME): lowercase hex SHA-256 and decimal Unix nanoseconds.
inline constexpr char kMetaSha256[] = "sha256";
inline constexpr char kMetaMtimeNs[] = "mtime_ns";
// Service limit: blocks in one committed block list.
inline constexpr uint64_t kMaxBlocks = 50'000;

// ---------------------------------------------------------------------------------------------
// Encoding and time.

// Percent-encodes every byte except unreserved characters (and '/' for EncodePath).
std::string EncodePath(std::string_view raw);
std::string EncodeQueryValue(std::string_view raw);

// "Sat, 28 Nov 2026 03:14:51 GMT" (HTTP date) and "2026-11-28T03:14:51Z" (SAS times).
std::string HttpDate(int64_t unix_s);
std::string IsoSeconds(int64_t unix_s);
// Parses an HTTP date; nullopt when malformed or outside 1970..2262 (what Unix nanoseconds in an
// int64 hold). Returns Unix seconds.
std::optional<int64_t> ParseHttpDate(std::string_view text);
// "20261128T031451Z" (names of kept versions).
std::string CompactUtcStamp(int64_t unix_s);

// scheme://host[:port] + encoded path + raw query (without '?').
struct ParsedUrl {
  std::string origin;
  std::string path;
  std::string query;
};
// InvalidArgument unless `url` is http(s)://HOST[:PORT]/PATH[?QUERY]. Messages never contain the
// query (it may hold a SAS signature).
[[nodiscard]] absl::StatusOr<ParsedUrl> ParseHttpUrl(std::string_view url);

// Decodes %XX escapes; malformed escapes are kept as they are, '+' stays '+'.
std::string DecodePercent(std::string_view encoded);

// Value of `name` in a raw query string (percent-decoded); "" when absent.
std::string QueryParam(std::string_view query, std::string_view name);


// ---------------------------------------------------------------------------------------------
// Requests.

// One request to the blob service, before authorisation.
struct BlobRequest {
  std::string method = "GET";
  std::string path;  // percent-encoded, from the origin's root: "/devstoreaccount1/c/a%20b"
  std::vector<std::pair<std::string, std::string>> query;    // raw values; sent encoded
  std::vector<std::pair<std::string, std::string>> headers;  // x-ms-version/date are added
  const char* body = nullptr;                                // not owned
  size_t body_size = 0;                                      // bytes
  uint64_t max_send_bytes_per_second = 0;                    // 0 = unlimited
  RateLimiter* rate_limiter = nullptr;                       // shared cap; not owned
  const std::atomic<bool>* cancel = nullptr;
  size_t max_response_bytes = 64 << 20;  // 2xx bodies only
  std::string what;  // for messages: "PUT BLOCK container/key"; never a URL with a query
};

struct TransportOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  // Per request; requests with a body get extra time for it (see RequestTimeout).
  std::chrono::milliseconds request_timeout{120'000};
  std::string ca_file;
};

// Timeout for a request: the base plus time for its body at the lower of
// `max_send_bytes_per_second` (0 = unlimited) and 32 KiB/s, so slow links are not cut off
// mid-block.
std::chrono::milliseconds RequestTimeout(const TransportOptions& options, size_t body_size,
                                         uint64_t max_send_bytes_per_second);

// Authorises and sends requests. Thread-safe unless an implementation says otherwise.
class Transport {
 public:
  virtual ~Transport() = default;
  // Any HTTP status is a response; errors are transport failures (Unavailable,
  // DeadlineExceeded, Cancelled, ResourceExhausted) or, for SAS, a failed renewal.
  [[nodiscard]] virtual absl::StatusOr<http::ClientResponse> Send(const BlobRequest& request) = 0;
};

// A pool of http::Clients for one origin (libcurl handles are not thread-safe; pooled ones keep
// their connections). Thread-safe.
class ClientPool {
 public:
  ClientPool(std::string origin, TransportOptions options);
  ~ClientPool();
  // Sends with up to 3 attempts on HTTP 500/502/503/504 and one more on a transport failure
  // (Unavailable); never retries Cancelled, DeadlineExceeded or ResourceExhausted.
  [[nodiscard]] absl::StatusOr<http::ClientResponse> SendWithRetries(
      const http::ClientRequest& request, const std::string& what);
  const std::string& origin() const { return origin_; }
  const TransportOptions& options() const { return options_; }

 private:
  std::unique_ptr<http::Client> Acquire();
  void Release(std::unique_ptr<http::Client> client);

  // Constant after construction.
  const std::string origin_;
  const TransportOptions options_;
  struct Idle;
  std::unique_ptr<Idle> idle_;  // protected by its own mutex
};

// Shared Key authorisation for `account` with the raw (base64-decoded) `key`.
// REQUIRES: `key` non-empty. Thread-safe.
std::unique_ptr<Transport> MakeSharedKeyTransport(std::string origin, std::string account,
                                                  std::string key, TransportOptions options);

// The query string of `request`, encoded, without '?' ("" when none).
std::string EncodeQuery(const std::vector<std::pair<std::string, std::string>>& query);

// Value of header `name` (lowercase) in `response`, "" when absent.
std::string Header(const http::ClientResponse& response, const std::string& name);

// The canonical status for a non-2xx blob service response (see the .cc for the mapping); the
// message names `what`, the HTTP status and the service's error code, never a secret.
absl::Status ErrorFromResponse(const http::ClientResponse& response, const std::string& what);
// The service error code (x-ms-error-code header or <Code> in the body), "" when none.
std::string ErrorCode(const http::ClientResponse& response);

// ---------------------------------------------------------------------------------------------
// XML (the service's own, small documents: no DTDs, no CDATA, no namespaces).

// Text of the first element `tag` in `xml` (entities decoded), nullopt when absent;
// `<tag/>` gives "". Attributes on the start tag are allowed and ignored.
std::optional<std::string> XmlText(std::string_view xml, std::string_view tag);
// Raw inner XML of every element `tag`, in document order (elements must not nest in
// themselves).
std::vector<std::string_view> XmlElements(std::string_view xml, std::string_view tag);
std::string XmlUnescape(std::string_view text);
std::string XmlEscape(std::string_view text);

// One blob of a List Blobs answer, with what its properties and metadata say.
struct ListedBlob {
  std::string name;
  ObjectInfo info;  // key = name; sha256 only when well formed, mtime from our metadata or
                    // else Last-Modified
};
struct BlobListPage {
  std::vector<ListedBlob> blobs;  // in the answer's order; blobs without a name left out
  std::string next_marker;        // "" on the last page
};
// Reads one page of a List Blobs answer (storage is not trusted: any text gives a page).
BlobListPage ParseBlobList(std::string_view body);

// ---------------------------------------------------------------------------------------------
// Blob properties and the upload engine.

// What HEAD (Get Blob Properties) says about a blob.
struct BlobProps {
  uint64_t size = 0;     // bytes
  std::string etag;      // quoted, as sent
  std::string sha256;    // our metadata when well-formed, else ""
  int64_t mtime_ns = 0;  // our metadata, else Last-Modified (seconds precision)
  bool has_mtime_meta = false;
  std::string copy_status;  // x-ms-copy-status: "", "pending", "success", "failed", "aborted"
};
// From a 2xx HEAD/GET response.
BlobProps PropsFromHeaders(const http::ClientResponse& response);
// Our sha256 metadata value when it is 64 lowercase hex digits, else "".
std::string WellFormedSha256(std::string_view value);

// Blob properties; NotFound when absent.
[[nodiscard]] absl::StatusOr<BlobProps> HeadBlob(Transport& transport, const std::string& path,
                                                 const std::string& what);

// Ids of the uncommitted blocks of a blob (Get Block List); empty when the blob is absent.
[[nodiscard]] absl::StatusOr<std::set<std::string>> UncommittedBlocks(Transport& transport,
                                                                      const std::string& path,
                                                                      const std::string& what);

// Counters of one staging pass.
struct StageStats {
  int blocks_total = 0;           // blocks the file was cut into (0: fits one Put Blob)
  int blocks_uploaded = 0;        // Put Block requests that succeeded
  int blocks_already_staged = 0;  // skipped: an uncommitted block with the same id existed
  int max_blocks_in_flight = 0;   // most Put Block requests of this file at once
};

// The local file after one read: hashes and what a commit needs.
struct StagedContent {
  uint64_t bytes = 0;      // bytes read (== the file's size; else Aborted)
  std::string sha256;      // of exactly those bytes, lowercase hex
  std::string md5_base64;  // of those bytes (x-ms-blob-content-md5)
  int64_t source_mtime_ns = 0;
  bool single_shot = false;  // true: `data` holds the whole file, to send with Put Blob
  std::string data;
  std::vector<std::string> block_ids;  // committed order, when !single_shot
};

// Reads `source` once, hashing what it reads. A file of at most `block_size` bytes is kept in
// memory (single_shot); a larger one is cut into blocks of `block_size` (grown so that at most
// kMaxBlocks are needed) and each block is staged with Put Block unless its id is in
// `already_staged()` (asked once, only for multi-block files; may be null). Block ids are
// deterministic: base64 of "<index, 6 digits>-<first 32 hex of the block's SHA-256>", so a
// retry, even by another process, finds and skips what is already staged, and never reuses a
// staged block whose content differs. Every block carries Content-MD5: the service rejects
// corrupted transfers. `on_staged` (may be null) hears of every block the service accepted, from
// the uploading threads. Nothing is committed. `transport` null: read and hash only.
// Errors: NotFound/PermissionDenied (source), FailedPrecondition (not a regular file),
// Aborted (source changed while read, or its SHA-256 is not options.expected_sha256),
// Cancelled, and the service's errors.
[[nodiscard]] absl::StatusOr<StagedContent> ReadAndStage(
    Transport* transport, const std::string& path, const std::string& what,
    const std::filesystem::path& source, const PutOptions& options, size_t block_size,
    const std::function<absl::StatusOr<std::set<std::string>>()>& already_staged,
    StageStats* stats, const std::function<void(const std::string& block_id)>& on_staged = nullptr);

// Commits `content` under `path` with metadata sha256 + mtime_ns: Put Blob for single_shot,
// else Put Block List. `conditions` are extra headers (If-Match / If-None-Match). Returns the
// response (any status) for the caller to judge conflicts.
[[nodiscard]] absl::StatusOr<http::ClientResponse> Commit(
    Transport& transport, const std::string& path, const std::string& what,
    const StagedContent& content, int64_t mtime_ns,
    const std::vector<std::pair<std::string, std::string>>& conditions, const PutOptions& options);

}  // namespace ds::azblob
