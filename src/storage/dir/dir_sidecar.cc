#include "storage/dir/dir_sidecar.h"

#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "platform/directory.h"
#include "platform/error.h"
#include "platform/file.h"
#include "storage/dir/dir_errors.h"
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

// Creates (or truncates) the record file at `path`, making its folder when it is missing.
absl::StatusOr<platform::File> CreateRecord(const std::filesystem::path& path) {
  platform::OpenOptions options;
  options.access = platform::Access::kWrite;
  options.disposition = platform::Disposition::kCreateOrTruncate;
  absl::StatusOr<platform::File> file = platform::File::Open(path, options);
  if (absl::IsNotFound(file.status()) &&
      platform::KindOf(file.status()) != platform::ErrorKind::kNotDirectory) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      return platform::ErrnoToStatus(ec.value(),
                                     absl::StrCat("create ", path.parent_path().string()));
    }
    file = platform::File::Open(path, options);
  }
  return file;
}

// Removes the file at `path` (retried while another SMB client holds it). OK when it is gone.
absl::Status RemoveFile(const std::filesystem::path& path) {
  absl::StatusOr<platform::Directory> dir = platform::Directory::Open(path.parent_path());
  if (absl::IsNotFound(dir.status())) return absl::OkStatus();
  DS_RETURN_IF_ERROR(dir.status());
  const std::string name = path.filename().string();
  const absl::Status st = RetryWhileBusy([&] { return dir->RemoveAt(name); });
  return absl::IsNotFound(st) ? absl::OkStatus() : st;
}

}  // namespace

absl::Status WriteSidecar(const std::string& root, const std::string& key, const SidecarMeta& meta,
                          bool durable) {
  const std::filesystem::path path = RecordPath(root, key);
  const std::string record = absl::StrCat(kMagic, " 1 ", meta.sha256, " ", meta.size, " ",
                                          meta.stored_mtime_ns, " ", meta.source_mtime_ns, "\n");
  // Written in place (one write of a short line): on a share each create and rename is a round
  // trip, and this is on every object's commit. The folder is created only when it is missing.
  absl::StatusOr<platform::File> file = CreateRecord(path);
  if (!file.ok())
    return platform::WithContext(file.status(), absl::StrCat("create ", path.string()));
  absl::Status st = file->WriteAll(record);
  if (st.ok() && durable) st = file->Flush();
  if (st.ok()) st = file->Close();
  if (!st.ok()) {
    *file = platform::File();
    // A torn record must not stay: an empty one reads as "no record" (the object is hashed).
    (void)RemoveFile(path);
    return platform::WithContext(st, absl::StrCat("write metadata record ", path.string()));
  }
  if (!durable) return absl::OkStatus();
  DS_ASSIGN_OR_RETURN(platform::Directory folder, platform::Directory::Open(path.parent_path()));
  return folder.Flush();
}

std::optional<SidecarMeta> ReadSidecar(const std::string& root, const std::string& key) {
  platform::OpenOptions options;
  options.non_blocking = true;  // a FIFO in the way must not hang us
  absl::StatusOr<platform::File> file = platform::File::Open(RecordPath(root, key), options);
  if (!file.ok()) return std::nullopt;
  char buf[kMaxRecordBytes];
  absl::StatusOr<size_t> read = file->ReadAt(0, absl::MakeSpan(buf, sizeof buf));
  if (!read.ok()) return std::nullopt;
  const size_t n = *read;
  if (n == 0 || n == sizeof buf || buf[n - 1] != '\n') return std::nullopt;
  std::vector<absl::string_view> f = absl::StrSplit(absl::string_view(buf, n - 1), ' ');
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
  return RemoveFile(RecordPath(root, key));
}

}  // namespace ds
