// Azure Blob backend over the Blob service REST API. See azblob_storage.h for the layout.
//
// PutFile: read the source once, hashing it, staging blocks as it goes (or keeping a small file
// in memory); then look at what the key holds now: identical content → leave it (refresh the
// mtime metadata); different content → Copy Blob it into the versions area; then commit with a
// condition on what we saw (If-Match its ETag, or If-None-Match: * when there was nothing), so a
// concurrent writer can never be overwritten unseen: on a conflict we look again.
#include "storage/azblob/azblob_storage.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/time_util.h"
#include "storage/azblob/azblob_rest.h"
#include "storage/azblob/sas.h"

namespace ds {
namespace {

using azblob::BlobProps;
using azblob::BlobRequest;
using azblob::ErrorCode;
using azblob::ErrorFromResponse;
using azblob::Header;
using azblob::Transport;

constexpr size_t kHashChunkBytes = 8 << 20;
constexpr int kCommitAttempts = 4;
constexpr int kVersionNameAttempts = 100;
constexpr auto kCopyTimeout = std::chrono::minutes(30);
constexpr uint64_t kMaxBlockSize = uint64_t{4000} << 20;  // service limit per block
constexpr int64_t kSasClockSkewSeconds = 300;

int64_t NowUnixSeconds() { return SystemClock()->NowUnixMs() / 1000; }

std::string_view LastComponent(std::string_view key) {
  const size_t slash = key.rfind('/');
  return slash == std::string_view::npos ? key : key.substr(slash + 1);
}

std::string_view FirstComponent(std::string_view key) { return key.substr(0, key.find('/')); }

std::string VersionsPrefix(const std::string& key) {
  return absl::StrCat(std::string(kReservedArea), "/", std::string(kVersionsDir), "/", key, "/");
}

// Everything derived from AzBlobOptions that requests need.
struct Resolved {
  std::string origin;          // scheme://host[:port]
  std::string container_path;  // encoded: [/ACCOUNT]/CONTAINER
  std::string raw_key;         // decoded account key
  std::string describe;        // azblob://ACCOUNT/CONTAINER[?endpoint=...]
  bool allow_http = false;     // endpoint is http:// (Azurite): SAS may allow http
};

absl::StatusOr<Resolved> Resolve(const AzBlobOptions& options) {
  if (options.account.empty() || options.container.empty()) {
    return absl::InvalidArgumentError("azblob storage needs an account and a container name");
  }
  for (char c : options.container) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("azblob container name '", options.container, "' is not valid"));
    }
  }
  if (options.block_size == 0 || options.block_size > kMaxBlockSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("azblob block size ", options.block_size, " is not in 1..", kMaxBlockSize));
  }
  const std::string default_endpoint =
      absl::StrCat("https://", options.account, ".blob.core.windows.net");
  std::string endpoint = options.endpoint.empty() ? default_endpoint : options.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  const size_t scheme_end = endpoint.find("://");
  const std::string scheme =
      scheme_end == std::string::npos ? "" : absl::AsciiStrToLower(endpoint.substr(0, scheme_end));
  if ((scheme != "http" && scheme != "https") || scheme_end + 3 >= endpoint.size() ||
      endpoint.find_first_of("?#@ ") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "azblob endpoint '", endpoint, "' must be http(s)://HOST[:PORT][/PATH] (no query)"));
  }
  Resolved r;
  const size_t path_start = endpoint.find('/', scheme_end + 3);
  r.origin = endpoint.substr(0, path_start);
  const std::string base_path = path_start == std::string::npos ? "" : endpoint.substr(path_start);
  r.container_path = absl::StrCat(base_path, "/", options.container);
  r.allow_http = scheme == "http";
  absl::StatusOr<std::string> key = Base64Decode(options.account_key);
  if (options.account_key.empty() || !key.ok() || key->empty()) {
    // Never echo the key, not even in part.
    return absl::InvalidArgumentError(absl::StrCat("the account key for azblob account '",
                                                   options.account,
                                                   "' is missing or not valid base64"));
  }
  r.raw_key = std::move(*key);
  r.describe = absl::StrCat("azblob://", options.account, "/", options.container);
  if (endpoint != default_endpoint) absl::StrAppend(&r.describe, "?endpoint=", endpoint);
  return r;
}

azblob::TransportOptions TransportOptionsFor(const AzBlobOptions& options) {
  azblob::TransportOptions t;
  t.connect_timeout = options.connect_timeout;
  t.request_timeout = options.request_timeout;
  t.ca_file = options.ca_file;
  return t;
}

// One blob of a List Blobs page.
using azblob::ListedBlob;

// Calls `fn` for every committed blob whose name starts with `prefix`, page by page.
absl::Status ListBlobs(Transport& transport, const std::string& container_path,
                       const std::string& prefix, int page_size, const std::string& what,
                       const std::function<void(const ListedBlob&)>& fn) {
  std::string marker;
  for (;;) {
    BlobRequest req;
    req.method = "GET";
    req.path = container_path;
    req.query = {{"restype", "container"}, {"comp", "list"}, {"include", "metadata"}};
    if (!prefix.empty()) req.query.emplace_back("prefix", prefix);
    if (page_size > 0) req.query.emplace_back("maxresults", absl::StrCat(page_size));
    if (!marker.empty()) req.query.emplace_back("marker", marker);
    req.what = absl::StrCat("LIST ", what, prefix.empty() ? "" : "/", prefix);
    DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport.Send(req));
    if (r.status != 200) return ErrorFromResponse(r, req.what);
    azblob::BlobListPage page = azblob::ParseBlobList(r.body);
    for (const ListedBlob& b : page.blobs) fn(b);
    marker = std::move(page.next_marker);
    if (marker.empty()) return absl::OkStatus();
  }
}

class AzBlobStorage final : public Storage {
 public:
  AzBlobStorage(Resolved resolved, const AzBlobOptions& options)
      : account_(options.account),
        container_(options.container),
        account_key_b64_(options.account_key),
        block_size_(options.block_size),
        list_page_size_(options.list_page_size),
        origin_(resolved.origin),
        container_path_(resolved.container_path),
        describe_(resolved.describe),
        allow_http_(resolved.allow_http),
        transport_(azblob::MakeSharedKeyTransport(resolved.origin, options.account,
                                                  std::move(resolved.raw_key),
                                                  TransportOptionsFor(options))) {}

  absl::StatusOr<PutResult> PutFile(const std::string& key, const std::filesystem::path& source,
                                    const PutOptions& options) override;
  absl::StatusOr<ObjectInfo> Stat(const std::string& key) override;
  absl::Status List(const std::string& prefix,
                    const std::function<void(const ObjectInfo&)>& fn) override;
  absl::StatusOr<std::string> ReadAll(const std::string& key, size_t max_bytes) override;
  absl::StatusOr<FileDigest> HashObject(const std::string& key) override;
  absl::StatusOr<std::vector<ObjectInfo>> ListTempObjects(const std::string& prefix) override;
  absl::Status RemoveTempObject(const std::string& key) override;
  std::string Describe() const override { return describe_; }
  // Written by agents only with per-blob grants; a committed block list replaces a blob at once.
  // Blob names are case sensitive and hold any character; the source mtime and SHA-256 ride in
  // blob metadata, exactly. Names up to 1,024 characters.
  const StorageFeatures& Features() const override {
    static const StorageFeatures kBlob{.write_grants = true,
                                       .atomic_replace = true,
                                       .metadata_on_object = true,
                                       .mtime_precision_ns = 1,
                                       .max_name_bytes = 255,
                                       .max_key_bytes = 1024};
    return kBlob;
  }
  absl::StatusOr<WriteGrant> GrantWrite(const std::string& key, const std::string& sha256,
                                        std::chrono::seconds ttl) override;
  absl::Status ForgetContentHash(const std::string& key) override;

 private:
  std::string BlobPath(const std::string& key) const {
    return absl::StrCat(container_path_, "/", azblob::EncodePath(key));
  }
  std::string What(const std::string& key) const { return absl::StrCat(describe_, "/", key); }

  // Validates a key for reading: a valid path that is not a temp name (NotFound).
  absl::Status CheckReadableKey(const std::string& key) const;

  // SHA-256 and size of the blob's bytes, read in chunks under If-Match `props.etag`
  // (Aborted when it changes meanwhile).
  absl::StatusOr<FileDigest> HashBlob(const std::string& key, const BlobProps& props);

  // Copies the blob under `key` (as described by `props`, content SHA-256 `sha256`) to a new
  // name in the versions area and waits for the copy. FailedPrecondition when the blob changed
  // since `props` was read. Returns the version's key.
  absl::StatusOr<std::string> KeepVersion(const std::string& key, const BlobProps& props,
                                          const std::string& sha256);
  // Key of a version of `key` already kept with content `sha256`, or "".
  absl::StatusOr<std::string> FindKeptVersion(const std::string& key, const std::string& sha256);
  // Polls a Copy Blob destination until the copy is done.
  absl::Status WaitForCopy(const std::string& version_key);
  // Updates the metadata of an identical object to this put's mtime (best effort).
  void RefreshMetadata(const std::string& key, const BlobProps& props, const std::string& sha256,
                       int64_t mtime_ns);

  // Constant after construction.
  const std::string account_;
  const std::string container_;
  const std::string account_key_b64_;  // secret: for signing SAS only
  const size_t block_size_;
  const int list_page_size_;
  const std::string origin_;
  const std::string container_path_;
  const std::string describe_;
  const bool allow_http_;
  const std::unique_ptr<Transport> transport_;  // thread-safe
};

absl::Status AzBlobStorage::CheckReadableKey(const std::string& key) const {
  DS_RETURN_IF_ERROR(ValidateRelativePath(key));
  if (IsTempName(LastComponent(key))) {
    return absl::NotFoundError(absl::StrCat(key, " is a temp file, not an object"));
  }
  return absl::OkStatus();
}

absl::StatusOr<PutResult> AzBlobStorage::PutFile(const std::string& key,
                                                 const std::filesystem::path& source,
                                                 const PutOptions& options) {
  DS_RETURN_IF_ERROR(ValidateWritableKey(key));
  DS_RETURN_IF_ERROR(CheckKeyHoldable(Features(), key));
  const std::string what = What(key);
  const std::string path = BlobPath(key);
  if (options.cancel != nullptr && options.cancel->load()) {
    return absl::CancelledError(absl::StrCat("put ", what, " cancelled"));
  }
  absl::StatusOr<BlobProps> existing = azblob::HeadBlob(*transport_, path, what);
  if (!existing.ok() && !absl::IsNotFound(existing.status())) return existing.status();

  // The manifest says the same content is already there: read and hash only, upload nothing.
  if (existing.ok() && !options.expected_sha256.empty() &&
      existing->sha256 == absl::AsciiStrToLower(options.expected_sha256)) {
    DS_ASSIGN_OR_RETURN(
        azblob::StagedContent read,
        azblob::ReadAndStage(nullptr, path, what, source, options, block_size_, nullptr, nullptr));
    if (read.bytes == existing->size) {
      const int64_t mtime_ns = options.mtime_ns != 0 ? options.mtime_ns : read.source_mtime_ns;
      RefreshMetadata(key, *existing, read.sha256, mtime_ns);
      PutResult result;
      result.info = {key, read.bytes, mtime_ns, read.sha256};
      return result;
    }
  }

  DS_ASSIGN_OR_RETURN(
      azblob::StagedContent staged,
      azblob::ReadAndStage(
          transport_.get(), path, what, source, options, block_size_,
          [&]() { return azblob::UncommittedBlocks(*transport_, path, what); }, nullptr));
  const int64_t mtime_ns = options.mtime_ns != 0 ? options.mtime_ns : staged.source_mtime_ns;

  PutResult result;
  for (int attempt = 0;; ++attempt) {
    if (attempt == kCommitAttempts) {
      return absl::AbortedError(
          absl::StrCat(what, " kept changing under us; gave up after ", attempt, " attempts"));
    }
    if (attempt > 0) {
      existing = azblob::HeadBlob(*transport_, path, what);
      if (!existing.ok() && !absl::IsNotFound(existing.status())) return existing.status();
    }
    std::vector<std::pair<std::string, std::string>> conditions;
    if (existing.ok()) {
      std::string old_sha = existing->sha256;
      if (old_sha.empty()) {
        absl::StatusOr<FileDigest> digest = HashBlob(key, *existing);
        if (absl::IsAborted(digest.status()) || absl::IsNotFound(digest.status())) continue;
        if (!digest.ok()) return digest.status();
        old_sha = digest->sha256;
      }
      if (existing->size == staged.bytes && old_sha == staged.sha256) {
        // Same content: leave it in place. Staged blocks, if any, stay uncommitted.
        RefreshMetadata(key, *existing, old_sha, mtime_ns);
        result.info = {key, staged.bytes, mtime_ns, old_sha};
        return result;
      }
      absl::StatusOr<std::string> kept = KeepVersion(key, *existing, old_sha);
      if (absl::IsFailedPrecondition(kept.status())) continue;  // changed meanwhile: look again
      if (!kept.ok()) return kept.status();
      result.kept_version = std::move(*kept);
      conditions.emplace_back("If-Match", existing->etag);
    } else {
      conditions.emplace_back("If-None-Match", "*");
    }
    DS_ASSIGN_OR_RETURN(http::ClientResponse r, azblob::Commit(*transport_, path, what, staged,
                                                               mtime_ns, conditions, options));
    if (r.status == 201) break;
    if (r.status == 412 || (r.status == 409 && ErrorCode(r) == "BlobAlreadyExists")) continue;
    return ErrorFromResponse(r, absl::StrCat("commit ", what));
  }

  if (options.verify) {
    DS_ASSIGN_OR_RETURN(BlobProps landed, azblob::HeadBlob(*transport_, path, what));
    if (landed.size != staged.bytes || landed.sha256 != staged.sha256 ||
        landed.mtime_ns != mtime_ns) {
      return absl::DataLossError(absl::StrCat("verify failed for ", what, ": wrote ", staged.bytes,
                                              " bytes with SHA-256 ", staged.sha256,
                                              ", the service reports ", landed.size,
                                              " bytes with SHA-256 '", landed.sha256, "'"));
    }
  }
  result.info = {key, staged.bytes, mtime_ns, staged.sha256};
  return result;
}

void AzBlobStorage::RefreshMetadata(const std::string& key, const BlobProps& props,
                                    const std::string& sha256, int64_t mtime_ns) {
  if (props.sha256 == sha256 && props.has_mtime_meta && props.mtime_ns == mtime_ns) return;
  BlobRequest req;
  req.method = "PUT";
  req.path = BlobPath(key);
  req.query = {{"comp", "metadata"}};
  req.headers = {{"If-Match", props.etag},
                 {absl::StrCat("x-ms-meta-", azblob::kMetaSha256), sha256},
                 {absl::StrCat("x-ms-meta-", azblob::kMetaMtimeNs), absl::StrCat(mtime_ns)}};
  req.what = absl::StrCat("SET METADATA ", What(key));
  absl::StatusOr<http::ClientResponse> r = transport_->Send(req);
  if (!r.ok() || r->status != 200) {
    spdlog::warn("azblob: {}: {}", req.what,
                 r.ok() ? ErrorFromResponse(*r, req.what).message() : r.status().message());
  }
}

absl::Status AzBlobStorage::ForgetContentHash(const std::string& key) {
  DS_RETURN_IF_ERROR(ValidateWritableKey(key));
  DS_ASSIGN_OR_RETURN(BlobProps props, azblob::HeadBlob(*transport_, BlobPath(key), What(key)));
  if (props.sha256.empty()) return absl::OkStatus();
  BlobRequest req;
  req.method = "PUT";
  req.path = BlobPath(key);
  req.query = {{"comp", "metadata"}};
  // Set Blob Metadata replaces it all: keep the source mtime, drop the hash. If-Match: a blob
  // rewritten meanwhile keeps its own.
  req.headers = {{"If-Match", props.etag}};
  if (props.has_mtime_meta) {
    req.headers.emplace_back(absl::StrCat("x-ms-meta-", azblob::kMetaMtimeNs), absl::StrCat(props.mtime_ns));
  }
  req.what = absl::StrCat("SET METADATA ", What(key));
  DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport_->Send(req));
  if (r.status != 200) return ErrorFromResponse(r, req.what);
  return absl::OkStatus();
}

absl::StatusOr<FileDigest> AzBlobStorage::HashBlob(const std::string& key, const BlobProps& props) {
  Sha256 hash;
  FileDigest out;
  while (out.size < props.size) {
    const uint64_t end = std::min<uint64_t>(props.size, out.size + kHashChunkBytes) - 1;
    BlobRequest req;
    req.method = "GET";
    req.path = BlobPath(key);
    req.headers = {{"x-ms-range", absl::StrCat("bytes=", out.size, "-", end)},
                   {"If-Match", props.etag}};
    req.max_response_bytes = kHashChunkBytes;
    req.what = absl::StrCat("GET ", What(key));
    DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport_->Send(req));
    if (r.status == 412) return absl::AbortedError(absl::StrCat(What(key), " changed while read"));
    if (r.status != 206 && r.status != 200) return ErrorFromResponse(r, req.what);
    if (r.body.size() != end - out.size + 1) {
      return absl::AbortedError(absl::StrCat(What(key), " changed while read (short range)"));
    }
    hash.Update(r.body);
    out.size += r.body.size();
  }
  out.sha256 = hash.FinishHex();
  return out;
}

absl::StatusOr<std::string> AzBlobStorage::KeepVersion(const std::string& key,
                                                       const BlobProps& props,
                                                       const std::string& sha256) {
  const std::string base =
      absl::StrCat(azblob::CompactUtcStamp(NowUnixSeconds()), "-", sha256.substr(0, 12));
  for (int n = 0; n < kVersionNameAttempts; ++n) {
    const std::string version =
        absl::StrCat(VersionsPrefix(key), n == 0 ? base : absl::StrCat(base, "-", n));
    BlobRequest req;
    req.method = "PUT";
    req.path = BlobPath(version);
    req.headers = {{"x-ms-copy-source", absl::StrCat(origin_, BlobPath(key))},
                   {"x-ms-source-if-match", props.etag},
                   {"If-None-Match", "*"}};
    req.what = absl::StrCat("COPY ", What(key), " to ", version);
    DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport_->Send(req));
    const std::string code = ErrorCode(r);
    if (r.status == 202 || r.status == 201) {
      if (Header(r, "x-ms-copy-status") != "success") DS_RETURN_IF_ERROR(WaitForCopy(version));
      return version;
    }
    if (code == "SourceConditionNotMet" || (r.status == 404 && code == "CannotVerifyCopySource") ||
        (r.status == 404 && code == "BlobNotFound")) {
      return absl::FailedPreconditionError(absl::StrCat(What(key), " changed while kept aside"));
    }
    if (r.status == 409 || r.status == 412) continue;  // that version name is taken
    return ErrorFromResponse(r, req.what);
  }
  return absl::AlreadyExistsError(
      absl::StrCat("no free version name in ", describe_, "/", VersionsPrefix(key)));
}

absl::Status AzBlobStorage::WaitForCopy(const std::string& version_key) {
  const auto deadline = std::chrono::steady_clock::now() + kCopyTimeout;
  auto delay = std::chrono::milliseconds(50);
  for (;;) {
    DS_ASSIGN_OR_RETURN(BlobProps p,
                        azblob::HeadBlob(*transport_, BlobPath(version_key), What(version_key)));
    if (p.copy_status == "success" || p.copy_status.empty()) return absl::OkStatus();
    if (p.copy_status != "pending") {
      return absl::UnavailableError(
          absl::StrCat("copy to ", What(version_key), " ended with status ", p.copy_status));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("copy to ", What(version_key), " still pending after 30 minutes"));
    }
    std::this_thread::sleep_for(delay);
    delay = std::min<std::chrono::milliseconds>(delay * 2, std::chrono::seconds(2));
  }
}

absl::StatusOr<std::string> AzBlobStorage::FindKeptVersion(const std::string& key,
                                                           const std::string& sha256) {
  std::string found;
  const std::string suffix = absl::StrCat("-", sha256.substr(0, 12));
  DS_RETURN_IF_ERROR(ListBlobs(*transport_, container_path_, VersionsPrefix(key), list_page_size_,
                               describe_, [&](const ListedBlob& b) {
                                 const std::string_view name = LastComponent(b.name);
                                 if (found.empty() && b.info.sha256 == sha256 &&
                                     name.find(suffix) != std::string_view::npos) {
                                   found = b.name;
                                 }
                               }));
  return found;
}

absl::StatusOr<ObjectInfo> AzBlobStorage::Stat(const std::string& key) {
  DS_RETURN_IF_ERROR(CheckReadableKey(key));
  DS_ASSIGN_OR_RETURN(BlobProps p, azblob::HeadBlob(*transport_, BlobPath(key), What(key)));
  return ObjectInfo{key, p.size, p.mtime_ns, p.sha256};
}

absl::Status AzBlobStorage::List(const std::string& prefix,
                                 const std::function<void(const ObjectInfo&)>& fn) {
  if (!prefix.empty()) {
    DS_RETURN_IF_ERROR(ValidateRelativePath(prefix));
    if (FirstComponent(prefix) == kReservedArea) return absl::OkStatus();  // never listed
  }
  return ListBlobs(*transport_, container_path_, prefix.empty() ? "" : absl::StrCat(prefix, "/"),
                   list_page_size_, describe_, [&](const ListedBlob& b) {
                     if (FirstComponent(b.name) == kReservedArea) return;
                     if (IsTempName(LastComponent(b.name))) return;
                     if (!ValidateRelativePath(b.name).ok()) return;  // made by other tools
                     fn(b.info);
                   });
}

absl::StatusOr<std::string> AzBlobStorage::ReadAll(const std::string& key, size_t max_bytes) {
  DS_RETURN_IF_ERROR(CheckReadableKey(key));
  BlobRequest req;
  req.method = "GET";
  req.path = BlobPath(key);
  req.max_response_bytes = max_bytes;
  req.what = absl::StrCat("GET ", What(key));
  absl::StatusOr<http::ClientResponse> r = transport_->Send(req);
  if (absl::IsResourceExhausted(r.status())) {
    return absl::ResourceExhaustedError(
        absl::StrCat(What(key), " is larger than ", max_bytes, " bytes"));
  }
  if (!r.ok()) return r.status();
  if (r->status != 200) return ErrorFromResponse(*r, req.what);
  return std::move(r->body);
}

absl::StatusOr<FileDigest> AzBlobStorage::HashObject(const std::string& key) {
  DS_RETURN_IF_ERROR(CheckReadableKey(key));
  DS_ASSIGN_OR_RETURN(BlobProps p, azblob::HeadBlob(*transport_, BlobPath(key), What(key)));
  return HashBlob(key, p);
}

absl::StatusOr<std::vector<ObjectInfo>> AzBlobStorage::ListTempObjects(const std::string& prefix) {
  // This backend never writes temp blobs (uncommitted blocks are invisible and expire by
  // themselves); this reports names that other writers or older versions left.
  std::vector<std::string> starts;
  if (prefix.empty()) {
    starts = {""};
  } else {
    DS_RETURN_IF_ERROR(ValidateRelativePath(prefix));
    starts.push_back(absl::StrCat(prefix, "/"));
    if (FirstComponent(prefix) != kReservedArea) starts.push_back(VersionsPrefix(prefix));
  }
  std::vector<ObjectInfo> out;
  for (const std::string& start : starts) {
    DS_RETURN_IF_ERROR(ListBlobs(*transport_, container_path_, start, list_page_size_, describe_,
                                 [&](const ListedBlob& b) {
                                   if (IsTempName(LastComponent(b.name))) out.push_back(b.info);
                                 }));
  }
  return out;
}

absl::Status AzBlobStorage::RemoveTempObject(const std::string& key) {
  if (!ValidateRelativePath(key).ok() || !IsTempName(LastComponent(key))) {
    return absl::InvalidArgumentError(absl::StrCat("not a temp object: ", key));
  }
  BlobRequest req;
  req.method = "DELETE";
  req.path = BlobPath(key);
  req.what = absl::StrCat("DELETE ", What(key));
  DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport_->Send(req));
  if (r.status == 202 || r.status == 200 || (r.status == 404 && ErrorCode(r) == "BlobNotFound")) {
    return absl::OkStatus();
  }
  return ErrorFromResponse(r, req.what);
}

absl::StatusOr<WriteGrant> AzBlobStorage::GrantWrite(const std::string& key,
                                                     const std::string& sha256,
                                                     std::chrono::seconds ttl) {
  DS_RETURN_IF_ERROR(ValidateWritableKey(key));
  DS_RETURN_IF_ERROR(CheckKeyHoldable(Features(), key));
  if (ttl.count() <= 0) return absl::InvalidArgumentError("write grant TTL must be positive");
  const std::string want = absl::AsciiStrToLower(sha256);
  WriteGrant grant;
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<BlobProps> existing = azblob::HeadBlob(*transport_, BlobPath(key), What(key));
    if (absl::IsNotFound(existing.status())) break;
    if (!existing.ok()) return existing.status();
    std::string old_sha = existing->sha256;
    if (old_sha.empty()) {
      absl::StatusOr<FileDigest> digest = HashBlob(key, *existing);
      if (!digest.ok()) return digest.status();
      old_sha = digest->sha256;
    }
    if (old_sha == want) {
      grant.already_present = true;
      break;
    }
    DS_ASSIGN_OR_RETURN(grant.kept_version, FindKeptVersion(key, old_sha));
    if (!grant.kept_version.empty()) break;
    absl::StatusOr<std::string> kept = KeepVersion(key, *existing, old_sha);
    if (absl::IsFailedPrecondition(kept.status()) && attempt + 1 < kCommitAttempts) continue;
    if (!kept.ok()) return kept.status();
    grant.kept_version = std::move(*kept);
    break;
  }
  const int64_t now = NowUnixSeconds();
  const int64_t expiry = now + ttl.count();
  DS_ASSIGN_OR_RETURN(std::string sas,
                      MakeBlobSas(account_, account_key_b64_, container_, key, "cw",
                                  now - kSasClockSkewSeconds, expiry, allow_http_));
  grant.url = absl::StrCat(origin_, BlobPath(key), "?", sas);
  grant.expires_unix_ms = expiry * 1000;
  return grant;
}

// A Shared Key transport for one-off calls of the helpers below.
absl::StatusOr<std::pair<Resolved, std::unique_ptr<Transport>>> HelperTransport(
    const AzBlobOptions& options) {
  DS_ASSIGN_OR_RETURN(Resolved r, Resolve(options));
  std::unique_ptr<Transport> t = azblob::MakeSharedKeyTransport(
      r.origin, options.account, r.raw_key, TransportOptionsFor(options));
  return std::make_pair(std::move(r), std::move(t));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Storage>> OpenAzBlobStorage(const AzBlobOptions& options) {
  DS_ASSIGN_OR_RETURN(auto helper, HelperTransport(options));
  auto& [resolved, transport] = helper;
  BlobRequest req;
  req.method = "HEAD";
  req.path = resolved.container_path;
  req.query = {{"restype", "container"}};
  req.what = absl::StrCat("open ", resolved.describe);
  DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport->Send(req));
  if (r.status == 404) {
    return absl::NotFoundError(
        absl::StrCat("container '", options.container, "' does not exist in ", resolved.describe));
  }
  if (r.status != 200) return ErrorFromResponse(r, req.what);
  return std::make_unique<AzBlobStorage>(std::move(resolved), options);
}

absl::Status CreateAzBlobContainer(const AzBlobOptions& options) {
  DS_ASSIGN_OR_RETURN(auto helper, HelperTransport(options));
  auto& [resolved, transport] = helper;
  BlobRequest req;
  req.method = "PUT";
  req.path = resolved.container_path;
  req.query = {{"restype", "container"}};
  req.what = absl::StrCat("create container ", resolved.describe);
  DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport->Send(req));
  if (r.status == 201) return absl::OkStatus();
  return ErrorFromResponse(r, req.what);
}

absl::Status PutAzBlobRaw(const AzBlobOptions& options, const std::string& name,
                          std::string_view content) {
  DS_ASSIGN_OR_RETURN(auto helper, HelperTransport(options));
  auto& [resolved, transport] = helper;
  BlobRequest req;
  req.method = "PUT";
  req.path = absl::StrCat(resolved.container_path, "/", azblob::EncodePath(name));
  req.headers = {{"x-ms-blob-type", "BlockBlob"}, {"Content-Type", "application/octet-stream"}};
  req.body = content.data();
  req.body_size = content.size();
  req.what = absl::StrCat("PUT BLOB ", resolved.describe, "/", name);
  DS_ASSIGN_OR_RETURN(http::ClientResponse r, transport->Send(req));
  if (r.status == 201) return absl::OkStatus();
  return ErrorFromResponse(r, req.what);
}

absl::StatusOr<std::vector<std::string>> ListAzBlobNames(const AzBlobOptions& options,
                                                         const std::string& prefix) {
  DS_ASSIGN_OR_RETURN(auto helper, HelperTransport(options));
  auto& [resolved, transport] = helper;
  std::vector<std::string> out;
  DS_RETURN_IF_ERROR(ListBlobs(*transport, resolved.container_path, prefix, options.list_page_size,
                               resolved.describe,
                               [&](const ListedBlob& b) { out.push_back(b.name); }));
  return out;
}

}  // namespace ds
