// Directory / mounted-share backend. See dir_storage.h for the on-disk layout.
//
// Every operation opens the root by path and then walks the key's directories one component at a
// time without following links (platform::Directory::OpenDirectory), so nothing is written or read
// through a symlink and a share that was (re)mounted after OpenDirStorage() is used as it is now.
// All writes go to a temp file in the destination directory and reach their final name only by
// rename(), after fsync and (optionally) verification: a final name never holds partial content.
#include "storage/dir/dir_storage.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mutex.h"
#include "common/paths.h"
#include "common/time_util.h"
#include "platform/dir_extra.h"
#include "platform/directory.h"
#include "platform/error.h"
#include "platform/file.h"
#include "storage/dir/dir_errors.h"
#include "storage/dir/dir_names.h"
#include "storage/dir/dir_probe.h"
#include "storage/dir/dir_sidecar.h"

namespace ds {
namespace {

// Copy chunk: 128 KiB stays in L2 between read, hash and write. dd of 512 MiB into the page
// cache here: 0.17-0.18 s system time with 128 KiB chunks, 0.19-0.29 s with 1 MiB (cp's
// copy_file_range 0.17 s).
constexpr size_t kCopyBufferBytes = 128 << 10;
constexpr uint64_t kEarlyWritebackBytes = 256 << 10;
constexpr size_t kMinPacedChunkBytes = 64 << 10;
constexpr auto kMaxPacingSleep = std::chrono::milliseconds(50);
// Object metadata, one attribute (xattr user.datasync.meta): version byte 1, the SHA-256 (32
// bytes), the recorded mtime (Unix ns, int64 little-endian): 41 bytes. Small enough to live inside
// a 256-byte ext4 inode; the two text xattrs written before (below, still read) needed an extra 4
// KiB block per file.
constexpr char kXattrMeta[] = "datasync.meta";  // platform attribute names: "user." added
constexpr size_t kMetaBytes = 1 + 32 + 8;
constexpr unsigned char kMetaVersion = 1;
// Version 2 appends the source's mtime (int64 LE) where the share did not keep it exactly.
constexpr size_t kMetaBytesV2 = kMetaBytes + 8;
constexpr unsigned char kMetaVersion2 = 2;
constexpr char kXattrSha256[] = "datasync.sha256";     // older objects: lowercase hex
constexpr char kXattrMtimeNs[] = "datasync.mtime_ns";  // older objects: decimal Unix ns
constexpr int kTempNameAttempts = 8;
constexpr int kMtimeWarnings = 10;  // shares that do not keep mtimes: objects named in the log

using platform::Directory;
using platform::File;
using platform::FileInfo;
using platform::FileType;

// Removes / renames (replacing) within `dir`, retried while another SMB client holds the file
// open.
absl::Status UnlinkRetrying(const Directory& dir, const std::string& name) {
  return RetryWhileBusy([&] { return dir.RemoveAt(name); });
}
absl::Status RenameRetrying(const Directory& dir, const std::string& from, const std::string& to) {
  return RetryWhileBusy([&] { return dir.RenameAt(from, dir, to, platform::Replace::kYes); });
}

// Removes `name` in directory `dir` on destruction unless Release()d.
// REQUIRES: `dir` outlives the guard.
class TempFileGuard {
 public:
  TempFileGuard(const Directory& dir, std::string name) : dir_(dir), name_(std::move(name)) {}
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  ~TempFileGuard() {
    if (!name_.empty()) (void)UnlinkRetrying(dir_, name_);
  }
  void Release() { name_.clear(); }

 private:
  const Directory& dir_;
  std::string name_;
};

// A File opened read-only on `name` in `dir`, links not followed, without waiting for a FIFO's
// writer (one put in the file's place does not hang us; callers check the type with Info()).
absl::StatusOr<File> OpenNonBlocking(const Directory& dir, const std::string& name) {
  platform::OpenOptions options;
  options.non_blocking = true;
  return dir.OpenFile(name, options);
}

std::vector<std::string_view> SplitKey(std::string_view key) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t end = key.find('/', start);
    if (end == std::string_view::npos) {
      out.push_back(key.substr(start));
      return out;
    }
    out.push_back(key.substr(start, end - start));
    start = end + 1;
  }
}

// A key PutFile may write: valid, outside the reserved area, not named like a temp file.
absl::Status ValidateWritableKey(const std::string& key) {
  DS_RETURN_IF_ERROR(ValidateRelativePath(key));
  std::vector<std::string_view> parts = SplitKey(key);
  if (parts.front() == kReservedArea) {
    return absl::InvalidArgumentError(
        absl::StrCat("key '", key, "' is inside the reserved area ", std::string(kReservedArea)));
  }
  if (IsTempName(parts.back())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key '", key, "' has a name reserved for temp files (", std::string(kTempPrefix), "*)"));
  }
  return absl::OkStatus();
}

// Opens the storage root. Unavailable when it is missing or unreachable (e.g. share unmounted).
absl::StatusOr<Directory> OpenRoot(const std::string& root) {
  absl::StatusOr<Directory> dir = Directory::Open(root);
  if (absl::IsNotFound(dir.status()) || platform::IsUnreachable(dir.status())) {
    return absl::UnavailableError(
        absl::StrCat("storage root ", root, " is not reachable: ", dir.status().message()));
  }
  return dir;
}

// Opens the directory base/parts[0]/.../parts[n-1] without following symlinks; n == 0 opens
// `base` again. With `create`, missing directories are made (mode 0755 before umask) and their
// parent flushed (unless !sync_new: the caller flushes the whole filesystem later).
// Errors: NotFound (missing, !create), FailedPrecondition (a component is a file or a symlink).
absl::StatusOr<Directory> OpenDirChain(const Directory& base,
                                       const std::vector<std::string_view>& parts, size_t n,
                                       bool create, bool sync_new = true) {
  if (n == 0) {
    absl::StatusOr<Directory> again = base.OpenDirectory(".");
    if (!again.ok()) return StorageError(again.status());
    return again;
  }
  Directory dir;
  const Directory* parent = &base;
  for (size_t i = 0; i < n; ++i) {
    const std::string name(parts[i]);
    for (int attempt = 0;; ++attempt) {
      absl::StatusOr<Directory> child = parent->OpenDirectory(name);
      if (child.ok()) {
        dir = *std::move(child);
        break;
      }
      const platform::ErrorKind kind = platform::KindOf(child.status());
      const bool in_the_way =
          kind == platform::ErrorKind::kNotDirectory || kind == platform::ErrorKind::kIsLink;
      const std::string child_path = absl::StrCat(parent->display_path(), "/", name);
      if (absl::IsNotFound(child.status()) && !in_the_way && create && attempt < 2) {
        if (absl::Status made = parent->MakeDirAt(name); made.ok()) {
          if (sync_new) DS_RETURN_IF_ERROR(StorageError(parent->Flush()));  // the new entry durable
        } else if (!absl::IsAlreadyExists(made)) {
          return StorageError(made);
        }
        continue;
      }
      if (in_the_way) {
        return absl::FailedPreconditionError(
            absl::StrCat(child_path, " is not a directory (a file or a symlink is in the way)"));
      }
      if (absl::IsNotFound(child.status())) {
        return absl::NotFoundError(absl::StrCat(child_path, " does not exist"));
      }
      return StorageError(child.status());
    }
    parent = &dir;
  }
  return dir;
}

struct CopyOutcome {
  uint64_t bytes = 0;  // bytes copied
  std::string sha256;  // of exactly those bytes, lowercase hex
};

// Copies `src` from offset 0 (ReadAt: its file position is neither used nor moved) to EOF, or to
// `size` bytes when the caller knows the size from Info() (saving the read that finds EOF; the
// caller's Info() after the copy then shows any growth), to `dst`, hashing the bytes as they
// are read. Paces to `max_bytes_per_second` (0 = unlimited) and to the shared `limiter` (may be
// null), and checks `cancel` between chunks.
absl::StatusOr<CopyOutcome> CopyAndHash(const File& src, File& dst, const std::atomic<bool>* cancel,
                                        uint64_t max_bytes_per_second, RateLimiter* limiter,
                                        const std::string& src_desc, const std::string& dst_desc,
                                        std::optional<uint64_t> size = std::nullopt) {
  // A paced copy uses smaller chunks so that pacing is smooth and cancel is noticed promptly.
  size_t chunk = kCopyBufferBytes;
  if (limiter != nullptr) chunk = kMinPacedChunkBytes;
  if (max_bytes_per_second > 0) {
    chunk = static_cast<size_t>(
        std::clamp<uint64_t>(max_bytes_per_second / 8, kMinPacedChunkBytes, kCopyBufferBytes));
  }
  // One buffer per thread, reused: a fresh zeroed 1 MiB per file costs more than copying a
  // small file.
  thread_local std::unique_ptr<char[]> tl_buf(new char[kCopyBufferBytes]);
  std::span<char> buf(tl_buf.get(), chunk);
  Sha256 hash;
  CopyOutcome out;
  const auto start = std::chrono::steady_clock::now();
  while (!size || out.bytes < *size) {
    if (IsCancelled(cancel)) {
      return absl::CancelledError(absl::StrCat("copy to ", dst_desc, " cancelled"));
    }
    // With a known size, no more than is left: the last read then ends at the size, not at a
    // read that finds EOF.
    const size_t want =
        size ? static_cast<size_t>(std::min<uint64_t>(buf.size(), *size - out.bytes)) : buf.size();
    absl::StatusOr<size_t> read = src.ReadAt(out.bytes, absl::MakeSpan(buf.data(), want));
    if (!read.ok()) return platform::WithContext(read.status(), absl::StrCat("read ", src_desc));
    const size_t n = *read;
    if (n == 0) break;
    hash.Update(buf.data(), n);
    if (absl::Status st = dst.WriteAll(std::string_view(buf.data(), n)); !st.ok()) {
      return StorageError(platform::WithContext(st, absl::StrCat("write ", dst_desc)));
    }
    out.bytes += n;
    if (limiter != nullptr && !limiter->Acquire(static_cast<uint64_t>(n), cancel)) {
      return absl::CancelledError(absl::StrCat("copy to ", dst_desc, " cancelled"));
    }
    if (max_bytes_per_second > 0) {
      const auto due =
          start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(static_cast<double>(out.bytes) /
                                                    static_cast<double>(max_bytes_per_second)));
      for (auto now = std::chrono::steady_clock::now(); now < due;
           now = std::chrono::steady_clock::now()) {
        if (IsCancelled(cancel)) {
          return absl::CancelledError(absl::StrCat("copy to ", dst_desc, " cancelled"));
        }
        std::this_thread::sleep_for(
            std::min<std::chrono::steady_clock::duration>(due - now, kMaxPacingSleep));
      }
    }
  }
  out.sha256 = hash.FinishHex();
  return out;
}

// Hashes `file` from offset 0 to EOF.
absl::StatusOr<FileDigest> HashFile(const File& file, const std::string& desc) {
  file.AdviseSequential();
  thread_local std::unique_ptr<char[]> tl_buf(new char[kCopyBufferBytes]);
  std::span<char> buf(tl_buf.get(), kCopyBufferBytes);
  Sha256 hash;
  FileDigest out;
  for (;;) {
    absl::StatusOr<size_t> read = file.ReadAt(out.size, absl::MakeSpan(buf.data(), buf.size()));
    if (!read.ok())
      return StorageError(platform::WithContext(read.status(), absl::StrCat("read ", desc)));
    hash.Update(buf.data(), *read);
    out.size += *read;
    if (*read < buf.size()) break;  // ReadAt fills the buffer unless it reached EOF
  }
  out.sha256 = hash.FinishHex();
  return out;
}

// The compact metadata value for `sha256` (lowercase hex), the object's `stored_ns` mtime and the
// source's `source_ns` mtime: version 1 (41 bytes) when they are equal, else version 2 (49 bytes,
// the source mtime appended). Empty when `sha256` is not 64 hex digits.
std::string EncodeMeta(const std::string& sha256, int64_t stored_ns, int64_t source_ns) {
  if (sha256.size() != 64) return "";
  const bool v2 = stored_ns != source_ns;
  std::string out(v2 ? kMetaBytesV2 : kMetaBytes, '\0');
  out[0] = static_cast<char>(v2 ? kMetaVersion2 : kMetaVersion);
  auto nibble = [](char c) {
    return absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10;
  };
  for (size_t i = 0; i < 32; ++i) {
    const char hi = sha256[2 * i], lo = sha256[2 * i + 1];
    if (!absl::ascii_isxdigit(hi) || !absl::ascii_isxdigit(lo)) return "";
    out[1 + i] = static_cast<char>((nibble(hi) << 4) | nibble(lo));
  }
  auto put64 = [&out](size_t at, int64_t v) {
    const uint64_t m = static_cast<uint64_t>(v);
    for (size_t i = 0; i < 8; ++i) out[at + i] = static_cast<char>((m >> (8 * i)) & 0xff);
  };
  put64(33, stored_ns);
  if (v2) put64(41, source_ns);
  return out;
}

int64_t Get64(const unsigned char* p) {
  uint64_t m = 0;
  for (size_t i = 0; i < 8; ++i) m |= static_cast<uint64_t>(p[i]) << (8 * i);
  return static_cast<int64_t>(m);
}

// What trusted metadata says of an object.
struct TrustedMeta {
  std::string sha256;           // lowercase hex
  int64_t source_mtime_ns = 0;  // the source file's mtime (Unix ns)
};

// The stored metadata if it is present and still describes the file: its recorded mtime equals
// `mtime_ns`, the file's current one (an in-place edit changes the mtime, making the hash stale).
// `get(name)` reads the file's attribute `name` (absl::StatusOr<std::string>). Reads the compact
// attribute, else the two text attributes of objects written before it.
template <typename GetAttribute>
std::optional<TrustedMeta> XattrMeta(int64_t mtime_ns, GetAttribute get) {
  if (absl::StatusOr<std::string> meta = get(kXattrMeta); meta.ok()) {
    const auto* m = reinterpret_cast<const unsigned char*>(meta->data());
    const bool v1 = meta->size() == kMetaBytes && m[0] == kMetaVersion;
    const bool v2 = meta->size() == kMetaBytesV2 && m[0] == kMetaVersion2;
    if (!v1 && !v2) return std::nullopt;  // present but not ours to read (a later version)
    const int64_t stored = Get64(m + 33);
    if (stored != mtime_ns) return std::nullopt;
    return TrustedMeta{HexEncode(meta->substr(1, 32)), v2 ? Get64(m + 41) : stored};
  }
  absl::StatusOr<std::string> sha = get(kXattrSha256);
  if (!sha.ok() || sha->size() != 64) return std::nullopt;
  absl::StatusOr<std::string> mtime = get(kXattrMtimeNs);
  if (!mtime.ok() || mtime->empty()) return std::nullopt;
  int64_t recorded = 0;
  if (!absl::SimpleAtoi(*mtime, &recorded) || recorded != mtime_ns) return std::nullopt;
  for (char c : *sha) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return std::nullopt;
  }
  return TrustedMeta{*std::move(sha), recorded};
}

std::optional<TrustedMeta> XattrMetaPath(const std::string& path, int64_t mtime_ns) {
  return XattrMeta(mtime_ns,
                   [&path](const char* name) { return platform::GetAttributeAt(path, name); });
}

// True when an attribute call failed only because the volume keeps no attributes.
bool NoAttributes(const absl::Status& st) {
  return platform::KindOf(st) == platform::ErrorKind::kNotSupported || absl::IsUnimplemented(st);
}

// Records `sha256` with the file's `stored_ns` mtime and the source's `source_ns` in the
// attribute of `file` (or, when null, of the file at `path`). Filesystems without user xattrs are
// fine (the caller keeps a sidecar record there). `fresh`: the file was just created by us (it
// has no attributes of older objects to remove).
absl::Status SetXattrMeta(File* file, const std::string& path, const std::string& sha256,
                          int64_t stored_ns, int64_t source_ns, const std::string& desc,
                          bool fresh) {
  const std::string meta = EncodeMeta(sha256, stored_ns, source_ns);
  if (meta.empty())
    return absl::InternalError(absl::StrCat("bad SHA-256 '", sha256, "' for ", desc));
  const absl::Status set = file != nullptr ? file->SetAttribute(kXattrMeta, meta)
                                           : platform::SetAttributeAt(path, kXattrMeta, meta);
  if (!set.ok()) {
    if (NoAttributes(set)) return absl::OkStatus();
    return StorageError(platform::WithContext(set, absl::StrCat("set xattr on ", desc)));
  }
  if (fresh) return absl::OkStatus();
  // An object written before the compact attribute: drop the old pair, which would otherwise
  // describe the previous content if a reader without the compact format looked.
  for (const char* old : {kXattrSha256, kXattrMtimeNs}) {
    const absl::Status removed =
        file != nullptr ? file->RemoveAttribute(old) : platform::RemoveAttributeAt(path, old);
    if (!removed.ok() && !NoAttributes(removed)) {
      return StorageError(
          platform::WithContext(removed, absl::StrCat("remove xattr ", old, " of ", desc)));
    }
  }
  return absl::OkStatus();
}

// Sets both timestamps of `file` to `mtime_ns` and returns the mtime the file now has (read
// back: filesystems keep it at their own precision).
absl::StatusOr<int64_t> SetTimesOf(File& file, int64_t mtime_ns, const std::string& desc) {
  if (absl::Status st = platform::SetFileTimes(file, mtime_ns); !st.ok()) {
    return StorageError(platform::WithContext(st, absl::StrCat("set mtime of ", desc)));
  }
  absl::StatusOr<FileInfo> info = file.Info();
  if (!info.ok())
    return StorageError(platform::WithContext(info.status(), absl::StrCat("stat ", desc)));
  return info->mtime_ns;
}

// The same for the closed file `name` in `dir`: an SMB share sets the mtime when the data handle
// closes, and some FUSE clients ignore a time given with UTIME_OMIT beside it.
absl::StatusOr<int64_t> SetTimesAt(const Directory& dir, const std::string& name, int64_t mtime_ns,
                                   const std::string& desc) {
  if (absl::Status st = platform::SetFileTimesAt(dir, name, mtime_ns); !st.ok()) {
    return StorageError(platform::WithContext(st, absl::StrCat("set mtime of ", desc)));
  }
  absl::StatusOr<FileInfo> info = dir.StatAt(name);
  if (!info.ok())
    return StorageError(platform::WithContext(info.status(), absl::StrCat("stat ", desc)));
  return info->mtime_ns;
}

// Creates a temp file for final name `name` in `dir`: .dstmp-<tag>-<16 hex of SHA-256(name)>,
// fixed length whatever `name` is. The tag is the first 8 letters/digits of `run_id`, or random
// hex when it has fewer or the name is taken (e.g. left over by a crash of the same run).
// With `unnamed` set the temp name is given to that unnamed file instead of a new one (the
// returned File is then empty).
absl::StatusOr<std::pair<std::string, File>> CreateTempFile(const Directory& dir,
                                                            std::string_view name,
                                                            const std::string& run_id,
                                                            const std::string& dir_desc,
                                                            const File* unnamed = nullptr) {
  std::string tag;
  for (char c : run_id) {
    if (absl::ascii_isalnum(c)) tag.push_back(c);
    if (tag.size() == 8) break;
  }
  const std::string name_hash = Sha256Hex(name).substr(0, 16);
  platform::OpenOptions options;
  options.access = platform::Access::kWrite;
  options.disposition = platform::Disposition::kCreateNew;
  for (int attempt = 0; attempt < kTempNameAttempts; ++attempt) {
    if (tag.size() != 8 || attempt > 0) tag = HexEncode(RandomBytes(4));
    std::string temp = absl::StrCat(std::string(kTempPrefix), tag, "-", name_hash);
    absl::Status made;
    if (unnamed != nullptr) {
      made = platform::LinkUnnamedFile(*unnamed, dir, temp);
      if (made.ok()) return std::make_pair(std::move(temp), File());
    } else {
      absl::StatusOr<File> file = dir.OpenFile(temp, options);
      if (file.ok()) return std::make_pair(std::move(temp), *std::move(file));
      made = file.status();
    }
    if (!absl::IsAlreadyExists(made)) {
      return StorageError(
          platform::WithContext(made, absl::StrCat("create temp file in ", dir_desc)));
    }
  }
  return absl::AlreadyExistsError(absl::StrCat("no free temp file name in ", dir_desc));
}

// "20261128T031451Z", the current UTC time.
std::string UtcStamp() {
  return absl::FormatTime("%Y%m%dT%H%M%SZ", absl::FromUnixMillis(SystemClock()->NowUnixMs()),
                          absl::UTCTimeZone());
}

// Renames `from` to `to` in `dir` unless `to` exists. AlreadyExists when it does.
absl::Status RenameNoReplace(const Directory& dir, const std::string& from, const std::string& to) {
  const absl::Status st =
      RetryWhileBusy([&] { return dir.RenameAt(from, dir, to, platform::Replace::kNo); });
  if (st.ok() || absl::IsAlreadyExists(st)) return st;
  // A filesystem without RENAME_NOREPLACE and without hard links (some network shares; the
  // platform falls back to link + unlink): check, then rename. Racy only against a concurrent
  // PutFile of the same key, which callers do not do. A real error shows again in the rename.
  absl::StatusOr<FileInfo> there = dir.StatAt(to);
  if (there.ok()) return absl::AlreadyExistsError(absl::StrCat(to, " exists"));
  if (!absl::IsNotFound(there.status())) return there.status();
  return RenameRetrying(dir, from, to);
}

// A staged put: a complete, checked temp file beside its final name.
// Unnamed (O_TMPFILE) files held open by staged puts, against a bound on open descriptors.
struct UnnamedBudget {
  std::atomic<int> open{0};
  int max = 0;
};

// How many O_TMPFILE files staged puts may hold open at once: a quarter of the soft limit on
// open descriptors (the process needs the rest: sources, sockets, the journal), at most 4,096.
// Staging beyond it uses temp names, which hold no descriptor.
int UnnamedBudgetMax() {
  const uint64_t limit = platform::OpenHandleLimit();
  if (limit == std::numeric_limits<uint64_t>::max()) return 4096;
  return static_cast<int>(std::min<uint64_t>(limit / 4, 4096));
}

// A staged put: a complete, checked file beside its final name, either unnamed (O_TMPFILE, held
// open: nothing to clean up after a crash) or under a temp name.
class DirStagedPut final : public StagedPut {
 public:
  const std::string& key() const override { return key_; }
  uint64_t bytes() const override { return copied_.bytes; }
  std::string sha256() const override { return copied_.sha256; }
  ~DirStagedPut() override {
    if (!temp_name_.empty() && dir_) (void)UnlinkRetrying(*dir_, temp_name_);
    CloseUnnamed();  // an unlinked inode: closing it frees it
  }
  void CloseUnnamed() {
    if (!unnamed_.valid()) return;
    unnamed_ = File();
    budget_->open.fetch_sub(1);
  }

  std::string key_;
  std::string name_;  // final name in dir_
  std::string run_id_;
  std::shared_ptr<const Directory> dir_;   // the directory holding key_
  File unnamed_;                           // the O_TMPFILE file, until linked (then closed)
  std::shared_ptr<UnnamedBudget> budget_;  // set with unnamed_
  std::string temp_name_;                  // cleared once renamed (or removed)
  bool placed_ = false;                    // Finish put the new content under name_
  bool replaced_ = false;  // an object was under name_ when staged (unnamed_: no link try)
  std::string dest_desc_, temp_desc_;
  std::unique_ptr<FoldClaims::Claim> claim_;  // case-insensitive shares: the folded key, held
  CopyOutcome copied_;
  int64_t mtime_ns_ = 0;         // requested mtime (Unix ns)
  int64_t stored_mtime_ns_ = 0;  // the temp file's mtime as stored (Unix ns)
  bool verify_ = false;
};

// `probed` with what the directory backend does on any share: the agent writes it itself,
// staging from open files, and objects are replaced under their keys by rename.
StorageFeatures WithDirAbilities(StorageFeatures probed) {
  probed.direct_writes = true;
  probed.stages_from_fd = true;
  probed.atomic_replace = true;
  return probed;
}

class DirStorage final : public Storage {
 public:
  // REQUIRES: `root` is an absolute, normalised path without a trailing '/'.
  // `max_unnamed`: staged puts that may hold an O_TMPFILE file open at once (0: never use
  // O_TMPFILE; beyond it staging falls back to temp names).
  DirStorage(std::string root, StorageFeatures features, bool syncfs_flushes, int max_unnamed)
      : root_(std::move(root)), features_(WithDirAbilities(std::move(features))), syncfs_flushes_(syncfs_flushes) {
    unnamed_->max = max_unnamed;
  }

  absl::StatusOr<PutResult> PutFile(const std::string& key, const std::filesystem::path& source,
                                    const PutOptions& options) override;
  absl::StatusOr<std::unique_ptr<StagedPut>> StagePut(const std::string& key,
                                                      const std::filesystem::path& source,
                                                      const PutOptions& options) override;
  absl::StatusOr<std::unique_ptr<StagedPut>> StagePutFd(const std::string& key,
                                                        const platform::File& source,
                                                        const std::string& source_desc,
                                                        const PutOptions& options,
                                                        const StageFdOptions& stage) override {
    DS_ASSIGN_OR_RETURN(std::unique_ptr<DirStagedPut> s,
                        StageFrom(key, source, source_desc, options, !syncfs_flushes_, stage));
    return std::unique_ptr<StagedPut>(std::move(s));
  }
  std::vector<absl::StatusOr<PutResult>> CommitPuts(
      std::vector<std::unique_ptr<StagedPut>> staged) override;
  absl::StatusOr<ObjectInfo> Stat(const std::string& key) override;
  absl::Status List(const std::string& prefix,
                    const std::function<void(const ObjectInfo&)>& fn) override;
  absl::StatusOr<std::string> ReadAll(const std::string& key, size_t max_bytes) override;
  std::string Describe() const override { return absl::StrCat("file://", root_); }
  // What the probe at open found, and what this backend does on any share (WithDirAbilities).
  const StorageFeatures& Features() const override { return features_; }
  absl::StatusOr<FileDigest> HashObject(const std::string& key) override {
    DS_RETURN_IF_ERROR(ValidateRelativePath(key));
    return Sha256File(absl::StrCat(root_, "/", key));
  }
  absl::StatusOr<std::vector<ObjectInfo>> ListTempObjects(const std::string& prefix) override {
    DS_ASSIGN_OR_RETURN(auto keys, ListTempFiles(root_, prefix));
    std::vector<ObjectInfo> out;
    for (auto& k : keys) {
      absl::StatusOr<FileInfo> info = platform::Stat(PathOf(k), /*follow_links=*/false);
      if (!info.ok()) continue;  // finished meanwhile
      ObjectInfo o;
      o.key = std::move(k);
      o.size = info->size;
      o.mtime_ns = info->mtime_ns;
      out.push_back(std::move(o));
    }
    return out;
  }
  absl::Status AbandonUpload(const std::string& key, const std::string& run_id) override {
    DS_RETURN_IF_ERROR(ValidateRelativePath(key));
    std::string tag;
    for (char c : run_id) {
      if (absl::ascii_isalnum(c)) tag.push_back(c);
      if (tag.size() == 8) break;
    }
    if (tag.size() != 8)
      return absl::OkStatus();  // its temp had a random tag: reconcile reports it
    size_t slash = key.rfind('/');
    std::string dir = slash == std::string::npos ? "" : key.substr(0, slash + 1);
    std::string name = key.substr(slash == std::string::npos ? 0 : slash + 1);
    return RemoveTempObject(
        absl::StrCat(dir, std::string(kTempPrefix), tag, "-", Sha256Hex(name).substr(0, 16)));
  }
  absl::Status ForgetContentHash(const std::string& key) override {
    DS_RETURN_IF_ERROR(ValidateWritableKey(key));
    const std::string path = PathOf(key);
    DS_RETURN_IF_ERROR(platform::Stat(path, /*follow_links=*/false).status());
    for (const char* name : {kXattrMeta, kXattrSha256, kXattrMtimeNs}) {
      const absl::Status removed = platform::RemoveAttributeAt(path, name);
      if (!removed.ok() && !NoAttributes(removed)) {
        return platform::WithContext(removed, absl::StrCat("remove xattr ", name, " of ", key));
      }
    }
    return RemoveSidecar(root_, key);
  }
  absl::Status RecordContentHash(const ObjectInfo& listed, const std::string& sha256) override;
  absl::Status RemoveTempObject(const std::string& key) override {
    std::string base = key.substr(key.rfind('/') + 1);
    if (!ValidateRelativePath(key).ok() || !IsTempName(base)) {
      return absl::InvalidArgumentError(absl::StrCat("not a temp object: ", key));
    }
    const size_t slash = key.rfind('/');
    absl::StatusOr<Directory> dir = Directory::Open(
        slash == std::string::npos ? root_ : PathOf(std::string_view(key).substr(0, slash)));
    if (absl::IsNotFound(dir.status())) return absl::OkStatus();
    DS_RETURN_IF_ERROR(platform::WithContext(dir.status(), absl::StrCat("remove ", key)));
    const absl::Status st = UnlinkRetrying(*dir, base);
    if (!st.ok() && !absl::IsNotFound(st))
      return platform::WithContext(st, absl::StrCat("remove ", key));
    return absl::OkStatus();
  }

 private:
  std::string PathOf(std::string_view key) const {
    return absl::StrCat(root_, "/", std::string(key));
  }

  // Opens the directory holding `key` (created when `create`). NotFound if it is missing or is
  // not a real directory and !create; FailedPrecondition for the latter with `create`.
  // `sync_new` false: directories made here are left for the caller's filesystem flush.
  absl::StatusOr<Directory> OpenParentDir(const std::vector<std::string_view>& parts, bool create,
                                          bool sync_new = true) const;

  // Keeps the regular file `name` in `dir` (the object under `key`, with `info`/`sha256`)
  // under the versions area by hard link, or by copy where links are not supported.
  // Returns the version's key.
  // `sync_dirs` false: the new directory entries are left for the caller's filesystem flush.
  absl::StatusOr<std::string> KeepVersion(const std::string& key, const Directory& dir,
                                          const std::string& name, const FileInfo& info,
                                          const std::string& sha256, bool sync_dirs = true) const;
  // KeepVersion where hard links are not supported: copies the object into a temp file in
  // `vdir` (at `vdir_path`), checks the copy against `sha256`, and renames it to the first free
  // version name from `base`. Returns the version's name.
  absl::StatusOr<std::string> CopyVersion(const std::string& key, const Directory& dir,
                                          const std::string& name, const FileInfo& info,
                                          const std::string& sha256, const Directory& vdir,
                                          const std::string& vdir_path,
                                          const std::string& base) const;

  // The first half of a put (see StagePut); `fsync_now` also fsyncs the temp file.
  absl::StatusOr<std::unique_ptr<DirStagedPut>> Stage(const std::string& key,
                                                      const std::filesystem::path& source,
                                                      const PutOptions& options, bool fsync_now);
  // Stage from the open source `src` (read from offset 0), as `stage` says.
  absl::StatusOr<std::unique_ptr<DirStagedPut>> StageFrom(const std::string& key, const File& src,
                                                          const std::string& src_desc,
                                                          const PutOptions& options, bool fsync_now,
                                                          const StageFdOptions& stage = {});
  // Case-insensitive shares: a name refusal when the object found under the put's name in
  // `dir` is stored under another spelling (it is another file of the job, not this one).
  absl::Status CheckSpelling(const Directory& dir, const DirStagedPut& s) const;
  // Case-insensitive shares: a name refusal when a folder of `parts` (all but the last) is
  // stored under another spelling. Checked once per folder for the life of the storage.
  absl::Status CheckFolderSpelling(const std::vector<std::string_view>& parts);
  // After the copy: the staged file's times and metadata, its data durable (`fsync_now`, and
  // always on shares) or on its way to disk. `temp` is the staged file: `named` (then closed
  // here) or the put's unnamed one.
  absl::Status SettleStaged(DirStagedPut& s, File& named, File& temp, bool fsync_now) const;
  // The temp file's key (beside the staged put's key).
  static std::string TempKey(const DirStagedPut& s);
  // Records the staged put's SHA-256, stored and source mtimes in the xattr of `file` (or, when
  // null, of `path`); nothing on shares without xattrs (RecordSidecar does it at the rename).
  // Logs the first objects whose mtime the share did not keep.
  absl::Status RecordMeta(const DirStagedPut& s, File* file, const std::string& path,
                          bool fresh) const;
  // Shares without xattrs: the staged put's sidecar record, written just before the put takes
  // its name (earlier, it would describe the staged copy as the object still under the name).
  absl::Status RecordSidecar(const DirStagedPut& s, bool durable) const;
  // The metadata of the object `key` (at `path`, with `info`) if it still describes it.
  std::optional<TrustedMeta> Trusted(const std::string& key, const std::string& path,
                                     const FileInfo& info) const;
  // The object as listed: the source mtime and SHA-256 from trusted metadata, else the file's
  // mtime and no SHA-256.
  ObjectInfo InfoOf(const std::string& key, const std::string& path, const FileInfo& info) const;
  // The two halves without OneObject() applied to their errors.
  absl::StatusOr<std::unique_ptr<DirStagedPut>> StageFromUnclassified(const std::string& key,
                                                                      const File& src,
                                                                      const std::string& src_desc,
                                                                      const PutOptions& options,
                                                                      bool fsync_now,
                                                                      const StageFdOptions& stage);
  absl::StatusOr<PutResult> FinishUnclassified(DirStagedPut& s, bool grouped) const;
  // Finish when the object `old` under the put's name (with `existing`, its trusted `old_meta`
  // and SHA-256 `old_sha`) already has the put's content: no version, its mtime and metadata
  // brought up to date (best effort).
  PutResult KeepSameContent(DirStagedPut& s, File& old, FileInfo existing,
                            const std::optional<TrustedMeta>& old_meta,
                            const std::string& old_sha) const;
  // An "unreachable" error of one object's operation (EIO and the like) while the root answers:
  // the share refused this object only (SMB gives EIO for names it cannot hold), so the error
  // is the object's (Internal), not the storage's (Unavailable). Other statuses pass through.
  absl::Status OneObject(absl::Status st) const;
  // Re-reads the staged temp file (dropped from the page cache first) against its hash.
  absl::Status VerifyStaged(DirStagedPut& s) const;
  // The second half: keeps a differing object as a version and renames the temp file into
  // place. The rename is not yet durable (the caller flushes the directory).
  // `grouped`: a syncfs follows, so directories made on the way need no fsync of their own.
  absl::StatusOr<PutResult> Finish(DirStagedPut& s, bool grouped) const;

  // A shared open descriptor of the directory holding `key` (created when missing), reused by
  // puts into the same directory while any of them holds it.
  // `grouped`: the put is committed by CommitPuts with syncfs (new directories need no fsync).
  absl::StatusOr<std::shared_ptr<const Directory>> ParentDir(
      const std::vector<std::string_view>& parts, bool grouped);

  // Constant after construction.
  const std::string root_;
  const StorageFeatures features_;  // what the probe at open found
  // True when one syncfs() makes everything written to the root's filesystem durable (local
  // block filesystems). Network shares and FUSE: fsync per file and per directory instead.
  const bool syncfs_flushes_ = false;

  Mutex dirs_mu_;
  std::map<std::string, std::weak_ptr<const Directory>, std::less<>> dirs_
      ABSL_GUARDED_BY(dirs_mu_);

  // O_TMPFILE use: the bound, and whether this filesystem still accepts it (cleared for good
  // on the first refusal: EOPNOTSUPP / EISDIR / EINVAL from a filesystem or share without it).
  std::shared_ptr<UnnamedBudget> unnamed_ = std::make_shared<UnnamedBudget>();
  std::atomic<bool> unnamed_ok_{true};

  // Case-insensitive shares: folded keys of puts in flight, and folders whose spelling matched.
  const std::shared_ptr<FoldClaims> folds_ = std::make_shared<FoldClaims>();
  Mutex spelled_mu_;
  std::set<std::string, std::less<>> spelled_dirs_ ABSL_GUARDED_BY(spelled_mu_);
};

absl::StatusOr<Directory> DirStorage::OpenParentDir(const std::vector<std::string_view>& parts,
                                                    bool create, bool sync_new) const {
  DS_ASSIGN_OR_RETURN(Directory root, OpenRoot(root_));
  absl::StatusOr<Directory> dir = OpenDirChain(root, parts, parts.size() - 1, create, sync_new);
  if (!create && absl::IsFailedPrecondition(dir.status())) {
    return absl::NotFoundError(std::string(dir.status().message()));
  }
  return dir;
}

absl::StatusOr<std::shared_ptr<const Directory>> DirStorage::ParentDir(
    const std::vector<std::string_view>& parts, bool grouped) {
  std::string dir_key;
  for (size_t i = 0; i + 1 < parts.size(); ++i)
    absl::StrAppend(&dir_key, std::string(parts[i]), "/");
  {
    MutexLock lock(&dirs_mu_);
    auto it = dirs_.find(dir_key);
    if (it != dirs_.end()) {
      if (auto fd = it->second.lock()) return fd;
      dirs_.erase(it);
    }
  }
  // Directories made here need no fsync of their own where a syncfs follows the renames
  // (CommitPuts): it makes the new entries durable before any result stands. PutFile and
  // network shares fsync each new directory's parent at once.
  DS_ASSIGN_OR_RETURN(Directory dir, OpenParentDir(parts, /*create=*/true, /*sync_new=*/!grouped));
  if (features_.case_insensitive) DS_RETURN_IF_ERROR(CheckFolderSpelling(parts));
  auto fd = std::make_shared<const Directory>(std::move(dir));
  MutexLock lock(&dirs_mu_);
  if (dirs_.size() > 4096) {  // forget directories nobody holds any more
    for (auto it = dirs_.begin(); it != dirs_.end();)
      it = it->second.expired() ? dirs_.erase(it) : std::next(it);
  }
  dirs_[dir_key] = fd;
  return fd;
}

absl::StatusOr<std::unique_ptr<DirStagedPut>> DirStorage::Stage(const std::string& key,
                                                                const std::filesystem::path& source,
                                                                const PutOptions& options,
                                                                bool fsync_now) {
  DS_ASSIGN_OR_RETURN(File src, OpenPutSourceFile(source, options));
  return StageFrom(key, src, source.string(), options, fsync_now);
}

absl::StatusOr<std::unique_ptr<DirStagedPut>> DirStorage::StageFromUnclassified(
    const std::string& key, const File& src, const std::string& src_desc, const PutOptions& options,
    bool fsync_now, const StageFdOptions& stage) {
  DS_RETURN_IF_ERROR(ValidateWritableKey(key));
  DS_RETURN_IF_ERROR(CheckKeyHoldable(features_, key));
  auto s = std::make_unique<DirStagedPut>();
  s->key_ = key;
  if (features_.case_insensitive) {
    DS_ASSIGN_OR_RETURN(s->claim_, folds_->Take(features_, key));
  }
  s->dest_desc_ = absl::StrCat(Describe(), "/", key);
  const std::string& dest_desc = s->dest_desc_;
  if (IsCancelled(options.cancel)) {
    return absl::CancelledError(absl::StrCat("put ", dest_desc, " cancelled"));
  }
  absl::StatusOr<FileInfo> before = src.Info();
  if (!before.ok()) return platform::WithContext(before.status(), absl::StrCat("stat ", src_desc));
  if (before->type != FileType::kFile) {
    return absl::FailedPreconditionError(
        absl::StrCat("source ", src_desc, " is not a regular file"));
  }
  if (before->size > kCopyBufferBytes) src.AdviseSequential();

  // Destination directory. Refuse early when the key names a directory or a non-file.
  const std::vector<std::string_view> parts = SplitKey(key);
  s->name_ = std::string(parts.back());
  const std::string& name = s->name_;
  DS_ASSIGN_OR_RETURN(s->dir_, ParentDir(parts, /*grouped=*/!fsync_now));
  const Directory& dir = *s->dir_;
  if (absl::StatusOr<FileInfo> existing = dir.StatAt(name); existing.ok()) {
    if (existing->type != FileType::kFile) {
      return absl::FailedPreconditionError(
          absl::StrCat(dest_desc, " exists and is not a regular file"));
    }
    DS_RETURN_IF_ERROR(CheckSpelling(dir, *s));
    s->replaced_ = true;  // compared, maybe kept as a version, at commit
  } else if (!absl::IsNotFound(existing.status())) {
    return StorageError(platform::WithContext(existing.status(), absl::StrCat("stat ", dest_desc)));
  }

  // Copy into a new file beside the target. Grouped puts on a local filesystem use an unnamed
  // O_TMPFILE file, linked under its name at commit (one directory operation instead of
  // create + rename, and a crash leaves nothing behind); otherwise, or beyond the descriptor
  // budget, a temp name. A file that will replace an object also takes a temp name at once: it
  // is renamed over the object (link cannot replace); unless the caller asked for an unnamed
  // copy anyway (replace_unnamed), which gets its temp name at commit. From here on `s` owns the
  // file: destroying `s` removes it.
  s->run_id_ = options.run_id;
  File* temp = nullptr;
  File named;
  if (!fsync_now && (!s->replaced_ || (stage.unnamed_only && stage.replace_unnamed)) &&
      syncfs_flushes_ && unnamed_ok_.load(std::memory_order_relaxed)) {
    if (unnamed_->open.fetch_add(1) < unnamed_->max) {
      s->budget_ = unnamed_;
      absl::StatusOr<File> unnamed = platform::CreateUnnamedFile(dir);
      if (unnamed.ok()) {
        s->unnamed_ = *std::move(unnamed);
      } else {
        s->budget_.reset();
        unnamed_->open.fetch_sub(1);
        if (!platform::IsNotSupported(unnamed.status())) {
          return StorageError(platform::WithContext(
              unnamed.status(), absl::StrCat("create unnamed file for ", dest_desc)));
        }
        unnamed_ok_.store(false);  // this filesystem has no O_TMPFILE: temp names from now on
      }
    } else {
      unnamed_->open.fetch_sub(1);
    }
  }
  if (stage.unnamed_only && !s->unnamed_.valid()) {
    if (s->replaced_ && !stage.replace_unnamed) {
      return absl::AlreadyExistsError(absl::StrCat(dest_desc, " exists: not staged unnamed"));
    }
    if (!fsync_now && syncfs_flushes_ && unnamed_ok_.load(std::memory_order_relaxed)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no unnamed file for ", dest_desc, ": ", unnamed_->max, " are open"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(), " cannot stage unnamed files (no O_TMPFILE or no syncfs)"));
  }
  if (s->unnamed_.valid()) {
    temp = &s->unnamed_;
    s->temp_desc_ = absl::StrCat(Describe(), "/", key, " (unnamed)");
  } else {
    DS_ASSIGN_OR_RETURN(auto made, CreateTempFile(dir, name, options.run_id, dest_desc));
    s->temp_name_ = std::move(made.first);
    named = std::move(made.second);
    temp = &named;
    s->temp_desc_ = absl::StrCat(Describe(), "/", key, " (temp ", s->temp_name_, ")");
  }
  const std::string& temp_desc = s->temp_desc_;
  DS_ASSIGN_OR_RETURN(s->copied_,
                      CopyAndHash(src, *temp, options.cancel, options.max_bytes_per_second,
                                  options.rate_limiter, src_desc, temp_desc, before->size));
  const CopyOutcome& copied = s->copied_;

  // The source must not have changed while we read it.
  absl::StatusOr<FileInfo> after = src.Info();
  if (!after.ok()) return platform::WithContext(after.status(), absl::StrCat("stat ", src_desc));
  if (after->size != before->size || after->mtime_ns != before->mtime_ns ||
      copied.bytes != before->size) {
    return absl::AbortedError(absl::StrCat("source changed while copying: ", src_desc, " (size ",
                                           before->size, " -> ", after->size, ", copied ",
                                           copied.bytes, " bytes)"));
  }
  if (!options.expected_sha256.empty() &&
      absl::AsciiStrToLower(options.expected_sha256) != copied.sha256) {
    return absl::AbortedError(absl::StrCat("source changed while copying: ", src_desc,
                                           " has SHA-256 ", copied.sha256, ", expected ",
                                           options.expected_sha256));
  }

  s->mtime_ns_ = options.mtime_ns != 0 ? options.mtime_ns : before->mtime_ns;
  s->verify_ = options.verify;
  DS_RETURN_IF_ERROR(SettleStaged(*s, named, *temp, fsync_now));
  return s;
}

absl::Status DirStorage::SettleStaged(DirStagedPut& s, File& named, File& temp,
                                      bool fsync_now) const {
  const std::string& temp_desc = s.temp_desc_;
  const CopyOutcome& copied = s.copied_;
  if (named.valid() && !syncfs_flushes_) {
    // A share: the data durable and its handle closed before the times are set (SMB sets the
    // mtime when the handle closes), then the metadata of what the share now says.
    if (absl::Status st = temp.Flush(); !st.ok()) {
      return StorageError(platform::WithContext(st, absl::StrCat("fsync ", temp_desc)));
    }
    if (absl::Status st = named.Close(); !st.ok()) {
      return StorageError(platform::WithContext(st, absl::StrCat("close ", temp_desc)));
    }
    DS_ASSIGN_OR_RETURN(s.stored_mtime_ns_,
                        SetTimesAt(*s.dir_, s.temp_name_, s.mtime_ns_, temp_desc));
    DS_RETURN_IF_ERROR(RecordMeta(s, nullptr, PathOf(TempKey(s)), /*fresh=*/true));
    return absl::OkStatus();
  }
  // Metadata; durability is the caller's (fsync_now, or one flush for a whole group).
  DS_ASSIGN_OR_RETURN(s.stored_mtime_ns_, SetTimesOf(temp, s.mtime_ns_, temp_desc));
  DS_RETURN_IF_ERROR(RecordMeta(s, &temp, "", /*fresh=*/true));
  if (fsync_now) {
    if (absl::Status st = temp.Flush(); !st.ok()) {
      return StorageError(platform::WithContext(st, absl::StrCat("fsync ", temp_desc)));
    }
  } else if (copied.bytes >= kEarlyWritebackBytes) {
    // Start writing a large file back now, asynchronously, so that the group's flush finds most
    // of it already on disk: the copy of the next files overlaps this one's disk write. (Small
    // files are left to the flush, which writes them in far fewer, larger requests.)
    platform::StartWriteback(temp);
  }
  if (named.valid()) {
    if (absl::Status st = named.Close(); !st.ok()) {
      return StorageError(platform::WithContext(st, absl::StrCat("close ", temp_desc)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DirStagedPut>> DirStorage::StageFrom(const std::string& key,
                                                                    const File& src,
                                                                    const std::string& src_desc,
                                                                    const PutOptions& options,
                                                                    bool fsync_now,
                                                                    const StageFdOptions& stage) {
  auto staged = StageFromUnclassified(key, src, src_desc, options, fsync_now, stage);
  if (!staged.ok()) return OneObject(staged.status());
  return staged;
}

absl::StatusOr<PutResult> DirStorage::Finish(DirStagedPut& s, bool grouped) const {
  auto result = FinishUnclassified(s, grouped);
  if (!result.ok()) return OneObject(result.status());
  return result;
}

absl::Status DirStorage::OneObject(absl::Status st) const {
  if (!absl::IsUnavailable(st)) return st;
  absl::StatusOr<Directory> root = OpenRoot(root_);
  if (!root.ok() || !root->StatAt(".", /*follow_links=*/true).ok()) return st;
  return absl::InternalError(
      absl::StrCat(st.message(), " (the storage root answers: the share refused this file only)"));
}

absl::Status DirStorage::CheckSpelling(const Directory& dir, const DirStagedPut& s) const {
  if (!features_.case_insensitive) return absl::OkStatus();
  std::optional<std::string> other = OtherSpelling(dir, s.name_, features_);
  if (!other) return absl::OkStatus();
  return NameRefusal(absl::AlreadyExistsError(
      absl::StrCat("name '", s.key_, "' collides by case with the stored '", *other,
                   "': this destination does not tell names apart by case")));
}

absl::Status DirStorage::CheckFolderSpelling(const std::vector<std::string_view>& parts) {
  std::string folder;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const std::string parent = folder;
    absl::StrAppend(&folder, folder.empty() ? "" : "/", std::string(parts[i]));
    {
      MutexLock lock(&spelled_mu_);
      if (spelled_dirs_.count(folder)) continue;
    }
    DS_ASSIGN_OR_RETURN(Directory root, OpenRoot(root_));
    DS_ASSIGN_OR_RETURN(Directory dir, OpenDirChain(root, parts, i, /*create=*/false));
    if (std::optional<std::string> other = OtherSpelling(dir, std::string(parts[i]), features_)) {
      return NameRefusal(absl::AlreadyExistsError(
          absl::StrCat("folder '", folder, "' collides by case with the stored '", parent,
                       parent.empty() ? "" : "/", *other,
                       "': this destination does not tell names apart by case")));
    }
    MutexLock lock(&spelled_mu_);
    if (spelled_dirs_.size() > 100'000) spelled_dirs_.clear();
    spelled_dirs_.insert(folder);
  }
  return absl::OkStatus();
}

std::string DirStorage::TempKey(const DirStagedPut& s) {
  const size_t slash = s.key_.rfind('/');
  return slash == std::string::npos ? s.temp_name_
                                    : absl::StrCat(s.key_.substr(0, slash + 1), s.temp_name_);
}

absl::Status DirStorage::RecordMeta(const DirStagedPut& s, File* file, const std::string& path,
                                    bool fresh) const {
  if (!SameMtimeAt(features_, s.mtime_ns_, s.stored_mtime_ns_)) {
    static std::atomic<int> told{0};
    if (told.fetch_add(1) < kMtimeWarnings) {
      spdlog::warn(
          "{} did not keep the mtime of {} (set {}, reads {} ns); the source's is kept in its "
          "metadata",
          Describe(), s.key_, s.mtime_ns_, s.stored_mtime_ns_);
    }
  }
  if (!features_.metadata_on_object) return absl::OkStatus();  // Finish writes the sidecar
  return SetXattrMeta(file, path, s.copied_.sha256, s.stored_mtime_ns_, s.mtime_ns_, s.temp_desc_,
                      fresh);
}

absl::Status DirStorage::RecordSidecar(const DirStagedPut& s, bool durable) const {
  if (features_.metadata_on_object) return absl::OkStatus();
  return WriteSidecar(
      root_, s.key_, {s.copied_.sha256, s.copied_.bytes, s.stored_mtime_ns_, s.mtime_ns_}, durable);
}

absl::Status DirStorage::RecordContentHash(const ObjectInfo& listed, const std::string& sha256) {
  DS_RETURN_IF_ERROR(ValidateWritableKey(listed.key));
  if (features_.metadata_on_object) return Storage::RecordContentHash(listed, sha256);
  const std::vector<std::string_view> parts = SplitKey(listed.key);
  DS_ASSIGN_OR_RETURN(Directory dir, OpenParentDir(parts, /*create=*/false));
  const std::string name(parts.back());
  const std::string desc = absl::StrCat(Describe(), "/", listed.key);
  absl::StatusOr<FileInfo> info = dir.StatAt(name);
  if (!info.ok())
    return StorageError(platform::WithContext(info.status(), absl::StrCat("stat ", desc)));
  if (info->type != FileType::kFile || info->size != listed.size ||
      info->mtime_ns != listed.mtime_ns) {
    return absl::FailedPreconditionError(absl::StrCat(desc, " changed since it was listed"));
  }
  SidecarMeta meta{sha256, listed.size, info->mtime_ns, info->mtime_ns};
  const std::optional<SidecarMeta> stale = ReadSidecar(root_, listed.key);
  if (stale && stale->sha256 == sha256 && stale->size == listed.size) {
    meta.source_mtime_ns = stale->source_mtime_ns;
    if (auto stored = SetTimesAt(dir, name, stale->source_mtime_ns, desc); stored.ok()) {
      meta.stored_mtime_ns = *stored;
    }
  }
  return WriteSidecar(root_, listed.key, meta, /*durable=*/true);
}

std::optional<TrustedMeta> DirStorage::Trusted(const std::string& key, const std::string& path,
                                               const FileInfo& info) const {
  if (features_.metadata_on_object) return XattrMetaPath(path, info.mtime_ns);
  std::optional<SidecarMeta> m = ReadSidecar(root_, key);
  // At the share's precision: smbnetfs (and an SMB client's attribute cache) may read whole
  // seconds just after a put and the microseconds the server keeps a moment later.
  if (!m || m->size != info.size || !SameMtimeAt(features_, m->stored_mtime_ns, info.mtime_ns)) {
    return std::nullopt;
  }
  return TrustedMeta{std::move(m->sha256), m->source_mtime_ns};
}

ObjectInfo DirStorage::InfoOf(const std::string& key, const std::string& path,
                              const FileInfo& info) const {
  std::optional<TrustedMeta> meta = Trusted(key, path, info);
  if (!meta) return ObjectInfo{key, info.size, info.mtime_ns, ""};
  return ObjectInfo{key, info.size, meta->source_mtime_ns, std::move(meta->sha256)};
}

absl::Status DirStorage::VerifyStaged(DirStagedPut& s) const {
  absl::StatusOr<File> check =
      s.unnamed_.valid() ? s.unnamed_.Duplicate()  // read-write; HashFile reads from offset 0
                         : s.dir_->OpenFile(s.temp_name_, platform::OpenOptions{});
  if (!check.ok()) {
    return StorageError(
        platform::WithContext(check.status(), absl::StrCat("reopen ", s.temp_desc_)));
  }
  // The pages are clean after the flush: drop them so the re-read comes from the storage.
  check->AdviseDontNeed(0, 0);
  DS_ASSIGN_OR_RETURN(FileDigest landed, HashFile(*check, s.temp_desc_));
  if (landed.size != s.copied_.bytes || landed.sha256 != s.copied_.sha256) {
    return absl::DataLossError(absl::StrCat(
        "verify failed for ", s.temp_desc_, ": wrote ", s.copied_.bytes, " bytes with SHA-256 ",
        s.copied_.sha256, ", read back ", landed.size, " bytes with SHA-256 ", landed.sha256));
  }
  return absl::OkStatus();
}

absl::StatusOr<PutResult> DirStorage::FinishUnclassified(DirStagedPut& s, bool grouped) const {
  const Directory& dir = *s.dir_;
  const std::string& name = s.name_;
  const std::string& dest_desc = s.dest_desc_;
  const CopyOutcome& copied = s.copied_;
  PutResult result;
  if (s.unnamed_.valid() && !s.replaced_) {
    // The common case, no object under the name: one link and done. AlreadyExists: see below.
    DS_RETURN_IF_ERROR(RecordSidecar(s, !grouped));
    const absl::Status linked = platform::LinkUnnamedFile(s.unnamed_, dir, name);
    if (linked.ok()) {
      s.CloseUnnamed();
      s.placed_ = true;
      result.info = {s.key_, copied.bytes, s.mtime_ns_, copied.sha256};
      return result;
    }
    if (!absl::IsAlreadyExists(linked)) {
      return StorageError(
          platform::WithContext(linked, absl::StrCat("link ", s.temp_desc_, " as ", dest_desc)));
    }
  }
  // Look again: an object may have appeared while we copied.
  if (absl::StatusOr<FileInfo> there = dir.StatAt(name); there.ok()) {
    if (there->type != FileType::kFile) {
      return absl::FailedPreconditionError(
          absl::StrCat(dest_desc, " exists and is not a regular file"));
    }
    DS_RETURN_IF_ERROR(CheckSpelling(dir, s));
    absl::StatusOr<File> old = OpenNonBlocking(dir, name);
    if (!old.ok())
      return StorageError(platform::WithContext(old.status(), absl::StrCat("open ", dest_desc)));
    absl::StatusOr<FileInfo> existing = old->Info();
    if (!existing.ok()) {
      return StorageError(
          platform::WithContext(existing.status(), absl::StrCat("stat ", dest_desc)));
    }
    const std::optional<TrustedMeta> old_meta = Trusted(s.key_, PathOf(s.key_), *existing);
    std::string old_sha = old_meta ? old_meta->sha256 : "";
    if (old_sha.empty()) {
      DS_ASSIGN_OR_RETURN(FileDigest digest, HashFile(*old, dest_desc));
      old_sha = digest.sha256;
    }
    if (existing->size == copied.bytes && old_sha == copied.sha256) {
      return KeepSameContent(s, *old, *existing, old_meta, old_sha);
    }
    DS_ASSIGN_OR_RETURN(result.kept_version,
                        KeepVersion(s.key_, dir, name, *existing, old_sha, !grouped));
  } else if (!absl::IsNotFound(there.status())) {
    return StorageError(platform::WithContext(there.status(), absl::StrCat("stat ", dest_desc)));
  }

  if (s.unnamed_.valid()) {
    // Replacing an object (kept above): link can't replace, rename can. Name it first.
    DS_ASSIGN_OR_RETURN(auto temp, CreateTempFile(dir, name, s.run_id_, dest_desc, &s.unnamed_));
    s.temp_name_ = std::move(temp.first);
    s.CloseUnnamed();
  }
  DS_RETURN_IF_ERROR(RecordSidecar(s, !grouped));
  if (absl::Status st = RenameRetrying(dir, s.temp_name_, name); !st.ok()) {
    return StorageError(
        platform::WithContext(st, absl::StrCat("rename ", s.temp_desc_, " to ", name)));
  }
  s.temp_name_.clear();
  s.placed_ = true;
  result.info = {s.key_, copied.bytes, s.mtime_ns_, copied.sha256};
  return result;
}

PutResult DirStorage::KeepSameContent(DirStagedPut& s, File& old, FileInfo existing,
                                      const std::optional<TrustedMeta>& old_meta,
                                      const std::string& old_sha) const {
  // Same content: leave it in place (no version). Bring its metadata up to date so Stat()
  // reports this put's mtime, unless the inode has other names we must not touch.
  // Best effort: a file owned by another account may refuse (EPERM).
  if (existing.link_count == 1 && (existing.mtime_ns != s.stored_mtime_ns_ || !old_meta ||
                                   old_meta->source_mtime_ns != s.mtime_ns_)) {
    auto stored = SetTimesOf(old, s.mtime_ns_, s.dest_desc_);
    if (stored.ok()) {
      s.stored_mtime_ns_ = *stored;
      if (RecordMeta(s, &old, "", /*fresh=*/false).ok() &&
          RecordSidecar(s, /*durable=*/true).ok()) {
        (void)old.Flush();
      }
    }
    if (absl::StatusOr<FileInfo> now = old.Info(); now.ok()) existing = *now;
  }
  PutResult result;
  result.info = InfoOf(s.key_, PathOf(s.key_), existing);
  if (result.info.sha256.empty()) result.info.sha256 = old_sha;
  return result;  // destroying `s` removes the temp file
}

// Flushes a directory's entries; filesystems that refuse it on directories still rename
// atomically (the platform counts them as OK).
absl::Status SyncDir(const Directory& dir, const std::string& desc) {
  return StorageError(platform::WithContext(dir.Flush(), absl::StrCat("fsync dir ", desc)));
}

absl::StatusOr<PutResult> DirStorage::PutFile(const std::string& key,
                                              const std::filesystem::path& source,
                                              const PutOptions& options) {
  DS_ASSIGN_OR_RETURN(std::unique_ptr<DirStagedPut> s,
                      Stage(key, source, options, /*fsync_now=*/true));
  if (s->verify_) DS_RETURN_IF_ERROR(VerifyStaged(*s));
  DS_ASSIGN_OR_RETURN(PutResult result, Finish(*s, /*grouped=*/false));
  if (s->placed_) DS_RETURN_IF_ERROR(SyncDir(*s->dir_, s->dest_desc_));
  return result;
}

absl::StatusOr<std::unique_ptr<StagedPut>> DirStorage::StagePut(const std::string& key,
                                                                const std::filesystem::path& source,
                                                                const PutOptions& options) {
  DS_ASSIGN_OR_RETURN(std::unique_ptr<DirStagedPut> s,
                      Stage(key, source, options, !syncfs_flushes_));
  return std::unique_ptr<StagedPut>(std::move(s));
}

std::vector<absl::StatusOr<PutResult>> DirStorage::CommitPuts(
    std::vector<std::unique_ptr<StagedPut>> staged) {
  std::vector<absl::StatusOr<PutResult>> out(staged.size(), absl::UnknownError("not committed"));
  std::vector<DirStagedPut*> puts;
  for (size_t i = 0; i < staged.size(); ++i) {
    auto* s = dynamic_cast<DirStagedPut*>(staged[i].get());
    puts.push_back(s);
    if (s == nullptr)
      out[i] = absl::InternalError(
          absl::StrCat("staged put of ", staged[i]->key(), " from another backend"));
  }
  const DirStagedPut* any = nullptr;
  for (auto* s : puts)
    if (s != nullptr) any = s;
  if (any == nullptr) return out;
  // 1. Content durable before any rename (StagePut fsynced each file where syncfs does not).
  auto flush = [&](const char* what) -> absl::Status {
    return StorageError(platform::WithContext(any->dir_->SyncFilesystem(),
                                              absl::StrCat("syncfs ", root_, " (", what, ")")));
  };
  if (syncfs_flushes_) {
    if (absl::Status st = flush("file contents"); !st.ok()) {
      for (size_t i = 0; i < puts.size(); ++i)
        if (puts[i] != nullptr) out[i] = st;
      return out;  // destroying `staged` removes the temp files
    }
  }
  // 2. Verify (opt-in), then rename into place.
  std::vector<const Directory*> renamed_dirs;
  for (size_t i = 0; i < puts.size(); ++i) {
    DirStagedPut* s = puts[i];
    if (s == nullptr) continue;
    if (s->verify_) {
      if (absl::Status st = VerifyStaged(*s); !st.ok()) {
        out[i] = st;
        continue;
      }
    }
    out[i] = Finish(*s, syncfs_flushes_);
    if (out[i].ok() && s->placed_) renamed_dirs.push_back(s->dir_.get());
  }
  // 3. The renames durable, then the results stand.
  absl::Status st = absl::OkStatus();
  if (syncfs_flushes_) {
    if (!renamed_dirs.empty()) st = flush("renames");
  } else {
    std::sort(renamed_dirs.begin(), renamed_dirs.end());
    renamed_dirs.erase(std::unique(renamed_dirs.begin(), renamed_dirs.end()), renamed_dirs.end());
    for (const Directory* dir : renamed_dirs) {
      if (st.ok()) st = SyncDir(*dir, root_);
    }
  }
  if (!st.ok()) {
    for (size_t i = 0; i < puts.size(); ++i) {
      if (puts[i] != nullptr && out[i].ok()) out[i] = st;
    }
  }
  return out;
}

absl::StatusOr<std::string> DirStorage::KeepVersion(const std::string& key, const Directory& dir,
                                                    const std::string& name, const FileInfo& info,
                                                    const std::string& sha256,
                                                    bool sync_dirs) const {
  std::vector<std::string_view> vparts = {kReservedArea, kVersionsDir};
  for (std::string_view p : SplitKey(key)) vparts.push_back(p);
  DS_ASSIGN_OR_RETURN(Directory root, OpenRoot(root_));
  DS_ASSIGN_OR_RETURN(Directory vdir,
                      OpenDirChain(root, vparts, vparts.size(), /*create=*/true, sync_dirs));
  const std::string vdir_key =
      absl::StrCat(std::string(kReservedArea), "/", std::string(kVersionsDir), "/", key);
  const std::string vdir_path = PathOf(vdir_key);
  const std::string base = absl::StrCat(UtcStamp(), "-", sha256.substr(0, 12));
  auto candidate = [&base](int n) { return n == 0 ? base : absl::StrCat(base, "-", n); };

  // Preferred: a hard link (instant, shares content and metadata).
  bool linked = false;
  std::string version;
  for (int n = 0; n < 1000; ++n) {
    version = candidate(n);
    const absl::Status st = dir.HardLinkAt(name, vdir, version);
    if (st.ok()) {
      linked = true;
      break;
    }
    if (absl::IsAlreadyExists(st)) continue;
    if (platform::IsNotSupported(st) || absl::IsPermissionDenied(st) ||
        platform::KindOf(st) == platform::ErrorKind::kCrossDevice) {
      break;  // no hard links here: copy instead
    }
    return StorageError(st);
  }
  if (!linked) {
    DS_ASSIGN_OR_RETURN(version, CopyVersion(key, dir, name, info, sha256, vdir, vdir_path, base));
  }
  if (sync_dirs) DS_RETURN_IF_ERROR(SyncDir(vdir, vdir_path));
  return absl::StrCat(vdir_key, "/", version);
}

absl::StatusOr<std::string> DirStorage::CopyVersion(const std::string& key, const Directory& dir,
                                                    const std::string& name, const FileInfo& info,
                                                    const std::string& sha256,
                                                    const Directory& vdir,
                                                    const std::string& vdir_path,
                                                    const std::string& base) const {
  // Copy into a temp file beside the version, then rename it into place.
  absl::StatusOr<File> src = OpenNonBlocking(dir, name);
  if (!src.ok())
    return StorageError(platform::WithContext(src.status(), absl::StrCat("open ", PathOf(key))));
  DS_ASSIGN_OR_RETURN(auto temp, CreateTempFile(vdir, base, "", vdir_path));
  auto& [temp_name, temp_file] = temp;
  TempFileGuard guard(vdir, temp_name);
  const std::string temp_desc = absl::StrCat(vdir_path, "/", temp_name);
  DS_ASSIGN_OR_RETURN(CopyOutcome copied,
                      CopyAndHash(*src, temp_file, nullptr, 0, nullptr, PathOf(key), temp_desc));
  if (copied.sha256 != sha256) {
    return absl::AbortedError(absl::StrCat(PathOf(key), " changed while keeping a version of it"));
  }
  DS_ASSIGN_OR_RETURN(const int64_t stored, SetTimesOf(temp_file, info.mtime_ns, temp_desc));
  DS_RETURN_IF_ERROR(
      SetXattrMeta(&temp_file, "", sha256, stored, stored, temp_desc, /*fresh=*/true));
  if (absl::Status st = temp_file.Flush(); !st.ok()) {
    return StorageError(platform::WithContext(st, absl::StrCat("fsync ", temp_desc)));
  }
  if (absl::Status st = temp_file.Close(); !st.ok()) {
    return StorageError(platform::WithContext(st, absl::StrCat("close ", temp_desc)));
  }
  for (int n = 0; n < 1000; ++n) {
    const std::string version = n == 0 ? base : absl::StrCat(base, "-", n);
    const absl::Status st = RenameNoReplace(vdir, temp_name, version);
    if (st.ok()) {
      guard.Release();
      return version;
    }
    if (!absl::IsAlreadyExists(st)) {
      return StorageError(
          platform::WithContext(st, absl::StrCat("rename ", temp_desc, " to ", version)));
    }
  }
  return absl::AlreadyExistsError(absl::StrCat("no free version name in ", vdir_path));
}

absl::StatusOr<ObjectInfo> DirStorage::Stat(const std::string& key) {
  DS_RETURN_IF_ERROR(ValidateRelativePath(key));
  const std::vector<std::string_view> parts = SplitKey(key);
  if (IsTempName(parts.back())) {
    return absl::NotFoundError(absl::StrCat(key, " is a temp file, not an object"));
  }
  DS_ASSIGN_OR_RETURN(Directory dir, OpenParentDir(parts, /*create=*/false));
  const std::string name(parts.back());
  absl::StatusOr<FileInfo> info = dir.StatAt(name);
  if (absl::IsNotFound(info.status())) {
    return absl::NotFoundError(absl::StrCat(Describe(), "/", key, " does not exist"));
  }
  if (!info.ok()) {
    return StorageError(
        platform::WithContext(info.status(), absl::StrCat("stat ", Describe(), "/", key)));
  }
  if (info->type != FileType::kFile) {
    return absl::NotFoundError(absl::StrCat(Describe(), "/", key, " is not a regular file"));
  }
  return InfoOf(key, PathOf(key), *info);
}

absl::StatusOr<std::string> DirStorage::ReadAll(const std::string& key, size_t max_bytes) {
  DS_RETURN_IF_ERROR(ValidateRelativePath(key));
  const std::vector<std::string_view> parts = SplitKey(key);
  if (IsTempName(parts.back())) {
    return absl::NotFoundError(absl::StrCat(key, " is a temp file, not an object"));
  }
  DS_ASSIGN_OR_RETURN(Directory dir, OpenParentDir(parts, /*create=*/false));
  const std::string name(parts.back());
  const std::string desc = absl::StrCat(Describe(), "/", key);
  // A FIFO in the way must not hang us; it is rejected by the type check below.
  absl::StatusOr<File> file = OpenNonBlocking(dir, name);
  if (!file.ok()) {
    if (absl::IsNotFound(file.status()) ||
        platform::KindOf(file.status()) == platform::ErrorKind::kIsLink) {
      return absl::NotFoundError(absl::StrCat(desc, " does not exist"));
    }
    return StorageError(platform::WithContext(file.status(), absl::StrCat("open ", desc)));
  }
  absl::StatusOr<FileInfo> info = file->Info();
  if (!info.ok()) {
    return StorageError(platform::WithContext(info.status(), absl::StrCat("stat ", desc)));
  }
  if (info->type != FileType::kFile) {
    return absl::NotFoundError(absl::StrCat(desc, " is not a regular file"));
  }
  if (info->size > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(desc, " has ", info->size, " bytes, more than ", max_bytes));
  }
  std::string out;
  out.resize(static_cast<size_t>(info->size));
  size_t have = 0;
  for (;;) {
    if (have == out.size()) {  // the file may have grown since Info(): read on, up to max_bytes + 1
      if (out.size() > max_bytes) break;
      const size_t room = max_bytes - out.size();
      out.resize(out.size() + (room < 65536 ? room + 1 : 65536));
    }
    absl::StatusOr<size_t> n = file->Read(absl::MakeSpan(out.data() + have, out.size() - have));
    if (!n.ok())
      return StorageError(platform::WithContext(n.status(), absl::StrCat("read ", desc)));
    if (*n == 0) break;
    have += *n;
  }
  out.resize(have);
  if (out.size() > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(desc, " is larger than ", max_bytes, " bytes"));
  }
  return out;
}

// Visits every non-directory entry below root/`start` ("" = the root itself) without following
// symlinks: fn(dir, entry, key) with key the '/'-joined path from the root. Skips the top-level
// reserved area when walking from the root, and entries whose key is not a valid key (names made
// by other tools). A missing or non-directory `start` is an empty tree. Entries that vanish
// during the walk are skipped.
absl::Status WalkTree(const std::string& root, const std::string& start,
                      const std::function<void(const Directory&, const platform::DirEntry&,
                                               const std::string&)>& fn) {
  DS_ASSIGN_OR_RETURN(Directory root_dir, OpenRoot(root));
  std::vector<std::pair<std::string, std::optional<Directory>>> pending;  // dirs to read: key, open
  {
    std::vector<std::string_view> parts;
    if (!start.empty()) parts = SplitKey(start);
    absl::StatusOr<Directory> dir = OpenDirChain(root_dir, parts, parts.size(), /*create=*/false);
    if (absl::IsNotFound(dir.status()) || absl::IsFailedPrecondition(dir.status())) {
      return absl::OkStatus();
    }
    if (!dir.ok()) return dir.status();
    pending.emplace_back(start, *std::move(dir));
  }
  while (!pending.empty()) {
    auto [rel, opened] = std::move(pending.back());
    pending.pop_back();
    if (!opened) {
      absl::StatusOr<Directory> dir = root_dir.OpenDirectory(rel);
      if (!dir.ok()) {
        const platform::ErrorKind kind = platform::KindOf(dir.status());
        if (absl::IsNotFound(dir.status()) || kind == platform::ErrorKind::kIsLink ||
            kind == platform::ErrorKind::kNotDirectory) {
          continue;  // changed under us
        }
        return StorageError(dir.status());
      }
      opened = *std::move(dir);
    }
    const Directory& dir = *opened;
    // Not `rel` in the lambda: clang 14 cannot capture a structured binding.
    const bool at_root = rel.empty();
    const std::string key_prefix = at_root ? "" : absl::StrCat(rel, "/");
    const absl::Status listed = dir.List([&](const platform::DirEntry& e) {
      if (at_root && kReservedArea == e.name) return absl::OkStatus();
      std::string key = absl::StrCat(key_prefix, e.name);
      if (!ValidateRelativePath(key).ok()) return absl::OkStatus();
      if (e.type == FileType::kDirectory) {
        pending.emplace_back(std::move(key), std::nullopt);
      } else {
        fn(dir, e, key);
      }
      return absl::OkStatus();
    });
    if (!listed.ok()) return StorageError(listed);
  }
  return absl::OkStatus();
}

absl::Status DirStorage::List(const std::string& prefix,
                              const std::function<void(const ObjectInfo&)>& fn) {
  if (!prefix.empty()) {
    DS_RETURN_IF_ERROR(ValidateRelativePath(prefix));
    if (SplitKey(prefix).front() == kReservedArea) return absl::OkStatus();  // never listed
  }
  std::string path;
  return WalkTree(root_, prefix,
                  [&](const Directory& dir, const platform::DirEntry& e, const std::string& key) {
                    if (e.type != FileType::kFile || IsTempName(e.name)) return;
                    absl::StatusOr<FileInfo> info = dir.StatAt(e.name);
                    if (!info.ok() || info->type != FileType::kFile) return;
                    path.assign(root_).append("/").append(key);
                    fn(InfoOf(key, path, *info));
                  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Storage>> OpenDirStorage(const std::string& root) {
  return OpenDirStorage(root, DirStorageOptions{});
}

absl::StatusOr<std::unique_ptr<Storage>> OpenDirStorage(const std::string& root,
                                                        const DirStorageOptions& options) {
  if (root.empty()) return absl::InvalidArgumentError("storage root is empty");
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(root, ec);
  if (ec) return platform::ErrnoToStatus(ec.value(), absl::StrCat("resolve storage root ", root));
  std::string path = abs.lexically_normal().string();
  while (path.size() > 1 && path.back() == '/') path.pop_back();

  std::filesystem::create_directories(path, ec);
  absl::StatusOr<FileInfo> info = platform::Stat(path, /*follow_links=*/true);
  if (!info.ok()) {
    if (ec) return platform::ErrnoToStatus(ec.value(), absl::StrCat("create storage root ", path));
    return platform::WithContext(info.status(), absl::StrCat("create storage root ", path));
  }
  if (info->type != FileType::kDirectory) {
    return absl::NotFoundError(absl::StrCat("storage root ", path, " is not a directory"));
  }

  // Prove we can write (access() is unreliable on network shares) and find out what the share
  // can hold and do, in a scratch folder that is removed again.
  DS_ASSIGN_OR_RETURN(Directory root_dir, OpenRoot(path));
  DS_ASSIGN_OR_RETURN(DirProbe probe, ProbeDirStorage(root_dir, path, options.unnamed_files));
  const int max_unnamed = probe.features.unnamed_files ? UnnamedBudgetMax() : 0;
  return std::make_unique<DirStorage>(std::move(path), std::move(probe.features),
                                      probe.syncfs_flushes, max_unnamed);
}

absl::StatusOr<std::vector<std::string>> ListTempFiles(const std::string& root,
                                                       const std::string& prefix) {
  std::vector<std::string> starts;
  const std::string areas[] = {
      absl::StrCat(std::string(kReservedArea), "/", std::string(kVersionsDir)),
      absl::StrCat(std::string(kReservedArea), "/", kSidecarDir)};
  if (prefix.empty()) {
    starts = {"", areas[0], areas[1]};
  } else {
    DS_RETURN_IF_ERROR(ValidateRelativePath(prefix));
    starts.push_back(prefix);
    if (SplitKey(prefix).front() != kReservedArea) {
      for (const std::string& area : areas) starts.push_back(absl::StrCat(area, "/", prefix));
    }
  }
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(root, ec);
  if (ec) return platform::ErrnoToStatus(ec.value(), absl::StrCat("resolve storage root ", root));
  std::string root_path = abs.lexically_normal().string();
  while (root_path.size() > 1 && root_path.back() == '/') root_path.pop_back();
  std::vector<std::string> out;
  for (const std::string& start : starts) {
    DS_RETURN_IF_ERROR(
        WalkTree(root_path, start,
                 [&](const Directory&, const platform::DirEntry& e, const std::string& key) {
                   if (e.type == FileType::kFile && IsTempName(e.name)) out.push_back(key);
                 }));
  }
  return out;
}

}  // namespace ds
