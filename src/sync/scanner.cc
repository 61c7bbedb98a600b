#include "sync/scanner.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <thread>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bounded_queue.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/mutex.h"
#include "common/paths.h"
#include "common/time_util.h"
#include "common/unicode.h"
#include "platform/directory.h"
#include "platform/error.h"
#include "platform/glob.h"
#include "platform/path.h"

namespace ds {
namespace {

constexpr size_t kReadChunkBytes = size_t{1} << 20;
// Files (and bytes) opened and waiting for the hashing workers at most.
constexpr size_t kHashGroupFiles = 64;
constexpr uint64_t kHashGroupBytes = uint64_t{64} << 20;
// Entries waiting behind a file being hashed before the group is hashed anyway: bounds the
// reorder queue when misses are rare.
constexpr size_t kMaxQueued = 4096;

// Reasons reported in ScanProblem::error.
constexpr char kPermissionDenied[] = "permission denied";
constexpr char kChangedWhileReading[] = "changed while reading";
constexpr char kSymlinkOutside[] = "symlink points outside the job folder";
constexpr char kSymlinkDangling[] = "dangling symlink";
constexpr char kNotRegular[] = "not a regular file";
constexpr char kNfcCollision[] = "another name in this folder is the same in Unicode NFC";

// The skip reason for a failed OS call: "permission denied", else the system's text.
std::string Reason(const absl::Status& status) {
  if (absl::IsPermissionDenied(status)) return kPermissionDenied;
  return platform::SystemErrorText(status);
}

// The entry is gone since it was listed (not: a path component is no directory).
bool Gone(const absl::Status& status) {
  return absl::IsNotFound(status) && platform::KindOf(status) != platform::ErrorKind::kNotDirectory;
}

// True when `pattern` matches: against the whole relative path, and for patterns without
// '/' also against the basename.
bool GlobMatches(const std::string& pattern, const char* path, const char* basename) {
  if (platform::GlobMatch(pattern, path)) return true;
  return basename != path && pattern.find('/') == std::string::npos &&
         platform::GlobMatch(pattern, basename);
}

// PassesFilters with the basename already located: `base` points into `path`.
bool PassesFiltersAt(const char* path, const char* base, const std::vector<std::string>& includes,
                     const std::vector<std::string>& excludes) {
  for (const std::string& pattern : excludes) {
    if (GlobMatches(pattern, path, base)) return false;
  }
  if (includes.empty()) return true;
  for (const std::string& pattern : includes) {
    if (GlobMatches(pattern, path, base)) return true;
  }
  return false;
}

// One scan: the walk's state and its output. Not thread-safe.
class Scanner {
 public:
  Scanner(const ScanOptions& options, HashCache* cache)
      : options_(options), cache_(cache), no_cached_hashes_(cache == nullptr || cache->size() == 0) {}
  ~Scanner() { FlushHashes(); }

  absl::StatusOr<ScanResult> Run() {
    const std::string what = absl::StrCat("job folder ", options_.root.string());
    absl::StatusOr<platform::Directory> root = platform::Directory::Open(options_.root);
    if (!root.ok()) return platform::WithContext(root.status(), what);
    absl::StatusOr<std::filesystem::path> real = platform::RealPath(options_.root);
    if (!real.ok()) return platform::WithContext(real.status(), what);
    root_real_prefix_ = platform::PathToUtf8(*real);
    if (root_real_prefix_.back() != '/') root_real_prefix_.push_back('/');

    if (options_.settle.count() > 0) {
      // now_ns == 0 (unset) falls back to the system clock rather than the Unix epoch.
      int64_t now_ns =
          options_.now_ns != 0 ? options_.now_ns : SystemClock()->NowUnixMs() * 1'000'000;
      // Saturates: settle times beyond ~292 years would overflow nanoseconds.
      int64_t settle_ms = std::min<int64_t>(options_.settle.count(),
                                            std::numeric_limits<int64_t>::max() / 1'000'000);
      settle_cutoff_ns_ = now_ns - settle_ms * 1'000'000;
      check_settle_ = true;
    }

    std::string prefix;
    prefix.reserve(kMaxPathBytes + 1);
    absl::Status walked = WalkDirectory(*root, prefix);
    FlushHashes();  // also closes the pending files when the walk failed
    DS_RETURN_IF_ERROR(walked);
    // Hashing checks for cancellation per chunk and leaves the file out; never return that as
    // a complete manifest.
    if (Cancelled()) return absl::CancelledError("scan cancelled");
    if (out_of_order_) {
      return absl::InternalError(absl::StrCat("scan of ", options_.root.string(),
                                              ": entries came out of path order"));
    }
    std::sort(result_.skipped.begin(), result_.skipped.end(),
              [](const ScanProblem& a, const ScanProblem& b) { return a.path < b.path; });
    result_.total_bytes = result_.files.total_bytes();
    return std::move(result_);
  }

 private:
  struct DirEntry {
    std::string name;    // in Unicode NFC: the name the manifest uses
    std::string disk;    // the name on disk when that is not `name` (not NFC); else empty
    platform::FileType type;                 // kOther also when it could not be told
    std::optional<platform::FileInfo> info;  // the entry's lstat, when the listing took one
    absl::Status info_status;                // why telling its type failed, if it did
    // Sorts as its path would: a directory as if its name ended in '/'.
    bool operator<(const DirEntry& o) const {
      const size_t n = std::min(name.size(), o.name.size());
      if (int c = std::memcmp(name.data(), o.name.data(), n); c != 0) return c < 0;
      auto next = [n](const DirEntry& e) -> int {
        if (e.name.size() > n) return static_cast<unsigned char>(e.name[n]);
        return e.type == platform::FileType::kDirectory ? '/' : -1;
      };
      return next(*this) < next(o);
    }
    const std::string& DiskName() const { return disk.empty() ? name : disk; }
  };

  bool Cancelled() const {
    return options_.cancel != nullptr && options_.cancel->load(std::memory_order_relaxed);
  }

  void Skip(std::string path, std::string error) {
    result_.skipped.push_back(ScanProblem{std::move(path), std::move(error)});
  }

  // Reads the names in `dir`. A directory that cannot be read to its end is reported (with
  // what was read kept), except when out of file handles: that fails the scan.
  absl::Status ReadNames(const platform::Directory& dir, const std::string& rel_dir,
                         std::vector<DirEntry>& out) {
    absl::Status listed = dir.List([&](const platform::DirEntry& de) {
      DirEntry& e = out.emplace_back();
      e.name = de.name;
      e.type = de.type;
      e.info = de.info;
      e.info_status = de.info_status;
      if (!IsNfc(e.name)) {
        if (std::optional<std::string> nfc = ToNfc(e.name)) {  // invalid UTF-8 is refused later
          e.disk = std::exchange(e.name, std::move(*nfc));
          renamed_seen_ = true;
        }
      }
      return absl::OkStatus();
    });
    if (absl::IsResourceExhausted(listed)) return listed;
    if (!listed.ok()) Skip(rel_dir.empty() ? "." : rel_dir, Reason(listed));
    return absl::OkStatus();
  }

  // Takes out (and reports) the entries whose names are equal in NFC: two spellings of one name
  // in one folder (made by different clients) would be one path, so neither is synced.
  void DropNfcCollisions(const std::string& rel_dir, std::vector<DirEntry>& entries) {
    std::map<std::string_view, int> count;
    for (const DirEntry& e : entries) ++count[e.name];
    if (count.size() == entries.size()) return;
    std::vector<DirEntry> kept;
    for (DirEntry& e : entries) {
      if (count[e.name] == 1) {
        kept.push_back(std::move(e));
      } else {
        Skip(rel_dir.empty() ? e.DiskName() : absl::StrCat(rel_dir, "/", e.DiskName()), kNfcCollision);
      }
    }
    entries = std::move(kept);
  }

  // Reads the names in `dir` in the order their paths sort (see DirEntry::operator<).
  absl::Status ReadSortedNames(const platform::Directory& dir, const std::string& rel_dir,
                               std::vector<DirEntry>& out) {
    DS_RETURN_IF_ERROR(ReadNames(dir, rel_dir, out));
    std::sort(out.begin(), out.end());
    // Only a folder with a name renamed to NFC can hold two spellings of one name.
    const bool renamed_here = renamed_seen_ && std::any_of(out.begin(), out.end(), [](const DirEntry& e) {
                                return !e.disk.empty();
                              });
    if (renamed_here) DropNfcCollisions(rel_dir, out);
    return absl::OkStatus();
  }

  // Scans the directory `dir`, whose relative path is `prefix` (empty for the root).
  // `prefix` is used as scratch space and restored before returning.
  absl::Status WalkDirectory(const platform::Directory& dir, std::string& prefix) {
    std::vector<DirEntry> entries;
    DS_RETURN_IF_ERROR(ReadSortedNames(dir, prefix, entries));
    const size_t prefix_len = prefix.size();
    const size_t disk_len = disk_path_.size();
    for (DirEntry& entry : entries) {
      if (Cancelled()) return absl::CancelledError("scan cancelled");
      prefix.resize(prefix_len);
      disk_path_.resize(disk_len);
      if (prefix_len > 0) {
        prefix.push_back('/');
        disk_path_.push_back('/');
      }
      const size_t base_offset = prefix.size();
      prefix.append(entry.name);
      disk_path_.append(entry.DiskName());

      if (!entry.info_status.ok()) {  // the listing could not tell its type
        if (!Gone(entry.info_status)) Skip(prefix, Reason(entry.info_status));
        continue;
      }

      switch (entry.type) {
        case platform::FileType::kDirectory:
          DS_RETURN_IF_ERROR(VisitDirectory(dir, entry.DiskName(), prefix));
          break;
        case platform::FileType::kFile:
          VisitFile(dir, entry.DiskName(), prefix, base_offset,
                    entry.info ? &*entry.info : nullptr);
          break;
        case platform::FileType::kLink:
          VisitSymlink(prefix, base_offset);
          break;
        default:
          if (PassesFilters(prefix, base_offset)) Skip(prefix, kNotRegular);
          break;
      }
    }
    prefix.resize(prefix_len);
    disk_path_.resize(disk_len);
    return absl::OkStatus();
  }

  absl::Status VisitDirectory(const platform::Directory& parent, const std::string& name,
                              std::string& path) {
    // A directory whose own path is unsafe cannot hold a valid path: report it once.
    absl::Status valid = ValidateRelativePath(path);
    if (!valid.ok()) {
      Skip(path, absl::StrCat("invalid name: ", std::string(valid.message())));
      return absl::OkStatus();
    }
    // Not following links: a directory replaced by a symlink (or a file) since readdir is not
    // descended.
    absl::StatusOr<platform::Directory> dir = parent.OpenDirectory(name);
    if (!dir.ok()) {
      if (!absl::IsNotFound(dir.status()) &&
          platform::KindOf(dir.status()) != platform::ErrorKind::kIsLink) {
        Skip(path, Reason(dir.status()));
      }
      return absl::OkStatus();
    }
    return WalkDirectory(*dir, path);
  }

  bool PassesFilters(const std::string& path, size_t base_offset) const {
    return PassesFiltersAt(path.c_str(), path.c_str() + base_offset, options_.includes,
                           options_.excludes);
  }

  // Filters and validates `path`; true when it may be included.
  bool Admit(const std::string& path, size_t base_offset) {
    if (!PassesFilters(path, base_offset)) return false;
    absl::Status valid = ValidateRelativePath(path);
    if (!valid.ok()) {
      Skip(path, absl::StrCat("invalid name: ", std::string(valid.message())));
      return false;
    }
    if (renamed_seen_ && disk_path_ != path) result_.disk_paths.emplace(path, disk_path_);
    return true;
  }

  // False (and counted) when the file is younger than the settle time.
  bool Settled(int64_t mtime_ns) {
    if (check_settle_ && mtime_ns > settle_cutoff_ns_) {
      ++result_.files_unsettled;
      return false;
    }
    return true;
  }

  // How the scan opens a file to read: never through a symlink, never blocking (a FIFO that
  // replaced the file since it was listed); the caller checks the type.
  static platform::OpenOptions ToRead() {
    platform::OpenOptions o;
    o.non_blocking = true;
    return o;
  }

  // After opening `path` failed: nothing when it was deleted since it was listed.
  void SkipOpenError(const std::string& path, const absl::Status& status) {
    if (Gone(status)) return;
    Skip(path, platform::KindOf(status) == platform::ErrorKind::kIsLink ? kChangedWhileReading
                                                                        : Reason(status));
  }

  // A regular file (not a symlink) named `name` in `dir`. `known` is its lstat when known.
  void VisitFile(const platform::Directory& dir, const std::string& name, const std::string& path,
                 size_t base_offset, const platform::FileInfo* known) {
    if (!Admit(path, base_offset)) return;
    if (known == nullptr && no_cached_hashes_) {
      // Every file is read, so open it at once and describe the open file: one path lookup
      // instead of two (lstat, then open). readdir said it is a regular file; not blocking and
      // not following links make opening whatever replaced it since harmless, and Info tells.
      absl::StatusOr<platform::File> file = dir.OpenFile(name, ToRead());
      if (!file.ok()) return SkipOpenError(path, file.status());
      absl::StatusOr<platform::FileInfo> info = file->Info();
      if (!info.ok()) return Skip(path, Reason(info.status()));
      if (info->type != platform::FileType::kFile) return Skip(path, kChangedWhileReading);
      if (!Settled(info->mtime_ns)) return;
      Enqueue(path, *std::move(file), IdentityOf(*info));
      return;
    }
    platform::FileInfo info;
    if (known != nullptr) {
      info = *known;
    } else {
      absl::StatusOr<platform::FileInfo> stat = dir.StatAt(name);
      if (!stat.ok()) {
        if (!Gone(stat.status())) Skip(path, Reason(stat.status()));
        return;
      }
      info = *stat;
    }
    if (info.type != platform::FileType::kFile) {  // replaced since readdir
      Skip(path, kChangedWhileReading);
      return;
    }
    if (!Settled(info.mtime_ns)) return;
    AddFile(path, IdentityOf(info), &dir, name);
  }

  // A symlink at `path`: included only when it resolves to a regular file inside root.
  void VisitSymlink(const std::string& path, size_t base_offset) {
    if (!PassesFilters(path, base_offset)) return;
    const std::filesystem::path full = options_.root / disk_path_;
    absl::StatusOr<platform::FileInfo> st = platform::Stat(full, /*follow_links=*/true);
    if (!st.ok()) {
      if (absl::IsNotFound(st.status()) ||
          platform::KindOf(st.status()) == platform::ErrorKind::kIsLink) {
        if (Admit(path, base_offset)) Skip(path, kSymlinkDangling);
      } else if (Admit(path, base_offset)) {
        Skip(path, Reason(st.status()));
      }
      return;
    }
    if (st->type == platform::FileType::kDirectory)
      return;  // links to directories: never descended
    if (!Admit(path, base_offset)) return;
    absl::StatusOr<std::filesystem::path> real = platform::RealPath(full);
    if (!real.ok()) {
      Skip(path,
           Gone(real.status()) || platform::KindOf(real.status()) == platform::ErrorKind::kIsLink
               ? std::string(kSymlinkDangling)
               : Reason(real.status()));
      return;
    }
    const std::string target = platform::PathToUtf8(*real);
    if (target.compare(0, root_real_prefix_.size(), root_real_prefix_) != 0) {
      Skip(path, kSymlinkOutside);
      return;
    }
    if (st->type != platform::FileType::kFile) {
      Skip(path, kNotRegular);
      return;
    }
    if (!Settled(st->mtime_ns)) return;
    // The real path had no symlinks left; should one appear since, the identity check tells.
    AddFile(path, IdentityOf(*st, /*via_link=*/true), nullptr, target);
  }

  // Adds the file at `path` (settled, admitted, `name` in `dir`, or a path with dir null) with
  // its hash from the cache or from reading it, opened only while it is the file stat'ed
  // (OpenScannedFileAt).
  void AddFile(const std::string& path, const FileIdentity& id, const platform::Directory* dir,
               const std::string& name) {
    if (cache_ != nullptr) {
      if (std::optional<Sha256Digest> sha = cache_->Lookup(path, id.size, id.mtime_ns)) {
        Emit(path, id, *sha);
        return;
      }
    }
    absl::StatusOr<platform::File> file = OpenScannedFileAt(dir, name, id);
    if (!file.ok()) return SkipUnopened(path, file.status());
    Enqueue(path, *std::move(file), id);
  }

  void SkipUnopened(const std::string& path, const absl::Status& status) {
    if (absl::IsNotFound(status)) return;  // deleted since it was listed
    if (absl::IsAborted(status)) return Skip(path, kChangedWhileReading);
    Skip(path, absl::IsPermissionDenied(status) ? std::string(kPermissionDenied)
                                                : std::string(status.message()));
  }

  // Queues the open `file` (checked: regular, settled, `size` and `mtime_ns` as fstat'ed)
  // for hashing by the workers while the walk goes on; the entry waits in the queue until then.
  void Enqueue(const std::string& path, platform::File file, const FileIdentity& id) {
    const uint64_t size = id.size;
    const int64_t mtime_ns = id.mtime_ns;
    auto job = std::make_unique<PendingHash>();
    job->path = path;
    job->file = std::move(file);
    job->size = size;
    job->mtime_ns = mtime_ns;
    PendingHash* raw = job.get();
    queue_.push_back(Queued{path, id, {}, std::move(job)});
    StartWorkers();
    {
      MutexLock lock(&mu_);
      ++busy_files_;
      busy_bytes_ += size;
    }
    // Open until FlushHashes, and not full: busy_files_ bounds it.
    [[maybe_unused]] const bool queued = work_.Push(raw);
    WaitForRoom();
    Drain(/*all=*/false);
  }

  // Bounded: at most kHashGroupFiles files (kHashGroupBytes) open and waiting at once.
  // Large files: one per worker whatever their size. Once full, the walk waits until half
  // is done (not for each file: a wake-up per file cost more than the file's hashing).
  void WaitForRoom() {
    MutexLock lock(&mu_);
    if (CanQueue()) return;
    walk_waiting_ = true;
    while (!LowWater()) done_cv_.Wait(&mu_);
    walk_waiting_ = false;
  }

  // Adds an entry with a known hash: straight into the manifest unless entries before it wait
  // for their hash.
  void Emit(const std::string& path, const FileIdentity& id, const Sha256Digest& sha) {
    if (queue_.empty()) {
      Append(path, id, sha, /*hashed=*/false);
      return;
    }
    queue_.push_back(Queued{path, id, sha, nullptr});
    if (queue_.size() >= kMaxQueued) Drain(/*all=*/true);
  }

  void Append(std::string_view path, const FileIdentity& id, const Sha256Digest& sha,
              bool hashed, bool by_hook = false) {
    if (!result_.files.Add(path, id.size, id.mtime_ns, sha)) {
      out_of_order_ = true;
      return;
    }
    result_.identities.push_back(id);
    const auto index = static_cast<uint32_t>(result_.files.size() - 1);
    if (hashed) result_.hashed.push_back(index);
    if (by_hook) result_.read_by_hook.push_back(index);
  }

  // A file opened and checked by AddFile, waiting to be hashed by a worker.
  struct PendingHash {
    std::string path;
    platform::File file;    // open until the entry leaves the queue
    uint64_t size = 0;      // bytes, as stat'ed
    int64_t mtime_ns = 0;   // as stat'ed
    Sha256Digest sha256{};  // result when `hashed`
    bool hashed = false;
    std::string error;      // skip reason when not hashed ("": cancelled)
    bool by_hook = false;   // read (and hashed) by options_.read_new
    bool done = false;      // a worker finished with it; guarded by the scanner's mu_
  };
  // An entry waiting for the files before it (or itself) to be hashed, in path order.
  struct Queued {
    std::string path;
    FileIdentity id;                   // as stat'ed
    Sha256Digest sha256;               // from the cache, unless `job`
    std::unique_ptr<PendingHash> job;  // the hashing of this file by this scan, if any
  };

  // Reads and hashes one pending file (any thread). `buffer` holds kReadChunkBytes.
  void HashOne(PendingHash& h, char* buffer) const {
    if (h.size > kReadChunkBytes) h.file.AdviseSequential();
    Sha256 hash;
    uint64_t read_total = 0;
    // Reading stops at the size fstat reported (saving a read per small file); growth beyond it
    // shows in the second fstat.
    while (read_total < h.size) {
      if (Cancelled()) return;
      absl::StatusOr<size_t> n = h.file.Read(absl::MakeSpan(buffer, kReadChunkBytes));
      if (!n.ok()) {
        h.error = absl::StrCat("read error: ", Reason(n.status()));
        return;
      }
      if (*n == 0) break;
      hash.Update(buffer, *n);
      read_total += *n;
    }
    absl::StatusOr<platform::FileInfo> after = h.file.Info();
    if (!after.ok()) {
      h.error = Reason(after.status());
      return;
    }
    if (read_total != h.size || after->size != h.size || after->mtime_ns != h.mtime_ns) {
      h.error = kChangedWhileReading;
      return;
    }
    h.sha256 = hash.Finish();
    h.hashed = true;
  }

  // Offers the file to options_.read_new, else hashes it (any thread).
  void Process(PendingHash& h, char* buffer) const {
    if (options_.read_new && !Cancelled()) {
      if (auto sha = options_.read_new(h.path, h.file, h.size, h.mtime_ns)) {
        h.sha256 = *sha;
        h.hashed = h.by_hook = true;
        return;
      }
      // Declined, maybe after reading some of it: hash it from the start.
      if (absl::Status s = h.file.Seek(0); !s.ok()) {
        h.error = absl::StrCat("seek: ", Reason(s));
        return;
      }
    }
    HashOne(h, buffer);
  }

  // Room for one more file to hash (see the bound in WaitForRoom).
  bool CanQueue() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return busy_files_ < kHashGroupFiles &&
           (busy_bytes_ < kHashGroupBytes || busy_files_ < HashThreads());
  }
  // Half the bound free again (implies CanQueue()). Called by the workers too: reads nothing the
  // walk changes without mu_ (not workers_).
  bool LowWater() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return busy_files_ <= kHashGroupFiles / 2 &&
           (busy_bytes_ <= kHashGroupBytes / 2 || busy_files_ < HashThreads());
  }
  size_t HashThreads() const { return static_cast<size_t>(std::max(1, options_.hash_threads)); }

  // options_.hash_threads workers, started with the first file to hash.
  void StartWorkers() {
    if (!workers_.empty()) return;
    const size_t n = HashThreads();
    for (size_t t = 0; t < n; ++t) {
      workers_.emplace_back([this] {
        std::unique_ptr<char[]> buffer(new char[kReadChunkBytes]);
        while (std::optional<PendingHash*> h = work_.Pop()) {
          Process(**h, buffer.get());
          MutexLock lock(&mu_);
          (*h)->done = true;
          --busy_files_;
          busy_bytes_ -= (*h)->size;
          if (draining_ || (walk_waiting_ && LowWater())) done_cv_.SignalAll();
        }
      });
    }
  }

  // Moves the entries at the front of the queue whose hash is settled into the manifest, in
  // order (files that failed are left out and skipped); with `all`, waits for every one.
  void Drain(bool all) {
    while (!queue_.empty()) {
      Queued& q = queue_.front();
      if (q.job) {
        PendingHash& h = *q.job;
        if (!WaitDone(h, all)) return;
        h.file = platform::File();  // closed: done with it
        if (h.hashed) {
          ++result_.files_hashed;
          result_.bytes_hashed += h.size;
          if (cache_ != nullptr) cache_->Store(q.path, h.size, h.mtime_ns, h.sha256);
          Append(q.path, q.id, h.sha256, /*hashed=*/true, h.by_hook);
        } else if (!h.error.empty()) {
          Skip(q.path, h.error);
        }  // else cancelled: left out
      } else {
        Append(q.path, q.id, q.sha256, /*hashed=*/false);  // from the cache
      }
      queue_.pop_front();
    }
  }

  // Whether a worker is done with `h`; with `wait`, waits for that.
  bool WaitDone(const PendingHash& h, bool wait) {
    MutexLock lock(&mu_);
    if (!h.done && !wait) return false;
    draining_ = true;
    while (!h.done) done_cv_.Wait(&mu_);
    draining_ = false;
    return true;
  }

  // Settles every queued entry (waiting for the workers), then stops the workers.
  void FlushHashes() {
    Drain(/*all=*/true);
    work_.Close();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  // Constant after construction.
  const ScanOptions& options_;
  HashCache* const cache_;                // may be null; not owned
  const bool no_cached_hashes_;           // every file this scan admits is read

  // Set at the start of Run().
  std::string root_real_prefix_;  // realpath of root with a trailing '/'
  // The current entry's relative path as spelled on disk (the walk's `prefix` is its NFC form).
  std::string disk_path_;
  bool renamed_seen_ = false;     // a name not in NFC was met: paths may differ from disk_path_
  bool check_settle_ = false;
  int64_t settle_cutoff_ns_ = 0;  // Unix nanoseconds; files modified later are unsettled

  ScanResult result_;
  std::deque<Queued> queue_;          // from the first file being hashed on, in path order

  // The hashing workers and their queue.
  std::vector<std::thread> workers_;
  // Not yet taken by a worker; closed by FlushHashes. Unbounded: busy_files_ bounds it.
  BoundedQueue<PendingHash*> work_{std::numeric_limits<size_t>::max()};
  Mutex mu_;
  CondVar done_cv_;  // a file was done
  size_t busy_files_ ABSL_GUARDED_BY(mu_) = 0;    // queued or being hashed
  uint64_t busy_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool walk_waiting_ ABSL_GUARDED_BY(mu_) = false;  // the walk waits for LowWater()
  bool draining_ ABSL_GUARDED_BY(mu_) = false;      // Drain waits for a file to be done
  bool out_of_order_ = false;         // an entry did not sort after the one before (a bug)
};

}  // namespace

absl::StatusOr<ScanResult> ScanJob(const ScanOptions& options, HashCache* cache) {
  Scanner scanner(options, cache);
  return scanner.Run();
}

const std::string& DiskPathOf(const ScanResult& scan, const std::string& path) {
  auto it = scan.disk_paths.find(path);
  return it == scan.disk_paths.end() ? path : it->second;
}

bool PassesFilters(const std::string& relative_path, const std::vector<std::string>& includes,
                   const std::vector<std::string>& excludes) {
  size_t slash = relative_path.rfind('/');
  const char* path = relative_path.c_str();
  return PassesFiltersAt(path, slash == std::string::npos ? path : path + slash + 1, includes,
                         excludes);
}

}  // namespace ds
