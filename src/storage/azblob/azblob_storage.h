// Azure Blob backend: one container of a storage account, spoken to over the Blob service REST
// API with Shared Key (account key) authorisation, through the project's libcurl wrapper.
// The agent side, which holds no key, uploads with a per-blob SAS: see sas.h.
//
// Layout in the container (keys map 1:1 to blob names):
//   <key>                                           the object, a block blob
//   .datasync/versions/<key>/<UTC>-<sha12>[-N]      replaced objects kept aside (Copy Blob)
// Metadata on every object we write: x-ms-meta-sha256 (lowercase hex of the content) and
// x-ms-meta-mtime_ns (the source file's mtime, decimal Unix nanoseconds). Blobs written by other
// tools have no sha256 (ObjectInfo::sha256 empty) and their Last-Modified as mtime.
//
// Atomicity: a file larger than the block size is staged with Put Block (invisible, with
// deterministic, content-derived block ids) and appears only with Put Block List; a smaller one
// goes in one Put Blob. A failed, aborted or cancelled put leaves at most uncommitted blocks,
// which are never listed and which the service discards after a week. There are no temp blobs.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/storage.h"

namespace ds {

struct AzBlobOptions {
  std::string account;    // storage account name
  std::string container;  // must exist (OpenAzBlobStorage does not create it)
  // Blob service URL; "" = https://ACCOUNT.blob.core.windows.net. With a path it is path-style
  // (Azurite: http://127.0.0.1:10000/devstoreaccount1).
  std::string endpoint;
  std::string account_key;      // base64 Shared Key; never logged, never in a message
  size_t block_size = 8 << 20;  // bytes per Put Block; files up to this size use one Put Blob
  int list_page_size = 0;       // List Blobs maxresults; 0 = the service's default (5000)
  std::chrono::milliseconds connect_timeout{10'000};
  // Per request; uploads get extra time for their body (at least 32 KiB/s).
  std::chrono::milliseconds request_timeout{120'000};
  std::string ca_file;  // extra CA bundle; "" = system
};

// Opens the container, checking that it exists and that the key is accepted (one HEAD).
// Errors: InvalidArgument (names, endpoint, key not base64, block size), NotFound (no such
// container), PermissionDenied (key refused), Unavailable (service not reachable).
[[nodiscard]] absl::StatusOr<std::unique_ptr<Storage>> OpenAzBlobStorage(
    const AzBlobOptions& options);

// --- Provisioning and test helpers (account key required; not part of Storage) ---

// Creates the container. AlreadyExists when it exists.
[[nodiscard]] absl::Status CreateAzBlobContainer(const AzBlobOptions& options);

// Writes `content` to blob `name` with one Put Blob, no metadata and no checks on the name:
// plants what another tool or a crash could leave. Test use only.
[[nodiscard]] absl::Status PutAzBlobRaw(const AzBlobOptions& options, const std::string& name,
                                        std::string_view content);

// Names of every committed blob whose name starts with `prefix` (raw, nothing hidden).
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ListAzBlobNames(const AzBlobOptions& options,
                                                                       const std::string& prefix);

}  // namespace ds
