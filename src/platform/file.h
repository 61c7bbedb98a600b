// An open file: the only way DataSync code reads and writes file contents (leveldb Env style:
// small interface, errors as values).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "platform/handle.h"
#include "platform/types.h"

namespace ds::platform {

// Owns one open file handle; move-only; closing on destruction (errors then are lost: call Close
// to see them). Thread-compatible: ReadAt may be called concurrently on one File; everything
// else needs external synchronisation. Every error message names the file's display path.
class File : public OwnedHandle {
 public:
  File() = default;
  File(File&& other) noexcept = default;
  File& operator=(File&& other) noexcept = default;
  ~File() = default;

  // Opens `path` (absolute, or relative to the working directory). Errors: NotFound,
  // AlreadyExists (kCreateNew), PermissionDenied, FailedPrecondition (regular_only; see
  // OpenOptions), others via ErrnoToStatus; a refused link has ErrorKind::kIsLink.
  [[nodiscard]] static absl::StatusOr<File> Open(const std::filesystem::path& path,
                                                 const OpenOptions& options);

  // Wraps a native handle the caller owned; the File owns it from now on. `display` names it in
  // error messages. For the platform code and tests only.
  [[nodiscard]] static File Adopt(NativeHandle handle, std::string display);

  // Reads up to buffer.size() bytes at the current position. Returns the count, 0 at end of file.
  // Retries interrupted calls.
  [[nodiscard]] absl::StatusOr<size_t> Read(absl::Span<char> buffer);

  // Reads at `offset` until buffer.size() bytes or end of file, not moving the position. Returns
  // the count read (less than the size only at end of file).
  [[nodiscard]] absl::StatusOr<size_t> ReadAt(uint64_t offset, absl::Span<char> buffer) const;

  // Writes all of `data` at the current position (retrying short writes and interrupts).
  [[nodiscard]] absl::Status WriteAll(std::string_view data);

  // Moves the position to `offset` bytes from the start.
  [[nodiscard]] absl::Status Seek(uint64_t offset);

  // Flush: data and metadata reach the device (fsync; FlushFileBuffers). FlushData: data and
  // what is needed to read it back (fdatasync; on Windows the same as Flush).
  [[nodiscard]] absl::Status Flush();
  [[nodiscard]] absl::Status FlushData();

  [[nodiscard]] absl::StatusOr<uint64_t> Size() const;  // bytes
  [[nodiscard]] absl::StatusOr<FileInfo> Info() const;
  [[nodiscard]] absl::Status Truncate(uint64_t size);

  // Sets the modification time (Unix nanoseconds; Windows keeps 100 ns) and leaves atime alone.
  [[nodiscard]] absl::Status SetModificationTime(int64_t mtime_ns);
  // POSIX mode bits; on Windows only the write bit counts (read-only attribute).
  [[nodiscard]] absl::Status SetPermissions(uint32_t permissions);

  // Hints that the file will be read start to end / that [offset, offset+length) will not be
  // needed again (posix_fadvise; no-ops where unsupported). length 0 = to the end.
  void AdviseSequential() const;
  void AdviseDontNeed(uint64_t offset, uint64_t length) const;

  // A second handle on the same open file (dup; DuplicateHandle). It shares the position.
  [[nodiscard]] absl::StatusOr<File> Duplicate() const;

  // Object metadata: named attributes stored with the file (POSIX: xattrs "user.<name>";
  // Windows: the named stream "<file>:<name>" where the volume has named streams). Names are
  // short ASCII such as "datasync.meta". Errors: Unimplemented (kind kNotSupported) when the
  // volume cannot keep attributes; GetAttribute: NotFound when the file has no such attribute.
  // RemoveAttribute of a missing attribute is OK. ListAttributes gives names without "user.".
  [[nodiscard]] absl::StatusOr<std::string> GetAttribute(std::string_view name) const;
  [[nodiscard]] absl::Status SetAttribute(std::string_view name, std::string_view value);
  [[nodiscard]] absl::Status RemoveAttribute(std::string_view name);
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> ListAttributes() const;

  // Closes now and reports what close says (NFS and SMB may report a failed write only here).
  // Closing an invalid File is OK.
  [[nodiscard]] absl::Status Close() { return CloseHandle(); }


  // The OS handle, still owned by this File. Only for the platform code itself and for
  // documented interop that needs a raw handle (e.g. a libcurl read callback); never to make
  // OS calls outside src/platform.
  NativeHandle native() const { return handle_; }

 private:
  File(NativeHandle handle, std::string display) : OwnedHandle(handle, std::move(display)) {}
};

// Information about `path` (absolute or relative to the working directory); follow_links false
// describes a link itself (lstat). Errors: NotFound, PermissionDenied, others.
[[nodiscard]] absl::StatusOr<FileInfo> Stat(const std::filesystem::path& path, bool follow_links);

// Reads a whole (small) file. Errors as File::Open and Read; ResourceExhausted when it is longer
// than max_bytes.
[[nodiscard]] absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path,
                                                           size_t max_bytes);

}  // namespace ds::platform
