// A file written under no final name, then committed under one: nothing half-written is ever
// seen under a final name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/directory.h"
#include "platform/file.h"

namespace ds::platform {

enum class StagingMode {
  kAuto,   // unnamed (Linux O_TMPFILE) where the filesystem can, else named
  kNamed,  // always a named temp ".<hint>.tmp-<random>" in the directory
};

struct CommitOptions {
  Replace replace = Replace::kNo;
  // Flush the file's data (fdatasync; FlushFileBuffers) before it gets its name, and the
  // directory after. False when the caller makes the filesystem durable itself (e.g. one
  // Directory::SyncFilesystem for a group of commits) — and then must, before relying on it.
  bool flush = true;
};

// Move-only. Destroying one that was not committed removes it (a named temp is unlinked; an
// unnamed one vanishes with its handle). Not thread-safe.
// REQUIRES: the Directory it was created in outlives it.
class StagedFile {
 public:
  // Creates the temp file in `dir`, open read-write, with `permissions`. `name_hint` (a final
  // name, say) only shapes a named temp's name. Errors: as File::Open.
  [[nodiscard]] static absl::StatusOr<StagedFile> Create(const Directory& dir,
                                                         std::string_view name_hint,
                                                         uint32_t permissions = 0644,
                                                         StagingMode mode = StagingMode::kAuto);

  StagedFile(StagedFile&& other) noexcept;
  StagedFile& operator=(StagedFile&& other) noexcept;
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  ~StagedFile();

  [[nodiscard]] absl::Status WriteAll(std::string_view data) { return file_.WriteAll(data); }
  File& file() { return file_; }

  // True when the temp has no name (O_TMPFILE).
  bool unnamed() const { return temp_name_.empty(); }
  // The named temp's name in the directory ("" when unnamed).
  const std::string& temp_name() const { return temp_name_; }

  // Gives the file `final_name` in the directory (atomically: readers see nothing or all of it).
  // Replace::kNo: AlreadyExists when the name is taken (the staged file stays, uncommitted, and
  // may be committed under another name). The File stays open and usable after a commit.
  // REQUIRES: not committed yet.
  [[nodiscard]] absl::Status Commit(std::string_view final_name, const CommitOptions& options);

  bool committed() const { return committed_; }

 private:
  StagedFile(const Directory* dir, File file, std::string temp_name)
      : dir_(dir), file_(std::move(file)), temp_name_(std::move(temp_name)) {}
  void Discard();

  const Directory* dir_ = nullptr;
  File file_;
  std::string temp_name_;
  bool committed_ = false;
};

}  // namespace ds::platform
