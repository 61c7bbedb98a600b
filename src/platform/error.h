// The one mapping from operating-system errors to absl::Status, and the few error kinds callers
// branch on portably (a link where none was expected, a sharing violation, ...).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace ds::platform {

// What an OS error means to a portable caller, beyond its status code. Attached to every status
// made by ErrnoToStatus (or the Windows GetLastError twin) as a payload; read with KindOf.
enum class ErrorKind {
  kOther = 0,
  kIsLink,            // a symbolic link / reparse point where links are not followed (ELOOP)
  kNotDirectory,      // a path component is not a directory (ENOTDIR)
  kIsDirectory,       // a directory where a file was expected (EISDIR)
  kNotEmpty,          // removing a directory that still has entries (ENOTEMPTY, EEXIST on rmdir)
  kCrossDevice,       // a rename or link across volumes (EXDEV)
  kSharingViolation,  // Windows: another process holds the file without sharing; never on POSIX
  kNotSupported,      // the volume cannot do it (ENOTSUP/EOPNOTSUPP, no xattrs, no O_TMPFILE)
  kNoDevice,          // a FIFO/socket/device refused the open (ENXIO, ENODEV)
  kBusy,              // in use for the moment: retrying shortly may succeed (EBUSY, ETXTBSY)
  // The volume (typically a network share) may not be reachable now: ESTALE, EIO, ENOTCONN,
  // ETIMEDOUT, EHOSTDOWN, EHOSTUNREACH, ENETDOWN, ENETUNREACH, ECONNRESET, ECONNABORTED.
  kUnreachable,
};

// errno → canonical status, message "`what`: strerror(err)", with the ErrorKind payload:
//   ENOENT, ENOTDIR                       NotFound
//   EACCES, EPERM, EROFS                  PermissionDenied
//   EEXIST                                AlreadyExists
//   ENOSPC, EDQUOT, EMFILE, ENFILE        ResourceExhausted
//   EBUSY, EAGAIN, ETXTBSY, EINTR, EIO    Unavailable (retrying the call may succeed)
//   ENAMETOOLONG, EINVAL                  InvalidArgument
//   ENOTSUP, EOPNOTSUPP (kind also ENOSYS) Unimplemented ("not supported on this volume")
//   anything else                         Internal
// REQUIRES: err != 0.
[[nodiscard]] absl::Status ErrnoToStatus(int err, std::string_view what);

// The ErrorKind attached to `status` (kOther when none, or when status is OK).
[[nodiscard]] ErrorKind KindOf(const absl::Status& status);

// The operating system's own text for the error behind `status` (strerror; FormatMessageW),
// without the "what" context: "Permission denied". For a status not made by the platform: its
// whole message.
[[nodiscard]] std::string SystemErrorText(const absl::Status& status);

// `status` with the message "`what`: SystemErrorText(status)", code and payloads kept: for
// callers whose messages name the object their own way ("job folder /data: No such file ...").
[[nodiscard]] absl::Status WithContext(const absl::Status& status, std::string_view what);

// Attaches `kind` to `status` (no effect on an OK status). For the platform code's own use.
[[nodiscard]] absl::Status WithKind(absl::Status status, ErrorKind kind);

// Attaches the OS's own text of the error (see SystemErrorText). For the platform code's own use.
[[nodiscard]] absl::Status WithSystemText(absl::Status status, std::string_view text);

}  // namespace ds::platform
