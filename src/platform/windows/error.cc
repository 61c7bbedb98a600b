// GetLastError codes → absl::Status (the Win32 twin of errno_status.cc; contract in internal.h).
#include "platform/error.h"

#include <string>

#include "platform/windows/internal.h"

namespace ds::platform::internal {
namespace {

ErrorKind KindOfWin32(DWORD err) {
  switch (err) {
    case ERROR_CANT_RESOLVE_FILENAME:
    case ERROR_STOPPED_ON_SYMLINK:
      return ErrorKind::kIsLink;
    case ERROR_DIRECTORY:
      return ErrorKind::kNotDirectory;
    case ERROR_DIR_NOT_EMPTY:
      return ErrorKind::kNotEmpty;
    case ERROR_NOT_SAME_DEVICE:
      return ErrorKind::kCrossDevice;
    case ERROR_SHARING_VIOLATION:
      return ErrorKind::kSharingViolation;
    case ERROR_NOT_SUPPORTED:
    case ERROR_INVALID_FUNCTION:
    case ERROR_CALL_NOT_IMPLEMENTED:
      return ErrorKind::kNotSupported;
    case ERROR_LOCK_VIOLATION:
    case ERROR_BUSY:
    case ERROR_PIPE_BUSY:
    case ERROR_DELETE_PENDING:
    case ERROR_USER_MAPPED_FILE:
      return ErrorKind::kBusy;
    case ERROR_BAD_NETPATH:
    case ERROR_NETNAME_DELETED:
    case ERROR_UNEXP_NET_ERR:
    case ERROR_BAD_NET_NAME:
    case ERROR_NETWORK_BUSY:
    case ERROR_DEV_NOT_EXIST:
    case ERROR_REM_NOT_LIST:
    case ERROR_NETWORK_UNREACHABLE:
    case ERROR_HOST_UNREACHABLE:
    case ERROR_CONNECTION_ABORTED:
    case ERROR_SEM_TIMEOUT:
    case ERROR_NOT_READY:
    case ERROR_IO_DEVICE:
      return ErrorKind::kUnreachable;
    default:
      return ErrorKind::kOther;
  }
}

absl::Status CodeOfWin32(DWORD err, const std::string& msg) {
  switch (err) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_DRIVE:
    case ERROR_DIRECTORY:
      return absl::NotFoundError(msg);
    case ERROR_ACCESS_DENIED:
    case ERROR_WRITE_PROTECT:
    case ERROR_PRIVILEGE_NOT_HELD:
      return absl::PermissionDeniedError(msg);
    case ERROR_ALREADY_EXISTS:
    case ERROR_FILE_EXISTS:
      return absl::AlreadyExistsError(msg);
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
    case ERROR_DISK_QUOTA_EXCEEDED:
    case ERROR_TOO_MANY_OPEN_FILES:
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_NOT_ENOUGH_QUOTA:
      return absl::ResourceExhaustedError(msg);
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION:
    case ERROR_BUSY:
    case ERROR_PIPE_BUSY:
    case ERROR_DELETE_PENDING:
    case ERROR_USER_MAPPED_FILE:
    case ERROR_OPERATION_ABORTED:
    case ERROR_BAD_NETPATH:
    case ERROR_NETNAME_DELETED:
    case ERROR_UNEXP_NET_ERR:
    case ERROR_BAD_NET_NAME:
    case ERROR_NETWORK_BUSY:
    case ERROR_DEV_NOT_EXIST:
    case ERROR_REM_NOT_LIST:
    case ERROR_NETWORK_UNREACHABLE:
    case ERROR_HOST_UNREACHABLE:
    case ERROR_CONNECTION_ABORTED:
    case ERROR_SEM_TIMEOUT:
    case ERROR_NOT_READY:
    case ERROR_IO_DEVICE:
      return absl::UnavailableError(msg);
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME:
    case ERROR_FILENAME_EXCED_RANGE:
    case ERROR_INVALID_PARAMETER:
      return absl::InvalidArgumentError(msg);
    case ERROR_NOT_SUPPORTED:
    case ERROR_INVALID_FUNCTION:
      return absl::UnimplementedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// FormatMessageW's text for `err` in UTF-8, without the trailing ".\r\n"; "Windows error N" when
// the system has none.
std::string Win32Text(DWORD err) {
  wchar_t* buffer = nullptr;
  const DWORD n = ::FormatMessageW(
      FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
      nullptr, err, MAKELANGID(LANG_NEUTRAL, SUBLANG_DEFAULT), reinterpret_cast<wchar_t*>(&buffer),
      0, nullptr);
  std::wstring text;
  if (n > 0 && buffer != nullptr) text.assign(buffer, n);
  if (buffer != nullptr) ::LocalFree(buffer);
  while (!text.empty() && (text.back() == L'\r' || text.back() == L'\n' || text.back() == L' ' ||
                           text.back() == L'.')) {
    text.pop_back();
  }
  if (text.empty()) return absl::StrCat("Windows error ", err);
  return Narrow(text);
}

}  // namespace

absl::Status Win32ErrorToStatus(DWORD err, std::string_view what) {
  const std::string text = Win32Text(err);
  const std::string msg = absl::StrCat(Av(what), ": ", text);
  return WithSystemText(WithKind(CodeOfWin32(err, msg), KindOfWin32(err)), text);
}

}  // namespace ds::platform::internal
