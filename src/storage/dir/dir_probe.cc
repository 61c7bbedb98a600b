#include "storage/dir/dir_probe.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace ds {
namespace {

constexpr int kBusyAttempts = 8;
// The mtime the probe sets: nanoseconds that every precision coarser than 1 ns rounds away.
constexpr int64_t kProbeMtimeNs = 1'700'000'001'123'456'789;
constexpr size_t kPathProbeComponentBytes = 250;

struct FsKind {
  bool syncfs_flushes = false;
  std::string name;
};

// True for local block filesystems, where syncfs() writes back every dirty page and commits the
// journal (with a cache flush) before returning.
FsKind FilesystemOf(int fd) {
  struct statfs sf {};
  if (::fstatfs(fd, &sf) != 0) return {false, "unknown"};
  switch (static_cast<unsigned long>(sf.f_type)) {
    case EXT4_SUPER_MAGIC: return {true, "ext4"};  // also ext2/ext3
    case XFS_SUPER_MAGIC: return {true, "xfs"};
    case BTRFS_SUPER_MAGIC: return {true, "btrfs"};
    case F2FS_SUPER_MAGIC: return {true, "f2fs"};
    case TMPFS_MAGIC: return {true, "tmpfs"};
    case OVERLAYFS_SUPER_MAGIC: return {true, "overlayfs"};
    case NFS_SUPER_MAGIC: return {false, "nfs"};
    case SMB_SUPER_MAGIC: return {false, "smb"};
    case 0xFE534D42: return {false, "smb2"};
    case 0xFF534D42: return {false, "cifs"};
    case FUSE_SUPER_MAGIC: return {false, "fuse"};
    default: return {false, absl::StrCat("0x", absl::Hex(sf.f_type))};
  }
}

// Removes what the probe made, closed first; EBUSY is retried.
class Scratch {
 public:
  Scratch(int parent_fd, std::string name) : parent_(parent_fd), name_(std::move(name)) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    for (auto it = made_.rbegin(); it != made_.rend(); ++it) {
      const int flags = it->second ? AT_REMOVEDIR : 0;
      (void)RetryWhileBusy([&] { return ::unlinkat(dir_.get(), it->first.c_str(), flags) == 0 ? 0 : errno; });
    }
    dir_.Reset();
    (void)RetryWhileBusy([&] { return ::unlinkat(parent_, name_.c_str(), AT_REMOVEDIR) == 0 ? 0 : errno; });
  }
  int fd() const { return dir_.get(); }
  void Open(UniqueFd fd) { dir_ = std::move(fd); }
  // Records a name to remove (`is_dir`: with rmdir), in reverse order of recording.
  void Made(std::string name, bool is_dir) { made_.emplace_back(std::move(name), is_dir); }

 private:
  const int parent_;
  const std::string name_;
  UniqueFd dir_;
  std::vector<std::pair<std::string, bool>> made_;
};

// Creates `name` in `dir` with one byte of content and closes it. 0 or errno.
int CreateFile(int dir, const char* name) {
  UniqueFd fd(::openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd.valid()) return errno;
  if (WriteAll(fd.get(), "x", 1) != 0) return errno;
  return fd.Close();
}

bool Listed(int dir, const char* name) {
  UniqueFd d(::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.valid()) return false;
  DIR* stream = ::fdopendir(d.Release());
  if (stream == nullptr) return false;
  bool found = false;
  while (struct dirent* e = ::readdir(stream)) {
    if (std::strcmp(e->d_name, name) == 0) found = true;
  }
  ::closedir(stream);
  return found;
}

// Precision at which the share kept `set` as `got` (Unix ns): the finest of 1 ns ... 2 s it
// agrees to; 0 when it did not keep it at all.
int64_t PrecisionOf(int64_t set, int64_t got) {
  const int64_t d = set > got ? set - got : got - set;
  for (int64_t p : {int64_t{1}, int64_t{100}, int64_t{1'000}, int64_t{1'000'000}, int64_t{1'000'000'000},
                    int64_t{2'000'000'000}}) {
    if (d < p) return p;
  }
  return 0;
}

// Sets both timestamps of `name` by path after its data handle is closed (SMB sets the mtime at
// close, and some FUSE clients ignore UTIME_OMIT), then reads the mtime back.
int64_t ProbeMtimePrecision(int dir, const char* name) {
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = static_cast<time_t>(kProbeMtimeNs / 1'000'000'000);
  times[0].tv_nsec = times[1].tv_nsec = static_cast<long>(kProbeMtimeNs % 1'000'000'000);
  if (::utimensat(dir, name, times, AT_SYMLINK_NOFOLLOW) != 0) return 0;
  struct stat st {};
  if (::fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return 0;
  return PrecisionOf(kProbeMtimeNs, MtimeNs(st));
}

bool XattrsWork(int dir, const char* name) {
  UniqueFd fd(::openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return false;
  if (::fsetxattr(fd.get(), "user.datasync.probe", "1", 1, 0) != 0) return false;
  char v[4];
  const bool ok = ::fgetxattr(fd.get(), "user.datasync.probe", v, sizeof v) == 1;
  ::fremovexattr(fd.get(), "user.datasync.probe");
  return ok;
}

// An O_TMPFILE file made in `dir` and linked under a name through /proc/self/fd.
bool UnnamedFilesWork(Scratch& scratch) {
  UniqueFd fd(::openat(scratch.fd(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644));
  if (!fd.valid()) return false;
  const std::string proc = absl::StrCat("/proc/self/fd/", fd.get());
  if (::linkat(AT_FDCWD, proc.c_str(), scratch.fd(), "unnamed", AT_SYMLINK_FOLLOW) != 0) return false;
  scratch.Made("unnamed", false);
  return true;
}

// The longest key the share holds, found by nesting folders of 250-byte names (at most 16).
size_t ProbeMaxKeyBytes(Scratch& scratch, size_t name_max) {
  const std::string component(std::min(kPathProbeComponentBytes, name_max), 'p');
  size_t held = 0;
  UniqueFd dir(::fcntl(scratch.fd(), F_DUPFD_CLOEXEC, 0));
  std::string rel;
  for (int depth = 0; depth < 16 && dir.valid(); ++depth) {
    // A file at this depth: key = rel + component.
    const std::string key_bytes = absl::StrCat(rel, component);
    if (CreateFile(dir.get(), component.c_str()) != 0) break;
    held = key_bytes.size();
    (void)RetryWhileBusy([&] { return ::unlinkat(dir.get(), component.c_str(), 0) == 0 ? 0 : errno; });
    if (::mkdirat(dir.get(), component.c_str(), 0755) != 0) break;
    rel = absl::StrCat(rel, component, "/");
    scratch.Made(rel.substr(0, rel.size() - 1), true);
    dir = UniqueFd(::openat(dir.get(), component.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  return held == 16 * (component.size() + 1) - 1 ? 4096 : held;
}

// True when a name Windows cannot hold is created and listed under exactly that name.
bool OddNamesHeld(Scratch& scratch) {
  constexpr char kOddName[] = "odd:name*";
  if (CreateFile(scratch.fd(), kOddName) != 0) return false;
  scratch.Made(kOddName, false);
  return Listed(scratch.fd(), kOddName);
}

absl::StatusOr<DirProbe> Probe(int root_fd, const std::string& root, bool try_unnamed) {
  const std::string area_name(kReservedArea);
  DirProbe out;
  const FsKind fs = FilesystemOf(root_fd);
  out.syncfs_flushes = fs.syncfs_flushes;
  out.filesystem = fs.name;
  if (::mkdirat(root_fd, area_name.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("create ", root, "/", area_name));
  }
  UniqueFd area(::openat(root_fd, area_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!area.valid()) return ErrnoStatus(errno, absl::StrCat("open ", root, "/", area_name));
  const std::string name = absl::StrCat(std::string(kTempPrefix), "probe-", HexEncode(RandomBytes(4)));
  if (::mkdirat(area.get(), name.c_str(), 0755) != 0) {
    return ErrnoStatus(errno, absl::StrCat("storage root ", root, " is not writable: create a probe folder"));
  }
  Scratch scratch(area.get(), name);
  scratch.Open(UniqueFd(::openat(area.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)));
  if (scratch.fd() < 0) return ErrnoStatus(errno, absl::StrCat("open the probe folder in ", root));
  if (int e = CreateFile(scratch.fd(), "Probe-Aa"); e != 0) {
    return ErrnoStatus(e, absl::StrCat("storage root ", root, " is not writable: create a probe file"));
  }
  scratch.Made("Probe-Aa", false);
  StorageFeatures& f = out.features;
  struct stat st {};
  f.case_insensitive = ::fstatat(scratch.fd(), "PROBE-AA", &st, AT_SYMLINK_NOFOLLOW) == 0;
  f.metadata_on_object = XattrsWork(scratch.fd(), "Probe-Aa");
  f.mtime_precision_ns = ProbeMtimePrecision(scratch.fd(), "Probe-Aa");
  f.hard_links = ::linkat(scratch.fd(), "Probe-Aa", scratch.fd(), "link", 0) == 0;
  if (f.hard_links) scratch.Made("link", false);
  f.unnamed_files = try_unnamed && out.syncfs_flushes && UnnamedFilesWork(scratch);
  struct statvfs vfs {};
  if (::fstatvfs(scratch.fd(), &vfs) == 0 && vfs.f_namemax > 0) {
    f.max_name_bytes = std::min<size_t>(vfs.f_namemax, f.max_name_bytes);
  }
  // Keys live below the root: what the probe folder's depth (two components) used up is left
  // to keys too, as the probe's own path is longer than a key's.
  const size_t probed = ProbeMaxKeyBytes(scratch, f.max_name_bytes);
  f.max_key_bytes = probed >= 4096 ? 4096 : probed;
  // A share that maps or refuses a name Windows cannot hold follows Windows' rules. Tried last,
  // and not on a case-insensitive share (SMB: Windows' rules anyway), where a refused name makes
  // some clients (smbnetfs) drop the connection for a moment.
  f.windows_names = f.case_insensitive || !OddNamesHeld(scratch);
  return out;
}

std::string Describe(const DirProbe& p) {
  const StorageFeatures& f = p.features;
  return absl::StrCat(p.filesystem, ", case-", f.case_insensitive ? "insensitive" : "sensitive",
                      f.windows_names ? ", Windows name rules" : "",
                      f.metadata_on_object ? ", xattrs" : ", no xattrs (metadata in sidecars)",
                      f.unnamed_files ? ", O_TMPFILE" : "", f.hard_links ? ", hard links" : ", no hard links",
                      ", mtime precision ",
                      f.mtime_precision_ns == 0 ? std::string("none (not kept)")
                                                : absl::StrCat(f.mtime_precision_ns, " ns"),
                      ", names up to ", f.max_name_bytes, " bytes, keys up to ", f.max_key_bytes,
                      " bytes", p.syncfs_flushes ? ", one syncfs per commit" : ", fsync per file");
}

}  // namespace

int RetryWhileBusy(const std::function<int()>& op) {
  auto delay = std::chrono::milliseconds(10);
  int e = op();
  for (int attempt = 1; e == EBUSY && attempt < kBusyAttempts; ++attempt) {
    std::this_thread::sleep_for(delay);
    delay *= 2;
    e = op();
  }
  return e;
}

absl::StatusOr<DirProbe> ProbeDirStorage(int root_fd, const std::string& root, bool try_unnamed) {
  struct stat st {};
  if (::fstat(root_fd, &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat storage root ", root));
  using Id = std::tuple<dev_t, ino_t, bool>;
  static std::mutex mu;
  static std::map<Id, DirProbe> probed;  // Protected by mu.
  const Id id{st.st_dev, st.st_ino, try_unnamed};
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = probed.find(id); it != probed.end()) return it->second;
  }
  DS_ASSIGN_OR_RETURN(DirProbe p, Probe(root_fd, root, try_unnamed));
  std::lock_guard<std::mutex> lock(mu);
  auto [it, fresh] = probed.emplace(id, std::move(p));
  if (fresh) spdlog::info("storage file://{}: {}", root, Describe(it->second));
  return it->second;
}

}  // namespace ds
