#include "sync/scanner.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <thread>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <map>
#include <optional>
#include <string>
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

// Closes a file descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

std::string ErrnoReason(int err) {
  if (err == EACCES || err == EPERM) return kPermissionDenied;
  return std::strerror(err);
}

// True when `pattern` matches: against the whole relative path, and for patterns without
// '/' also against the basename.
bool GlobMatches(const std::string& pattern, const char* path, const char* basename) {
  if (::fnmatch(pattern.c_str(), path, 0) == 0) return true;
  return basename != path && pattern.find('/') == std::string::npos &&
         ::fnmatch(pattern.c_str(), basename, 0) == 0;
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
    int root_fd = ::open(options_.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) {
      return ErrnoStatus(errno, absl::StrCat("job folder ", options_.root.string()));
    }
    FdCloser close_root(root_fd);
    char* real = ::realpath(options_.root.c_str(), nullptr);
    if (real == nullptr) {
      return ErrnoStatus(errno, absl::StrCat("job folder ", options_.root.string()));
    }
    root_real_prefix_ = real;
    std::free(real);
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
    absl::Status walked = WalkDirectory(root_fd, prefix);
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
    unsigned char type;  // DT_*; resolved by lstat when readdir does not say
    bool have_stat;      // `st` holds the entry's lstat
    struct stat st;
    // Sorts as its path would: a directory as if its name ended in '/'.
    bool operator<(const DirEntry& o) const {
      const size_t n = std::min(name.size(), o.name.size());
      if (int c = std::memcmp(name.data(), o.name.data(), n); c != 0) return c < 0;
      auto next = [n](const DirEntry& e) -> int {
        if (e.name.size() > n) return static_cast<unsigned char>(e.name[n]);
        return e.type == DT_DIR ? '/' : -1;
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

  // Reads the names in `dir_fd` (which it does not close).
  absl::Status ReadNames(int dir_fd, const std::string& rel_dir, std::vector<DirEntry>& out) {
    int fd = ::dup(dir_fd);
    if (fd < 0) return ErrnoStatus(errno, "dup");
    DIR* dir = ::fdopendir(fd);
    if (dir == nullptr) {
      int e = errno;
      ::close(fd);
      return ErrnoStatus(e, "fdopendir");
    }
    ::rewinddir(dir);
    for (;;) {
      errno = 0;
      struct dirent* de = ::readdir(dir);
      if (de == nullptr) {
        int e = errno;
        ::closedir(dir);
        if (e != 0) Skip(rel_dir.empty() ? "." : rel_dir, ErrnoReason(e));
        return absl::OkStatus();
      }
      const char* n = de->d_name;
      if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) continue;
      DirEntry& e = out.emplace_back();
      e.name = n;
      e.type = de->d_type;
      e.have_stat = false;
      if (!IsNfc(e.name)) {
        if (std::optional<std::string> nfc = ToNfc(e.name)) {  // invalid UTF-8 is refused later
          e.disk = std::exchange(e.name, std::move(*nfc));
          renamed_seen_ = true;
        }
      }
    }
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

  // Reads the names in `dir_fd` in the order their paths sort (see DirEntry::operator<).
  absl::Status ReadSortedNames(int dir_fd, const std::string& rel_dir, std::vector<DirEntry>& out) {
    DS_RETURN_IF_ERROR(ReadNames(dir_fd, rel_dir, out));
    for (DirEntry& e : out) {
      if (e.type != DT_UNKNOWN) continue;
      if (::fstatat(dir_fd, e.DiskName().c_str(), &e.st, AT_SYMLINK_NOFOLLOW) == 0) {
        e.have_stat = true;
        e.type = IFTODT(e.st.st_mode);
      }
    }
    std::sort(out.begin(), out.end());
    // Only a folder with a name renamed to NFC can hold two spellings of one name.
    const bool renamed_here = renamed_seen_ && std::any_of(out.begin(), out.end(), [](const DirEntry& e) {
                                return !e.disk.empty();
                              });
    if (renamed_here) DropNfcCollisions(rel_dir, out);
    return absl::OkStatus();
  }

  // Scans the directory open as `dir_fd`, whose relative path is `prefix` (empty for the root).
  // `prefix` is used as scratch space and restored before returning.
  absl::Status WalkDirectory(int dir_fd, std::string& prefix) {
    std::vector<DirEntry> entries;
    DS_RETURN_IF_ERROR(ReadSortedNames(dir_fd, prefix, entries));
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

      const unsigned char type = entry.type;
      if (type == DT_UNKNOWN) {  // lstat failed in ReadSortedNames: try once more for the reason
        struct stat st;
        if (::fstatat(dir_fd, entry.DiskName().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT) {
          Skip(prefix, ErrnoReason(errno));
        }
        continue;
      }

      switch (type) {
        case DT_DIR:
          DS_RETURN_IF_ERROR(VisitDirectory(dir_fd, entry.DiskName(), prefix));
          break;
        case DT_REG:
          VisitFile(dir_fd, entry.DiskName(), prefix, base_offset, entry.have_stat ? &entry.st : nullptr);
          break;
        case DT_LNK:
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

  absl::Status VisitDirectory(int parent_fd, const std::string& name, std::string& path) {
    // A directory whose own path is unsafe cannot hold a valid path: report it once.
    absl::Status valid = ValidateRelativePath(path);
    if (!valid.ok()) {
      Skip(path, absl::StrCat("invalid name: ", std::string(valid.message())));
      return absl::OkStatus();
    }
    // O_NOFOLLOW: a directory replaced by a symlink since readdir is not descended.
    int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e != ENOENT && e != ELOOP && e != ENOTDIR) Skip(path, ErrnoReason(e));
      return absl::OkStatus();
    }
    FdCloser close_fd(fd);
    return WalkDirectory(fd, path);
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
  // replaced the file since it was listed).
  static constexpr int kOpenToRead = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;

  // After opening `path` failed with `e`: nothing when it was deleted since it was listed.
  void SkipOpenError(const std::string& path, int e) {
    if (e != ENOENT) Skip(path, e == ELOOP ? kChangedWhileReading : ErrnoReason(e));
  }

  // A regular file (not a symlink) named `name` in `dir_fd`. `st` is its lstat when known.
  void VisitFile(int dir_fd, const std::string& name, const std::string& path, size_t base_offset,
                 const struct stat* known) {
    if (!Admit(path, base_offset)) return;
    if (known == nullptr && no_cached_hashes_) {
      // Every file is read, so open it at once and fstat the descriptor: one path lookup
      // instead of two (lstat, then open). readdir said it is a regular file; O_NONBLOCK and
      // O_NOFOLLOW make opening whatever replaced it since harmless, and the fstat tells.
      int fd = ::openat(dir_fd, name.c_str(), kOpenToRead);
      if (fd < 0) {
        SkipOpenError(path, errno);
        return;
      }
      struct stat st;
      if (::fstat(fd, &st) != 0) {
        Skip(path, ErrnoReason(errno));
        ::close(fd);
        return;
      }
      if (!S_ISREG(st.st_mode) || !Settled(MtimeNs(st))) {
        if (!S_ISREG(st.st_mode)) Skip(path, kChangedWhileReading);
        ::close(fd);
        return;
      }
      Enqueue(path, fd, IdentityOf(st));
      return;
    }
    struct stat st;
    if (known != nullptr) {
      st = *known;
    } else if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) Skip(path, ErrnoReason(errno));
      return;
    }
    if (!S_ISREG(st.st_mode)) {  // replaced since readdir
      Skip(path, kChangedWhileReading);
      return;
    }
    if (!Settled(MtimeNs(st))) return;
    AddFile(path, IdentityOf(st), dir_fd, name.c_str());
  }

  // A symlink at `path`: included only when it resolves to a regular file inside root.
  void VisitSymlink(const std::string& path, size_t base_offset) {
    if (!PassesFilters(path, base_offset)) return;
    std::string full = (options_.root / disk_path_).string();
    struct stat st;
    if (::stat(full.c_str(), &st) != 0) {
      int e = errno;
      if (e == ENOENT || e == ELOOP || e == ENOTDIR) {
        if (Admit(path, base_offset)) Skip(path, kSymlinkDangling);
      } else if (Admit(path, base_offset)) {
        Skip(path, ErrnoReason(e));
      }
      return;
    }
    if (S_ISDIR(st.st_mode)) return;  // links to directories are never descended
    if (!Admit(path, base_offset)) return;
    char* real = ::realpath(full.c_str(), nullptr);
    if (real == nullptr) {
      Skip(path, errno == ENOENT || errno == ELOOP ? kSymlinkDangling : ErrnoReason(errno));
      return;
    }
    std::string target(real);
    std::free(real);
    if (target.compare(0, root_real_prefix_.size(), root_real_prefix_) != 0) {
      Skip(path, kSymlinkOutside);
      return;
    }
    if (!S_ISREG(st.st_mode)) {
      Skip(path, kNotRegular);
      return;
    }
    if (!Settled(MtimeNs(st))) return;
    // The real path had no symlinks left; should one appear since, the identity check tells.
    AddFile(path, IdentityOf(st, /*via_link=*/true), AT_FDCWD, target.c_str());
  }

  // Adds the file at `path` (settled, admitted, `name` in `dir_fd`) with its hash from the cache
  // or from reading it, opened only while it is the file stat'ed (OpenScannedFileAt).
  void AddFile(const std::string& path, const FileIdentity& id, int dir_fd, const char* name) {
    if (cache_ != nullptr) {
      if (std::optional<Sha256Digest> sha = cache_->Lookup(path, id.size, id.mtime_ns)) {
        Emit(path, id, *sha);
        return;
      }
    }
    absl::StatusOr<UniqueFd> fd = OpenScannedFileAt(dir_fd, name, id);
    if (!fd.ok()) return SkipUnopened(path, fd.status());
    Enqueue(path, fd->Release(), id);
  }

  void SkipUnopened(const std::string& path, const absl::Status& status) {
    if (absl::IsNotFound(status)) return;  // deleted since it was listed
    if (absl::IsAborted(status)) return Skip(path, kChangedWhileReading);
    Skip(path, absl::IsPermissionDenied(status) ? std::string(kPermissionDenied)
                                                : std::string(status.message()));
  }

  // Queues the file open as `fd` (checked: regular, settled, `size` and `mtime_ns` as fstat'ed)
  // for hashing by the workers while the walk goes on; the entry waits in the queue until then.
  void Enqueue(const std::string& path, int fd, const FileIdentity& id) {
    const uint64_t size = id.size;
    const int64_t mtime_ns = id.mtime_ns;
    auto job = std::make_unique<PendingHash>();
    job->path = path;
    job->fd = fd;
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
    int fd = -1;            // owned until the entry leaves the queue
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
    if (h.size > kReadChunkBytes) ::posix_fadvise(h.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    Sha256 hash;
    uint64_t read_total = 0;
    // Reading stops at the size fstat reported (saving a read per small file); growth beyond it
    // shows in the second fstat.
    while (read_total < h.size) {
      if (Cancelled()) return;
      ssize_t n = ::read(h.fd, buffer, kReadChunkBytes);
      if (n < 0) {
        if (errno == EINTR) continue;
        h.error = absl::StrCat("read error: ", ErrnoReason(errno));
        return;
      }
      if (n == 0) break;
      hash.Update(buffer, static_cast<size_t>(n));
      read_total += static_cast<uint64_t>(n);
    }
    struct stat after;
    if (::fstat(h.fd, &after) != 0) {
      h.error = ErrnoReason(errno);
      return;
    }
    if (read_total != h.size || static_cast<uint64_t>(after.st_size) != h.size ||
        MtimeNs(after) != h.mtime_ns) {
      h.error = kChangedWhileReading;
      return;
    }
    h.sha256 = hash.Finish();
    h.hashed = true;
  }

  // Offers the file to options_.read_new, else hashes it (any thread).
  void Process(PendingHash& h, char* buffer) const {
    if (options_.read_new && !Cancelled()) {
      if (auto sha = options_.read_new(h.path, h.fd, h.size, h.mtime_ns)) {
        h.sha256 = *sha;
        h.hashed = h.by_hook = true;
        return;
      }
      // Declined, maybe after reading some of it: hash it from the start.
      if (::lseek(h.fd, 0, SEEK_SET) < 0) {
        h.error = absl::StrCat("seek: ", ErrnoReason(errno));
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
        ::close(h.fd);
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
