// Shared by the Windows implementation files (and their tests) only. Wide-character APIs
// throughout: UTF-8 inside DataSync, UTF-16 at the OS boundary, never the ANSI code page.
#pragma once

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>

// Codes mingw-w64 10's winerror.h lacks.
#ifndef ERROR_STOPPED_ON_SYMLINK
#define ERROR_STOPPED_ON_SYMLINK 681L
#endif
#ifndef ERROR_DISK_QUOTA_EXCEEDED
#define ERROR_DISK_QUOTA_EXCEEDED 1295L
#endif

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "platform/error.h"

namespace ds::platform::internal {

// Debian's abseil has its own string_view, which std::string_view does not convert to.
inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// GetLastError() code → canonical status, message "`what`: FormatMessageW text" (trailing
// newline and period dropped), with the ErrorKind payload and the system text (SystemErrorText).
// The twin of ErrnoToStatus, same codes and kinds for the same situations:
//   FILE_NOT_FOUND, PATH_NOT_FOUND, INVALID_DRIVE, DIRECTORY (kNotDirectory)   NotFound
//   ACCESS_DENIED, WRITE_PROTECT, PRIVILEGE_NOT_HELD                           PermissionDenied
//   ALREADY_EXISTS, FILE_EXISTS                                                AlreadyExists
//   DISK_FULL, HANDLE_DISK_FULL, DISK_QUOTA_EXCEEDED, TOO_MANY_OPEN_FILES,
//     NOT_ENOUGH_MEMORY, OUTOFMEMORY, NOT_ENOUGH_QUOTA                         ResourceExhausted
//   SHARING_VIOLATION (kSharingViolation); LOCK_VIOLATION, BUSY, PIPE_BUSY,
//     DELETE_PENDING, USER_MAPPED_FILE (kBusy); OPERATION_ABORTED            Unavailable
//   BAD_NETPATH, NETNAME_DELETED, UNEXP_NET_ERR, BAD_NET_NAME, NETWORK_BUSY,
//     DEV_NOT_EXIST, REM_NOT_LIST, NETWORK_UNREACHABLE, HOST_UNREACHABLE,
//     CONNECTION_ABORTED, SEM_TIMEOUT, NOT_READY, IO_DEVICE (kUnreachable)     Unavailable
//   INVALID_NAME, BAD_PATHNAME, FILENAME_EXCED_RANGE, INVALID_PARAMETER        InvalidArgument
//   NOT_SUPPORTED, INVALID_FUNCTION (kNotSupported)                            Unimplemented
//   anything else                                                              Internal
// Kinds on Internal, as on POSIX: DIR_NOT_EMPTY kNotEmpty, NOT_SAME_DEVICE kCrossDevice,
// CANT_RESOLVE_FILENAME / STOPPED_ON_SYMLINK kIsLink, CALL_NOT_IMPLEMENTED kNotSupported.
// REQUIRES: err != ERROR_SUCCESS.
[[nodiscard]] absl::Status Win32ErrorToStatus(DWORD err, std::string_view what);

// Win32ErrorToStatus(GetLastError() now, "<op> <display>").
inline absl::Status LastError(std::string_view op, std::string_view display) {
  const DWORD err = ::GetLastError();
  return Win32ErrorToStatus(err, absl::StrCat(Av(op), " ", Av(display)));
}

// UTF-8 → UTF-16 (MultiByteToWideChar, CP_UTF8; invalid bytes become U+FFFD).
[[nodiscard]] std::wstring Widen(std::string_view utf8);

// UTF-16 → UTF-8 (WideCharToMultiByte, CP_UTF8; unpaired surrogates become U+FFFD).
[[nodiscard]] std::string Narrow(std::wstring_view wide);

// The `\\?\` form of an absolute path, which the wide file APIs take past MAX_PATH and without
// rewriting the name: "C:\a\..\b" or "C:/a/b" → "\\?\C:\b", "\\server\share\x" →
// "\\?\UNC\server\share\x" ("." and ".." are resolved lexically first and '/' becomes '\', as
// Win32 would have done). A path already in `\\?\` or `\\.\` form, and a relative or
// drive-relative one ("a\b", "C:a", "\a"), is returned unchanged.
[[nodiscard]] std::wstring LongPathForm(const std::filesystem::path& path);

}  // namespace ds::platform::internal
