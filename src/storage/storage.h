// The storage interface: where measurement files land. One folder per backend (dir/, azblob/);
// only OpenStorage() knows them all. Every backend passes the conformance suite in
// storage_conformance_test.cc.
//
// Keys are '/'-separated relative paths validated by ValidateRelativePath. Names under the
// reserved top-level area ".datasync/" (versions kept aside, temp files) are never listed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "common/rate_limiter.h"
#include "common/status.h"
#include "platform/file.h"

namespace ds {

// Parsed storage URL.
//   file:///abs/dir            → scheme "file", path "/abs/dir"
//   azblob://ACCOUNT/CONTAINER → scheme "azblob", account, container, endpoint
//     ?endpoint=URL overrides the default https://ACCOUNT.blob.core.windows.net; an endpoint
//     with a path is path-style (Azurite: http://127.0.0.1:10000/devstoreaccount1).
struct StorageUrl {
  std::string scheme;
  std::string path;       // file: the absolute directory
  std::string account;    // azblob: storage account name
  std::string container;  // azblob: container name
  std::string endpoint;   // azblob: blob service URL, no trailing '/'
  std::string text;       // normalised, for display (contains no secrets)
};
// Accepts file:///ABS, a plain absolute/relative directory (made absolute), or
// azblob://ACCOUNT/CONTAINER[?endpoint=URL] (no other query parameters: keys never go in the
// URL). InvalidArgument else.
[[nodiscard]] absl::StatusOr<StorageUrl> ParseStorageUrl(std::string_view text);

// Secrets a backend may need besides its URL. Never logged, never part of an error message.
struct StorageCredentials {
  std::string account_key;  // azblob: the account's Shared Key, base64 as the portal shows it
};

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;       // bytes
  int64_t mtime_ns = 0;    // Unix nanoseconds (the source file's mtime when we wrote it)
  std::string sha256;      // from stored metadata; empty when the backend has none for it
};

struct PutOptions {
  std::string expected_sha256;   // the manifest's hash; the copy fails if the bytes differ
  int64_t mtime_ns = 0;          // stored as the object's mtime/metadata
  std::string run_id;            // correlation id, used in temp names
  uint64_t max_bytes_per_second = 0;  // this upload alone; 0 = unlimited
  // Shared by concurrent uploads (an agent-wide cap); not owned; null = none.
  RateLimiter* rate_limiter = nullptr;
  // Object storage: blocks of one file in flight at once (each holds a block in memory).
  int block_parallelism = 4;
  const std::atomic<bool>* cancel = nullptr;  // checked between chunks; Cancelled when set
  // Re-read what landed (after dropping it from the page cache) and compare size + SHA-256.
  // Off by default: the SHA-256 is computed over the very bytes written, so a re-read only
  // catches storage that corrupts data after accepting it (agent option --verify-readback).
  bool verify = false;
  // The source already open (the agent's OpenScannedFile: checked to be what its scan saw), read
  // from offset 0 through a duplicate handle; not closed; must outlive the put. Null: the backend
  // opens the `source` path itself.
  const platform::File* source_file = nullptr;
};

// How StagePutFd stages: options only the directory backend understands (others ignore them).
struct StageFdOptions {
  // Stage only as an unnamed file, which a crash cannot leave behind (no journal entry needed).
  // AlreadyExists when a file is under the key (replacing takes a named temp file),
  // FailedPrecondition when the filesystem cannot (no O_TMPFILE, no group flush),
  // ResourceExhausted when the budget of open unnamed files is used up. Nothing is written then.
  bool unnamed_only = false;
  // With unnamed_only: stage unnamed even when an object is under the key. CommitPuts then gives
  // the copy a temp name for a moment (linked, then renamed over the object, which is kept as a
  // version first), so a caller that journals in-flight temp names marks the put before it
  // commits it. For an agent's changed files, where an object under the key is expected.
  bool replace_unnamed = false;
};

// The file a backend reads a put's source through: a duplicate of options.source_file (rewound
// to offset 0) or `source` opened read-only. Every backend's PutFile/StagePut opens its source
// here.
[[nodiscard]] absl::StatusOr<platform::File> OpenPutSourceFile(const std::filesystem::path& source,
                                                               const PutOptions& options);

struct PutResult {
  ObjectInfo info;               // what now sits under the key
  std::string kept_version;      // key (under .datasync/versions/) of the replaced object, if any
};

// A put written by Storage::StagePut but not yet durable nor visible under its key. Destroying
// one that was not committed removes what it wrote.
class StagedPut {
 public:
  virtual ~StagedPut() = default;
  virtual const std::string& key() const = 0;
  virtual uint64_t bytes() const = 0;  // content bytes written
  // SHA-256 (lowercase hex) of the content written; empty when the backend does not know it yet.
  virtual std::string sha256() const { return ""; }
};

// A short-lived credential letting a process that holds no storage secret (an agent) write
// exactly one object. The URL is a secret until it expires: never log it.
struct WriteGrant {
  std::string url;               // azblob: the blob URL with a write-only (sp=cw) service SAS
  int64_t expires_unix_ms = 0;   // Unix milliseconds
  std::string kept_version;      // the object the grant may overwrite was kept here first
  bool already_present = false;  // the object under the key already has the requested SHA-256
};

// What a backend can hold and do, found out once when it is opened (a directory backend probes
// the filesystem or share under its root). Callers ask this instead of guessing from the URL.
struct StorageFeatures {
  // What the backend does, whatever the filesystem or account under it (AdvertisedFeatures knows
  // these for a URL without opening it):
  // A process that holds no storage secret (an agent) opens and writes the storage itself
  // (a directory or share); false: it writes only with the server's WriteGrants, if any.
  bool direct_writes = false;
  bool write_grants = false;    // GrantWrite hands out per-object WriteGrants (object storage)
  bool stages_from_fd = false;  // StagePutFd works (else: Unimplemented)
  // An object is replaced under its key in one step: a reader sees the old or the new content,
  // never a mix nor no object in between.
  bool atomic_replace = false;

  // What the storage under it holds (a directory backend probes its filesystem or share):
  // Names that differ only in case are one object (SMB shares, NTFS, Azure Files). Keys that fold
  // to the same name (FoldedKey) are never written over each other.
  bool case_insensitive = false;
  // The destination cannot hold the names Windows and SMB refuse: reserved device names (CON,
  // aux.txt, COM1, ...), a trailing dot or space, control characters and \ : * ? " < > |.
  bool windows_names = false;
  // Object metadata (SHA-256, source mtime) rides on the object itself (xattrs, blob metadata);
  // false: a directory backend keeps it in sidecar records under the reserved area instead.
  bool metadata_on_object = true;
  bool unnamed_files = false;  // directory: staging into unnamed O_TMPFILE files works
  bool hard_links = false;     // directory: versions are kept by hard link (else by copy)
  // The destination keeps an object's mtime to this many nanoseconds (1: exactly; 1e9: whole
  // seconds); 0: it does not keep mtimes at all (the recorded source mtime is in the metadata).
  int64_t mtime_precision_ns = 1;
  size_t max_name_bytes = 255;   // one key component, UTF-8 bytes
  size_t max_key_bytes = 4096;   // a whole key below the storage root, UTF-8 bytes
};

// What a backend for `url`'s scheme does (direct_writes, write_grants, stages_from_fd,
// atomic_replace; the rest as StorageFeatures' defaults), known without any I/O nor credentials:
// for a caller that cannot or need not open the storage (an agent holds no azblob key). An
// opened backend's Features() agree on these four. All false for an unknown scheme.
[[nodiscard]] StorageFeatures AdvertisedFeatures(const StorageUrl& url);

// The form under which a destination identifies `key`: the key itself where names are case
// sensitive; where not, its simple Unicode case fold (upper case, as NTFS and SMB compare), so
// that two keys with one folded form are the same object.
[[nodiscard]] std::string FoldedKey(const StorageFeatures& features, std::string_view key);

// OK when the destination can hold `key` under exactly this name. InvalidArgument otherwise,
// naming the reason ("'aux.txt' is a reserved device name on Windows/SMB shares"), marked as a
// name refusal (IsNameRefusal): the file is skipped, the storage is fine.
[[nodiscard]] absl::Status CheckKeyHoldable(const StorageFeatures& features, std::string_view key);

// True when the status refuses one object because of its name (CheckKeyHoldable, or a case-fold
// collision with another object): the caller counts that file as skipped, with the message as
// its reason, and goes on with the rest.
[[nodiscard]] bool IsNameRefusal(const absl::Status& status);
// Marks an InvalidArgument/AlreadyExists status as a name refusal.
[[nodiscard]] absl::Status NameRefusal(absl::Status status);

// True when two mtimes (Unix ns) are the same at the precision the destination keeps; always
// true when it keeps none (mtime_precision_ns == 0).
[[nodiscard]] bool SameMtimeAt(const StorageFeatures& features, int64_t a_ns, int64_t b_ns);

// Thread-safe: one instance may serve concurrent calls for different keys.
class Storage {
 public:
  virtual ~Storage() = default;

  // Copies the local file `source` to `key` atomically: nothing appears under `key` until the
  // whole content is written, flushed and (with verify) checked. The SHA-256 is computed from the
  // bytes read during the copy. If an object with different content already exists under `key`,
  // it is kept under the versions area first (never silently overwritten); identical content is
  // left in place. Errors: Aborted (source changed: hash or size differs from expected),
  // Cancelled, NotFound (source), PermissionDenied, ResourceExhausted, DataLoss (verify failed),
  // Unavailable (storage not reachable).
  [[nodiscard]] virtual absl::StatusOr<PutResult> PutFile(const std::string& key,
                                                          const std::filesystem::path& source,
                                                          const PutOptions& options) = 0;

  // Group commit: the first half of PutFile (copy to a temp object while hashing, check against
  // the expected hash and size, set metadata), leaving the content invisible under `key` until
  // CommitPuts. Same errors as PutFile. Thread-safe. The default runs the whole PutFile here.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<StagedPut>> StagePut(
      const std::string& key, const std::filesystem::path& source, const PutOptions& options);
  // StagePut from a source the caller has open (`source`, read from offset 0 to its end through
  // a duplicate handle; stays the caller's; `source_desc` names it in errors), so that a scan can copy a file it opened
  // while it hashes it: each byte read once. `stage` says how (StageFdOptions). Only where
  // Features().stages_from_fd; the default: Unimplemented.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<StagedPut>> StagePutFd(
      const std::string& key, const platform::File& source, const std::string& source_desc,
      const PutOptions& options, const StageFdOptions& stage);
  // Makes every staged put durable, then moves each under its key (keeping a differing object
  // as a version, as PutFile does), then makes the renames durable; one result per input, in
  // order. A result is OK only when its object is durable under its key: a crash at any point
  // leaves either the previous object or the complete new one under the key, never a partial
  // one. Directory backend: two filesystem flushes per call (syncfs on local filesystems) instead
  // of a file fsync and a directory fsync per file.
  [[nodiscard]] virtual std::vector<absl::StatusOr<PutResult>> CommitPuts(
      std::vector<std::unique_ptr<StagedPut>> staged);

  // NotFound when absent.
  [[nodiscard]] virtual absl::StatusOr<ObjectInfo> Stat(const std::string& key) = 0;

  // Calls `fn` for every object whose key starts with `prefix` + "/" (all objects when `prefix`
  // is empty), in no particular order, excluding the reserved area and temp files.
  [[nodiscard]] virtual absl::Status List(const std::string& prefix,
                                          const std::function<void(const ObjectInfo&)>& fn) = 0;

  // Reads a whole object (tests, verification, small files). ResourceExhausted over max_bytes.
  [[nodiscard]] virtual absl::StatusOr<std::string> ReadAll(const std::string& key,
                                                            size_t max_bytes) = 0;

  // SHA-256 and size of the stored bytes, read in full (reconcile --verify). NotFound when absent.
  // The default reads the object into memory; backends override it to stream.
  [[nodiscard]] virtual absl::StatusOr<FileDigest> HashObject(const std::string& key);

  // Leftovers of interrupted uploads under `prefix` (key = the temp object's own key; includes
  // uploads still in flight: callers judge staleness by mtime_ns). Default: none.
  [[nodiscard]] virtual absl::StatusOr<std::vector<ObjectInfo>> ListTempObjects(
      const std::string& prefix);
  // Deletes one object listed by ListTempObjects. InvalidArgument for anything else.
  [[nodiscard]] virtual absl::Status RemoveTempObject(const std::string& key);

  // Drops the SHA-256 the backend keeps about the object under `key` (xattr, sidecar record,
  // blob metadata), leaving its bytes untouched: for a scrub that found the bytes no longer
  // match it, so that the next put under the key hashes them instead of taking them for the
  // content it writes (and keeps them as a version). OK when there is none; NotFound when no
  // object is under the key; Unimplemented where the backend keeps no such record.
  [[nodiscard]] virtual absl::Status ForgetContentHash(const std::string& key);

  // Records `sha256` (which the caller just hashed) as the content hash of the object `listed`,
  // an entry of List() that came without one (ObjectInfo::sha256 empty: no metadata, or a record
  // that no longer matches the object's size and mtime). Only while the object still has the
  // listed size and mtime (FailedPrecondition otherwise; nothing written). A stale record with
  // this very hash and size (the share moved the mtime, not the content) gives back its source
  // mtime, and the object gets that mtime again. So a later index recovery takes the hash from
  // storage instead of reading the object. Unimplemented where the backend keeps such records
  // only from its own puts.
  [[nodiscard]] virtual absl::Status RecordContentHash(const ObjectInfo& listed,
                                                       const std::string& sha256);

  // Removes what an interrupted PutFile(key, .., {run_id}) may have left (its temp object), after a
  // crash. Never touches the object under `key`. OK when there is nothing to remove.
  [[nodiscard]] virtual absl::Status AbandonUpload(const std::string& key,
                                                   const std::string& run_id);

  // Human-readable location for messages.
  virtual std::string Describe() const = 0;

  // What this storage can hold and do (see StorageFeatures). Constant after opening.
  virtual const StorageFeatures& Features() const = 0;

  // Optional ability of object stores whose writers hold no account secret: a grant to write
  // `key` for `ttl`. Because the grant holder can only overwrite (it cannot read or copy), an
  // object already under `key` whose SHA-256 is not `sha256` (or unknown) is first kept under
  // the versions area (reported in kept_version; an identical version kept earlier is reused).
  // Errors: InvalidArgument (key), the errors of Stat(), Unimplemented for backends that the
  // writer reaches directly (dir: the agent writes to the share itself).
  [[nodiscard]] virtual absl::StatusOr<WriteGrant> GrantWrite(const std::string& key,
                                                              const std::string& sha256,
                                                              std::chrono::seconds ttl) {
    return absl::UnimplementedError(Describe() + " does not hand out write grants");
  }
};

// The one place that knows every backend. azblob needs credentials.account_key
// (FailedPrecondition without one); the first overload passes none.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Storage>> OpenStorage(const StorageUrl& url);
[[nodiscard]] absl::StatusOr<std::unique_ptr<Storage>> OpenStorage(
    const StorageUrl& url, const StorageCredentials& credentials);

// Name of the reserved top-level area and the prefix of in-flight temp files.
inline constexpr std::string_view kReservedArea = ".datasync";
inline constexpr std::string_view kTempPrefix = ".dstmp-";
// Where earlier versions of an object are kept, under the reserved area: .datasync/versions/.
inline constexpr std::string_view kVersionsDir = "versions";
// True when a key's last component `name` is an in-flight temp file's.
inline bool IsTempName(std::string_view name) { return name.starts_with(kTempPrefix); }
// Top-level area of server-side files (agent releases): releases/<version>/<file>. Ordinary
// objects to the storage backends; jobs may not write under it (the server refuses such a
// destination prefix).
inline constexpr std::string_view kReleasesArea = "releases";

// OK iff PutFile may write `key`: a valid relative path (ValidateRelativePath) outside the
// reserved area whose last component is not a temp name. InvalidArgument otherwise.
[[nodiscard]] absl::Status ValidateWritableKey(const std::string& key);

}  // namespace ds
