// Service SAS for single blobs, and the upload an agent does with one.
//
// The server (which holds the account key) signs a short-lived SAS for exactly one blob with
// MakeBlobSas (or Storage::GrantWrite); the agent (which holds no key) uploads with
// PutFileWithSas. A write-only SAS (sp=cw) can stage blocks and commit, but cannot read, list or
// copy: keeping the replaced version aside is therefore the server's job, done before it signs
// (Storage::GrantWrite does it), never PutFileWithSas's.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <string_view>

#include "storage/storage.h"

namespace ds {

// The query string (no leading '?') of a service SAS for blob `blob` (the key, unencoded) in
// `container`: sv=2021-08-06, sr=b, sp=`permissions`, st/se, spr=https (spr=https,http when
// `allow_http`, for Azurite), sig. `account_key` is the base64 Shared Key. `permissions` is a
// subsequence of "racwd" in that order ("cw" to upload, "rcw" to also let the holder resume
// across processes and verify, "r" to read). `start_unix_s` 0 omits st (valid at once).
// Errors: InvalidArgument (permissions, key not base64, expiry not after start).
[[nodiscard]] absl::StatusOr<std::string> MakeBlobSas(
    std::string_view account, std::string_view account_key, std::string_view container,
    std::string_view blob, std::string_view permissions, int64_t start_unix_s,
    int64_t expiry_unix_s, bool allow_http = false);

// Counters of one PutFileWithSas call (for logs and tests).
struct SasPutStats {
  int blocks_total = 0;           // blocks of the file; 0 when it went in one Put Blob
  int blocks_uploaded = 0;        // Put Block requests that succeeded in this call
  int blocks_already_staged = 0;  // skipped: staged by an earlier call (needs 'r' in the SAS)
  int sas_renewals = 0;           // renew_sas() calls that produced a new SAS
  int max_blocks_in_flight = 0;   // most blocks staged at once (options.block_parallelism)
};

// What a caller remembers about blocks it staged, so that a later PutFileWithSas (after a
// restart: the process that staged them is gone) skips them although its write-only SAS cannot
// list them. Ids are content-derived, so a remembered id never stands for other bytes; if the
// service no longer holds one (a week passed, or another commit discarded them), the commit is
// refused and the upload is done again in full. All three are called from upload threads.
struct StagedBlockMemory {
  std::function<std::set<std::string>()> recall;        // ids staged earlier for this blob+content
  std::function<void(const std::string& block_id)> remember;  // the service accepted this block
  std::function<void()> forget;                          // committed, or the memory proved stale
};

// Uploads the local file `source` to the blob at `blob_url_with_sas`
// (https://HOST/[ACCOUNT/]CONTAINER/BLOB?<SAS>), with the same semantics as Storage::PutFile
// except keeping versions: nothing is visible before the commit; blocks of `block_size` bytes
// (a file up to block_size goes in one Put Blob) with deterministic, content-derived ids; the
// SHA-256 is computed from the bytes read while uploading; mismatch with
// options.expected_sha256 → Aborted and nothing committed; options.cancel → Cancelled; commit
// carries metadata sha256 + mtime_ns and overwrites whatever is there.
//
// When a request is refused with 403 (the SAS expired, typically mid-upload) and `renew_sas`
// is set, it is called for a fresh URL to the same blob and the upload resumes where it
// stopped: blocks already staged are not sent again. After two renewals in a row that do not
// help, the 403 stands (PermissionDenied). A failing renew_sas() ends the upload with its error.
// When the SAS grants 'r', blocks staged by an earlier call (another process) are found with
// Get Block List and skipped, and options.verify compares size and metadata with a HEAD after
// the commit; with a write-only SAS, verification is the service's per-request Content-MD5
// check of every block plus the successful commit (the server can Stat() later).
// PutResult.info.key is the blob name from the URL; kept_version is always empty.
// Errors: as Storage::PutFile, plus InvalidArgument (URL), PermissionDenied (SAS refused),
// FailedPrecondition (renew_sas returned a URL for another blob).
[[nodiscard]] absl::StatusOr<PutResult> PutFileWithSas(
    const std::string& blob_url_with_sas, const std::filesystem::path& source,
    const PutOptions& options, size_t block_size = 8 << 20,
    std::function<absl::StatusOr<std::string>()> renew_sas = nullptr, SasPutStats* stats = nullptr,
    const StagedBlockMemory* memory = nullptr);

}  // namespace ds
