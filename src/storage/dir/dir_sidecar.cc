#include "storage/dir/dir_sidecar.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/crypto.h"
#include "common/files.h"
#include "storage/dir/dir_probe.h"
#include "common/unique_fd.h"
#include "storage/storage.h"

namespace ds {
namespace {

constexpr char kMagic[] = "datasync-meta";
constexpr size_t kMaxRecordBytes = 256;

std::string RecordPath(const std::string& root, const std::string& key) {
  return absl::StrCat(root, "/", std::string(kReservedArea), "/", kSidecarDir, "/", key);
}

bool IsLowerHex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::Status WriteSidecar(const std::string& root, const std::string& key, const SidecarMeta& meta,
                          bool durable) {
  const std::filesystem::path path = RecordPath(root, key);
  const std::string record = absl::StrCat(kMagic, " 1 ", meta.sha256, " ", meta.size, " ",
                                          meta.stored_mtime_ns, " ", meta.source_mtime_ns, "\n");
  // Written in place (one write of a short line): on a share each create and rename is a round
  // trip, and this is on every object's commit. The folder is created only when it is missing.
  constexpr int kFlags = O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC;
  UniqueFd fd(::open(path.c_str(), kFlags, 0644));
  if (!fd.valid() && errno == ENOENT) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) return ErrnoStatus(ec.value(), absl::StrCat("create ", path.parent_path().string()));
    fd = UniqueFd(::open(path.c_str(), kFlags, 0644));
  }
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("create ", path.string()));
  int e = WriteAll(fd.get(), record.data(), record.size());
  if (e == 0 && durable && ::fsync(fd.get()) != 0) e = errno;
  if (e == 0) e = fd.Close();
  if (e != 0) {
    fd.Reset();
    // A torn record must not stay: an empty one reads as "no record" (the object is hashed).
    (void)RetryWhileBusy([&] { return ::unlink(path.c_str()) == 0 ? 0 : errno; });
    return ErrnoStatus(e, absl::StrCat("write metadata record ", path.string()));
  }
  return durable ? SyncDirectory(path.parent_path()) : absl::OkStatus();
}

std::optional<SidecarMeta> ReadSidecar(const std::string& root, const std::string& key) {
  UniqueFd fd(::open(RecordPath(root, key).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  char buf[kMaxRecordBytes];
  const ssize_t n = ReadFully(fd.get(), buf, sizeof buf);
  if (n <= 0 || n == static_cast<ssize_t>(sizeof buf) || buf[n - 1] != '\n') return std::nullopt;
  std::vector<absl::string_view> f = absl::StrSplit(absl::string_view(buf, static_cast<size_t>(n - 1)), ' ');
  SidecarMeta m;
  if (f.size() != 6 || f[0] != kMagic || f[1] != "1" || !IsLowerHex64({f[2].data(), f[2].size()}) ||
      !absl::SimpleAtoi(f[3], &m.size) || !absl::SimpleAtoi(f[4], &m.stored_mtime_ns) ||
      !absl::SimpleAtoi(f[5], &m.source_mtime_ns)) {
    return std::nullopt;
  }
  m.sha256 = std::string(f[2]);
  return m;
}

absl::Status RemoveSidecar(const std::string& root, const std::string& key) {
  const std::string path = RecordPath(root, key);
  const int e = RetryWhileBusy([&] { return ::unlink(path.c_str()) == 0 ? 0 : errno; });
  if (e != 0 && e != ENOENT && e != ENOTDIR) return ErrnoStatus(e, absl::StrCat("remove ", path));
  return absl::OkStatus();
}

}  // namespace ds
