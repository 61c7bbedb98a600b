#include "storage/dir/dir_probe.h"

#include <algorithm>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/mutex.h"
#include "platform/dir_extra.h"
#include "platform/error.h"
#include "platform/file.h"
#include "storage/dir/dir_errors.h"

namespace ds {
namespace {

// The mtime the probe sets: nanoseconds that every precision coarser than 1 ns rounds away.
constexpr int64_t kProbeMtimeNs = 1'700'000'001'123'456'789;
constexpr size_t kPathProbeComponentBytes = 250;

// Removes what the probe made, closed first; EBUSY is retried.
class Scratch {
 public:
  Scratch(const platform::Directory& parent, std::string name)
      : parent_(parent), name_(std::move(name)) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    for (auto it = made_.rbegin(); it != made_.rend(); ++it) {
      const platform::RemoveKind kind =
          it->second ? platform::RemoveKind::kDirectory : platform::RemoveKind::kFile;
      (void)RetryWhileBusy([&] { return dir_.RemoveAt(it->first, kind); });
    }
    dir_ = platform::Directory();
    (void)RetryWhileBusy([&] { return parent_.RemoveAt(name_, platform::RemoveKind::kDirectory); });
  }
  const platform::Directory& dir() const { return dir_; }
  void Open(platform::Directory dir) { dir_ = std::move(dir); }
  // Records a name to remove (`is_dir`: as a directory), in reverse order of recording.
  void Made(std::string name, bool is_dir) { made_.emplace_back(std::move(name), is_dir); }

 private:
  const platform::Directory& parent_;
  const std::string name_;
  platform::Directory dir_;
  std::vector<std::pair<std::string, bool>> made_;
};

// Creates `name` in `dir` with one byte of content and closes it (close checked: a share may
// report a failed write only there).
absl::Status CreateFile(const platform::Directory& dir, const std::string& name) {
  platform::OpenOptions options;
  options.access = platform::Access::kWrite;
  options.disposition = platform::Disposition::kCreateNew;
  DS_ASSIGN_OR_RETURN(platform::File file, dir.OpenFile(name, options));
  DS_RETURN_IF_ERROR(file.WriteAll("x"));
  return file.Close();
}

bool Listed(const platform::Directory& dir, const std::string& name) {
  bool found = false;
  (void)dir.List([&](const platform::DirEntry& e) {
    if (e.name == name) found = true;
    return absl::OkStatus();
  });
  return found;
}

// Precision at which the share kept `set` as `got` (Unix ns): the finest of 1 ns ... 2 s it
// agrees to; 0 when it did not keep it at all.
int64_t PrecisionOf(int64_t set, int64_t got) {
  const int64_t d = set > got ? set - got : got - set;
  for (int64_t p : {int64_t{1}, int64_t{100}, int64_t{1'000}, int64_t{1'000'000},
                    int64_t{1'000'000'000}, int64_t{2'000'000'000}}) {
    if (d < p) return p;
  }
  return 0;
}

// Sets both timestamps of `name` by name after its data handle is closed (SMB sets the mtime at
// close, and some FUSE clients ignore UTIME_OMIT), then reads the mtime back.
int64_t ProbeMtimePrecision(const platform::Directory& dir, const std::string& name) {
  if (!platform::SetFileTimesAt(dir, name, kProbeMtimeNs).ok()) return 0;
  absl::StatusOr<platform::FileInfo> info = dir.StatAt(name);
  if (!info.ok()) return 0;
  return PrecisionOf(kProbeMtimeNs, info->mtime_ns);
}

bool XattrsWork(const platform::Directory& dir, const std::string& name) {
  absl::StatusOr<platform::File> file = dir.OpenFile(name, platform::OpenOptions{});
  if (!file.ok() || !file->SetAttribute("datasync.probe", "1").ok()) return false;
  absl::StatusOr<std::string> got = file->GetAttribute("datasync.probe");
  (void)file->RemoveAttribute("datasync.probe");
  return got.ok() && *got == "1";
}

// An unnamed (O_TMPFILE) file made in the scratch folder and linked under a name.
bool UnnamedFilesWork(Scratch& scratch) {
  absl::StatusOr<platform::File> file = platform::CreateUnnamedFile(scratch.dir());
  if (!file.ok() || !platform::LinkUnnamedFile(*file, scratch.dir(), "unnamed").ok()) return false;
  scratch.Made("unnamed", false);
  return true;
}

// The longest key the share holds, found by nesting folders of 250-byte names (at most 16).
size_t ProbeMaxKeyBytes(Scratch& scratch, size_t name_max) {
  const std::string component(std::min(kPathProbeComponentBytes, name_max), 'p');
  size_t held = 0;
  absl::StatusOr<platform::Directory> dir = scratch.dir().OpenDirectory(".");
  std::string rel;
  for (int depth = 0; depth < 16 && dir.ok(); ++depth) {
    // A file at this depth: key = rel + component.
    const std::string key_bytes = absl::StrCat(rel, component);
    if (!CreateFile(*dir, component).ok()) break;
    held = key_bytes.size();
    (void)RetryWhileBusy([&] { return dir->RemoveAt(component); });
    if (!dir->MakeDirAt(component).ok()) break;
    rel = absl::StrCat(rel, component, "/");
    scratch.Made(rel.substr(0, rel.size() - 1), true);
    dir = dir->OpenDirectory(component);
  }
  return held == 16 * (component.size() + 1) - 1 ? 4096 : held;
}

// True when a name Windows cannot hold is created and listed under exactly that name.
bool OddNamesHeld(Scratch& scratch) {
  const std::string odd_name = "odd:name*";
  if (!CreateFile(scratch.dir(), odd_name).ok()) return false;
  scratch.Made(odd_name, false);
  return Listed(scratch.dir(), odd_name);
}

absl::StatusOr<DirProbe> Probe(const platform::Directory& root_dir, const std::string& root,
                               bool try_unnamed) {
  const std::string area_name(kReservedArea);
  DirProbe out;
  const platform::VolumeKind volume = platform::VolumeKindOf(root_dir);
  out.syncfs_flushes = volume.sync_filesystem_flushes;
  out.filesystem = volume.filesystem;
  if (absl::Status st = root_dir.MakeDirAt(area_name); !st.ok() && !absl::IsAlreadyExists(st)) {
    return StorageError(st);
  }
  absl::StatusOr<platform::Directory> area_dir = root_dir.OpenDirectory(area_name);
  if (!area_dir.ok()) return StorageError(area_dir.status());
  const platform::Directory& area = *area_dir;
  const std::string name =
      absl::StrCat(std::string(kTempPrefix), "probe-", HexEncode(RandomBytes(4)));
  if (absl::Status st = area.MakeDirAt(name); !st.ok()) {
    return StorageError(platform::WithContext(
        st, absl::StrCat("storage root ", root, " is not writable: create a probe folder")));
  }
  Scratch scratch(area, name);
  absl::StatusOr<platform::Directory> scratch_dir = area.OpenDirectory(name);
  if (!scratch_dir.ok()) return StorageError(scratch_dir.status());
  scratch.Open(*std::move(scratch_dir));
  if (absl::Status st = CreateFile(scratch.dir(), "Probe-Aa"); !st.ok()) {
    return StorageError(platform::WithContext(
        st, absl::StrCat("storage root ", root, " is not writable: create a probe file")));
  }
  scratch.Made("Probe-Aa", false);
  const platform::Directory& dir = scratch.dir();
  StorageFeatures& f = out.features;
  f.case_insensitive = dir.StatAt("PROBE-AA").ok();
  f.metadata_on_object = XattrsWork(dir, "Probe-Aa");
  f.mtime_precision_ns = ProbeMtimePrecision(dir, "Probe-Aa");
  f.hard_links = dir.HardLinkAt("Probe-Aa", dir, "link").ok();
  if (f.hard_links) scratch.Made("link", false);
  f.unnamed_files = try_unnamed && out.syncfs_flushes && UnnamedFilesWork(scratch);
  if (absl::StatusOr<platform::SpaceInfo> space = dir.Space();
      space.ok() && space->max_name_length > 0) {
    f.max_name_bytes = std::min<size_t>(space->max_name_length, f.max_name_bytes);
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
                      f.unnamed_files ? ", O_TMPFILE" : "",
                      f.hard_links ? ", hard links" : ", no hard links", ", mtime precision ",
                      f.mtime_precision_ns == 0 ? std::string("none (not kept)")
                                                : absl::StrCat(f.mtime_precision_ns, " ns"),
                      ", names up to ", f.max_name_bytes, " bytes, keys up to ", f.max_key_bytes,
                      " bytes", p.syncfs_flushes ? ", one syncfs per commit" : ", fsync per file");
}

// What each storage root (by identity, and whether unnamed files were tried) was found to do:
// probed once per process.
using ProbeId = std::tuple<uint64_t, uint64_t, uint64_t, bool>;
Mutex g_probed_mu;
std::map<ProbeId, DirProbe> g_probed ABSL_GUARDED_BY(g_probed_mu);

}  // namespace

absl::StatusOr<DirProbe> ProbeDirStorage(const platform::Directory& root_dir,
                                         const std::string& root, bool try_unnamed) {
  absl::StatusOr<platform::FileInfo> info = root_dir.Info();
  if (!info.ok())
    return StorageError(
        platform::WithContext(info.status(), absl::StrCat("stat storage root ", root)));
  const ProbeId id{info->id.volume, info->id.file, info->id.file_high, try_unnamed};
  {
    MutexLock lock(&g_probed_mu);
    if (auto it = g_probed.find(id); it != g_probed.end()) return it->second;
  }
  DS_ASSIGN_OR_RETURN(DirProbe p, Probe(root_dir, root, try_unnamed));
  MutexLock lock(&g_probed_mu);
  auto [it, fresh] = g_probed.emplace(id, std::move(p));
  if (fresh) spdlog::info("storage file://{}: {}", root, Describe(it->second));
  return it->second;
}

}  // namespace ds
