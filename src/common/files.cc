#include "common/files.h"

#include "absl/strings/str_cat.h"
#include "platform/staged_file.h"

namespace ds {

absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path, size_t max_bytes) {
  return platform::ReadFileToString(path, max_bytes);
}

absl::Status SyncDirectory(const std::filesystem::path& dir) {
  DS_ASSIGN_OR_RETURN(platform::Directory d, platform::Directory::Open(dir));
  return d.Flush();
}

absl::Status WriteFileAtomically(const std::filesystem::path& path, std::string_view data,
                                 int mode) {
  std::filesystem::path dir_path = path.parent_path();
  if (dir_path.empty()) dir_path = ".";
  DS_ASSIGN_OR_RETURN(platform::Directory dir, platform::Directory::Open(dir_path));
  DS_ASSIGN_OR_RETURN(
      platform::StagedFile staged,
      platform::StagedFile::Create(dir, path.filename().string(), static_cast<uint32_t>(mode),
                                   platform::StagingMode::kNamed));
  DS_RETURN_IF_ERROR(staged.WriteAll(data));
  DS_RETURN_IF_ERROR(staged.file().SetPermissions(static_cast<uint32_t>(mode)));
  DS_RETURN_IF_ERROR(staged.file().Flush());
  platform::CommitOptions replace;
  replace.replace = platform::Replace::kYes;
  replace.flush = false;  // flushed above (data and mode); the directory below
  DS_RETURN_IF_ERROR(staged.Commit(path.filename().string(), replace));
  return dir.Flush();
}

absl::StatusOr<platform::File> OpenScannedFileAt(const platform::Directory* dir,
                                                 const std::string& name,
                                                 const FileIdentity& expected) {
  platform::OpenOptions options;
  options.follow_links = expected.via_link;
  options.regular_only = true;
  absl::StatusOr<platform::File> file =
      dir != nullptr ? dir->OpenFile(name, options) : platform::File::Open(name, options);
  if (!file.ok()) {
    const platform::ErrorKind kind = platform::KindOf(file.status());
    if (kind == platform::ErrorKind::kIsLink || kind == platform::ErrorKind::kNoDevice ||
        kind == platform::ErrorKind::kIsDirectory) {
      return absl::AbortedError(kChangedSinceScan);
    }
    return file.status();
  }
  DS_ASSIGN_OR_RETURN(platform::FileInfo info, file->Info());
  if (info.id.volume != expected.dev || info.id.file != expected.ino ||
      info.size != expected.size || info.mtime_ns != expected.mtime_ns) {
    return absl::AbortedError(kChangedSinceScan);
  }
  return file;
}

}  // namespace ds
